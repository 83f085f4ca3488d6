r"""The performance-difference lemma, the surrogate objective and trust regions, exactly.

Everything here is computed on a tabular MDP from the exact values and state
distributions of :mod:`pgkit.mdp`; policies are tables ``pi[s, a]`` ([S, A],
or [H, S, A] for a time-dependent finite-horizon policy).

**Performance-difference lemma** (Kakade and Langford, ICML 2002). For any two
policies, the gain of the new one is the old policy's advantage, averaged over
the *new* policy's states and actions. Finite horizon (steps h = 0..H-1):

.. math:: J(\pi') - J(\pi) = \sum_{h=0}^{H-1} \gamma^h \sum_s d_h^{\pi'}(s) \sum_a \pi'_h(a|s)\, A_h^\pi(s,a),

discounted, with the normalised visitation :math:`d^{\pi'}` (sums to one):

.. math:: J(\pi') - J(\pi) = \frac{1}{1-\gamma} \sum_s d^{\pi'}(s) \sum_a \pi'(a|s)\, A^\pi(s,a).

**Surrogate objective** (Schulman et al., TRPO, arXiv:1502.05477). Replacing the
new states :math:`d^{\pi'}` by the old ones :math:`d^\pi` gives a quantity that
can be estimated from the old policy's samples,

.. math:: L_\pi(\pi') = J(\pi) + \sum_h \gamma^h \sum_s d_h^{\pi}(s) \sum_a \pi'_h(a|s)\, A_h^\pi(s,a)

(discounted: :math:`J(\pi) + \frac{1}{1-\gamma}\sum_s d^\pi(s) \sum_a \pi'(a|s) A^\pi(s,a)`).
It agrees with :math:`J(\pi')` to first order at :math:`\pi' = \pi`; the error is
second order, and a coupling argument bounds it from above.

**Distances.** Total variation :math:`\mathrm{TV}(p, q) = \frac12 \sum_x |p(x) - q(x)|`
(with the 1/2, so that it lies in [0, 1]; it equals :math:`\max_E |p(E) - q(E)|`),
and :math:`\mathrm{KL}(p \| q) = \sum_x p(x) \log(p(x)/q(x))`. Pinsker's inequality:
:math:`\mathrm{TV}(p, q) \le \sqrt{\mathrm{KL}(p \| q) / 2}`.

**State-distribution drift.** If every per-state action distribution moves by
at most :math:`\epsilon = \max_{h,s} \mathrm{TV}(\pi'_h(\cdot|s), \pi_h(\cdot|s))`, then

.. math:: \mathrm{TV}(d_h^{\pi'}, d_h^{\pi}) \le 1 - (1-\epsilon)^h \le \epsilon h,
          \qquad \mathrm{TV}(d^{\pi'}, d^{\pi}) \le \frac{\gamma\epsilon}{1 - \gamma(1-\epsilon)} \le \frac{\gamma\epsilon}{1-\gamma}

(finite horizon, per step; discounted, normalised visitations). With TV written
without the 1/2 (the L1 distance) every one of these bounds doubles: that is
where the "2 epsilon t" of some lecture notes comes from.

Shapes (S states, A actions, H steps):

================================  ==================  ======================
quantity                          discounted          finite horizon
================================  ==================  ======================
``pi_old``, ``pi_new``            [S, A]              [S, A] or [H, S, A]
``state_distribution_drift``      scalar              [H]
``coupling_drift_bound``          --                  [H]
everything else                   scalar              scalar
================================  ==================  ======================
"""

from __future__ import annotations

import numbers

import numpy as np

from pgkit import _checks
from pgkit.mdp import TabularMDP, evaluate_policy, expected_return, state_visitation

__all__ = [
    "performance_difference",
    "surrogate_objective",
    "total_variation",
    "kl_divergence",
    "max_policy_tv",
    "expected_policy_kl",
    "state_distribution_drift",
    "coupling_drift_bound",
    "discounted_drift_bound",
    "surrogate_error_bound",
]


# ---------------------------------------------------------------- input checks

def _check_mdp(mdp) -> TabularMDP:
    if not isinstance(mdp, TabularMDP):
        raise ValueError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    return mdp


def _check_table(mdp: TabularMDP, pi, name: str) -> np.ndarray:
    """A policy table [S, A] (or [H, S, A] in the finite-horizon setting) for ``mdp``."""
    pi = _checks.as_float_array(pi, name, ndim=(2, 3), shape_doc="[S, A] (or [H, S, A])")
    S, A = mdp.n_states, mdp.n_actions
    if pi.ndim == 3 and mdp.discounted:
        raise ValueError(f"{name} is time-dependent [H, S, A], which needs a finite-horizon MDP; "
                         f"a discounted MDP takes a table [S, A] = ({S}, {A})")
    expected = (S, A) if pi.ndim == 2 else (mdp.horizon, S, A)
    if pi.shape != expected:
        doc = "[S, A]" if pi.ndim == 2 else "[H, S, A]"
        raise ValueError(f"{name} must have shape {doc} = {_checks._shape_str(expected)} "
                         f"for this MDP, got {_checks._shape_str(pi.shape)}")
    _checks.check_distribution(pi, f"{name}[s, :]")
    return pi


def _check_pair(mdp, pi_old, pi_new) -> tuple[TabularMDP, np.ndarray, np.ndarray]:
    mdp = _check_mdp(mdp)
    return mdp, _check_table(mdp, pi_old, "pi_old"), _check_table(mdp, pi_new, "pi_new")


def _check_distributions(p, q, names=("p", "q")) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of distributions along the last axis, of the same shape."""
    p = _checks.as_float_array(p, names[0])
    q = _checks.as_float_array(q, names[1])
    if p.ndim == 0:
        raise ValueError(f"{names[0]} must have shape [..., n] (distributions along the last "
                         f"axis), got a scalar")
    _checks.check_same_shape(names[0], p, names[1], q)
    _checks.check_distribution(p, names[0])
    _checks.check_distribution(q, names[1])
    return p, q


def _check_epsilon(epsilon) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise ValueError(f"epsilon must be a number, got {type(epsilon).__name__}")
    epsilon = float(epsilon)
    if np.isnan(epsilon):
        raise ValueError("epsilon is NaN; it must be a total-variation distance in [0, 1]")
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must be a total-variation distance in [0, 1], got {epsilon}")
    return epsilon


def _scalar_or_array(x: np.ndarray):
    return float(x) if np.ndim(x) == 0 else x


# ------------------------------------------------- the lemma and the surrogate

def performance_difference(mdp: TabularMDP, pi_old, pi_new) -> float:
    r"""The right-hand side of the performance-difference lemma.

    Book equations ``pdl-finite`` and ``pdl-discounted``: the new policy's states and actions,
    the old policy's advantages.

    .. math:: \text{discounted: } \frac{1}{1-\gamma} \sum_s d^{new}(s) \sum_a \pi_{new}(a|s)\, A^{old}(s,a)

    .. math:: \text{finite horizon: } \sum_{h=0}^{H-1} \gamma^h \sum_s d_h^{new}(s) \sum_a \pi_{new,h}(a|s)\, A_h^{old}(s,a)

    The lemma (Kakade and Langford, ICML 2002; Schulman et al., arXiv:1502.05477)
    says this equals :math:`J(\pi_{new}) - J(\pi_{old})` exactly.

    Parameters
    ----------
    mdp : TabularMDP
    pi_old, pi_new : array [S, A], or [H, S, A] for a time-dependent finite-horizon policy

    Returns
    -------
    float
    """
    mdp, pi_old, pi_new = _check_pair(mdp, pi_old, pi_new)
    advantages_old = evaluate_policy(mdp, pi_old).advantages   # A^old   [S, A] or [H, S, A]
    d_new = state_visitation(mdp, pi_new)                       # d^new   [S] or [H, S]
    # [book:performance-difference]
    gain = np.sum(pi_new * advantages_old, axis=-1)       # E_{a ~ pi_new}[A^old(s, a)]
    if mdp.discounted:
        return float(d_new @ gain) / (1 - mdp.gamma)
    discount_h = mdp.gamma ** np.arange(mdp.horizon)      # gamma^h
    return float(np.einsum("h,hs,hs->", discount_h, d_new, gain))
    # [/book:performance-difference]


def surrogate_objective(mdp: TabularMDP, pi_old, pi_new) -> float:
    r"""The surrogate :math:`L_{old}(\pi_{new})`: the lemma with the old states.

    Book equation ``pdl-surrogate``:

    .. math:: \text{discounted: } L = J(\pi_{old}) + \frac{1}{1-\gamma} \sum_s d^{old}(s) \sum_a \pi_{new}(a|s)\, A^{old}(s,a)

    .. math:: \text{finite horizon: } L = J(\pi_{old}) + \sum_{h=0}^{H-1} \gamma^h \sum_s d_h^{old}(s) \sum_a \pi_{new,h}(a|s)\, A_h^{old}(s,a)

    Only the state distribution differs from :func:`performance_difference`
    (:math:`d^{old}` for :math:`d^{new}`), so the surrogate can be estimated from
    the old policy's trajectories with one importance ratio per action. At
    :math:`\pi_{new} = \pi_{old}` it equals :math:`J` and has the same gradient
    with respect to the new policy's parameters (the policy gradient theorem);
    its error :math:`|J(\pi_{new}) - L|` is second order, bounded by
    :func:`surrogate_error_bound` (Schulman et al., TRPO, arXiv:1502.05477).

    Parameters
    ----------
    mdp : TabularMDP
    pi_old, pi_new : array [S, A], or [H, S, A] for a time-dependent finite-horizon policy

    Returns
    -------
    float
    """
    mdp, pi_old, pi_new = _check_pair(mdp, pi_old, pi_new)
    advantages_old = evaluate_policy(mdp, pi_old).advantages   # A^old   [S, A] or [H, S, A]
    d_old = state_visitation(mdp, pi_old)                       # d^old   [S] or [H, S]
    j_old = expected_return(mdp, pi_old)
    # [book:surrogate-objective]
    gain = np.sum(pi_new * advantages_old, axis=-1)       # E_{a ~ pi_new}[A^old(s, a)]
    if mdp.discounted:
        return j_old + float(d_old @ gain) / (1 - mdp.gamma)
    discount_h = mdp.gamma ** np.arange(mdp.horizon)      # gamma^h
    return j_old + float(np.einsum("h,hs,hs->", discount_h, d_old, gain))
    # [/book:surrogate-objective]


# ------------------------------------------------------------------- distances

def total_variation(p, q):
    r"""Total variation :math:`\frac12 \sum_x |p(x) - q(x)|` along the last axis.

    .. math:: \mathrm{TV}(p, q) = \frac12 \sum_x |p(x) - q(x)|

    With the factor 1/2, TV lies in [0, 1] and equals :math:`\max_E |p(E) - q(E)|`.

    Parameters
    ----------
    p, q : arrays [..., n] of the same shape, distributions along the last axis
        (a policy table [S, A], per-step state distributions [H, S], ...).

    Returns
    -------
    array [...] (the shape without the last axis; a float for 1-D inputs)
    """
    p, q = _check_distributions(p, q)
    return _scalar_or_array(0.5 * np.sum(np.abs(p - q), axis=-1))


def kl_divergence(p, q):
    r"""Kullback-Leibler divergence along the last axis.

    .. math:: \mathrm{KL}(p \| q) = \sum_x p(x) \log \frac{p(x)}{q(x)}

    Conventions: a term with :math:`p(x) = 0` is zero (:math:`0 \log 0 = 0`, whatever
    q(x)); if :math:`q(x) = 0 < p(x)` for some x the divergence is ``+inf`` (p puts
    mass where q has none). Round-off below zero is clipped: KL is never negative.

    Parameters
    ----------
    p, q : arrays [..., n] of the same shape, distributions along the last axis.

    Returns
    -------
    array [...] (a float for 1-D inputs), values in [0, inf]
    """
    p, q = _check_distributions(p, q)
    positive = p > 0
    log_ratio = np.log(np.where(positive, p, 1.0)) - np.log(np.where(q > 0, q, 1.0))
    kl = np.sum(np.where(positive, p * log_ratio, 0.0), axis=-1)
    kl = np.where(np.any(positive & (q == 0), axis=-1), np.inf, np.maximum(kl, 0.0))
    return _scalar_or_array(kl)


def max_policy_tv(pi_old, pi_new) -> float:
    r"""The largest per-state change of the policy in total variation.

    .. math:: \epsilon = \max_{h, s} \mathrm{TV}(\pi_{new,h}(\cdot|s), \pi_{old,h}(\cdot|s))

    This is the :math:`\epsilon` of the coupling argument
    (:func:`coupling_drift_bound`, :func:`surrogate_error_bound`); it is the
    :math:`D_{TV}^{\max}` of TRPO (arXiv:1502.05477).

    Parameters
    ----------
    pi_old, pi_new : arrays [S, A] or [H, S, A]; a stationary [S, A] table is
        compared with every step of an [H, S, A] one.

    Returns
    -------
    float in [0, 1]
    """
    doc = "[S, A] (or [H, S, A])"
    pi_old = _checks.as_float_array(pi_old, "pi_old", ndim=(2, 3), shape_doc=doc)
    pi_new = _checks.as_float_array(pi_new, "pi_new", ndim=(2, 3), shape_doc=doc)
    same_step_count = pi_old.ndim != pi_new.ndim or pi_old.shape[0] == pi_new.shape[0]
    if pi_old.shape[-2:] != pi_new.shape[-2:] or not same_step_count:
        raise ValueError(f"pi_old and pi_new must have the same shape {doc}, got "
                         f"{_checks._shape_str(pi_old.shape)} and "
                         f"{_checks._shape_str(pi_new.shape)}")
    _checks.check_distribution(pi_old, "pi_old[s, :]")
    _checks.check_distribution(pi_new, "pi_new[s, :]")
    pi_old, pi_new = np.broadcast_arrays(pi_old, pi_new)
    return float(np.max(total_variation(pi_old, pi_new)))


def expected_policy_kl(mdp: TabularMDP, pi_old, pi_new) -> float:
    r"""The average over the old policy's states of KL(pi_old || pi_new): TRPO's constraint.

    .. math:: \text{discounted: } \sum_s d^{old}(s)\, \mathrm{KL}(\pi_{old}(\cdot|s) \| \pi_{new}(\cdot|s))

    .. math:: \text{finite horizon: } \frac1H \sum_{h=0}^{H-1} \sum_s d_h^{old}(s)\, \mathrm{KL}(\pi_{old,h}(\cdot|s) \| \pi_{new,h}(\cdot|s))

    The finite-horizon average is over the H steps with equal weights (not
    discounted): it is what averaging the per-step KL over every step of the
    old policy's trajectories estimates. The direction, old first, is TRPO's
    (Schulman et al., arXiv:1502.05477). States the old policy never visits do
    not count, so the result is ``inf`` only if a visited state's KL is.

    Parameters
    ----------
    mdp : TabularMDP
    pi_old, pi_new : array [S, A], or [H, S, A] for a time-dependent finite-horizon policy

    Returns
    -------
    float >= 0 (possibly inf)
    """
    mdp, pi_old, pi_new = _check_pair(mdp, pi_old, pi_new)
    d_old = state_visitation(mdp, pi_old)                       # [S] or [H, S]
    pi_old, pi_new = np.broadcast_arrays(pi_old, pi_new)
    kl = kl_divergence(pi_old, pi_new)                          # [S] or [H, S]
    kl = np.where(d_old > 0, kl, 0.0)                           # unvisited states: weight 0
    total = float(np.sum(d_old * kl))
    return total if mdp.discounted else total / mdp.horizon


# ----------------------------------------------------- drift and its bounds

def state_distribution_drift(mdp: TabularMDP, pi_old, pi_new):
    r"""How far the state distribution moves: TV between the new and the old visitation.

    Finite horizon: :math:`\mathrm{TV}(d_h^{new}, d_h^{old})` for each step, shape [H]
    (the first entry is 0: both start from :math:`d_0`). Discounted: the TV
    between the normalised visitations :math:`d^{new}` and :math:`d^{old}`, a float.
    Bounded by :func:`coupling_drift_bound` and :func:`discounted_drift_bound`.

    Parameters
    ----------
    mdp : TabularMDP
    pi_old, pi_new : array [S, A], or [H, S, A] for a time-dependent finite-horizon policy

    Returns
    -------
    array [H] (finite horizon) or float (discounted)
    """
    mdp, pi_old, pi_new = _check_pair(mdp, pi_old, pi_new)
    return total_variation(state_visitation(mdp, pi_new), state_visitation(mdp, pi_old))


def coupling_drift_bound(epsilon, horizon: int) -> np.ndarray:
    r"""The coupling bound on the drift of the state distribution, step by step.

    Book equations ``pdl-drift-bound`` and ``pdl-drift-discounted``.

    If :math:`\mathrm{TV}(\pi_{new,h}(\cdot|s), \pi_{old,h}(\cdot|s)) \le \epsilon` in every
    state and step, then for h = 0..H-1

    .. math:: \mathrm{TV}(d_h^{new}, d_h^{old}) \le 1 - (1-\epsilon)^h \le \epsilon h,

    with TV *including* the 1/2 (:func:`total_variation`). In the L1 distance
    :math:`\sum_s |d_h^{new}(s) - d_h^{old}(s)|` the bound is twice this,
    :math:`2(1 - (1-\epsilon)^h) \le 2\epsilon h`.

    Proof. Two distributions at TV distance :math:`\epsilon` can be coupled so that
    they draw the same value with probability :math:`1 - \epsilon` (the maximal
    coupling). Run the two policies together from the same :math:`s_0 \sim d_0`:
    while their states agree, draw the two actions from this coupling (equal
    with probability at least :math:`1-\epsilon`) and, when the actions agree
    too, the same next state. The two runs still agree at step h with probability
    at least :math:`(1-\epsilon)^h`, and for any coupling
    :math:`\mathrm{TV}(d_h^{new}, d_h^{old}) \le \Pr(s_h^{new} \ne s_h^{old})`.
    Finally :math:`1 - (1-\epsilon)^h \le \epsilon h` (Bernoulli's inequality).
    The bound is attained: an old policy that never leaves a state, and a new
    one that leaves it with probability :math:`\epsilon` for a trap it cannot
    escape.

    Parameters
    ----------
    epsilon : float in [0, 1]
        A bound on every per-state TV distance (e.g. :func:`max_policy_tv`).
    horizon : int
        H, the number of steps.

    Returns
    -------
    array [H]
    """
    epsilon = _check_epsilon(epsilon)
    horizon = _checks.check_positive_int(horizon, "horizon")
    h = np.arange(horizon)
    # [book:coupling-drift-bound]
    agree = (1 - epsilon) ** h     # Pr(s_h^new = s_h^old) >= (1 - eps)^h: no mistake yet
    bound = 1 - agree              # TV(d_h^new, d_h^old) <= Pr(s_h^new != s_h^old)
    # [/book:coupling-drift-bound]
    return bound


def discounted_drift_bound(epsilon, gamma) -> float:
    r"""The coupling bound on the drift of the normalised discounted visitation.

    If every per-state TV distance between the policies is at most :math:`\epsilon`,

    .. math:: \mathrm{TV}(d^{new}, d^{old}) \le (1-\gamma) \sum_{t\ge0} \gamma^t \big(1 - (1-\epsilon)^t\big)
              = \frac{\gamma\epsilon}{1 - \gamma(1-\epsilon)} \le \frac{\gamma\epsilon}{1-\gamma}

    (TV with the 1/2; double it for the L1 distance). The first step is the
    convexity of TV applied to :math:`d = (1-\gamma)\sum_t \gamma^t d_t`, then
    :func:`coupling_drift_bound` at each t. Attained by the same trap example.

    Parameters
    ----------
    epsilon : float in [0, 1]
    gamma : float in [0, 1)

    Returns
    -------
    float
    """
    epsilon = _check_epsilon(epsilon)
    gamma = _checks.check_discount(gamma, allow_one=False)
    return gamma * epsilon / (1 - gamma * (1 - epsilon))


def surrogate_error_bound(epsilon, mdp: TabularMDP, advantage_bound=None) -> float:
    r"""A bound on the surrogate's error :math:`|J(\pi_{new}) - L_{old}(\pi_{new})|`.

    Statement (book equations ``pdl-error-bound`` and ``pdl-error-bound-discounted``). Let
    :math:`\epsilon \ge \max_{h,s} \mathrm{TV}(\pi_{new,h}(\cdot|s), \pi_{old,h}(\cdot|s))`
    and :math:`A_{\max} \ge \max_{h,s,a} |A_h^{old}(s,a)|`. Then

    .. math:: \text{finite horizon: } |J(\pi_{new}) - L| \le 4 \epsilon A_{\max} \sum_{h=0}^{H-1} \gamma^h \big(1 - (1-\epsilon)^h\big)
              \;\le\; 2 \epsilon^2 A_{\max} H (H-1)

    .. math:: \text{discounted: } |J(\pi_{new}) - L| \le \frac{4\epsilon A_{\max}}{1-\gamma} \cdot \frac{\gamma\epsilon}{1-\gamma(1-\epsilon)}
              \;\le\; \frac{4 \gamma \epsilon^2 A_{\max}}{(1-\gamma)^2}

    Without ``advantage_bound``, :math:`A_{\max} = 2 r_{max} L` with
    :math:`r_{max} = \max_{s,a} |r(s,a)|` and the effective horizon
    :math:`L = \sum_{h<H} \gamma^h` (H when :math:`\gamma = 1`) or :math:`1/(1-\gamma)`.
    Then the finite-horizon bound is at most :math:`8 \epsilon r_{max} H^2` (order
    :math:`\epsilon H^2 r_{max}`, the order of the behaviour-cloning compounding bound) and at most
    :math:`4 \epsilon^2 r_{max} H^2 (H-1)`; the discounted one is at most
    :math:`8\gamma\epsilon^2 r_{max}/(1-\gamma)^3`, and also
    :math:`8 \epsilon r_{max} / (1-\gamma)^2`. The discounted form is TRPO's
    (arXiv:1502.05477, Theorem 1) with a larger denominator,
    :math:`(1-\gamma)(1-\gamma(1-\epsilon))` in place of :math:`(1-\gamma)^2`, hence tighter.

    Derivation (finite horizon; discounted is the same with the normalised visitation):

    1. :math:`J(\pi_{new}) - L = \sum_h \gamma^h \sum_s (d_h^{new}(s) - d_h^{old}(s))\, g_h(s)`
       with :math:`g_h(s) = \sum_a \pi_{new,h}(a|s) A_h^{old}(s,a)`: subtract the two
       formulas (the lemma and the surrogate).
    2. :math:`\sum_a \pi_{old,h}(a|s) A_h^{old}(s,a) = 0`, so
       :math:`g_h(s) = \sum_a (\pi_{new,h} - \pi_{old,h})(a|s)\, A_h^{old}(s,a)` and
       :math:`|g_h(s)| \le 2\,\mathrm{TV}(\pi_{new,h}(\cdot|s), \pi_{old,h}(\cdot|s))\, A_{\max} \le 2\epsilon A_{\max}`.
    3. :math:`|\sum_s (p - q)(s) g(s)| \le 2\,\mathrm{TV}(p, q) \max_s |g(s)|`, and
       :math:`\mathrm{TV}(d_h^{new}, d_h^{old}) \le 1 - (1-\epsilon)^h` (:func:`coupling_drift_bound`;
       discounted: :func:`discounted_drift_bound`).
    4. Multiply: each step contributes at most :math:`\gamma^h \cdot 2 (1-(1-\epsilon)^h) \cdot 2\epsilon A_{\max}`.
    5. The default :math:`A_{\max}` is valid: :math:`|A_h(s,a)| = |Q_h(s,a) - V_h(s)| \le \max_a Q_h(s,\cdot) - \min_a Q_h(s,\cdot)`,
       and that spread is at most :math:`2 r_{max} + \gamma \cdot 2 r_{max} \sum_{k<H-h-1} \gamma^k \le 2 r_{max} L`
       (rewards vary by at most :math:`2 r_{max}`, the next values by at most :math:`2 r_{max}` times
       the remaining effective horizon).

    The bound is second order in :math:`\epsilon`, as the error is (the surrogate
    matches J to first order). It holds for time-dependent finite-horizon policies too.

    Parameters
    ----------
    epsilon : float in [0, 1]
        A bound on every per-state TV distance (e.g. :func:`max_policy_tv`).
    mdp : TabularMDP
    advantage_bound : float >= 0, optional
        :math:`A_{\max}`, a bound on :math:`|A^{old}|`; default :math:`2 r_{max} L`.

    Returns
    -------
    float
    """
    epsilon = _check_epsilon(epsilon)
    mdp = _check_mdp(mdp)
    gamma = mdp.gamma
    if mdp.discounted:
        effective_horizon = 1 / (1 - gamma)
    else:
        effective_horizon = float(np.sum(gamma ** np.arange(mdp.horizon)))
    if advantage_bound is None:
        a_max = 2 * float(np.max(np.abs(mdp.rewards))) * effective_horizon
    else:
        a_max = _checks.check_nonnegative(advantage_bound, "advantage_bound")
    # [book:surrogate-error-bound]
    if mdp.discounted:
        drift = discounted_drift_bound(epsilon, gamma)          # >= TV(d^new, d^old)
        return 2 * drift * (2 * epsilon * a_max) / (1 - gamma)  # |g| <= 2 eps a_max
    drift_h = coupling_drift_bound(epsilon, mdp.horizon)        # >= TV(d_h^new, d_h^old)
    discount_h = gamma ** np.arange(mdp.horizon)
    return float(np.sum(discount_h * 2 * drift_h * (2 * epsilon * a_max)))
    # [/book:surrogate-error-bound]
