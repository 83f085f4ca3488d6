r"""On-policy policy-gradient estimators on time-major batches, and baselines.

Every estimator here is a weighted sum of scores,

.. math::

    \hat g = \frac{1}{N} \sum_{b} \sum_{t} \nabla_\theta \log \pi_\theta(a_{t,b} \mid s_{t,b})\, w_{t,b},

with N the number of episodes and the weights ``w`` [T, B] saying which estimator
it is (book chapter 1, equations ``reinforce`` and ``reward-to-go``):

=========================  ====================================================
REINFORCE                  :math:`w_t = R(\tau) - b_t`, the whole episode's return
reward-to-go (GPOMDP)      :math:`w_t = \gamma^{k_t} (G_t - b_t)`, the return from step t on
=========================  ====================================================

where :math:`k_t` is the step's index within its episode and :math:`b_t` a
baseline: zero, a constant, one number per step index h, or a learned state-value
function. A baseline keeps the estimator unbiased as long as it does not depend on
the action :math:`a_t` nor on anything sampled after it, in particular not on the
trajectories whose scores it multiplies: fit it on independent trajectories
(:func:`fit_linear_value` on an earlier batch).

References: Williams (1992); Baxter & Bartlett (2001) for GPOMDP; Sutton et al. (2000).
"""

from __future__ import annotations

import numpy as np

from pgkit import _checks
from pgkit.returns import episode_returns, reward_to_go

__all__ = [
    "steps_in_episode",
    "reinforce_weights",
    "reward_to_go_weights",
    "score_weighted_sum",
    "fit_linear_value",
    "one_hot_features",
    "polynomial_features",
]


def steps_in_episode(terminated, truncated, steps_before=None) -> np.ndarray:
    """[T, B] integers k_t: the index of each step within its episode.

    ``steps_before`` [B] counts the steps the first episode of each column had
    already taken before this batch (``Batch.steps_before``); default zero.
    """
    terminated = _checks.as_bool_array(terminated, "terminated")
    if terminated.ndim != 2:
        raise ValueError(f"terminated must have shape [T, B], got {terminated.shape}")
    truncated = _checks.as_bool_array(truncated, "truncated", shape=terminated.shape,
                                      shape_doc=f"[T, B] = {terminated.shape}")
    T, B = terminated.shape
    k = np.zeros((T, B), dtype=np.int64)
    if steps_before is not None:
        steps_before = _checks.as_int_array(steps_before, "steps_before", low=0)
        if steps_before.shape != (B,):
            raise ValueError(f"steps_before must have shape [B] = ({B},), got {steps_before.shape}")
        k[0] = steps_before
    done = terminated | truncated
    for t in range(1, T):
        k[t] = np.where(done[t - 1], 0, k[t - 1] + 1)
    return k


def _baseline_array(baseline, shape) -> np.ndarray:
    if baseline is None:
        return np.zeros(shape)
    b = _checks.as_float_array(baseline, "baseline", ndim=(0, 2), shape_doc="[T, B] or a scalar")
    if b.ndim == 2 and b.shape != shape:
        raise ValueError(f"baseline must have shape [T, B] = {shape} or be a scalar, got {b.shape}")
    return np.broadcast_to(b, shape)


def reinforce_weights(rewards, terminated, truncated, gamma: float, baseline=None) -> np.ndarray:
    r"""REINFORCE's weights :math:`w_t = R(\tau) - b_t` [T, B].

    :math:`R(\tau) = \sum_k \gamma^k r_k` is the discounted return of the step's
    whole episode (:func:`pgkit.returns.episode_returns`); every step of an
    episode gets the same return, including the rewards that came before it.
    ``baseline``: None, a scalar, or [T, B] values :math:`b_t`.
    """
    returns = episode_returns(rewards, terminated, truncated, gamma)
    # [book:reinforce-weights]
    weights = returns - _baseline_array(baseline, returns.shape)
    # [/book:reinforce-weights]
    return weights


def reward_to_go_weights(rewards, terminated, truncated, gamma: float, baseline=None,
                         steps_before=None, next_values=None,
                         discount_from_start: bool = True) -> np.ndarray:
    r"""Reward-to-go (GPOMDP) weights :math:`w_t = \gamma^{k_t} (G_t - b_t)` [T, B].

    :math:`G_t = \sum_{t' \ge t} \gamma^{t'-t} r_{t'}` is the return from step t to
    the end of its episode (:func:`pgkit.returns.reward_to_go`; ``next_values``
    completes episodes cut by truncation or by the end of the batch), and
    :math:`\gamma^{k_t}` discounts it back to the episode's first step, so that the
    estimator is unbiased for the discounted objective.

    ``discount_from_start=False`` drops :math:`\gamma^{k_t}`, as most deep-RL code
    does: the result is then not the gradient of the discounted objective, but
    weighs late steps as much as early ones (the discount only shortens the
    horizon of each step's credit).
    """
    G = reward_to_go(rewards, terminated, truncated, gamma, next_values)
    if discount_from_start:
        k = steps_in_episode(terminated, truncated, steps_before)
    else:
        k = np.zeros(G.shape, dtype=np.int64)
    # [book:reward-to-go-weights]
    weights = gamma ** k * (G - _baseline_array(baseline, G.shape))
    # [/book:reward-to-go-weights]
    return weights


def score_weighted_sum(scores, weights) -> np.ndarray:
    r""":math:`\sum_t \nabla \log \pi(a_t \mid s_t)\, w_t` for each column: [B, P].

    ``scores`` [T, B, P] (``policy.score(theta, observations, actions)``),
    ``weights`` [T, B]. Divide the sum over columns by the number of episodes for
    the gradient estimate; with one episode per column, the rows of the result are
    independent per-episode estimates whose mean and standard error can be taken.
    """
    scores = _checks.as_float_array(scores, "scores", ndim=3, shape_doc="[T, B, P]")
    weights = _checks.as_float_array(weights, "weights", ndim=2, shape_doc="[T, B]")
    if weights.shape != scores.shape[:2]:
        raise ValueError(f"weights must have shape [T, B] = {scores.shape[:2]}, got {weights.shape}")
    # [book:score-weighted-sum]
    return np.einsum("tbp,tb->bp", scores, weights)
    # [/book:score-weighted-sum]


def one_hot_features(indices, n: int) -> np.ndarray:
    """One-hot rows ``[*shape, n]`` for integer ``indices`` ``[*shape]`` in [0, n).

    With one-hot features of the state (or of the pair (h, s)), a linear value
    function is a table and :func:`fit_linear_value` averages the targets per entry.
    """
    indices = _checks.as_int_array(indices, "indices", low=0, high=n)
    return np.eye(n)[indices]


def fit_linear_value(features, targets, ridge: float = 1e-3) -> np.ndarray:
    r"""Least-squares weights of a linear value function :math:`\hat V(s) = \phi(s)^\top w`.

    Minimises :math:`\sum_i (\phi_i^\top w - y_i)^2 + \lambda \|w\|^2` with
    ``features`` [N, d] (or [T, B, d], flattened), ``targets`` [N] (or [T, B]) and
    :math:`\lambda` = ``ridge`` >= 0. Returns ``w`` [d]; the value of new
    observations is ``features_new @ w``.
    """
    phi = _checks.as_float_array(features, "features", ndim=(2, 3), shape_doc="[N, d] or [T, B, d]")
    y = _checks.as_float_array(targets, "targets", ndim=(1, 2), shape_doc="[N] or [T, B]")
    if phi.shape[:-1] != y.shape:
        raise ValueError(f"features {phi.shape} and targets {y.shape} must agree on [N] (or [T, B])")
    ridge = _checks.check_nonnegative(ridge, "ridge")
    phi = phi.reshape(-1, phi.shape[-1])
    y = y.reshape(-1)
    d = phi.shape[1]
    return np.linalg.solve(phi.T @ phi + ridge * np.eye(d), phi.T @ y)


def polynomial_features(observations, degree: int = 2) -> np.ndarray:
    """Features ``[*batch, 1 + degree * obs_dim]``: a constant, then each observation to the powers 1..degree.

    ``observations`` ``[*batch, obs_dim]``. A small, fixed basis for a linear value
    function on continuous observations (CartPole).
    """
    obs = _checks.as_float_array(observations, "observations")
    if obs.ndim < 1:
        raise ValueError("observations must have shape [*batch, obs_dim]")
    _checks.check_positive_int(degree, "degree")
    powers = [obs ** p for p in range(1, degree + 1)]
    return np.concatenate([np.ones(obs.shape[:-1] + (1,))] + powers, axis=-1)
