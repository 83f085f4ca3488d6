r"""Active importance sampling: behavioural policy optimisation (BPO) and its baselines.

Papini, Manganini, Metelli & Restelli, "Policy gradient with active importance
sampling", arXiv:2405.05630 (RLC 2024). The method is reconstructed here from
what is known of the paper; every formula below is derived or checked in this
module's tests, and its choices are stated as choices.

**Off-policy gradient estimates.**
A per-trajectory unbiased gradient :math:`g_\theta(\tau)` (GPOMDP, or
REINFORCE) drawn from a behavioural distribution q instead of
:math:`p_\theta` is reweighted:

.. math:: \hat\nabla J = \frac1N \sum_{i=1}^N \frac{p_\theta(\tau_i)}{q(\tau_i)}\,
    g_\theta(\tau_i), \qquad \tau_i \sim q.

The dynamics cancel in the ratio: only the policies' log-probabilities enter,
and every weight is kept as its logarithm and summed by log-sum-exp
(:mod:`pgkit.importance`), so no ratio over a long horizon overflows. With
per-decision weights each reward :math:`r_t` carries the weight of the prefix
:math:`\tau_{0:t}` only.

**The minimum-variance behavioural distribution.**
The trace of the covariance of one weighted sample is
:math:`\mathbb E_q[(p/q)^2 \lVert g \rVert^2] - \lVert \nabla J \rVert^2`, and by
Cauchy-Schwarz

.. math:: \Big(\int p \lVert g \rVert\Big)^2
    = \Big(\int \frac{p \lVert g \rVert}{\sqrt q} \sqrt q\Big)^2
    \le \int \frac{p^2 \lVert g \rVert^2}{q} \int q
    = \mathbb E_q\big[(p/q)^2 \lVert g \rVert^2\big],

with equality iff :math:`p \lVert g \rVert / \sqrt q \propto \sqrt q`, that is

.. math:: q^*(\tau) = \frac{p_\theta(\tau)\, \lVert g_\theta(\tau) \rVert}
    {\mathbb E_{p_\theta} \lVert g_\theta \rVert}, \qquad
    \operatorname{tr} \operatorname{Cov}_{q^*} = (\mathbb E_p \lVert g \rVert)^2
    - \lVert \nabla J \rVert^2 .

The weight is the norm :math:`\lVert g \rVert`, not its square (a machine
summary of the paper prints :math:`\lVert g \rVert^2`; the tests compare both
with a brute-force optimum on a small discrete example). This is the vector
form of the scalar result :math:`q^* \propto p |f|`
(:func:`pgkit.importance.minimum_variance_proposal`). :math:`q^*` needs the
norms of every trajectory's gradient, so it is the distribution of no policy in
general: BPO projects it on the policy class by cross-entropy,

.. math:: \tilde\theta = \arg\max_{\tilde\theta} \sum_{i=1}^{N_{\text{BPO}}} c_i
    \sum_t \log \pi_{\tilde\theta}(a_{i,t} \mid s_{i,t}), \qquad
    c_i = \lVert g_\theta(\tau_i) \rVert, \ \tau_i \sim p_\theta,

which for a linear Gaussian policy is a weighted least-squares fit
(:func:`fit_behaviour`), and samples from the defensive mixture
:math:`\Phi = \beta p_\theta + (1 - \beta) p_{\tilde\theta}`, whose weights are at
most :math:`1/\beta`, so that the second moment is at most :math:`1/\beta` times
the on-policy one whatever the fit is. The mixture density is that of whole
trajectories (or of prefixes), computed with ``logaddexp`` of the cumulative
log-probabilities: mixing the two policies' action probabilities at every step
is a different sampler, for which these weights are wrong.

**The loops.**
:func:`train_gpomdp`, :func:`train_bpo` and :func:`train_storm` share one
signature and return a :class:`LearningCurve` whose x axis counts *every*
trajectory drawn for learning (BPO's fitting trajectories included).
:func:`sweep` runs a task over settings and seeds, serially by default or
through joblib (imported only then) on every local core or a Dask or Ray
backend. :func:`gradient_variance_study` measures the per-trajectory variance
of the estimators at one policy.

Conventions: the policy is :math:`a = K s + \sigma \varepsilon` on an environment
of ``pgkit.envs`` (``LinearQuadratic``, ``ContinuousCartPole``); the
parameters are the gain K, flattened ``K.ravel()`` (P = m n); the std is fixed
during learning (a stated choice: the paper's LQ experiments fix it); gradients
have no baseline.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from pgkit import _checks
from pgkit.envs.lq import (Trajectories, _check_gain, _check_std, _check_trajectories,
                           _discounts, _log_probs, _rollout, _scores)
from pgkit.importance import (_as_log_weights, _exp_weighted_sum, _log_discounts,
                              balance_heuristic_log_weights, defensive_log_weights,
                              exact_is_variance, minimum_variance_proposal,
                              sample_mixture_components)
from pgkit.optim import Adam, GradientAscent, _clip_grad_norm

__all__ = [
    "gpomdp_gradients",
    "reinforce_gradients",
    "off_policy_gradients",
    "defensive_trajectory_log_weights",
    "minimum_variance_behaviour",
    "variance_trace",
    "behaviour_weights",
    "BehaviourFit",
    "fit_behaviour",
    "kl_from_optimal",
    "cross_fitted_kl",
    "beta_from_kl",
    "LearningCurve",
    "train_gpomdp",
    "train_bpo",
    "train_storm",
    "train_algorithm",
    "train_from_seed",
    "VarianceStudy",
    "gradient_variance_study",
    "sweep",
]


# ------------------------------------------------------------------ checks

def _check_episode_arrays(scores, rewards, gamma):
    rewards = _checks.as_float_array(rewards, "rewards", ndim=2, shape_doc="[T, B]")
    scores = _checks.as_float_array(scores, "scores", ndim=3, shape_doc="[T, B, P]")
    if scores.shape[:2] != rewards.shape:
        raise ValueError(f"scores must have shape [T, B, P] = ({rewards.shape[0]}, "
                         f"{rewards.shape[1]}, P), "
                         f"got {_checks._shape_str(scores.shape)}")
    if not (np.isfinite(rewards).all() and np.isfinite(scores).all()):
        raise ValueError("scores and rewards must be finite")
    return scores, rewards, _checks.check_discount(gamma)


def _check_choice(value, name: str, choices) -> str:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def _check_gradient_rows(gradients) -> np.ndarray:
    g = _checks.as_float_array(gradients, "gradients", ndim=2, shape_doc="[N, P]")
    if not np.isfinite(g).all():
        raise ValueError("gradients must be finite, got an infinite value")
    return g


# ------------------------------------------------------------------ estimators

def _weighted_gpomdp(scores, rewards, gamma, log_weights) -> np.ndarray:
    """GPOMDP per trajectory [B, P] with log-weights [B] (whole trajectory) or [T, B]
    (prefixes); zeros give the on-policy estimate. No checks."""
    if log_weights.ndim == 1:
        log_weights = log_weights[None, :]
    # [book:off-policy-gpomdp]
    log_scales = _log_discounts(gamma, len(rewards)) + log_weights  # log gamma^t w_0:t
    scores_so_far = np.cumsum(scores, axis=0)                # sum_{k <= t} score_k
    terms = scores_so_far * rewards[:, :, None]              # [T, B, P]
    return _exp_weighted_sum(log_scales[:, :, None], terms, axis=0)    # [B, P]
    # [/book:off-policy-gpomdp]


def _weighted_reinforce(scores, rewards, gamma, log_weights) -> np.ndarray:
    """REINFORCE per trajectory [B, P] with log-weights [B]; no checks."""
    returns = _discounts(gamma, rewards.shape[0]) @ rewards                      # [B]
    terms = scores.sum(axis=0) * returns[:, None]                             # [B, P]
    return _exp_weighted_sum(log_weights[None, :, None], terms[None], axis=0)


def _estimate(estimator, scores, rewards, gamma, log_weights) -> np.ndarray:
    if estimator == "gpomdp":
        return _weighted_gpomdp(scores, rewards, gamma, log_weights)
    return _weighted_reinforce(scores, rewards, gamma, log_weights)


def gpomdp_gradients(scores, rewards, gamma: float) -> np.ndarray:
    r"""On-policy GPOMDP, one gradient estimate per trajectory.

    .. math:: g(\tau) = \sum_{t=0}^{T-1} \gamma^t r_t \sum_{k=0}^{t}
        \nabla_\theta \log \pi_\theta(a_k \mid s_k)

    Baxter & Bartlett (2001), "Infinite-horizon policy-gradient estimation";
    the reward-to-go estimator of book equation ``reward-to-go`` (no baseline)
    with the sums exchanged. Computed by the same log-space kernel as
    :func:`off_policy_gradients`, with every weight exactly 1, so that a
    defensive estimate with :math:`\beta = 1` equals it bit for bit.

    Parameters
    ----------
    scores : array [T, B, P]
        :math:`\nabla_\theta \log \pi_\theta(a_t \mid s_t)`, 0 at steps not taken.
    rewards : array [T, B]
    gamma : float in [0, 1]

    Returns
    -------
    array [B, P]; the estimate of :math:`\nabla J` is its mean over B.
    """
    scores, rewards, gamma = _check_episode_arrays(scores, rewards, gamma)
    return _weighted_gpomdp(scores, rewards, gamma, np.zeros(rewards.shape[1]))


def reinforce_gradients(scores, rewards, gamma: float) -> np.ndarray:
    r"""On-policy REINFORCE, one gradient estimate per trajectory.

    .. math:: g(\tau) = \Big(\sum_{t} \nabla_\theta \log \pi_\theta(a_t \mid s_t)\Big)
        \sum_{t} \gamma^t r_t

    Williams (1992). Unbiased like GPOMDP, with more variance: each score also
    multiplies the rewards that came before its action.

    Parameters
    ----------
    scores : array [T, B, P]
    rewards : array [T, B]
    gamma : float in [0, 1]

    Returns
    -------
    array [B, P]
    """
    scores, rewards, gamma = _check_episode_arrays(scores, rewards, gamma)
    return _weighted_reinforce(scores, rewards, gamma, np.zeros(rewards.shape[1]))


def off_policy_gradients(scores, rewards, gamma: float, log_weights, *,
                         estimator: str = "gpomdp") -> np.ndarray:
    r"""Importance-weighted GPOMDP (or REINFORCE), one estimate per trajectory.

    With whole-trajectory weights ``log_weights`` [B],
    :math:`w(\tau) = p_\theta(\tau) / q(\tau)`:

    .. math:: g_w(\tau) = w(\tau) \sum_{t} \gamma^t r_t \sum_{k \le t}
        \nabla_\theta \log \pi_\theta(a_k \mid s_k)

    (book equation ``trajectory-is-gradient`` for REINFORCE). With prefix
    (per-decision) weights ``log_weights`` [T, B],
    :math:`w_{0:t} = p_\theta(\tau_{0:t}) / q(\tau_{0:t})`:

    .. math:: g_w(\tau) = \sum_{t} \gamma^t w_{0:t}\, r_t \sum_{k \le t}
        \nabla_\theta \log \pi_\theta(a_k \mid s_k)

    (book equation ``per-decision-is-gradient``, the sums exchanged). Both are
    unbiased for :math:`\nabla J(\theta)` when the trajectories come from q and
    the weights are those of q: of one behavioural policy
    (:func:`pgkit.importance.trajectory_log_weights` or
    :func:`pgkit.importance.cumulative_log_weights` of the per-step log-ratios),
    or of a defensive mixture (:func:`defensive_trajectory_log_weights`).
    Summed in log space: never NaN, inf only on overflow.

    Parameters
    ----------
    scores : array [T, B, P]
        The *target* policy's scores at the actions taken.
    rewards : array [T, B]
    gamma : float in [0, 1]
    log_weights : array [B] or [T, B]
        Log-weights of whole trajectories, or of their prefixes (the last row
        is then the whole trajectory's); ``-inf`` for a zero weight.
    estimator : ``"gpomdp"`` or ``"reinforce"``
        REINFORCE takes whole-trajectory weights only.

    Returns
    -------
    array [B, P]
    """
    scores, rewards, gamma = _check_episode_arrays(scores, rewards, gamma)
    _check_choice(estimator, "estimator", ("gpomdp", "reinforce"))
    T, B = rewards.shape
    log_weights = _as_log_weights(log_weights, "log_weights", ndim=(1, 2),
                                  shape_doc="[B] or [T, B]")
    if log_weights.shape not in ((B,), (T, B)):
        raise ValueError(f"log_weights must have shape [B] = ({B},) or "
                         f"[T, B] = ({T}, {B}), "
                         f"got {_checks._shape_str(log_weights.shape)}")
    if estimator == "reinforce" and log_weights.ndim == 2:
        raise ValueError("REINFORCE takes whole-trajectory weights [B]: every score "
                         "multiplies the whole return, so it has no per-decision form")
    return _estimate(estimator, scores, rewards, gamma, log_weights)


def _defensive_log_weights(target_log_probs, behaviour_log_probs, beta, counts,
                           per_decision):
    """No checks; per-step log-probs [T, B]."""
    # [book:defensive-trajectory-weights]
    log_p = np.cumsum(target_log_probs, axis=0)     # log p(tau_0:t), no dynamics
    log_q = np.cumsum(behaviour_log_probs, axis=0)  # log q(tau_0:t)
    if not per_decision:
        log_p, log_q = log_p[-1], log_q[-1]          # whole trajectories
    if counts is None:                               # i.i.d. from beta p + (1-beta) q
        return defensive_log_weights(log_p, log_q, beta)
    return balance_heuristic_log_weights(log_p, np.stack([log_p, log_q]), counts)
    # [/book:defensive-trajectory-weights]


def defensive_trajectory_log_weights(target_log_probs, behaviour_log_probs,
                                     beta=None, *, counts=None,
                                     per_decision: bool = True) -> np.ndarray:
    r"""Log-weights of trajectories drawn from the defensive mixture of two policies.

    .. math:: \log w_{0:t} = \log p(\tau_{0:t})
        - \log\big(\beta\, p(\tau_{0:t}) + (1 - \beta)\, q(\tau_{0:t})\big)

    with :math:`\log p(\tau_{0:t}) = \sum_{k \le t} \log \pi(a_k \mid s_k)` (the
    dynamics cancel): book equations ``defensive-weight`` and
    ``mixture-density``, applied to whole trajectories or prefixes, never to
    single steps. Every weight is at most :math:`1/\beta`, so the second moment
    of the weighted estimate is at most :math:`1/\beta` times the on-policy one
    (book equation ``is-defensive-bound``).

    Two samplers:

    - ``beta`` given: each trajectory picks the target (probability
      :math:`\beta`) or the behaviour once, independently
      (:func:`pgkit.importance.sample_mixture_components`);
    - ``counts = (n_p, n_q)`` given: a fixed split, :math:`n_p` trajectories of
      the target and :math:`n_q` of the behaviour, weighted with the balance
      heuristic (book equation ``balance-heuristic``), which is the formula
      above with :math:`\beta = n_p / (n_p + n_q)`.

    :math:`\beta = 1` (or :math:`n_q = 0`) gives log-weights of exactly 0.

    Parameters
    ----------
    target_log_probs : array [T, B]
        Per-step :math:`\log \pi_\theta(a_t \mid s_t)` of the target (0 at steps
        not taken).
    behaviour_log_probs : array [T, B]
        The behavioural policy's, on the same trajectories.
    beta : float in [0, 1] or None
        The target's share of the i.i.d. mixture; give it or ``counts``, not both.
    counts : pair of ints or None
        ``(n_p, n_q)``, summing to B, for the fixed split.
    per_decision : bool
        Prefix weights [T, B] (True) or whole-trajectory weights [B].

    Returns
    -------
    array [T, B] or [B]
    """
    log_p = _as_log_weights(target_log_probs, "target_log_probs", ndim=2,
                            shape_doc="[T, B]")
    log_q = _as_log_weights(behaviour_log_probs, "behaviour_log_probs", ndim=2,
                            shape_doc="[T, B]")
    _checks.check_same_shape("target_log_probs", log_p, "behaviour_log_probs", log_q)
    if (beta is None) == (counts is None):
        raise ValueError("give exactly one of beta (i.i.d. mixture) and counts "
                         "(fixed split)")
    if beta is not None:
        beta = _checks.check_discount(beta, "beta")
    else:
        counts = _checks.as_int_array(counts, "counts", low=0)
        if counts.shape != (2,):
            raise ValueError(f"counts must be a pair (n_target, n_behaviour), "
                             f"got shape {_checks._shape_str(counts.shape)}")
    if not isinstance(per_decision, (bool, np.bool_)):
        raise ValueError(f"per_decision must be True or False, got {per_decision!r}")
    return _defensive_log_weights(log_p, log_q, beta, counts, bool(per_decision))


# ------------------------------------------------------------------ the optimal sampler

def minimum_variance_behaviour(p, gradients) -> np.ndarray:
    r"""The least-variance behaviour over n outcomes, :math:`q^* \propto p \|g\|`.

    Minimises :func:`variance_trace` over all distributions q (Cauchy-Schwarz,
    see the module docstring); the minimum is
    :math:`(\sum_x p \lVert g \rVert)^2 - \lVert \sum_x p\, g \rVert^2`. The
    vector form of book equation ``optimal-proposal``, computed by
    :func:`pgkit.importance.minimum_variance_proposal` on the norms.

    Parameters
    ----------
    p : array [n]
        Target distribution.
    gradients : array [n, P]
        :math:`g(x)` of each outcome.

    Returns
    -------
    array [n], a distribution
    """
    g = _check_gradient_rows(gradients)
    # [book:minimum-variance-behaviour]
    return minimum_variance_proposal(p, np.linalg.norm(g, axis=1))    # p ||g|| / sum
    # [/book:minimum-variance-behaviour]


def variance_trace(p, q, gradients) -> float:
    r"""Trace of the covariance of :math:`\frac{p(x)}{q(x)} g(x)`, :math:`x \sim q`.

    .. math:: \operatorname{tr} \operatorname{Cov}_q\Big[\frac pq g\Big]
        = \sum_x \frac{p(x)^2 \lVert g(x) \rVert^2}{q(x)}
        - \Big\lVert \sum_x p(x)\, g(x) \Big\rVert^2

    Exact, over n outcomes: the sum over coordinates of
    :func:`pgkit.importance.exact_is_variance` (book equation ``is-variance``).

    Parameters
    ----------
    p, q : arrays [n]
        Distributions; q positive wherever :math:`p \lVert g \rVert > 0`.
    gradients : array [n, P]

    Returns
    -------
    float
    """
    g = _check_gradient_rows(gradients)
    return float(sum(exact_is_variance(p, q, g[:, j]) for j in range(g.shape[1])))


def behaviour_weights(gradients, power: float = 1.0) -> np.ndarray:
    r"""Cross-entropy weights :math:`c_i = \lVert g_\theta(\tau_i) \rVert^p`, p = power.

    With on-policy trajectories :math:`\tau_i \sim p_\theta`, maximising
    :math:`\sum_i c_i \log \tilde p(\tau_i)` estimates the cross-entropy projection
    of :math:`q^* \propto p_\theta\, c` on the policy class. ``power = 1`` is the
    minimum-variance distribution; ``power = 2`` is what the machine summary of
    the paper prints, kept as an option to compare.

    Parameters
    ----------
    gradients : array [N, P]
        Per-trajectory gradient estimates (:func:`gpomdp_gradients`).
    power : float >= 0

    Returns
    -------
    array [N], non-negative
    """
    g = _check_gradient_rows(gradients)
    power = _checks.check_nonnegative(power, "power")
    return np.linalg.norm(g, axis=1) ** power


# ------------------------------------------------------------------ cross-entropy fit

class BehaviourFit(NamedTuple):
    """A fitted linear Gaussian behavioural policy: ``gain`` [m, n] and ``std`` [m]."""

    gain: np.ndarray
    std: np.ndarray


def _fit_behaviour(states, actions, alive, weights, stds, fit_std, ridge, prior_gain,
                   min_std) -> BehaviourFit:
    """Weighted least squares (no checks); ``stds`` [m] is kept unless ``fit_std``."""
    n = states.shape[-1]
    step_weights = weights[None, :] * alive                               # c_i per step
    # [book:cross-entropy-fit]
    gram = np.einsum("tb,tbi,tbj->ij", step_weights, states, states)    # sum c s s'
    cross = np.einsum("tb,tbi,tbj->ij", step_weights, states, actions)  # sum c s a'
    if not np.trace(gram) > 0:                  # no weight anywhere: keep the prior
        return BehaviourFit(prior_gain.copy(), stds.copy())
    lam = ridge * np.trace(gram) / n                         # a scale-free ridge
    gain = np.linalg.solve(gram + lam * np.eye(n), cross + lam * prior_gain.T).T
    # [/book:cross-entropy-fit]
    if fit_std:
        residuals = actions - _means_of(gain, states)
        variances = (np.einsum("tb,tbj->j", step_weights, residuals ** 2)
                     / step_weights.sum())
        stds = np.sqrt(np.maximum(variances, min_std ** 2))
    return BehaviourFit(gain, stds.copy())


def _means_of(gain, states):
    return states @ gain.T


def fit_behaviour(trajectories, weights, std, *, fit_std: bool = False,
                  ridge: float = 1e-6, prior_gain=None,
                  min_std: float = 1e-6) -> BehaviourFit:
    r"""Cross-entropy fit of a linear Gaussian behaviour, one weight per trajectory.

    .. math:: (\tilde K, \tilde\sigma) = \arg\max \sum_i c_i \sum_{t\ \text{alive}}
        \log \mathcal N(a_{i,t};\ \tilde K s_{i,t},\ \tilde\sigma^2)

    For the mean this is weighted least squares, here with a ridge pulling
    towards ``prior_gain`` (default: zero):

    .. math:: \tilde K^\top = \Big(\sum c_i\, s s^\top + \lambda I\Big)^{-1}
        \Big(\sum c_i\, s a^\top + \lambda K_{\text{prior}}^\top\Big), \qquad
        \lambda = \text{ridge} \cdot \operatorname{tr}\Big(\sum c_i\, s s^\top\Big) / n,

    (the ridge is relative, so the fit does not depend on the scale of the
    weights). With ``fit_std`` the std of each action dimension is the weighted
    root mean square residual (at least ``min_std``); otherwise the behavioural
    policy keeps the target's ``std``: a choice, stated. With every weight zero
    the fit returns ``prior_gain`` and ``std``.

    Parameters
    ----------
    trajectories : Trajectories
        On-policy trajectories (of the target), T steps of B trajectories.
    weights : array [B], non-negative
        :math:`c_i`, e.g. :func:`behaviour_weights`.
    std : float > 0 or array [m]
        The target's std (kept, or the fallback).
    fit_std : bool
    ridge : float >= 0
    prior_gain : array [m, n] or None
    min_std : float > 0

    Returns
    -------
    BehaviourFit(gain [m, n], std [m])
    """
    trajectories = _check_trajectories(trajectories)
    n, m = trajectories.states.shape[-1], trajectories.actions.shape[-1]
    B = trajectories.n_trajectories
    weights = _checks.as_float_array(weights, "weights", ndim=1, shape_doc="[B]")
    if weights.shape != (B,):
        raise ValueError(f"weights must have shape [B] = ({B},) (one per trajectory), "
                         f"got {_checks._shape_str(weights.shape)}")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("weights must be finite and non-negative")
    stds, _ = _check_std(std, m)
    if not isinstance(fit_std, (bool, np.bool_)):
        raise ValueError(f"fit_std must be True or False, got {fit_std!r}")
    ridge = _checks.check_nonnegative(ridge, "ridge")
    prior = np.zeros((m, n)) if prior_gain is None else _check_gain(prior_gain, m, n)
    min_std = _checks.check_nonnegative(min_std, "min_std")
    if not min_std > 0:
        raise ValueError("min_std must be positive")
    return _fit_behaviour(trajectories.states, trajectories.actions, trajectories.alive,
                          weights, stds, bool(fit_std), ridge, prior, min_std)


def _kl_from_optimal(log_p, log_q, weights) -> float:
    """No checks: log-densities [N] and weights [N] >= 0, not all zero."""
    drawn = weights > 0
    c = weights[drawn]
    # [book:kl-from-optimal]
    shares = c / c.sum()                                   # c_i / sum_j c_j
    log_ratio = (log_p[drawn] - log_q[drawn]               # log q*(tau) / q~(tau)
                 + np.log(c) - np.log(weights.mean()))
    return float(shares @ log_ratio)
    # [/book:kl-from-optimal]


def kl_from_optimal(target_log_densities, behaviour_log_densities, weights) -> float:
    r"""Estimate :math:`\mathrm{KL}(q^* \,\|\, \tilde p)` from on-policy trajectories.

    With :math:`q^* = p\, c / Z`, :math:`Z = \mathbb E_p[c]`:

    .. math:: \mathrm{KL}(q^* \| \tilde p) = \mathbb E_p\Big[\frac cZ
        \Big(\log \frac{p}{\tilde p} + \log c - \log Z\Big)\Big]
        \approx \sum_i \frac{c_i}{\sum_j c_j}
        \Big(\log \frac{p(\tau_i)}{\tilde p(\tau_i)} + \log c_i - \log \bar c\Big),

    :math:`\tau_i \sim p`, :math:`\bar c` the mean weight (a self-normalised
    estimate: consistent, biased at finite N; it can come out negative).
    Computed on the trajectories the fit used, it is optimistic (the fit
    adapted to them): :func:`cross_fitted_kl` evaluates on held-out ones.
    Trajectories with :math:`c_i = 0` contribute 0.

    Parameters
    ----------
    target_log_densities : array [N]
        :math:`\log p(\tau_i)` (sums of the target's per-step log-probabilities).
    behaviour_log_densities : array [N]
        :math:`\log \tilde p(\tau_i)` of the fitted behavioural policy.
    weights : array [N], non-negative, not all zero
        :math:`c_i`.

    Returns
    -------
    float
    """
    log_p = _checks.as_float_array(target_log_densities, "target_log_densities", ndim=1,
                                   shape_doc="[N]")
    log_q = _checks.as_float_array(behaviour_log_densities, "behaviour_log_densities",
                                   ndim=1, shape_doc="[N]")
    weights = _checks.as_float_array(weights, "weights", ndim=1, shape_doc="[N]")
    _checks.check_same_shape("target_log_densities", log_p,
                             "behaviour_log_densities", log_q)
    _checks.check_same_shape("target_log_densities", log_p, "weights", weights)
    if not (np.isfinite(log_p).all() and np.isfinite(log_q).all()):
        raise ValueError("log-densities must be finite")
    if not np.isfinite(weights).all() or (weights < 0).any() or not (weights > 0).any():
        raise ValueError("weights must be finite, non-negative and not all zero")
    return _kl_from_optimal(log_p, log_q, weights)


def _select(trajectories: Trajectories, index) -> Trajectories:
    """The trajectories ``index`` (an index array over B) of a batch."""
    tr = trajectories
    return Trajectories(states=tr.states[:, index], actions=tr.actions[:, index],
                        rewards=tr.rewards[:, index], alive=tr.alive[:, index],
                        log_probs=tr.log_probs[:, index], scores=tr.scores[:, index],
                        final_states=tr.final_states[index])


def _in_sample_kl(on_policy, fit, c) -> float:
    """KL(q* || fit) on the fitting trajectories; NaN when every weight is 0."""
    if not c.any():
        return math.nan
    log_q = _log_probs(fit.gain, fit.std, on_policy.states, on_policy.actions,
                       on_policy.alive).sum(axis=0)
    return _kl_from_optimal(on_policy.log_probs.sum(axis=0), log_q, c)


def _cross_fit_kl(on_policy, c, stds, fit_std, ridge, prior, min_std) -> float:
    """Fit on each half, estimate on the other, average (no checks; B >= 2)."""
    half = on_policy.n_trajectories // 2
    folds = (np.arange(half), np.arange(half, on_policy.n_trajectories))
    estimates = []
    for fitted, held_out in (folds, folds[::-1]):
        if c[fitted].any() and c[held_out].any():
            part = _select(on_policy, fitted)
            fit = _fit_behaviour(part.states, part.actions, part.alive, c[fitted], stds,
                                 fit_std, ridge, prior, min_std)
            estimates.append(_in_sample_kl(_select(on_policy, held_out), fit,
                                           c[held_out]))
    return float(np.mean(estimates)) if estimates else math.nan


def cross_fitted_kl(trajectories, weights, std, *, fit_std: bool = False,
                    ridge: float = 1e-6, prior_gain=None,
                    min_std: float = 1e-6) -> float:
    r"""A held-out estimate of :math:`\mathrm{KL}(q^* \| \tilde p)`, by cross-fitting.

    The B trajectories are split in halves (the first B // 2 and the rest);
    :func:`fit_behaviour` is fitted on each half and :func:`kl_from_optimal`
    evaluated on the other; the two estimates are averaged.

    Why: estimated on the trajectories it was fitted to, the KL is
    optimistic. The fit maximises :math:`\sum_i c_i \log \tilde p(\tau_i)`, so
    on those trajectories :math:`\tilde p` looks closer to :math:`q^*` than it
    is; with few trajectories the in-sample estimate is often negative, and the
    rule :func:`beta_from_kl` then drops the defensive share to 0 exactly when
    the fit is least reliable. The held-out estimate judges each fit on
    trajectories it has not seen; it is of a fit on half the data, which is
    worse than the fit on all of it, so where it errs it tends to err high,
    towards a larger beta: the safe direction for a defensive share. (The
    tests measure both biases against the KL of each fit on 50 000
    independent trajectories.)

    Parameters
    ----------
    trajectories : Trajectories
        On-policy trajectories of the target, B >= 2.
    weights, std, fit_std, ridge, prior_gain, min_std : as in :func:`fit_behaviour`

    Returns
    -------
    float (NaN when a half has no positive weight to fit or to evaluate)
    """
    trajectories = _check_trajectories(trajectories)
    if trajectories.n_trajectories < 2:
        raise ValueError("cross-fitting needs at least 2 trajectories")
    fit_behaviour(trajectories, weights, std, fit_std=fit_std, ridge=ridge,
                  prior_gain=prior_gain, min_std=min_std)              # checks the rest
    n, m = trajectories.states.shape[-1], trajectories.actions.shape[-1]
    prior = np.zeros((m, n)) if prior_gain is None else _check_gain(prior_gain, m, n)
    return _cross_fit_kl(trajectories, np.asarray(weights, dtype=float),
                         _check_std(std, m)[0], bool(fit_std), float(ridge), prior,
                         float(min_std))


def _kl_estimate(how, on_policy, fit, c, stds, fit_std, ridge, prior) -> float:
    if how == "in-sample":
        return _in_sample_kl(on_policy, fit, c)
    return _cross_fit_kl(on_policy, c, stds, fit_std, ridge, prior, 1e-6)


def _beta_from_kl(kl: float) -> float:
    # [book:beta-rule]
    eps = min(max(kl, 0.0), 1.0)                     # the rule holds for eps_KL <= 1
    return math.sqrt(eps / (2.0 - eps))              # = 1 at eps_KL = 1, and beyond
    # [/book:beta-rule]


def beta_from_kl(kl: float) -> float:
    r"""The defensive share :math:`\beta = \sqrt{\epsilon / (2 - \epsilon)}`, from a KL.

    The rule the summary of Papini et al. (arXiv:2405.05630) states for
    :math:`\epsilon = \mathrm{KL}(q^* \| \tilde p) \le 1` (taken from there,
    not derived here). It is 0 at :math:`\epsilon = 0` (a perfect fit needs no
    defence) and reaches 1 at :math:`\epsilon = 1`; beyond, the fit is judged
    too poor and :math:`\beta = 1` (on-policy sampling), which continues the
    rule. A negative estimate (sampling noise) counts as 0.

    Parameters
    ----------
    kl : float (not NaN)

    Returns
    -------
    float in [0, 1]
    """
    if isinstance(kl, bool) or not isinstance(kl, numbers.Real) or math.isnan(kl):
        raise ValueError(f"kl must be a number (not NaN), got {kl!r}")
    return _beta_from_kl(float(kl))


# ------------------------------------------------------------------ training loops

@dataclass
class LearningCurve:
    """What a training run did, on an x axis of trajectories used.

    Entry k of the ``[K + 1]`` arrays is the state after k iterations (entry 0
    the initial gain); entry k of the ``[K]`` arrays describes iteration k + 1.

    - ``algorithm``: ``"gpomdp"``, ``"bpo"`` or ``"storm"``.
    - ``trajectories`` [K + 1]: trajectories drawn for learning so far (BPO's
      fitting trajectories and STORM's first batch included; evaluation ones not).
    - ``gains`` [K + 1, m, n].
    - ``exact_returns`` [K + 1] or None: :math:`J` of each gain, when the
      environment has ``exact_return`` (the LQ problem).
    - ``eval_returns`` [K + 1] or None: mean discounted return of ``n_eval``
      fresh trajectories of each gain, not counted (when ``n_eval > 0``).
    - ``batch_returns`` [K]: mean discounted return of the on-policy
      trajectories drawn in the iteration (BPO's fitting ones).
    - ``grad_norms`` [K]: norm of the gradient estimate of the step.
    - ``betas``, ``kls`` [K]: BPO's defensive share and KL estimate (NaN for
      the others).
    - ``wall_time`` [K + 1]: seconds since the start.
    - ``diverged``: True when a gradient, a gain or (LQ) its exact return stopped
      being finite; the run then ends early, without recording that step.
    """

    algorithm: str
    trajectories: np.ndarray
    gains: np.ndarray
    exact_returns: np.ndarray | None
    eval_returns: np.ndarray | None
    batch_returns: np.ndarray
    grad_norms: np.ndarray
    betas: np.ndarray
    kls: np.ndarray
    wall_time: np.ndarray
    diverged: bool = False
    options: dict = field(default_factory=dict, repr=False)

    @property
    def final_gain(self) -> np.ndarray:
        """The last gain, [m, n]."""
        return self.gains[-1]

    def at(self, trajectories, which: str = "exact_returns") -> np.ndarray:
        """Values of ``which`` (a [K + 1] field) at given numbers of trajectories used.

        The value at x is that of the last gain reached with at most x
        trajectories (a step function), so that runs with different batch
        sizes can be averaged on one grid. NaN before any value and after a
        divergence.

        Parameters
        ----------
        trajectories : array [X]
        which : ``"exact_returns"`` or ``"eval_returns"``

        Returns
        -------
        array [X]
        """
        _check_choice(which, "which", ("exact_returns", "eval_returns"))
        values = getattr(self, which)
        if values is None:
            raise ValueError(f"this run has no {which} (see LearningCurve)")
        x = _checks.as_float_array(trajectories, "trajectories", ndim=1,
                                   shape_doc="[X]")
        index = np.searchsorted(self.trajectories, x, side="right") - 1
        out = np.where(index >= 0, values[np.clip(index, 0, None)], np.nan)
        if self.diverged:
            out = np.where(x > self.trajectories[-1], np.nan, out)
        return out


def _make_optimizer(optimizer, step_size):
    if optimizer in (None, "sgd"):
        return GradientAscent(step_size)
    if optimizer == "adam":
        return Adam(step_size)
    if hasattr(optimizer, "step"):
        return optimizer
    raise ValueError(f"optimizer must be 'sgd', 'adam' or an object with "
                     f"step(theta, grad), got {optimizer!r}")


class _Run:
    """Shared checks and bookkeeping of the three loops."""

    def __init__(self, algorithm, env, gain, std, rng, n_trajectories, batch_size,
                 step_size, optimizer, max_grad_norm, n_eval, progress, options):
        for attr in ("state_dim", "action_dim", "horizon", "gamma", "_initial_states",
                     "_step"):
            if not hasattr(env, attr):
                raise ValueError(f"env must be a pgkit.envs environment "
                                 f"(LinearQuadratic, ContinuousCartPole); "
                                 f"it has no {attr!r}")
        self.env, self.algorithm = env, algorithm
        self.rng = _checks.check_rng(rng)
        self.shape = (env.action_dim, env.state_dim)
        self.gain = _check_gain(gain, *self.shape).copy()
        self.stds, _ = _check_std(std, env.action_dim)
        self.budget = _checks.check_positive_int(n_trajectories, "n_trajectories")
        self.batch_size = _checks.check_positive_int(batch_size, "batch_size")
        step_size = _checks.check_nonnegative(step_size, "step_size")
        self.optimizer = _make_optimizer(optimizer, step_size)
        if max_grad_norm is not None:
            max_grad_norm = _checks.check_nonnegative(max_grad_norm, "max_grad_norm")
            if not 0 < max_grad_norm < np.inf:
                raise ValueError(f"max_grad_norm must be positive and finite, or None, "
                                 f"got {max_grad_norm}")
        self.max_grad_norm = max_grad_norm
        self.n_eval = _checks.check_positive_int(n_eval, "n_eval", minimum=0)
        if not isinstance(progress, (bool, np.bool_)):
            raise ValueError(f"progress must be True or False, got {progress!r}")
        self.progress = bool(progress)
        self.options = dict(options, batch_size=self.batch_size, step_size=step_size,
                            n_trajectories=self.budget)
        self.eval_rng = self.rng.spawn(1)[0]             # does not advance rng
        self.exact = getattr(env, "exact_return", None)
        self.used = 0
        self.diverged = False
        self.rows = {k: [] for k in ("batch_returns", "grad_norms", "betas", "kls")}
        self.points = {k: [] for k in ("trajectories", "gains", "exact_returns",
                                       "eval_returns", "wall_time")}
        self.start = time.perf_counter()
        self._record_point()

    @property
    def theta(self) -> np.ndarray:
        return self.gain.ravel()

    def rollout(self, n, gain=None, stds=None) -> Trajectories:
        gain = self.gain if gain is None else gain
        stds = self.stds if stds is None else stds
        self.used += n
        return _rollout(self.env, gain, stds, n, self.rng)

    def fits(self, cost: int) -> bool:
        return not self.diverged and self.used + cost <= self.budget

    def step(self, grad, batch_returns, beta=math.nan, kl=math.nan) -> None:
        """Ascend along ``grad``; a non-finite gradient, gain or exact return ends
        the run (``diverged``), and that step is not recorded."""
        if self.max_grad_norm is not None and np.isfinite(grad).all():
            grad = _clip_grad_norm(grad, self.max_grad_norm)[0]
        norm = float(np.linalg.norm(grad))
        theta = self.optimizer.step(self.theta, grad) if np.isfinite(norm) else None
        if theta is None or not np.isfinite(theta).all() or not np.isfinite(
                self._exact(theta.reshape(self.shape))):
            self.diverged = True
            return
        self.gain = theta.reshape(self.shape)
        for key, value in (("batch_returns", batch_returns), ("grad_norms", norm),
                           ("betas", beta), ("kls", kl)):
            self.rows[key].append(value)
        self._record_point()
        k = len(self.rows["grad_norms"])
        if self.progress and k % 10 == 0:
            last = self.points["exact_returns"][-1]
            shown = last if last is not None else batch_returns
            print(f"{self.algorithm}: iteration {k}, {self.used} trajectories, "
                  f"return {shown:.4g}, |grad| {norm:.3g}")

    def _exact(self, gain) -> float:
        """J of ``gain`` when the environment has it (-inf on overflow), else 0."""
        if self.exact is None:
            return 0.0
        with np.errstate(over="ignore", invalid="ignore"):
            value = self.exact(gain, self.stds)
        return value if np.isfinite(value) else -math.inf

    def _record_point(self) -> None:
        self.points["trajectories"].append(self.used)
        self.points["gains"].append(self.gain.copy())
        self.points["exact_returns"].append(self._exact(self.gain))
        if self.n_eval:
            evaluation = _rollout(self.env, self.gain, self.stds, self.n_eval,
                                  self.eval_rng)
            self.points["eval_returns"].append(
                float(evaluation.discounted_returns(self.env.gamma).mean()))
        self.points["wall_time"].append(time.perf_counter() - self.start)

    def curve(self) -> LearningCurve:
        p = self.points
        return LearningCurve(
            algorithm=self.algorithm,
            trajectories=np.asarray(p["trajectories"], dtype=np.int64),
            gains=np.asarray(p["gains"]),
            exact_returns=(np.asarray(p["exact_returns"], dtype=float)
                           if self.exact is not None else None),
            eval_returns=(np.asarray(p["eval_returns"], dtype=float)
                          if self.n_eval else None),
            wall_time=np.asarray(p["wall_time"], dtype=float),
            diverged=self.diverged, options=self.options,
            **{k: np.asarray(v, dtype=float) for k, v in self.rows.items()})


def _check_estimator_options(estimator, weighting):
    _check_choice(estimator, "estimator", ("gpomdp", "reinforce"))
    if weighting is not None:
        _check_choice(weighting, "weighting", ("per-decision", "trajectory"))
        if estimator == "reinforce" and weighting == "per-decision":
            raise ValueError("REINFORCE takes whole-trajectory weights: use "
                             "weighting='trajectory' with estimator='reinforce'")


def train_gpomdp(env, gain, std, rng: np.random.Generator, *, n_trajectories: int,
                 batch_size: int = 10, estimator: str = "gpomdp",
                 step_size: float = 0.01, optimizer="sgd", max_grad_norm=None,
                 n_eval: int = 0, progress: bool = False) -> LearningCurve:
    r"""On-policy policy gradient: N fresh trajectories and a GPOMDP step per iteration.

    .. math:: K \leftarrow K + \eta\, \frac1N \sum_{i=1}^N g_K(\tau_i),
        \qquad \tau_i \sim p_K

    Baxter & Bartlett (2001). Costs N = ``batch_size`` trajectories per
    iteration; runs while the next iteration fits in ``n_trajectories``. The
    parameters below are shared by :func:`train_bpo` and :func:`train_storm`.

    Parameters
    ----------
    env : LinearQuadratic or ContinuousCartPole
    gain : array [m, n]
        The initial gain K.
    std : float > 0 or array [m]
        The policy's std, fixed during learning.
    rng : np.random.Generator
    n_trajectories : int
        The budget of trajectories.
    batch_size : int
        N (N_PG for BPO): trajectories per gradient estimate.
    estimator : ``"gpomdp"`` or ``"reinforce"``
    step_size : float >= 0
        :math:`\eta` (the only hyperparameter of plain ascent; Adam's rate).
    optimizer : ``"sgd"`` (fixed step), ``"adam"`` (:class:`pgkit.optim.Adam`), or
        an object with ``step(theta, grad)`` (one per run: it keeps state).
    max_grad_norm : float or None
        Clip each gradient estimate to this norm (None: no clipping).
    n_eval : int >= 0
        Fresh trajectories per gain for ``eval_returns`` (not counted, drawn
        from a generator spawned from ``rng``, so they do not change the run).
    progress : bool
        Print every tenth iteration.

    Returns
    -------
    LearningCurve
    """
    _check_estimator_options(estimator, None)
    run = _Run("gpomdp", env, gain, std, rng, n_trajectories, batch_size, step_size,
               optimizer, max_grad_norm, n_eval, progress, {"estimator": estimator})
    N, gamma = run.batch_size, env.gamma
    zeros = np.zeros(N)
    while run.fits(N):
        batch = run.rollout(N)
        grads = _estimate(estimator, batch.scores, batch.rewards, gamma, zeros)
        run.step(grads.mean(axis=0), float(batch.discounted_returns(gamma).mean()))
    return run.curve()


def _draw_defensive(run, fit, beta, n, sampling):
    """Trajectories from the defensive mixture; returns (batch, counts or None)."""
    if sampling == "mixture":
        from_behaviour = sample_mixture_components([beta, 1.0 - beta], n, run.rng) == 1
        counts = None
    else:
        n_target = int(round(beta * n))
        from_behaviour = np.arange(n) >= n_target
        counts = np.array([n_target, n - n_target])
    gains = np.where(from_behaviour[:, None, None], fit.gain, run.gain)   # [N, m, n]
    stds = np.where(from_behaviour[:, None], fit.std, run.stds)           # [N, m]
    return run.rollout(n, gains, stds), counts


def _bpo_gradient(run, batch, fit, beta, counts, weighting, estimator):
    """The defensive estimate per trajectory [N, P] (no checks)."""
    states, actions, alive = batch.states, batch.actions, batch.alive
    # [book:bpo-defensive-estimate]
    log_p = _log_probs(run.gain, run.stds, states, actions, alive)  # target, per step
    log_q = _log_probs(fit.gain, fit.std, states, actions, alive)   # behaviour
    log_w = _defensive_log_weights(log_p, log_q, beta if counts is None else None,
                                   counts, weighting == "per-decision")
    scores = _scores(run.gain, run.stds, states, actions, alive)    # target's scores
    return _estimate(estimator, scores, batch.rewards, run.env.gamma, log_w)
    # [/book:bpo-defensive-estimate]


def train_bpo(env, gain, std, rng: np.random.Generator, *, n_trajectories: int,
              batch_size: int = 10, n_bpo: int = 10, beta="rule",
              sampling: str = "mixture", weighting: str = "per-decision",
              fit_std: bool = False, ridge: float = 1e-6, power: float = 1.0,
              kl_estimate: str = "cross-fit", estimator: str = "gpomdp",
              step_size: float = 0.01, optimizer="sgd", max_grad_norm=None,
              n_eval: int = 0, progress: bool = False) -> LearningCurve:
    r"""Behavioural policy optimisation (Papini et al., arXiv:2405.05630), rebuilt.

    Each iteration

    1. draws :math:`N_{\text{BPO}}` = ``n_bpo`` trajectories of the target
       :math:`\pi_K` and their gradients :math:`g_i`;
    2. fits the behavioural policy by cross-entropy with weights
       :math:`c_i = \lVert g_i \rVert^{\text{power}}` (:func:`fit_behaviour`);
    3. estimates :math:`\epsilon = \mathrm{KL}(q^* \| \tilde p)` from the same
       trajectories, held out by cross-fitting (:func:`cross_fitted_kl`, the
       default) or in-sample (:func:`kl_from_optimal`), and, with
       ``beta="rule"``, sets :math:`\beta` by :func:`beta_from_kl` (1 when the
       estimate is undefined: no positive weight);
    4. draws :math:`N_{\text{PG}}` = ``batch_size`` trajectories from the
       defensive mixture :math:`\beta p_K + (1 - \beta) p_{\tilde K}` (``sampling``
       ``"mixture"``: i.i.d. per trajectory; ``"split"``: round(beta N) of the
       target, the rest of the behaviour, with the balance heuristic);
    5. steps along the defensive estimate (:func:`defensive_trajectory_log_weights`
       with ``weighting`` ``"per-decision"`` or ``"trajectory"``).

    The fitting trajectories serve only the fit, so the behavioural policy
    does not depend on the trajectories of the estimate (which keeps it
    unbiased). Costs :math:`N_{\text{BPO}} + N_{\text{PG}}` trajectories per
    iteration, all counted. Other parameters as in :func:`train_gpomdp`.

    Parameters
    ----------
    n_bpo : int >= 1 (>= 2 for the cross-fitted KL)
    beta : float in [0, 1] or ``"rule"``
    sampling : ``"mixture"`` or ``"split"``
    weighting : ``"per-decision"`` or ``"trajectory"``
    fit_std : bool
        Fit the behavioural std too (otherwise it is the target's).
    ridge : float >= 0
        Relative ridge of the fit, towards the current gain.
    power : float >= 0
        Exponent of the cross-entropy weights (1: the minimum-variance sampler).
    kl_estimate : ``"cross-fit"`` or ``"in-sample"``
        How the KL is estimated (it is recorded whatever ``beta`` is).

    Returns
    -------
    LearningCurve (with ``betas`` and ``kls``)
    """
    _check_estimator_options(estimator, weighting)
    _check_choice(sampling, "sampling", ("mixture", "split"))
    if not (isinstance(beta, str) and beta == "rule"):
        if isinstance(beta, str):
            raise ValueError(f"beta must be a number in [0, 1] or 'rule', got {beta!r}")
        beta = _checks.check_discount(beta, "beta")
    if not isinstance(fit_std, (bool, np.bool_)):
        raise ValueError(f"fit_std must be True or False, got {fit_std!r}")
    ridge = _checks.check_nonnegative(ridge, "ridge")
    power = _checks.check_nonnegative(power, "power")
    _check_choice(kl_estimate, "kl_estimate", ("cross-fit", "in-sample"))
    options = dict(n_bpo=n_bpo, beta=beta, sampling=sampling, weighting=weighting,
                   fit_std=bool(fit_std), ridge=ridge, power=power,
                   kl_estimate=kl_estimate, estimator=estimator)
    run = _Run("bpo", env, gain, std, rng, n_trajectories, batch_size, step_size,
               optimizer, max_grad_norm, n_eval, progress, options)
    n_bpo = _checks.check_positive_int(n_bpo, "n_bpo",
                                       minimum=2 if kl_estimate == "cross-fit" else 1)
    N, gamma = run.batch_size, env.gamma
    zeros = np.zeros(n_bpo)
    while run.fits(n_bpo + N):
        # [book:bpo-iteration]
        on_policy = run.rollout(n_bpo)                              # tau_i ~ p_K
        grads = _estimate(estimator, on_policy.scores, on_policy.rewards, gamma, zeros)
        c = np.linalg.norm(grads, axis=1) ** power                  # ||g_i||
        fit = _fit_behaviour(on_policy.states, on_policy.actions, on_policy.alive, c,
                             run.stds, fit_std, ridge, run.gain, 1e-6)
        kl = _kl_estimate(kl_estimate, on_policy, fit, c,           # KL(q* || q~)
                          run.stds, fit_std, ridge, run.gain)
        b = (1.0 if math.isnan(kl) else _beta_from_kl(kl)) if beta == "rule" else beta
        batch, counts = _draw_defensive(run, fit, b, N, sampling)  # the mixture
        grads = _bpo_gradient(run, batch, fit, b, counts, weighting, estimator)
        # [/book:bpo-iteration]
        run.step(grads.mean(axis=0), float(on_policy.discounted_returns(gamma).mean()),
                 b, kl)
    return run.curve()


def train_storm(env, gain, std, rng: np.random.Generator, *, n_trajectories: int,
                batch_size: int = 10, init_batch_size=None, alpha: float = 0.9,
                weighting: str = "trajectory", estimator: str = "gpomdp",
                step_size: float = 0.01, optimizer="sgd", max_grad_norm=None,
                n_eval: int = 0, progress: bool = False) -> LearningCurve:
    r"""STORM-PG (Yuan, Lian, Liu & Zhou, arXiv:2003.04302): recursive momentum.

    .. math::

        u_0 &= \hat g(\theta_0) \quad (N_0 \text{ trajectories}),\\
        u_t &= \hat g_{\mathcal B_t}(\theta_t) + (1 - \alpha)\big(u_{t-1}
        - \hat g^{w}_{\mathcal B_t}(\theta_{t-1})\big), \qquad
        \theta_{t+1} = \theta_t + \eta\, u_t,

    where :math:`\mathcal B_t` are N fresh trajectories of :math:`\theta_t` and
    :math:`\hat g^{w}_{\mathcal B_t}(\theta_{t-1})` is the gradient at the
    previous parameters estimated on them with importance weights
    :math:`p_{\theta_{t-1}}(\tau) / p_{\theta_t}(\tau)` (whole-trajectory or
    per-decision, ``weighting``), in log space. :math:`\alpha = 1` is plain
    GPOMDP; the correction makes :math:`u_t` a low-variance (biased, with a
    vanishing bias as steps shrink) estimate of :math:`\nabla J(\theta_t)`.
    Costs :math:`N_0` = ``init_batch_size`` (default ``10 * batch_size``)
    trajectories first, then N per iteration. Other parameters as in
    :func:`train_gpomdp`.

    Parameters
    ----------
    init_batch_size : int or None
    alpha : float in [0, 1]
    weighting : ``"trajectory"`` or ``"per-decision"``

    Returns
    -------
    LearningCurve
    """
    _check_estimator_options(estimator, weighting)
    alpha = _checks.check_discount(alpha, "alpha")
    if init_batch_size is None:
        init_batch_size = 10 * _checks.check_positive_int(batch_size, "batch_size")
    init_batch_size = _checks.check_positive_int(init_batch_size, "init_batch_size")
    options = dict(init_batch_size=init_batch_size, alpha=alpha, weighting=weighting,
                   estimator=estimator)
    run = _Run("storm", env, gain, std, rng, n_trajectories, batch_size, step_size,
               optimizer, max_grad_norm, n_eval, progress, options)
    N, gamma = run.batch_size, env.gamma
    u = old_gain = None
    while run.fits(init_batch_size if u is None else N):
        if u is None:
            batch = run.rollout(init_batch_size)
            u = _estimate(estimator, batch.scores, batch.rewards, gamma,
                          np.zeros(init_batch_size)).mean(axis=0)
        else:
            batch = run.rollout(N)
            fresh = _estimate(estimator, batch.scores, batch.rewards, gamma,
                              np.zeros(N))
            s, a, alive = batch.states, batch.actions, batch.alive
            # [book:storm-update]
            log_rhos = _log_probs(old_gain, run.stds, s, a, alive) - batch.log_probs
            log_w = (np.cumsum(log_rhos, axis=0) if weighting == "per-decision"
                     else log_rhos.sum(axis=0))                 # log p_old / p_new
            old_scores = _scores(old_gain, run.stds, s, a, alive)
            old = _estimate(estimator, old_scores, batch.rewards, gamma, log_w)
            u = fresh.mean(axis=0) + (1.0 - alpha) * (u - old.mean(axis=0))
            # [/book:storm-update]
        old_gain = run.gain.copy()
        run.step(u, float(batch.discounted_returns(gamma).mean()))
    return run.curve()


_LOOPS = {"gpomdp": train_gpomdp, "bpo": train_bpo, "storm": train_storm}


def train_algorithm(algorithm: str, env, gain, std, rng: np.random.Generator,
                    **options) -> LearningCurve:
    """``train_<algorithm>(env, gain, std, rng, **options)`` for algorithm in
    ``"gpomdp"``, ``"bpo"``, ``"storm"``: one entry point for sweeps."""
    _check_choice(algorithm, "algorithm", tuple(_LOOPS))
    return _LOOPS[algorithm](env, gain, std, rng, **options)


def train_from_seed(algorithm: str, env, gain, std, seed: int,
                    **options) -> LearningCurve:
    """:func:`train_algorithm` with ``rng = np.random.default_rng(seed)``.

    A module-level function, so a picklable task for :func:`sweep`.
    """
    seed = _checks.check_positive_int(seed, "seed", minimum=0)
    return train_algorithm(algorithm, env, gain, std, np.random.default_rng(seed),
                           **options)


# ------------------------------------------------------------------ sweeps

def sweep(task, settings, seeds, *, n_jobs: int = 1, backend=None,
          verbose: int = 0) -> list:
    """Run ``task(seed=seed, **setting)`` for every setting and seed.

    With ``n_jobs=1`` and no ``backend`` (the default) the runs go one after
    another in this process, and joblib is not imported. Otherwise they go
    through ``joblib.Parallel(n_jobs=n_jobs, backend=backend)``: ``n_jobs=-1``
    uses every local core; ``backend="dask"`` or ``"ray"`` (after registering
    it, e.g. ``with joblib.parallel_config(backend="dask"):`` and a
    ``dask.distributed.Client``) sends them to a cluster. ``task`` and the
    settings must be picklable for other processes (module-level functions
    such as :func:`train_from_seed`). Results do not depend on ``n_jobs``:
    every run has its own seed.

    Parameters
    ----------
    task : callable ``task(seed=..., **setting)``
    settings : sequence of dicts
    seeds : sequence of ints
    n_jobs : int (joblib's meaning: -1 for every core)
    backend : str or None
    verbose : int
        Passed to joblib.

    Returns
    -------
    list of lists: ``results[i][j]`` is the run of ``settings[i]`` with ``seeds[j]``.
    """
    if not callable(task):
        raise ValueError(f"task must be callable, got {type(task).__name__}")
    settings = list(settings)
    if not all(isinstance(s, dict) for s in settings):
        raise ValueError("settings must be a sequence of dicts "
                         "(keyword arguments of task)")
    seeds = [_checks.check_positive_int(s, "seed", minimum=0) for s in seeds]
    if (isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral)
            or n_jobs == 0):
        raise ValueError(f"n_jobs must be a non-zero integer (-1: every core), "
                         f"got {n_jobs!r}")
    jobs = [(setting, seed) for setting in settings for seed in seeds]
    if n_jobs == 1 and backend is None:
        flat = [task(seed=seed, **setting) for setting, seed in jobs]
    else:
        import joblib                         # optional: only for parallel sweeps

        parallel = joblib.Parallel(n_jobs=n_jobs, backend=backend, verbose=verbose)
        flat = parallel(joblib.delayed(task)(seed=seed, **setting)
                        for setting, seed in jobs)
    k = len(seeds)
    return [list(flat[i * k:(i + 1) * k]) for i in range(len(settings))]


# ------------------------------------------------------------------ variance study

@dataclass
class VarianceStudy:
    """Per-trajectory gradient estimates of several samplers at one policy.

    Row k of each array is the sampler ``labels[k]``: ``"on-policy"`` (GPOMDP),
    ``"ideal"`` (:math:`q^* \\propto p \\lVert g \\rVert`, its variance computed, not
    sampled: its means are NaN), then ``"beta=<b>"`` for each defensive BPO
    sampler (``"beta=rule"`` resolved in ``rule_beta``).

    - ``means`` [K, P], ``mean_ses`` [K, P]: mean of the per-trajectory
      estimates and its standard error.
    - ``variance_traces`` [K], ``variance_ses`` [K]: trace of the covariance of
      one weighted trajectory's estimate (the N-trajectory estimate has it / N)
      and its standard error.
    - ``exact_gradient`` [P] or None (LQ).
    - ``kl``, ``rule_beta``: the KL estimate of the fit and the rule's beta.
    - ``behaviour``: the fitted :class:`BehaviourFit`.
    """

    labels: list
    means: np.ndarray
    mean_ses: np.ndarray
    variance_traces: np.ndarray
    variance_ses: np.ndarray
    exact_gradient: np.ndarray | None
    kl: float
    rule_beta: float
    behaviour: BehaviourFit
    n_samples: int

    def z_scores(self) -> np.ndarray:
        """(means - exact gradient) / standard errors, [K, P] (LQ only)."""
        if self.exact_gradient is None:
            raise ValueError("this study has no exact gradient (LQ problems have one)")
        return (self.means - self.exact_gradient) / self.mean_ses


def _mean_and_variance(samples):
    """Mean [P], its SE [P], trace of the covariance and its SE, of rows [N, P]."""
    n = samples.shape[0]
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / math.sqrt(n)
    squared = np.sum((samples - mean) ** 2, axis=1) * n / (n - 1)
    return mean, se, float(squared.mean()), float(squared.std(ddof=1) / math.sqrt(n))


def gradient_variance_study(env, gain, std, rng: np.random.Generator, *,
                            n_samples: int = 1000, n_bpo: int = 100,
                            betas=(0.0, 0.4, 0.8, "rule"), sampling: str = "mixture",
                            weighting: str = "per-decision", fit_std: bool = False,
                            ridge: float = 1e-6, power: float = 1.0,
                            kl_estimate: str = "cross-fit") -> VarianceStudy:
    r"""Per-trajectory variance of on-policy GPOMDP, of the ideal sampler and of BPO's.

    1. ``n_samples`` on-policy trajectories give GPOMDP's mean and variance,
       and the ideal sampler's variance
       :math:`(\mathbb E_p \lVert g \rVert)^2 - \lVert \nabla J \rVert^2` (with the
       exact gradient when the environment has one; its standard error by the
       delta method);
    2. ``n_bpo`` *other* on-policy trajectories fit the behavioural policy
       (as in :func:`train_bpo`) and give the KL estimate and the rule's beta;
    3. for each beta, ``n_samples`` trajectories of the defensive mixture give
       the weighted estimates' mean and variance.

    Parameters
    ----------
    env, gain, std, rng : as in :func:`train_bpo`
    n_samples : int >= 2
    n_bpo : int >= 1
    betas : sequence of floats in [0, 1] or ``"rule"``
    sampling, weighting, fit_std, ridge, power, kl_estimate : as in :func:`train_bpo`

    Returns
    -------
    VarianceStudy
    """
    _check_estimator_options("gpomdp", weighting)
    _check_choice(sampling, "sampling", ("mixture", "split"))
    n_samples = _checks.check_positive_int(n_samples, "n_samples", minimum=2)
    _check_choice(kl_estimate, "kl_estimate", ("cross-fit", "in-sample"))
    n_bpo = _checks.check_positive_int(n_bpo, "n_bpo",
                                       minimum=2 if kl_estimate == "cross-fit" else 1)
    betas = list(betas)
    for b in betas:
        if not (isinstance(b, str) and b == "rule"):
            if isinstance(b, str):
                raise ValueError(f"betas must be numbers in [0, 1] or 'rule', "
                                 f"got {b!r}")
            _checks.check_discount(b, "beta")
    if not isinstance(fit_std, (bool, np.bool_)):
        raise ValueError(f"fit_std must be True or False, got {fit_std!r}")
    ridge = _checks.check_nonnegative(ridge, "ridge")
    power = _checks.check_nonnegative(power, "power")
    run = _Run("bpo", env, gain, std, rng, n_samples + n_bpo, 1, 0.0, "sgd", None, 0,
               False, {})
    gamma = env.gamma
    exact = (env.exact_gradient(run.gain, run.stds).ravel()
             if hasattr(env, "exact_gradient") else None)

    on_policy = run.rollout(n_samples)
    g = _weighted_gpomdp(on_policy.scores, on_policy.rewards, gamma,
                         np.zeros(n_samples))
    rows = [_mean_and_variance(g)]
    norms = np.linalg.norm(g, axis=1)
    mean_norm, se_norm = norms.mean(), norms.std(ddof=1) / math.sqrt(n_samples)
    target = exact if exact is not None else rows[0][0]
    rows.append((np.full(g.shape[1], np.nan), np.full(g.shape[1], np.nan),
                 float(mean_norm ** 2 - target @ target),
                 float(2 * mean_norm * se_norm)))

    fitting = run.rollout(n_bpo)
    g_fit = _weighted_gpomdp(fitting.scores, fitting.rewards, gamma, np.zeros(n_bpo))
    c = np.linalg.norm(g_fit, axis=1) ** power
    fit = _fit_behaviour(fitting.states, fitting.actions, fitting.alive, c, run.stds,
                         bool(fit_std), ridge, run.gain, 1e-6)
    kl = _kl_estimate(kl_estimate, fitting, fit, c, run.stds, bool(fit_std), ridge,
                      run.gain)
    rule_beta = _beta_from_kl(kl) if not math.isnan(kl) else 1.0
    labels = ["on-policy", "ideal"]
    for b in betas:
        value = rule_beta if b == "rule" else float(b)
        batch, counts = _draw_defensive(run, fit, value, n_samples, sampling)
        rows.append(_mean_and_variance(
            _bpo_gradient(run, batch, fit, value, counts, weighting, "gpomdp")))
        labels.append(f"beta={b}" if b == "rule" else f"beta={float(b):g}")
    return VarianceStudy(labels=labels, means=np.array([r[0] for r in rows]),
                         mean_ses=np.array([r[1] for r in rows]),
                         variance_traces=np.array([r[2] for r in rows]),
                         variance_ses=np.array([r[3] for r in rows]),
                         exact_gradient=exact, kl=kl, rule_beta=rule_beta,
                         behaviour=fit,
                         n_samples=n_samples)
