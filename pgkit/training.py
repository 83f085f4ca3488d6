r"""Vanilla policy gradient, optionally with a learned state-value baseline.

Each iteration

1. collects T steps of B environments with the current policy (episodes run on
   across iterations);
2. computes per-step weights (REINFORCE or reward-to-go), subtracting a learned
   baseline :math:`\hat V(s) = \phi(s)^\top w` whose weights ``w`` were fitted on
   the *previous* batch, so that the baseline is fixed before any action of the
   current batch is drawn (the condition for a baseline to add no bias; the
   bootstrap from approximate values at cut episodes does add some, as in every
   actor-critic);
3. takes an ascent step on :math:`\hat g = \frac1B \sum_{t,b} \nabla \log\pi(a_{t,b} \mid s_{t,b})\, w_{t,b}`;
4. refits ``w`` on this batch's reward-to-go (for use on the next batch).

This is the advantage actor-critic loop of the policy gradient slides, with a
least-squares critic refitted from scratch each iteration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from pgkit import _checks
from pgkit.gradients import fit_linear_value, reinforce_weights, reward_to_go_weights, score_weighted_sum
from pgkit.optim import Adam
from pgkit.returns import reward_to_go
from pgkit.rollout import collect

__all__ = ["History", "train_policy_gradient"]


@dataclass
class History:
    """What a training run did, one entry per iteration unless said otherwise.

    - ``iteration_returns`` [n_iterations]: mean undiscounted return of the episodes
      that ended in the iteration (NaN when none did).
    - ``episode_returns`` [n_episodes], ``episode_end_steps`` [n_episodes]: every
      finished episode's return and the number of environment steps taken when it ended.
    - ``grad_norms`` [n_iterations]: the norm of each gradient estimate.
    - ``env_steps`` [n_iterations]: environment steps taken so far.
    - ``wall_time`` [n_iterations]: seconds since the start.
    - ``theta`` [n_params]: the final parameters.
    """

    iteration_returns: np.ndarray
    episode_returns: np.ndarray
    episode_end_steps: np.ndarray
    grad_norms: np.ndarray
    env_steps: np.ndarray
    wall_time: np.ndarray
    theta: np.ndarray = field(repr=False)

    def last_episodes_mean(self, n: int = 20) -> float:
        """Mean return of the last ``n`` finished episodes."""
        return float(np.mean(self.episode_returns[-n:])) if self.episode_returns.size else float("nan")


def train_policy_gradient(env, policy, theta, rng: np.random.Generator, *, n_iterations: int,
                          n_steps: int, gamma: float = 0.99, estimator: str = "reward_to_go",
                          value_features=None, ridge: float = 1e-3, optimizer=None,
                          discount_from_start: bool = True, progress: bool = False) -> History:
    """Train ``policy`` from ``theta`` by vanilla policy gradient; returns a :class:`History`.

    Parameters
    ----------
    env : vectorised environment (``TabularEnv``, ``CartPoleVecEnv``); B = ``env.num_envs``
    policy, theta : a pgkit policy and its initial parameters [n_params]
    rng : np.random.Generator
    n_iterations, n_steps : int
        Number of updates, and T, the steps per environment per update.
    gamma : float
        Discount of the returns.
    estimator : ``"reward_to_go"`` or ``"reinforce"``
    value_features : callable or None
        ``observations [..., *obs_shape] -> features [..., d]`` of a linear value
        baseline fitted on the previous batch; None for no baseline.
    ridge : float
        Ridge penalty of the value fit.
    optimizer : object with ``step(theta, grad)``; default ``Adam(0.01)``
    discount_from_start : bool
        Passed to :func:`pgkit.gradients.reward_to_go_weights`.
    progress : bool
        Print one line every tenth of the run (off by default, so tests and the
        book's build stay quiet).
    """
    n_iterations = _checks.check_positive_int(n_iterations, "n_iterations")
    _checks.check_positive_int(n_steps, "n_steps")
    _checks.check_rng(rng)
    if estimator not in ("reward_to_go", "reinforce"):
        raise ValueError(f"estimator must be 'reward_to_go' or 'reinforce', got {estimator!r}")
    if value_features is not None and not callable(value_features):
        raise ValueError("value_features must be a callable (observations -> features) or None")
    theta = policy.check_theta(theta).copy()
    optimizer = Adam(0.01) if optimizer is None else optimizer
    B = env.num_envs

    w = None
    batch = None
    history = {k: [] for k in ("iteration_returns", "grad_norms", "env_steps", "wall_time")}
    ep_returns, ep_end_steps = [], []
    start = time.perf_counter()
    for it in range(n_iterations):
        batch = collect(env, policy, theta, n_steps, rng, previous=batch)
        ends = (batch.terminated, batch.truncated)
        baseline = next_values = None
        if value_features is not None:
            feats = value_features(batch.observations)
            if w is None:
                w = np.zeros(feats.shape[-1])
            baseline = feats @ w
            next_values = value_features(batch.next_observations) @ w
        if estimator == "reinforce":
            weights = reinforce_weights(batch.rewards, *ends, gamma, baseline)
        else:
            weights = reward_to_go_weights(batch.rewards, *ends, gamma, baseline, batch.steps_before,
                                           next_values, discount_from_start)
        scores = policy.score(theta, batch.observations, batch.actions)
        grad = score_weighted_sum(scores, weights).sum(axis=0) / B
        theta = optimizer.step(theta, grad)
        if value_features is not None:           # for the NEXT batch: independent of it
            targets = reward_to_go(batch.rewards, *ends, gamma, next_values)
            w = fit_linear_value(feats, targets, ridge)

        steps_so_far = (it + 1) * n_steps * B
        history["iteration_returns"].append(batch.episode_returns.mean()
                                            if batch.episode_returns.size else np.nan)
        history["grad_norms"].append(np.linalg.norm(grad))
        history["env_steps"].append(steps_so_far)
        history["wall_time"].append(time.perf_counter() - start)
        ep_returns.extend(batch.episode_returns)
        ep_end_steps.extend([steps_so_far] * batch.episode_returns.size)
        if progress and (it + 1) % max(1, n_iterations // 10) == 0:
            print(f"iteration {it + 1:5d}/{n_iterations}: mean return "
                  f"{history['iteration_returns'][-1]:8.2f}, |grad| {history['grad_norms'][-1]:.3g}")
    return History(**{k: np.asarray(v, dtype=float) for k, v in history.items()},
                   episode_returns=np.asarray(ep_returns, dtype=float),
                   episode_end_steps=np.asarray(ep_end_steps, dtype=np.int64), theta=theta)
