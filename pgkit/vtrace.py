r"""V-trace: off-policy value targets and policy-gradient advantages, truncated ratios.

IMPALA's actors act with a policy :math:`\mu` that lags behind the learner's
:math:`\pi` (Espeholt et al. 2018, "IMPALA: scalable distributed deep-RL with
importance weighted actor-learner architectures", arXiv:1802.01561). V-trace
corrects the n-step target of the critic with truncated importance ratios.
With :math:`\rho_s = \pi(a_s|x_s) / \mu(a_s|x_s)`,

.. math::

    \bar\rho_s = \min(\bar\rho, \rho_s), \qquad c_s = \lambda \min(\bar c, \rho_s),
    \qquad \delta_s V = \bar\rho_s\, \big(r_s + \gamma_s V(x_{s+1}) - V(x_s)\big),

the target of step s is

.. math::

    v_s = V(x_s) + \sum_{t \ge s} \Big(\prod_{i=s}^{t-1} \gamma_i c_i\Big)\, \delta_t V,

computed backwards by
:math:`v_s - V(x_s) = \delta_s V + \gamma_s c_s\,(v_{s+1} - V(x_{s+1}))`,
and the policy gradient uses the advantage
:math:`\min(\bar\rho_{pg}, \rho_s)\,(r_s + \gamma_s v_{s+1} - V(x_s))`.
Here :math:`\gamma_s` is the discount of step s (``discounts``, zero where an
episode ends), so a product of discounts replaces the paper's :math:`\gamma^{t-s}`.

:math:`\bar\rho` decides *which* policy's value the targets converge to, the
policy proportional to :math:`\min(\bar\rho \mu, \pi)` (:func:`vtrace_policy`);
:math:`\bar c` decides how fast the trace is cut, that is how far the
correction looks ahead (the variance), not where it converges. On policy
(:math:`\rho_s = 1`) with :math:`\bar\rho, \bar c \ge 1` and :math:`\lambda = 1`,
:math:`v_s` is the bootstrapped n-step return.

The second half of the module computes the V-trace operator on a tabular MDP
exactly (:func:`vtrace_operator`), its fixed point (:func:`vtrace_fixed_point`)
and its contraction modulus (:func:`vtrace_contraction_modulus`).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from pgkit import _checks
from pgkit.mdp import TabularMDP, _check_policy_table

__all__ = [
    "VTraceReturns",
    "from_importance_weights",
    "vtrace_policy",
    "vtrace_operator",
    "vtrace_fixed_point",
    "vtrace_contraction_modulus",
]


class VTraceReturns(NamedTuple):
    """The two outputs of :func:`from_importance_weights`, each ``[T, B, ...]``."""

    vs: np.ndarray
    pg_advantages: np.ndarray


VTraceReturns.vs.__doc__ = "The V-trace value targets v_s, shape [T, B, ...]."
VTraceReturns.pg_advantages.__doc__ = (
    "The policy-gradient advantages min(pg_rho_bar, rho_s) "
    "(r_s + gamma_s v_{s+1} - V(x_s)), shape [T, B, ...].")


# ---------------------------------------------------------------- input checks

def _threshold(x, name: str) -> float:
    """A clipping threshold as the log of its value: None (no clipping) is +inf."""
    if x is None:
        return math.inf
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or math.isnan(x):
        raise ValueError(f"{name} must be a non-negative number or None, got {x!r}")
    if x < 0:
        raise ValueError(f"{name} must be non-negative (or None for no clipping), "
                         f"got {x}")
    return math.log(x) if x > 0 else -math.inf


def _lambda(lambda_, shape) -> np.ndarray | float:
    if isinstance(lambda_, numbers.Real) and not isinstance(lambda_, bool):
        lam = float(lambda_)
        if not 0 <= lam <= 1:                                  # NaN fails too
            raise ValueError(f"lambda_ must be in [0, 1], got {lam}")
        return lam
    lam = _checks.as_float_array(lambda_, "lambda_")
    try:
        np.broadcast_shapes(lam.shape, shape)
        if len(lam.shape) > len(shape):
            raise ValueError
    except ValueError:
        raise ValueError(f"lambda_ must be a number or an array broadcastable to "
                         f"[T, B, ...] = {_checks._shape_str(shape)}, got shape "
                         f"{_checks._shape_str(lam.shape)}") from None
    if (lam < 0).any() or (lam > 1).any():
        bad = lam[(lam < 0) | (lam > 1)].flat[0]
        raise ValueError(f"lambda_ must be in [0, 1], got {bad}")
    return lam


def _finite(x, name: str, shape, shape_doc: str) -> np.ndarray:
    arr = _checks.as_float_array(x, name)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape_doc} = "
                         f"{_checks._shape_str(shape)}, got "
                         f"{_checks._shape_str(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got an infinite value")
    return arr


# ---------------------------------------------------------------- V-trace targets

def from_importance_weights(log_rhos, discounts, rewards, values, bootstrap_value,
                            clip_rho_threshold: float | None = 1.0,
                            clip_pg_rho_threshold: float | None = 1.0,
                            clip_c_threshold: float | None = 1.0,
                            lambda_=1.0) -> VTraceReturns:
    r"""V-trace value targets and policy-gradient advantages of a time-major batch.

    .. math::

        v_s - V(x_s) = \bar\rho_s \big(r_s + \gamma_s V(x_{s+1}) - V(x_s)\big)
            + \gamma_s c_s\, \big(v_{s+1} - V(x_{s+1})\big), \qquad v_T = V(x_T),

        A^{pg}_s = \min(\bar\rho_{pg}, \rho_s)\,
            \big(r_s + \gamma_s v_{s+1} - V(x_s)\big),

    with :math:`\bar\rho_s = \min(\bar\rho, \rho_s)`, :math:`c_s = \lambda_s
    \min(\bar c, \rho_s)`, :math:`V(x_T)` = ``bootstrap_value``. This is
    Espeholt et al. (2018), arXiv:1802.01561, eq. (1) and section 4.2, with a
    discount per step and a trace parameter :math:`\lambda` in :math:`c_s`, as
    rlax has it; ``clip_c_threshold`` is :math:`\bar c`, fixed to 1 in the
    IMPALA code. The names and the defaults are those of the IMPALA code.

    Ratios are clipped in log space before they are exponentiated,
    :math:`\min(\bar\rho, e^{\ell}) = e^{\min(\log\bar\rho, \ell)}`, so a
    clipped weight never overflows, however large ``log_rhos`` is, and a
    ``log_rhos`` of ``-inf`` (an action the target policy never takes) is a
    weight of exactly 0. A threshold of None does not clip: the weight is then
    :math:`e^{\ell}`, which overflows float64 above :math:`\ell \approx 709.78`,
    and long products of unclipped :math:`c_s > 1` can overflow too (the
    variance that clipping removes). Rather than return ``inf`` or NaN, the
    function raises a ValueError when a result is not finite.

    Parameters
    ----------
    log_rhos : array [T, B, ...]
        :math:`\log \pi(a_s|x_s) - \log \mu(a_s|x_s)`; ``-inf`` allowed, NaN and
        ``+inf`` not.
    discounts : array [T, B, ...] in [0, 1]
        :math:`\gamma_s`: the discount times "the episode goes on after step s"
        (zero where it terminated).
    rewards : array [T, B, ...]
    values : array [T, B, ...]
        :math:`V(x_s)`.
    bootstrap_value : array [B, ...]
        :math:`V(x_T)`, the value of the state after the last step.
    clip_rho_threshold, clip_pg_rho_threshold, clip_c_threshold : float >= 0 or None
        :math:`\bar\rho`, :math:`\bar\rho_{pg}`, :math:`\bar c`; None for no clipping.
    lambda_ : float in [0, 1], or an array of them broadcastable to [T, B, ...]

    Returns
    -------
    VTraceReturns(vs, pg_advantages), each [T, B, ...].
    """
    log_rhos = _checks.as_float_array(log_rhos, "log_rhos")
    if log_rhos.ndim < 2 or log_rhos.shape[0] == 0:
        raise ValueError("log_rhos must have shape [T, B, ...] with T >= 1, got "
                         f"{_checks._shape_str(log_rhos.shape)}")
    if (log_rhos == np.inf).any():
        raise ValueError("log_rhos must be below +inf (a behaviour probability of zero "
                         "for an action taken), got +inf")
    shape = log_rhos.shape
    discounts = _finite(discounts, "discounts", shape, "[T, B, ...]")
    if (discounts < 0).any() or (discounts > 1).any():
        bad = discounts[(discounts < 0) | (discounts > 1)].flat[0]
        raise ValueError(f"discounts must be in [0, 1], got {bad}")
    rewards = _finite(rewards, "rewards", shape, "[T, B, ...]")
    values = _finite(values, "values", shape, "[T, B, ...]")
    bootstrap_value = _finite(bootstrap_value, "bootstrap_value", shape[1:], "[B, ...]")
    log_rho_bar = _threshold(clip_rho_threshold, "clip_rho_threshold")
    log_pg_rho_bar = _threshold(clip_pg_rho_threshold, "clip_pg_rho_threshold")
    log_c_bar = _threshold(clip_c_threshold, "clip_c_threshold")
    lam = _lambda(lambda_, shape)

    with np.errstate(over="ignore", invalid="ignore"):
        rhos, cs, pg_rhos = _clipped_ratios(log_rhos, log_rho_bar, log_c_bar,
                                            log_pg_rho_bar, lam)
        out = _vtrace(rhos, cs, pg_rhos, discounts, rewards, values, bootstrap_value)
    for name, arr in zip(VTraceReturns._fields, out):
        if not np.isfinite(arr).all():
            raise ValueError(
                f"{name} overflowed: with unclipped importance weights (a threshold of "
                f"None, or a large one) the weights or their products exceed float64 "
                f"(the largest log_rho is {np.max(log_rhos):.4g}); clip them")
    return out


def _clipped_ratios(log_rhos, log_rho_bar, log_c_bar, log_pg_rho_bar, lam):
    """min(rho_bar, rho), lambda min(c_bar, rho), min(pg_rho_bar, rho), in log space."""
    # [book:vtrace-clipped-ratios]
    rhos = np.exp(np.minimum(log_rhos, log_rho_bar))        # min(rho_bar, rho_s)
    cs = lam * np.exp(np.minimum(log_rhos, log_c_bar))      # lambda min(c_bar, rho_s)
    pg_rhos = np.exp(np.minimum(log_rhos, log_pg_rho_bar))  # min(pg_rho_bar, rho_s)
    # [/book:vtrace-clipped-ratios]
    return rhos, cs, pg_rhos


def _vtrace(rhos, cs, pg_rhos, discounts, rewards, values, bootstrap_value):
    """V-trace from clipped ratios (unchecked): [T, B, ...], bootstrap [B, ...]."""
    next_values = np.concatenate([values[1:], bootstrap_value[None]])   # V(x_{s+1})
    # [book:vtrace-recursion]
    deltas = rhos * (rewards + discounts * next_values - values)   # delta_s V
    traces = discounts * cs                                        # gamma_s c_s
    vs_minus_values = np.empty_like(deltas)
    following = np.zeros_like(bootstrap_value)                     # v_T - V(x_T) = 0
    for s in reversed(range(deltas.shape[0])):
        following = deltas[s] + traces[s] * following              # v_s - V(x_s)
        vs_minus_values[s] = following
    vs = values + vs_minus_values
    # [/book:vtrace-recursion]
    next_vs = np.concatenate([vs[1:], bootstrap_value[None]])          # v_{s+1}
    pg_advantages = pg_rhos * (rewards + discounts * next_vs - values)
    return VTraceReturns(vs, pg_advantages)


# ---------------------------------------------------------------- the tabular operator
#
# With w_rho(x, a) = mu(a|x) min(rho_bar, pi/mu) = min(rho_bar mu(a|x), pi(a|x)) and
# w_c(x, a) = lambda min(c_bar mu(a|x), pi(a|x)), no ratio is ever divided out, so a
# behaviour probability of zero needs no special case.

def _weights(pi, mu, threshold):
    """min(threshold mu, pi) [S, A]; without clipping (None, inf), pi where mu > 0.

    That is mu(a|x) min(threshold, pi/mu) where mu(a|x) > 0, and 0 for the
    actions mu never takes (they never appear in an expectation under mu).
    """
    if threshold is None or threshold == math.inf:
        return np.where(mu > 0, pi, 0.0)
    return np.minimum(threshold * mu, pi)


def _check_operator_args(mdp, pi, mu, clip_rho_threshold, clip_c_threshold, lambda_,
                         n_steps):
    if not isinstance(mdp, TabularMDP):
        raise ValueError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    if not mdp.discounted:
        raise ValueError("the V-trace operator is defined here for discounted MDPs "
                         "(horizon=None, gamma < 1)")
    pi = _check_policy_table(mdp, pi)
    if pi.ndim != 2:
        raise ValueError("pi must be a stationary policy table [S, A]")
    mu = _checks.as_float_array(mu, "mu", ndim=2, shape_doc="[S, A]")
    if mu.shape != pi.shape:
        raise ValueError(f"mu must have shape [S, A] = {pi.shape}, got {mu.shape}")
    _checks.check_distribution(mu, "mu[s, :]")
    for name, value in (("clip_rho_threshold", clip_rho_threshold),
                        ("clip_c_threshold", clip_c_threshold)):
        _threshold(value, name)
    if (isinstance(lambda_, bool) or not isinstance(lambda_, numbers.Real)
            or not 0 <= lambda_ <= 1):
        raise ValueError(f"lambda_ must be a number in [0, 1], got {lambda_!r}")
    if n_steps is not None:
        n_steps = _checks.check_positive_int(n_steps, "n_steps")
    return pi, mu, n_steps


def _trace_sum(mdp, mu, pi, clip_c_threshold, lambda_, n_steps):
    r"""The trace sum :math:`K = \sum_{t<n} (\gamma C)^t` [S, S].

    :math:`C(x, y) = \sum_a w_c(x, a) P(y|x, a)`.
    """
    w_c = lambda_ * _weights(pi, mu, clip_c_threshold)
    C = np.einsum("sa,sat->st", w_c, mdp.transitions)
    S = mdp.n_states
    if n_steps is None:               # rows of gamma C sum to <= gamma lambda < 1
        return np.linalg.inv(np.eye(S) - mdp.gamma * C)
    K, power = np.zeros((S, S)), np.eye(S)
    for _ in range(n_steps):
        K += power
        power = mdp.gamma * C @ power
    return K


def _operator_parts(mdp, pi, mu, clip_rho_threshold, clip_c_threshold, lambda_,
                    n_steps):
    """R V = V + K (r_rho + gamma P_rho V - diag(z) V).

    Returns K [S, S], r_rho [S], P_rho [S, S] and z [S].
    """
    w_rho = _weights(pi, mu, clip_rho_threshold)          # mu(a|x) min(rho_bar, rho)
    K = _trace_sum(mdp, mu, pi, clip_c_threshold, lambda_, n_steps)
    r_rho = np.sum(w_rho * mdp.rewards, axis=1)
    P_rho = np.einsum("sa,sat->st", w_rho, mdp.transitions)
    return K, r_rho, P_rho, w_rho.sum(axis=1)


def vtrace_policy(pi, mu, clip_rho_threshold: float | None = 1.0) -> np.ndarray:
    r"""The policy whose value V-trace learns: proportional to min(rho_bar mu, pi).

    .. math:: \pi_{\bar\rho}(a|x) = \frac{\min(\bar\rho\,\mu(a|x), \pi(a|x))}
        {\sum_b \min(\bar\rho\,\mu(b|x), \pi(b|x))}

    Espeholt et al. (2018), arXiv:1802.01561, section 4.1. For
    :math:`\bar\rho \ge \max_{x,a} \pi(a|x)/\mu(a|x)` it is :math:`\pi`
    (also for None), provided :math:`\mu` takes every action :math:`\pi` takes
    (an action :math:`\mu` never takes has weight 0: without clipping the
    policy is :math:`\pi` restricted to :math:`\mu`'s actions); for
    :math:`\bar\rho \le \min \pi/\mu` over the actions :math:`\pi` takes, it is
    :math:`\mu` restricted to those actions and renormalised (:math:`\mu`
    itself when :math:`\pi` takes every action).

    Parameters
    ----------
    pi, mu : arrays [S, A]
        Target and behaviour policy tables (rows are distributions).
    clip_rho_threshold : float > 0 or None

    Returns
    -------
    array [S, A]. A ValueError if in some state :math:`\min(\bar\rho\mu, \pi)`
    is zero for every action (the two policies share no action there).
    """
    pi = _checks.as_float_array(pi, "pi", ndim=2, shape_doc="[S, A]")
    _checks.check_distribution(pi, "pi[s, :]")
    mu = _checks.as_float_array(mu, "mu", ndim=2, shape_doc="[S, A]")
    if mu.shape != pi.shape:
        raise ValueError(f"mu must have shape [S, A] = {pi.shape}, got {mu.shape}")
    _checks.check_distribution(mu, "mu[s, :]")
    _threshold(clip_rho_threshold, "clip_rho_threshold")
    w = _weights(pi, mu, clip_rho_threshold)
    z = w.sum(axis=1, keepdims=True)
    if (z == 0).any():
        raise ValueError(f"min(rho_bar mu, pi) is zero for every action in states "
                         f"{np.flatnonzero(z[:, 0] == 0).tolist()}: pi_rho_bar is "
                         "undefined there")
    return w / z


def vtrace_operator(mdp: TabularMDP, pi, mu, V, *,
                    clip_rho_threshold: float | None = 1.0,
                    clip_c_threshold: float | None = 1.0, lambda_: float = 1.0,
                    n_steps: int | None = None) -> np.ndarray:
    r"""The V-trace operator applied to a value table, exactly (no sampling).

    .. math::

        \mathcal R V(x) = V(x) + \mathbb E_\mu\Big[\sum_{t=0}^{n-1} \gamma^t
            (c_0 \cdots c_{t-1})\, \bar\rho_t \big(r_t + \gamma V(x_{t+1}) - V(x_t)\big)
            \,\Big|\, x_0 = x\Big]

    with actions drawn from :math:`\mu`, :math:`\bar\rho_t = \min(\bar\rho,
    \pi/\mu)`, :math:`c_i = \lambda\min(\bar c, \pi/\mu)`; Espeholt et al.
    (2018), arXiv:1802.01561, section 4.1. The expectation is a matrix series:
    with :math:`C(x, y) = \sum_a \mu(a|x) c(x, a) P(y|x, a)`,
    :math:`\mathcal R V = V + \sum_{t<n} (\gamma C)^t g`, where
    :math:`g(x) = \sum_a \mu(a|x)\bar\rho(x, a)(r(x, a) + \gamma (PV)(x, a) - V(x))`;
    for :math:`n = \infty` the sum is :math:`(I - \gamma C)^{-1} g` (the rows of
    :math:`\gamma C` sum to at most :math:`\gamma\lambda < 1`).

    Parameters
    ----------
    mdp : discounted TabularMDP
    pi, mu : arrays [S, A]
        Target and behaviour policy tables.
    V : array [S]
    clip_rho_threshold, clip_c_threshold : float >= 0 or None
        :math:`\bar\rho` and :math:`\bar c`; None for no clipping.
    lambda_ : float in [0, 1]
    n_steps : int >= 1 or None
        n, the number of steps of the sum; None for the infinite sum.

    Returns
    -------
    array [S], :math:`\mathcal R V`.
    """
    pi, mu, n_steps = _check_operator_args(mdp, pi, mu, clip_rho_threshold,
                                           clip_c_threshold, lambda_, n_steps)
    V = _checks.as_float_array(V, "V", ndim=1, shape_doc="[S]")
    if V.shape != (mdp.n_states,) or not np.isfinite(V).all():
        raise ValueError(f"V must be a finite array of shape [S] = ({mdp.n_states},), "
                         f"got {_checks._shape_str(V.shape)}")
    K, r_rho, P_rho, z = _operator_parts(mdp, pi, mu, clip_rho_threshold,
                                         clip_c_threshold, lambda_, n_steps)
    return V + K @ (r_rho + mdp.gamma * P_rho @ V - z * V)


def vtrace_fixed_point(mdp: TabularMDP, pi, mu, *,
                       clip_rho_threshold: float | None = 1.0) -> np.ndarray:
    r"""The fixed point of the V-trace operator: the solution of :math:`g(V) = 0`.

    With g as in :func:`vtrace_operator`, :math:`\mathcal R V = V` exactly when

    .. math:: \sum_a \min(\bar\rho\mu(a|x), \pi(a|x))\,
        \big(r(x, a) + \gamma (PV)(x, a) - V(x)\big) = 0

    in every state (the trace sum is invertible), a linear system in V which
    depends on neither :math:`\bar c`, :math:`\lambda` nor n. Dividing by
    :math:`\sum_a \min(\bar\rho\mu, \pi)` shows it is the Bellman equation of
    :func:`vtrace_policy`: the fixed point is :math:`V^{\pi_{\bar\rho}}`
    (Espeholt et al. 2018, arXiv:1802.01561, Theorem 1). It is solved here
    from the unnormalised system, independently of that policy.

    Parameters
    ----------
    mdp : discounted TabularMDP
    pi, mu : arrays [S, A]
    clip_rho_threshold : float > 0 or None

    Returns
    -------
    array [S]. A ValueError if in some state :math:`\min(\bar\rho\mu, \pi) = 0`
    for every action (no equation there: every value is a fixed point).
    """
    pi, mu, _ = _check_operator_args(mdp, pi, mu, clip_rho_threshold, 1.0, 1.0, None)
    w = _weights(pi, mu, clip_rho_threshold)
    z = w.sum(axis=1)
    if (z == 0).any():
        raise ValueError(f"min(rho_bar mu, pi) is zero for every action in states "
                         f"{np.flatnonzero(z == 0).tolist()}: the fixed point is not "
                         "unique")
    # [book:vtrace-fixed-point]
    P_rho = np.einsum("sa,sat->st", w, mdp.transitions)   # sum_a w(x, a) P(y | x, a)
    r_rho = np.sum(w * mdp.rewards, axis=1)               # sum_a w(x, a) r(x, a)
    return np.linalg.solve(np.diag(z) - mdp.gamma * P_rho, r_rho)
    # [/book:vtrace-fixed-point]


def vtrace_contraction_modulus(mdp: TabularMDP, pi, mu, *,
                               clip_rho_threshold: float | None = 1.0,
                               clip_c_threshold: float | None = 1.0,
                               lambda_: float = 1.0,
                               n_steps: int | None = None) -> float:
    r"""The sup-norm Lipschitz constant of the V-trace operator, computed exactly.

    :math:`\mathcal R` is affine, :math:`\mathcal R V = L V + b` with
    :math:`L = I + K(\gamma P_{\bar\rho} - \operatorname{diag} z)`, so
    :math:`\max_{V_1 \ne V_2} \|\mathcal R V_1 - \mathcal R V_2\|_\infty
    / \|V_1 - V_2\|_\infty = \max_x \sum_y |L(x, y)|`, which is returned. When
    :math:`c_s \le \bar\rho_s` (e.g. :math:`\bar c \le \bar\rho`), every entry of L
    is non-negative and this is

    .. math::

        \eta = 1 - (1 - \gamma) \min_x \mathbb E_\mu\Big[\sum_{t=0}^{n-1} \gamma^t
            (c_0 \cdots c_{t-1})\, \bar\rho_t \,\Big|\, x_0 = x\Big]
            \le 1 - (1 - \gamma) \min_x \mathbb E_\mu[\bar\rho_0 \mid x_0 = x],

    the modulus of Espeholt et al. (2018), arXiv:1802.01561, Theorem 1 (which
    writes the sum with its index shifted by one); it is below 1 as soon as
    :math:`\mathbb E_\mu \bar\rho_0 > 0` in every state.

    The arguments are those of :func:`vtrace_operator`, without V.

    Returns
    -------
    float
    """
    pi, mu, n_steps = _check_operator_args(mdp, pi, mu, clip_rho_threshold,
                                           clip_c_threshold, lambda_, n_steps)
    K, _, P_rho, z = _operator_parts(mdp, pi, mu, clip_rho_threshold, clip_c_threshold,
                                     lambda_, n_steps)
    L = np.eye(mdp.n_states) + K @ (mdp.gamma * P_rho - np.diag(z))
    return float(np.max(np.sum(np.abs(L), axis=1)))
