r"""Importance sampling in log space: weights, off-policy estimators, mixtures, exact variances.

A sample :math:`x` drawn from a behaviour distribution :math:`q` stands in for
the target :math:`p` once it carries the importance weight :math:`w = p / q`:

.. math:: \mathbb E_p[f(x)] = \mathbb E_q[w(x) f(x)]
    \qquad \text{if } q(x) > 0 \text{ wherever } p(x) f(x) \neq 0 .

For trajectories of an MDP the dynamics cancel in :math:`p(\tau) / q(\tau)`
and only the two policies remain. With the per-step ratio
:math:`\rho_t = \pi(a_t \mid s_t) / \mu(a_t \mid s_t)` (target :math:`\pi`,
behaviour :math:`\mu`) and the per-decision weight
:math:`\rho_{0:t} = \prod_{k=0}^{t} \rho_k`:

.. math::

    \hat J_{\text{IS}} &= \rho_{0:T-1} \sum_{t} \gamma^t r_t
    &\text{(trajectory IS)}\\
    \hat J_{\text{PDIS}} &= \sum_{t} \gamma^t \rho_{0:t}\, r_t
    &\text{(per-decision IS)}

Both are unbiased for :math:`J(\pi)`; the per-decision one weights a reward
only by the ratios of the actions that came before it, so it has (usually
much) smaller variance.

Every ratio is kept as its logarithm (``log_rhos``, ``log_weights``): a
product over a thousand steps becomes a sum of a thousand logs, which neither
overflows nor underflows. A weight is never formed on its own. Each term of an
estimate, a weight times a value (a reward, a return, a score), is kept as
its log-magnitude :math:`\log w + \log|v|` and its sign; the positive and the
negative terms are each summed by log-sum-exp, and only the final sum is
exponentiated. So every estimator here is accurate to rounding relative to
the larger of its positive and negative parts (the accuracy of a plain sum,
without its overflow: a weight of :math:`e^{800}` on a reward of zero
contributes exactly zero, not ``inf * 0``); it is ``+inf`` or ``-inf``, with
the right sign, only when the result overflows float64; and it is never NaN.
When positive and negative terms nearly cancel, the absolute error is a few
units of rounding of the larger part, as for any floating-point sum. Self-normalised weights and the
effective sample size are computed from :math:`e^{\ell_i - \max_j \ell_j}`,
in which the largest term is exactly one. A log-weight of ``-inf`` is a weight
of exactly zero; ``+inf`` and NaN are rejected.

Shapes follow the book's notation page: time-major ``[T, B]``, and here **each
column is one whole episode starting at t = 0** (the cumulative weights run
down the whole column; split a batch into episodes before calling).
Sample-based estimators take ``N`` samples along their first axis.

The KL divergence and total variation between discrete distributions live in
:mod:`pgkit.surrogate`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from pgkit import _checks

__all__ = [
    "log_importance_weights",
    "cumulative_log_weights",
    "trajectory_log_weights",
    "trajectory_is_returns",
    "per_decision_is_returns",
    "trajectory_is_policy_gradients",
    "per_decision_is_policy_gradients",
    "truncated_log_weights",
    "normalised_weights",
    "ordinary_is_estimate",
    "self_normalised_is_estimate",
    "effective_sample_size",
    "mixture_log_density",
    "defensive_log_weights",
    "balance_heuristic_log_weights",
    "sample_mixture_components",
    "exact_is_variance",
    "snis_asymptotic_variance",
    "minimum_variance_proposal",
]


# ------------------------------------------------------------------ private helpers

def _as_log_weights(x, name: str, *, ndim=None, shape_doc: str | None = None) -> np.ndarray:
    """Log-weights or log-densities: finite or -inf (zero), never +inf or NaN."""
    arr = _checks.as_float_array(x, name, ndim=ndim, shape_doc=shape_doc)
    if np.isposinf(arr).any():
        raise ValueError(f"{name} contains +inf (an infinite weight or density); "
                         "use finite values, or -inf for zero")
    return arr


def _as_finite(x, name: str, *, ndim=None, shape_doc: str | None = None) -> np.ndarray:
    arr = _checks.as_float_array(x, name, ndim=ndim, shape_doc=shape_doc)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got an infinite value")
    return arr


def _log(x) -> np.ndarray:
    """log x for x >= 0, with log 0 = -inf and no warning."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, -np.inf)
    np.log(x, out=out, where=x > 0)
    return out


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    """log sum_k exp(x_k) along ``axis``; -inf when every term is -inf."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(under="ignore"):                    # tiny terms vanish, as they should
        total = np.sum(np.exp(x - top), axis=axis, keepdims=True)
    return np.squeeze(_log(total) + top, axis=axis)


def _logaddexp(a, b) -> np.ndarray:
    """np.logaddexp(a, b) = log(e^a + e^b), with a far smaller term vanishing quietly."""
    with np.errstate(under="ignore"):
        return np.logaddexp(a, b)


def _log_abs(x: np.ndarray) -> np.ndarray:
    """log |x|, with log 0 = -inf and no warning."""
    return _log(np.abs(x))


def _exp(x: np.ndarray) -> np.ndarray:
    """exp x without warnings: 0 below the smallest float, inf beyond the largest."""
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(x)


def _log_discounts(gamma: float, n_steps: int) -> np.ndarray:
    """log gamma^t for t = 0..n_steps-1, as a column [T, 1] (log 0^0 = 0)."""
    steps = np.arange(n_steps, dtype=np.float64)
    out = np.zeros(n_steps)
    np.multiply(steps, _log(gamma), out=out, where=steps > 0)
    return out[:, None]


def _exp_weighted_sum(log_scales, values, axis: int) -> np.ndarray:
    r"""sum over ``axis`` of exp(log_scales) * values, without overflow or NaN.

    Every term :math:`e^{\ell} v` is kept as its log-magnitude
    :math:`\ell + \log|v|` and its sign; the positive and the negative terms
    are summed separately by log-sum-exp, and only their difference, scaled by
    the larger of the two, is exponentiated. A term with :math:`v = 0` or
    :math:`\ell = -\infty` contributes exactly zero whatever the other factor
    is, so a huge weight on a zero value cannot make ``inf * 0``. The result is
    accurate to rounding relative to the larger of the positive and the
    negative part, ``+inf`` or ``-inf`` (its sign) only when it overflows
    float64, and never NaN. ``log_scales`` and ``values``
    broadcast; ``log_scales`` may be ``-inf`` but not ``+inf``; ``values`` finite.
    """
    log_scales, values = np.broadcast_arrays(log_scales, values)
    log_terms = log_scales + _log_abs(values)            # log |e^l v|, -inf for a zero term
    log_pos = _logsumexp(np.where(values > 0, log_terms, -np.inf), axis=axis)
    log_neg = _logsumexp(np.where(values < 0, log_terms, -np.inf), axis=axis)
    top = np.maximum(log_pos, log_neg)
    top = np.where(np.isfinite(top), top, 0.0)           # both sums empty: the result is 0
    difference = _exp(log_pos - top) - _exp(log_neg - top)   # in [-1, 1]
    return np.sign(difference) * _exp(top + _log_abs(difference))


def _first_index(mask: np.ndarray):
    index = tuple(int(i) for i in np.argwhere(mask)[0])
    return index[0] if len(index) == 1 else index


def _log_ratio(log_p: np.ndarray, log_q: np.ndarray, p_name: str, q_name: str) -> np.ndarray:
    """log p - log q, with -inf where p = 0; raises where q = 0 < p."""
    uncovered = np.isfinite(log_p) & np.isneginf(log_q)
    if uncovered.any():
        raise ValueError(
            f"support violation: {q_name} is -inf where {p_name} is finite (first at index "
            f"{_first_index(uncovered)}); importance sampling needs the sampling distribution "
            "to give positive probability to everything the target can produce")
    out = np.full(np.broadcast_shapes(log_p.shape, log_q.shape), -np.inf)
    np.subtract(log_p, log_q, out=out, where=np.isfinite(log_p))
    return out


def _check_episodes(rewards, log_rhos, gamma):
    rewards = _as_finite(rewards, "rewards", ndim=2, shape_doc="[T, B]")
    log_rhos = _as_log_weights(log_rhos, "log_rhos", ndim=2, shape_doc="[T, B]")
    _checks.check_same_shape("log_rhos", log_rhos, "rewards", rewards)
    gamma = _checks.check_discount(gamma)
    return rewards, log_rhos, gamma


def _check_scores(scores, rewards: np.ndarray) -> np.ndarray:
    scores = _as_finite(scores, "scores", ndim=3, shape_doc="[T, B, P]")
    if scores.shape[:2] != rewards.shape:
        raise ValueError(f"scores must have shape [T, B, P] = ({rewards.shape[0]}, "
                         f"{rewards.shape[1]}, P), got {_checks._shape_str(scores.shape)}")
    return scores


def _check_samples(log_weights, values=None):
    log_weights = _as_log_weights(log_weights, "log_weights", ndim=1, shape_doc="[N]")
    if log_weights.size == 0:
        raise ValueError("log_weights is empty: an estimate needs at least one sample")
    if values is None:
        return log_weights
    values = _as_finite(values, "values", ndim=(1, 2), shape_doc="[N] or [N, P]")
    if values.shape[0] != log_weights.shape[0]:
        raise ValueError(f"values must have N = {log_weights.shape[0]} rows (one per log weight), "
                         f"got {values.shape[0]}")
    return log_weights, values


def _require_some_weight(log_weights: np.ndarray) -> None:
    if np.isneginf(log_weights).all():
        raise ValueError("every log weight is -inf (all weights are zero): "
                         "the weights cannot be normalised")


def _as_scalar(x):
    return float(x) if np.ndim(x) == 0 else x


# ------------------------------------------------------------------ importance ratios

def log_importance_weights(target_log_probs, behaviour_log_probs) -> np.ndarray:
    r"""Log importance ratios :math:`\log \rho = \log \pi(a \mid s) - \log \mu(a \mid s)`.

    Book equation ``is-ratio``. Elementwise, for any shape (``[T, B]`` for a batch).

    Parameters
    ----------
    target_log_probs : array [*shape]
        :math:`\log \pi(a \mid s)` of the actions taken; ``-inf`` (the target never
        takes the action) is allowed and gives a weight of exactly zero.
    behaviour_log_probs : array [*shape]
        :math:`\log \mu(a \mid s)` of the same actions, under the policy that took them.

    Returns
    -------
    log_rhos : array [*shape]

    Raises
    ------
    ValueError
        On a shape mismatch, NaN, ``+inf``, or a support violation: the behaviour
        log-probability is ``-inf`` where the target's is finite (then no ratio
        exists and no reweighting of the behaviour's samples recovers the target).
    """
    target = _as_log_weights(target_log_probs, "target_log_probs")
    behaviour = _as_log_weights(behaviour_log_probs, "behaviour_log_probs")
    _checks.check_same_shape("target_log_probs", target, "behaviour_log_probs", behaviour)
    _log_ratio(target, behaviour, "target_log_probs", "behaviour_log_probs")  # support check
    behaviour = np.where(np.isneginf(target), 0.0, behaviour)   # target 0: weight 0 whatever mu is
    # [book:is-ratio]
    log_rhos = target - behaviour                # log pi(a|s) - log mu(a|s) = log rho
    # [/book:is-ratio]
    return log_rhos


def cumulative_log_weights(log_rhos) -> np.ndarray:
    r"""Per-decision log-weights :math:`\log \rho_{0:t} = \sum_{k=0}^{t} \log \rho_k`.

    Book equation ``per-decision-weight``. One running sum down each column, so
    O(T) work per episode, where forming each product :math:`\prod_{k \le t} \rho_k`
    afresh takes O(T^2); and a sum of logs cannot overflow or underflow where a
    product of ratios can.

    Parameters
    ----------
    log_rhos : array [T, B]
        Each column one episode from its first step.

    Returns
    -------
    array [T, B]
        Entry ``[t, b]`` is :math:`\log \rho_{0:t}` of episode b.
    """
    log_rhos = _as_log_weights(log_rhos, "log_rhos", ndim=2, shape_doc="[T, B]")
    # [book:per-decision-weights]
    return np.cumsum(log_rhos, axis=0)   # log rho_{0:t} = log rho_{0:t-1} + log rho_t
    # [/book:per-decision-weights]


def trajectory_log_weights(log_rhos) -> np.ndarray:
    r"""Whole-trajectory log-weights :math:`\log \rho_{0:T-1} = \sum_{t} \log \rho_t`.

    Book equation ``trajectory-weight``: :math:`p_\pi(\tau) / p_\mu(\tau)`, the
    dynamics cancelling.

    Parameters
    ----------
    log_rhos : array [T, B]
        Each column one episode from its first step.

    Returns
    -------
    array [B]
    """
    log_rhos = _as_log_weights(log_rhos, "log_rhos", ndim=2, shape_doc="[T, B]")
    return np.sum(log_rhos, axis=0)


# ------------------------------------------------------------------ off-policy returns

def trajectory_is_returns(rewards, log_rhos, gamma: float) -> np.ndarray:
    r"""Trajectory importance sampling of the return, one estimate per episode.

    .. math:: \hat J_{\text{IS}}(\tau) = \rho_{0:T-1} \sum_{t=0}^{T-1} \gamma^t r_t

    Book equation ``trajectory-is``. For episodes drawn from the behaviour
    policy its mean is the target's expected discounted return
    :math:`J(\pi)` (given support). Precup, Sutton & Singh (2000),
    "Eligibility traces for off-policy policy evaluation".

    Parameters
    ----------
    rewards : array [T, B]
        Each column one episode from its first step.
    log_rhos : array [T, B]
        :math:`\log \rho_t` of the same steps.
    gamma : float in [0, 1]

    Returns
    -------
    array [B]
    """
    rewards, log_rhos, gamma = _check_episodes(rewards, log_rhos, gamma)
    log_discounts = _log_discounts(gamma, rewards.shape[0])              # log gamma^t [T, 1]
    # [book:trajectory-is-return]
    returns = _exp_weighted_sum(log_discounts, rewards, axis=0)    # sum_t gamma^t r_t  [B]
    log_weights = trajectory_log_weights(log_rhos)                 # log rho_{0:T-1}  [B]
    return _exp_weighted_sum(log_weights[None], returns[None], axis=0)   # rho R(tau)
    # [/book:trajectory-is-return]


def per_decision_is_returns(rewards, log_rhos, gamma: float) -> np.ndarray:
    r"""Per-decision importance sampling of the return, one estimate per episode.

    .. math:: \hat J_{\text{PDIS}}(\tau) = \sum_{t=0}^{T-1} \gamma^t \rho_{0:t}\, r_t

    Book equation ``per-decision-is``. The reward at step t depends only on the
    actions up to t, so the ratios of later actions (mean one) are dropped;
    the estimate stays unbiased for :math:`J(\pi)`. Precup, Sutton & Singh (2000).

    Parameters
    ----------
    rewards : array [T, B]
        Each column one episode from its first step.
    log_rhos : array [T, B]
    gamma : float in [0, 1]

    Returns
    -------
    array [B]
    """
    rewards, log_rhos, gamma = _check_episodes(rewards, log_rhos, gamma)
    log_discounts = _log_discounts(gamma, rewards.shape[0])              # log gamma^t [T, 1]
    # [book:per-decision-is-return]
    log_weights = log_discounts + cumulative_log_weights(log_rhos)  # log gamma^t rho_{0:t}
    return _exp_weighted_sum(log_weights, rewards, axis=0)          # sum_t e^{log w_t} r_t
    # [/book:per-decision-is-return]


# ------------------------------------------------------------------ off-policy gradients

def trajectory_is_policy_gradients(scores, rewards, log_rhos, gamma: float) -> np.ndarray:
    r"""Off-policy REINFORCE: the whole-trajectory weight times the on-policy estimate.

    .. math:: \hat g_{\text{IS}}(\tau) = \rho_{0:T-1}
        \Big(\sum_{t} \nabla_\theta \log \pi_\theta(a_t \mid s_t)\Big)
        \Big(\sum_{t'} \gamma^{t'} r_{t'}\Big)

    Book equation ``trajectory-is-gradient``. Unbiased for
    :math:`\nabla_\theta J(\pi_\theta)` when the episodes come from the behaviour policy.

    Parameters
    ----------
    scores : array [T, B, P]
        :math:`\nabla_\theta \log \pi_\theta(a_t \mid s_t)` of the *target* policy,
        at the actions the behaviour policy took.
    rewards : array [T, B]
        Each column one episode from its first step.
    log_rhos : array [T, B]
    gamma : float in [0, 1]

    Returns
    -------
    array [B, P]
    """
    rewards, log_rhos, gamma = _check_episodes(rewards, log_rhos, gamma)
    scores = _check_scores(scores, rewards)
    log_discounts = _log_discounts(gamma, rewards.shape[0])              # log gamma^t [T, 1]
    returns = _exp_weighted_sum(log_discounts, rewards, axis=0)           # R(tau)   [B]
    # [book:trajectory-is-gradient]
    log_weights = trajectory_log_weights(log_rhos)[:, None]       # log rho_{0:T-1} [B, 1]
    scores_times_return = np.sum(scores, axis=0) * returns[:, None]              # [B, P]
    return _exp_weighted_sum(log_weights[None], scores_times_return[None], axis=0)
    # [/book:trajectory-is-gradient]


def per_decision_is_policy_gradients(scores, rewards, log_rhos, gamma: float) -> np.ndarray:
    r"""Off-policy policy gradient with per-decision weights on the rewards to go.

    .. math:: \hat g_{\text{PDIS}}(\tau) = \sum_{t} \nabla_\theta \log \pi_\theta(a_t \mid s_t)
        \sum_{t' \ge t} \gamma^{t'} \rho_{0:t'}\, r_{t'}

    Book equation ``per-decision-is-gradient``. Each reward :math:`r_{t'}` is
    weighted by the ratios of the actions up to t', which include :math:`a_t`
    for every score it multiplies (t <= t'), so every term keeps its mean;
    the dropped terms (t' < t) have mean zero under the target. Unbiased for
    :math:`\nabla_\theta J(\pi_\theta)`: the per-decision idea of Precup,
    Sutton & Singh (2000) applied to the rewards to go. (Keeping only the
    current ratio :math:`\rho_t`, as off-policy actor-critic does, Degris, White
    & Sutton, arXiv:1205.4839, drops the state-distribution correction and
    estimates a different objective.)

    Parameters
    ----------
    scores : array [T, B, P]
        The target policy's score at the behaviour's actions.
    rewards : array [T, B]
        Each column one episode from its first step.
    log_rhos : array [T, B]
    gamma : float in [0, 1]

    Returns
    -------
    array [B, P]
    """
    rewards, log_rhos, gamma = _check_episodes(rewards, log_rhos, gamma)
    scores = _check_scores(scores, rewards)
    log_discounts = _log_discounts(gamma, rewards.shape[0])              # log gamma^t [T, 1]
    # sum_t score_t sum_{t' >= t} w_t' r_t'  =  sum_t' w_t' r_t' sum_{t <= t'} score_t
    # [book:per-decision-is-gradient]
    log_weights = log_discounts + cumulative_log_weights(log_rhos)  # log gamma^t' rho_{0:t'}
    scores_so_far = np.cumsum(scores, axis=0)                # sum_{t <= t'} score_t  [T, B, P]
    terms = scores_so_far * rewards[:, :, None]                                # [T, B, P]
    return _exp_weighted_sum(log_weights[:, :, None], terms, axis=0)           # [B, P]
    # [/book:per-decision-is-gradient]


# ------------------------------------------------------------------ weights of a sample

def truncated_log_weights(log_weights, threshold: float) -> np.ndarray:
    r"""Truncated weights :math:`\log \min(w, c)`, elementwise, any shape.

    Book equation ``truncated-weight``. Truncation bounds the variance at the
    price of a bias (the mass above c is lost). Used by V-trace (Espeholt et
    al., arXiv:1802.01561) and Retrace (Munos et al., arXiv:1606.02647).

    Parameters
    ----------
    log_weights : array [*shape]
    threshold : float > 0
        c, the largest weight kept (``inf`` truncates nothing).

    Returns
    -------
    array [*shape]
    """
    log_weights = _as_log_weights(log_weights, "log_weights")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) \
            or not threshold > 0:
        raise ValueError(f"threshold must be a positive number (the largest weight c > 0), "
                         f"got {threshold!r}")
    # [book:truncated-weights]
    return np.minimum(log_weights, np.log(threshold))   # log min(w, c) = min(log w, log c)
    # [/book:truncated-weights]


def normalised_weights(log_weights) -> np.ndarray:
    r"""Self-normalised weights :math:`\tilde w_i = w_i / \sum_j w_j`, which sum to one.

    Computed as :math:`e^{\ell_i - m} / \sum_j e^{\ell_j - m}` with
    :math:`m = \max_j \ell_j`: the largest term is exactly 1, nothing overflows.

    Parameters
    ----------
    log_weights : array [N]
        At least one finite.

    Returns
    -------
    array [N]
    """
    log_weights = _check_samples(log_weights)
    _require_some_weight(log_weights)
    # [book:normalised-weights]
    scaled = _exp(log_weights - log_weights.max())      # w_i / max_j w_j, the largest is 1
    return scaled / scaled.sum()
    # [/book:normalised-weights]


def ordinary_is_estimate(values, log_weights):
    r"""The ordinary importance sampling estimate :math:`\frac1N \sum_i w_i f(x_i)`.

    Book equation ``ordinary-is``. Unbiased for :math:`\mathbb E_p[f]` when the
    :math:`x_i` are drawn i.i.d. from q and :math:`w_i = p(x_i) / q(x_i)`.
    Each term :math:`w_i f(x_i) / N` is kept as a log-magnitude and a sign and
    the terms are summed by log-sum-exp (see the module docstring): the result
    is accurate to rounding relative to the larger of the positive and the
    negative part, ``inf`` of the right sign only when it overflows, never NaN.

    Parameters
    ----------
    values : array [N] or [N, P]
        :math:`f(x_i)`, scalar or vector-valued (e.g. gradients).
    log_weights : array [N]
        :math:`\ell_i = \log w_i`.

    Returns
    -------
    float, or array [P] for vector values (zero if every weight is zero).
    """
    log_weights, values = _check_samples(log_weights, values)
    log_weights = log_weights.reshape((-1,) + (1,) * (values.ndim - 1))      # [N] or [N, 1]
    # [book:ordinary-is]
    log_scales = log_weights - math.log(log_weights.shape[0])       # log(w_i / N)
    estimate = _exp_weighted_sum(log_scales, values, axis=0)        # sum_i (w_i / N) f(x_i)
    # [/book:ordinary-is]
    return _as_scalar(estimate)


def self_normalised_is_estimate(values, log_weights):
    r"""The self-normalised estimate :math:`\sum_i w_i f(x_i) / \sum_i w_i`.

    Book equation ``self-normalised-is``. Needs p and q only up to constants;
    biased at finite N (the bias is O(1/N)) but consistent, with asymptotic
    variance :func:`snis_asymptotic_variance` / N. Computed with
    :func:`normalised_weights`.

    Parameters
    ----------
    values : array [N] or [N, P]
    log_weights : array [N]
        At least one finite.

    Returns
    -------
    float, or array [P] for vector values.
    """
    log_weights, values = _check_samples(log_weights, values)
    return _as_scalar(normalised_weights(log_weights) @ values)


def effective_sample_size(log_weights) -> float:
    r"""Kish's effective sample size :math:`(\sum_i w_i)^2 / \sum_i w_i^2`.

    Book equation ``effective-sample-size``. N when all weights are equal, 1 when
    one weight dominates; unchanged when every weight is scaled by the same
    factor, so it is computed from :math:`e^{\ell_i - \max_j \ell_j}`.

    Parameters
    ----------
    log_weights : array [N]
        At least one finite.

    Returns
    -------
    float in [1, N]
    """
    log_weights = _check_samples(log_weights)
    _require_some_weight(log_weights)
    # [book:effective-sample-size]
    w = _exp(log_weights - log_weights.max())            # the same weights, up to one factor
    with np.errstate(under="ignore"):                    # w_i^2 of a tiny w_i is 0
        ess = w.sum() ** 2 / np.sum(w ** 2)
    # [/book:effective-sample-size]
    return float(ess)


# ------------------------------------------------------------------ mixtures

def mixture_log_density(component_log_densities, mixture_weights) -> np.ndarray:
    r"""Log-density of a mixture :math:`\log \sum_k \alpha_k q_k(x)`, by log-sum-exp.

    Book equation ``mixture-density``. The densities must be those of *whole*
    trajectories (or of prefixes :math:`\tau_{0:t}`), e.g. sums of per-step
    policy log-probabilities: a mixture of trajectory distributions picks one
    component for a whole episode. Mixing the action probabilities at every
    step, :math:`\prod_t \sum_k \alpha_k q_k(a_t \mid s_t)`, is a different
    sampler, and weighting its samples with this density biases the estimator.
    Factors common to all densities (the MDP's dynamics) may be left out of
    every component: they cancel in any ratio with a target density.

    Parameters
    ----------
    component_log_densities : array [K, N] (or [K, *batch])
        :math:`\log q_k(x)`; ``-inf`` for zero.
    mixture_weights : array [K]
        :math:`\alpha_k`, a probability distribution.

    Returns
    -------
    array [N] (or [*batch])
    """
    comps = _as_log_weights(component_log_densities, "component_log_densities")
    if comps.ndim < 2:
        raise ValueError(f"component_log_densities must have shape [K, N], "
                         f"got {_checks._shape_str(comps.shape)}")
    alphas = _checks.as_float_array(mixture_weights, "mixture_weights", ndim=1, shape_doc="[K]")
    if alphas.shape[0] != comps.shape[0]:
        raise ValueError(f"mixture_weights must have shape [K] = ({comps.shape[0]},) "
                         f"(one per component), got {_checks._shape_str(alphas.shape)}")
    _checks.check_distribution(alphas, "mixture_weights")
    log_alphas = _log(alphas).reshape((-1,) + (1,) * (comps.ndim - 1))
    # [book:mixture-log-density]
    return _logsumexp(log_alphas + comps, axis=0)        # log sum_k alpha_k q_k(x)
    # [/book:mixture-log-density]


def defensive_log_weights(target_log_density, behaviour_log_density, beta: float) -> np.ndarray:
    r"""Log-weights of samples from the defensive mixture :math:`\beta p + (1-\beta) q`.

    .. math:: \log w(x) = \log p(x) - \log\big(\beta\, p(x) + (1 - \beta)\, q(x)\big)

    Book equation ``defensive-weight``; Hesterberg (1995), "Weighted average
    importance sampling and defensive mixture distributions"; used for policy
    gradients by Papini et al., arXiv:2405.05630. Because the mixture density
    is at least :math:`\beta p`, every weight is at most :math:`1/\beta` and
    :math:`\mathbb E_{\text{mix}}[(w f)^2] \le \mathbb E_p[f^2] / \beta`, whatever q is.
    :math:`\beta = 1` gives log-weights of exactly 0 (on-policy sampling).

    The sampler must pick p or q *once per trajectory* (with probabilities
    beta and 1 - beta, see :func:`sample_mixture_components`), and the
    densities are those of whole trajectories, or of prefixes
    :math:`\tau_{0:t}` (pass cumulative log-probabilities ``[T, B]``) for a
    per-decision estimator. Mixing the two policies' action probabilities at
    every step is a different sampler, for which these weights are wrong and
    the estimate biased. The dynamics cancel: sums of policy log-probabilities
    will do.

    Parameters
    ----------
    target_log_density : array [N] (or any shape)
        :math:`\log p(x)`; ``-inf`` gives weight 0.
    behaviour_log_density : array, same shape
        :math:`\log q(x)`.
    beta : float in [0, 1]
        The share of the target in the mixture.

    Returns
    -------
    array, the shape of the inputs
    """
    log_p = _as_log_weights(target_log_density, "target_log_density")
    log_q = _as_log_weights(behaviour_log_density, "behaviour_log_density")
    _checks.check_same_shape("target_log_density", log_p, "behaviour_log_density", log_q)
    beta = _checks.check_discount(beta, "beta")
    log_beta = math.log(beta) if beta > 0 else -math.inf
    log_rest = math.log1p(-beta) if beta < 1 else -math.inf
    # [book:defensive-weights]
    log_mixture = _logaddexp(log_beta + log_p, log_rest + log_q)     # log(beta p + (1-beta) q)
    log_weights = _log_ratio(log_p, log_mixture,                     # log p - log mixture
                             "target_log_density", "the mixture log-density")
    # [/book:defensive-weights]
    return log_weights


def balance_heuristic_log_weights(target_log_density, sampler_log_densities, counts) -> np.ndarray:
    r"""Multiple importance sampling with the balance heuristic.

    With :math:`n_k` samples drawn from each :math:`q_k` (a fixed split,
    :math:`N = \sum_k n_k`), every sample, whichever :math:`q_k` drew it, gets

    .. math:: \log w(x) = \log p(x) - \log \sum_k \frac{n_k}{N} q_k(x)

    and :math:`\frac1N \sum_i w(x_i) f(x_i)` is unbiased for :math:`\mathbb E_p[f]`
    (if the :math:`q_k` with :math:`n_k > 0` together cover p). Book equation
    ``balance-heuristic``; Veach & Guibas (1995), "Optimally combining sampling
    techniques for Monte Carlo rendering"; Elvira et al., arXiv:1511.03095.
    As in :func:`mixture_log_density`, the densities are of whole
    trajectories (or prefixes), not per-step mixtures.

    Parameters
    ----------
    target_log_density : array [N] (or [*batch, N])
        :math:`\log p(x_i)` of all N samples (last axis).
    sampler_log_densities : array [K, N] (or [K, *batch, N])
        :math:`\log q_k(x_i)` of every sample under every sampler.
    counts : array [K] of non-negative integers
        :math:`n_k`, summing to N.

    Returns
    -------
    array [N] (or [*batch, N])
    """
    log_p = _as_log_weights(target_log_density, "target_log_density")
    if log_p.ndim == 0:
        raise ValueError("target_log_density must have shape [N], got ()")
    log_qs = _as_log_weights(sampler_log_densities, "sampler_log_densities")
    if log_qs.shape[1:] != log_p.shape:
        raise ValueError(f"sampler_log_densities must have shape [K, N] = "
                         f"(K, {', '.join(str(s) for s in log_p.shape)}) "
                         f"(one row per sampler), got {_checks._shape_str(log_qs.shape)}")
    counts = _checks.as_int_array(counts, "counts", low=0)
    if counts.shape != (log_qs.shape[0],):
        raise ValueError(f"counts must have shape [K] = ({log_qs.shape[0]},) (one per sampler), "
                         f"got {_checks._shape_str(counts.shape)}")
    n = log_p.shape[-1]
    if counts.sum() != n:
        raise ValueError(f"counts must sum to the number of samples N = {n} "
                         f"(the last axis of target_log_density), got {counts.sum()}")
    # [book:balance-heuristic]
    log_mixture = mixture_log_density(log_qs, counts / n)            # log sum_k (n_k/N) q_k(x)
    log_weights = _log_ratio(log_p, log_mixture,                     # log p - log mixture
                             "target_log_density", "the mixture log-density")
    # [/book:balance-heuristic]
    return log_weights


def sample_mixture_components(mixture_weights, n: int, rng: np.random.Generator) -> np.ndarray:
    """Which component of a mixture each of n samples comes from: i.i.d. draws of k ~ alpha.

    For trajectories, draw the component once per episode, then the whole
    episode from that component's policy.

    Parameters
    ----------
    mixture_weights : array [K]
        alpha, a probability distribution.
    n : int >= 0
    rng : np.random.Generator

    Returns
    -------
    array [n] of ints in [0, K)
    """
    alphas = _checks.as_float_array(mixture_weights, "mixture_weights", ndim=1, shape_doc="[K]")
    if alphas.size == 0:
        raise ValueError("mixture_weights must have at least one component")
    _checks.check_distribution(alphas, "mixture_weights")
    n = _checks.check_positive_int(n, "n", minimum=0)
    rng = _checks.check_rng(rng)
    return rng.choice(alphas.size, size=n, p=alphas / alphas.sum())


# ------------------------------------------------------------------ exact results, discrete

def _check_discrete(p, q, f):
    """p (and q unless None) distributions [n], f finite [n], all the same length."""
    checked = []
    for x, name in ((p, "p"), (q, "q")):
        if x is not None:
            x = _checks.as_float_array(x, name, ndim=1, shape_doc="[n]")
            _checks.check_distribution(x, name)
            checked.append((name, x))
    checked.append(("f", _as_finite(f, "f", ndim=1, shape_doc="[n]")))
    for name, x in checked[1:]:
        _checks.check_same_shape("p", checked[0][1], name, x)
    return [x for _, x in checked]


def exact_is_variance(p, q, f) -> float:
    r"""The variance of one importance-sampled value :math:`w f`, :math:`x \sim q`.

    .. math:: \operatorname{Var}_q\!\left[\frac{p(x)}{q(x)} f(x)\right]
        = \sum_x \frac{p(x)^2 f(x)^2}{q(x)} - \Big(\sum_x p(x) f(x)\Big)^2

    Book equation ``is-variance``. The N-sample estimate
    :func:`ordinary_is_estimate` has this variance divided by N. Computed in the
    centred form :math:`\sum_x q(x) (w(x) f(x) - I)^2` over the outcomes with
    q > 0 (equal to the above, and never negative through rounding).

    Parameters
    ----------
    p : array [n]
        Target distribution over n outcomes.
    q : array [n]
        Proposal, positive wherever :math:`p f \ne 0`.
    f : array [n]
        Values of the function.

    Returns
    -------
    float
    """
    p, q, f = _check_discrete(p, q, f)
    uncovered = (q == 0) & (p * f != 0)
    if uncovered.any():
        raise ValueError(f"support violation: q is 0 where p * f is not (first at outcome "
                         f"{_first_index(uncovered)}); the importance sampling estimate would "
                         "be biased")
    drawn = q > 0
    p, q, f = p[drawn], q[drawn], f[drawn]
    # [book:exact-is-variance]
    mean = np.sum(p * f)                                  # E_q[w f] = E_p[f]
    weighted = p / q * f                                  # w(x) f(x)
    return float(np.sum(q * (weighted - mean) ** 2))      # E_q[(w f - mean)^2]
    # [/book:exact-is-variance]


def snis_asymptotic_variance(p, q, f) -> float:
    r"""N times the large-N variance of the self-normalised estimate.

    .. math:: \lim_{N\to\infty} N \operatorname{Var}[\hat I_{\text{SN}}]
        = \sum_x \frac{p(x)^2 \big(f(x) - I\big)^2}{q(x)}, \qquad I = \sum_x p(x) f(x)

    Book equation ``snis-variance`` (the delta method). At finite N the
    variance (and bias) of the self-normalised estimate have no closed form.

    Parameters
    ----------
    p : array [n]
    q : array [n]
        Positive wherever p is (the normaliser must see all of p's mass).
    f : array [n]

    Returns
    -------
    float
    """
    p, q, f = _check_discrete(p, q, f)
    uncovered = (q == 0) & (p > 0)
    if uncovered.any():
        raise ValueError(f"support violation: q is 0 where p is not (first at outcome "
                         f"{_first_index(uncovered)}); the self-normalised estimate would "
                         "converge to the wrong value")
    mean = np.sum(p * f)
    drawn = q > 0
    p, q, f = p[drawn], q[drawn], f[drawn]
    return float(np.sum(p ** 2 * (f - mean) ** 2 / q))


def minimum_variance_proposal(p, f) -> np.ndarray:
    r"""The proposal that minimises :func:`exact_is_variance`: :math:`q^* \propto p |f|`.

    By Cauchy-Schwarz, :math:`\sum_x p^2 f^2 / q \ge (\sum_x p |f|)^2` for every
    proposal, with equality at :math:`q^* = p|f| / \sum_x p|f|`. The minimal
    variance is :math:`(\sum p|f|)^2 - (\sum p f)^2`: zero when f has one sign
    on p's support. Book equation ``optimal-proposal``. :math:`q^*` needs the
    answer :math:`\sum p|f|`, so it is a guide to good proposals, not a method.

    Parameters
    ----------
    p : array [n]
    f : array [n]

    Returns
    -------
    array [n], a probability distribution
    """
    p, f = _check_discrete(p, None, f)
    if not np.any(p * f != 0):
        raise ValueError("f is zero wherever p is positive: every proposal estimates "
                         "E_p[f] = 0 exactly, so no proposal is singled out")
    # [book:minimum-variance-proposal]
    mass = p * np.abs(f)                                  # p(x) |f(x)|
    return mass / mass.sum()                              # q*(x)
    # [/book:minimum-variance-proposal]
