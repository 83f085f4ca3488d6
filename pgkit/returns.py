r"""Discounted returns on time-major batches that respect both kinds of episode end.

For a column of a batch, with :math:`\gamma` the discount,
:math:`d_t` = ``terminated[t]`` and :math:`c_t` = "the episode is cut after t"
(``truncated[t]``, or t = T-1, the end of the batch):

.. math::

    G_t = r_t + \gamma (1 - d_t) \begin{cases}
        \hat V(s'_t) & \text{if } c_t \text{ (bootstrap from the true next observation)}\\
        G_{t+1} & \text{otherwise}
    \end{cases}

where :math:`\hat V(s'_t)` is ``next_values[t]`` (zero when none are given: the
return of a cut episode is then the partial sum of the rewards seen).

:func:`gae` gives generalised advantage estimates on the same batches.
"""

from __future__ import annotations

import numpy as np

from pgkit import _checks

__all__ = ["reward_to_go", "episode_returns", "episode_starts", "gae"]


def _check_batch(rewards, terminated, truncated, gamma, next_values=None):
    rewards = _checks.as_float_array(rewards, "rewards", ndim=2, shape_doc="[T, B]")
    terminated = _checks.as_bool_array(terminated, "terminated", shape=rewards.shape,
                                       shape_doc=f"[T, B] = {rewards.shape}")
    truncated = _checks.as_bool_array(truncated, "truncated", shape=rewards.shape,
                                      shape_doc=f"[T, B] = {rewards.shape}")
    gamma = _checks.check_discount(gamma)
    if next_values is not None:
        next_values = _checks.as_float_array(next_values, "next_values", ndim=2, shape_doc="[T, B]")
        _checks.check_same_shape("next_values", next_values, "rewards", rewards)
    return rewards, terminated, truncated, gamma, next_values


def reward_to_go(rewards, terminated, truncated, gamma: float, next_values=None) -> np.ndarray:
    r"""Discounted reward-to-go :math:`G_t` (module docstring) for every step.

    Parameters
    ----------
    rewards : [T, B]
    terminated, truncated : [T, B] bool
    gamma : float in [0, 1]
    next_values : [T, B], optional
        Value estimates of ``next_observations``; used only where an episode is
        cut (truncated, or still running at the end of the batch).

    Returns
    -------
    returns : [T, B]
    """
    rewards, terminated, truncated, gamma, next_values = _check_batch(
        rewards, terminated, truncated, gamma, next_values)
    T = rewards.shape[0]
    if next_values is None:
        next_values = np.zeros_like(rewards)
    cut = truncated.copy()
    cut[-1] = True
    returns = np.zeros_like(rewards)
    following = np.zeros(rewards.shape[1])
    # [book:reward-to-go]
    for t in reversed(range(T)):
        after = np.where(cut[t], next_values[t], following)
        returns[t] = rewards[t] + gamma * ~terminated[t] * after
        following = returns[t]
    # [/book:reward-to-go]
    return returns


def episode_starts(terminated, truncated) -> np.ndarray:
    """[T, B] bool: True where a step is the first of its episode within the batch.

    Step 0 counts as a start (the batch may begin mid-episode).
    """
    terminated = _checks.as_bool_array(terminated, "terminated")
    truncated = _checks.as_bool_array(truncated, "truncated", shape=terminated.shape,
                                      shape_doc=f"{terminated.shape}")
    if terminated.ndim != 2:
        raise ValueError(f"terminated must have shape [T, B], got {terminated.shape}")
    starts = np.zeros_like(terminated)
    starts[0] = True
    starts[1:] = terminated[:-1] | truncated[:-1]
    return starts


def episode_returns(rewards, terminated, truncated, gamma: float, next_values=None) -> np.ndarray:
    r"""The discounted return of each step's episode, counted from the episode's first step.

    Every step of an episode gets :math:`R(\tau) = \sum_k \gamma^k r_k` (k counted
    from the first step of the episode in the batch): the weight of REINFORCE's
    whole-trajectory estimator. ``next_values`` is used as in :func:`reward_to_go`.

    Returns
    -------
    returns : [T, B]
    """
    to_go = reward_to_go(rewards, terminated, truncated, gamma, next_values)
    starts = episode_starts(terminated, truncated)
    out = np.empty_like(to_go)
    out[0] = to_go[0]
    for t in range(1, to_go.shape[0]):
        out[t] = np.where(starts[t], to_go[t], out[t - 1])
    return out


def _as_finite(x, name: str, shape=None) -> np.ndarray:
    """A finite float [T, B] array (of the given shape, if one is given)."""
    arr = _checks.as_float_array(x, name, ndim=2, shape_doc="[T, B]")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} must have shape [T, B] = {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got an infinite value")
    return arr


def gae(rewards, values, next_values, terminated, truncated, gamma: float, lam: float) -> np.ndarray:
    r"""Generalised advantage estimates :math:`\hat A_t` for every step of a batch.

    With the TD error of step t, which bootstraps from the true next observation
    unless the episode terminated there,

    .. math::

        \delta_t = r_t + \gamma (1 - d_t) \hat V(s'_t) - \hat V(s_t),

    the estimate is :math:`\hat A_t = \sum_{k \ge 0} (\gamma\lambda)^k \delta_{t+k}`,
    the sum running to the end of t's episode *within the batch*. Computed
    backwards by

    .. math::

        \hat A_t = \delta_t + \gamma \lambda (1 - \text{done}_t) \hat A_{t+1},
        \qquad \hat A_{T-1} = \delta_{T-1},

    with done = terminated or truncated: the recursion never crosses an episode
    boundary, and the batch end (like a truncation) is handled by the bootstrap
    inside :math:`\delta`, never by carrying. :math:`\lambda = 0` gives the TD
    error; :math:`\lambda = 1` gives :func:`reward_to_go` (with ``next_values``)
    minus ``values`` whenever ``next_values[t] = values[t+1]`` inside episodes,
    as in a batch from :func:`pgkit.rollout.collect`. The value targets of PPO
    are ``gae(...) + values``. Schulman, Moritz, Levine,
    Jordan & Abbeel (2016), "High-dimensional continuous control using
    generalized advantage estimation", arXiv:1506.02438.

    Parameters
    ----------
    rewards : [T, B]
    values : [T, B]
        :math:`\hat V(s_t)`, of ``observations[t]``.
    next_values : [T, B]
        :math:`\hat V(s'_t)`, of ``next_observations[t]``: the true next
        observation (before any reset; the observation after the last step
        at t = T-1). Ignored where ``terminated``.
    terminated, truncated : [T, B] bool
    gamma, lam : float in [0, 1]

    Returns
    -------
    advantages : [T, B]
    """
    rewards = _as_finite(rewards, "rewards")
    values = _as_finite(values, "values", rewards.shape)
    next_values = _as_finite(next_values, "next_values", rewards.shape)
    shape_doc = f"[T, B] = {rewards.shape}"
    terminated = _checks.as_bool_array(terminated, "terminated", shape=rewards.shape, shape_doc=shape_doc)
    truncated = _checks.as_bool_array(truncated, "truncated", shape=rewards.shape, shape_doc=shape_doc)
    gamma = _checks.check_discount(gamma)
    lam = _checks.check_discount(lam, "lam")
    return _gae(rewards, values, next_values, terminated, truncated, gamma, lam)


def _gae(rewards, values, next_values, terminated, truncated, gamma, lam) -> np.ndarray:
    """:func:`gae` without input checks, for training loops."""
    # [book:gae-recursion]
    deltas = rewards + gamma * ~terminated * next_values - values      # TD errors delta_t
    carry = gamma * lam * ~(terminated | truncated)                    # 0 at an episode end
    advantages = np.empty_like(deltas)
    following = np.zeros(deltas.shape[1])                              # A_T = 0: nothing carried
    for t in reversed(range(deltas.shape[0])):
        following = deltas[t] + carry[t] * following
        advantages[t] = following
    # [/book:gae-recursion]
    return advantages
