"""Rollouts into time-major batches ``[T, B]``, and a vectorised tabular environment.

Episode ends are kept apart, as in Gymnasium:

* ``terminated[t, b]``: the episode ended for good at step t (the pole fell; the
  last step h = H-1 of a finite-horizon problem). Nothing follows it: the value
  after it is zero.
* ``truncated[t, b]``: the episode was cut short by a time limit on a task that
  would have gone on (CartPole's 500 steps). The value after it is *not* zero:
  bootstrap from ``next_observations[t, b]``, the true final observation, never
  from the state the environment was reset to.

Environments reset themselves in the same step (``final_obs`` in the step's
``info`` holds the true next observation), so a batch of T steps may hold several
episodes per column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pgkit import _checks
from pgkit.mdp import TabularMDP

__all__ = ["TabularEnv", "Batch", "collect"]


class TabularEnv:
    """B copies of a :class:`~pgkit.mdp.TabularMDP` behind a Gymnasium-style interface.

    Observations are state indices [B]. In a finite-horizon MDP the step
    h = H-1 is ``terminated`` (the problem ends there). In a discounted MDP
    episodes never terminate; ``max_episode_steps`` (optional) truncates them.

    ``reset(seed)`` seeds the environment's own generator, which draws the first
    states from mu and every transition after it.
    """

    observation_shape = ()

    def __init__(self, mdp: TabularMDP, num_envs: int, max_episode_steps: int | None = None):
        if not isinstance(mdp, TabularMDP):
            raise ValueError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
        self.mdp = mdp
        self.num_envs = _checks.check_positive_int(num_envs, "num_envs")
        if max_episode_steps is not None:
            _checks.check_positive_int(max_episode_steps, "max_episode_steps")
        self.max_episode_steps = max_episode_steps
        self.n_actions = mdp.n_actions
        self._cum_P = np.cumsum(mdp.transitions, axis=-1)
        self._cum_mu = np.cumsum(mdp.initial_distribution)
        self._rng = None

    def _draw(self, cum: np.ndarray) -> np.ndarray:
        u = self._rng.random(cum.shape[:-1] + (1,))
        return np.minimum((u >= cum).sum(axis=-1), cum.shape[-1] - 1)

    def reset(self, seed: int | None = None):
        """Start B new episodes; returns ``(states [B], {})``."""
        self._rng = np.random.default_rng(seed)
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._states = self._draw(np.broadcast_to(self._cum_mu, (self.num_envs, self.mdp.n_states)))
        return self._states.copy(), {}

    def step(self, actions):
        """Take one action in each copy.

        Returns ``(states, rewards, terminated, truncated, info)``, each [B];
        where an episode ended, ``states`` is the first state of the next one and
        ``info["final_obs"]`` the true next state.
        """
        if self._rng is None:
            raise ValueError("call reset() first")
        actions = _checks.as_int_array(actions, "actions", low=0, high=self.n_actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape [B] = ({self.num_envs},), got {actions.shape}")
        s = self._states
        rewards = self.mdp.rewards[s, actions]
        next_states = self._draw(self._cum_P[s, actions])
        self._steps += 1
        if self.mdp.discounted:
            terminated = np.zeros(self.num_envs, dtype=bool)
        else:
            terminated = self._steps >= self.mdp.horizon
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = (self._steps >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        obs = next_states.copy()
        if done.any():
            obs[done] = self._draw(np.broadcast_to(self._cum_mu, (int(done.sum()), self.mdp.n_states)))
            self._steps[done] = 0
        self._states = obs
        return obs.copy(), rewards, terminated, truncated, {"final_obs": next_states}


@dataclass
class Batch:
    """T steps of B environments, time-major.

    Fields (shapes in brackets):

    - ``observations`` [T, B, \\*obs_shape]: the observation each action was chosen from.
    - ``actions`` [T, B, \\*action_shape].
    - ``rewards`` [T, B].
    - ``log_probs`` [T, B]: log pi(a_t | s_t) under the parameters that collected the batch.
    - ``terminated``, ``truncated`` [T, B] bool: the two kinds of episode end (module docstring).
    - ``next_observations`` [T, B, \\*obs_shape]: the true observation after each step
      (before any reset): bootstrap from it.
    - ``resume_observations`` [B, \\*obs_shape]: where the next batch starts (after any reset).
    - ``episode_returns``, ``episode_lengths`` [n_episodes]: undiscounted return and length of
      every episode that ended in this batch, counting steps from earlier batches of the same run.
    - ``steps_before`` [B]: steps the first episode of each column had taken before this batch.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    log_probs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_observations: np.ndarray
    resume_observations: np.ndarray
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    steps_before: np.ndarray
    running_returns: np.ndarray = field(repr=False)
    running_lengths: np.ndarray = field(repr=False)

    @property
    def n_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def n_envs(self) -> int:
        return self.rewards.shape[1]


def collect(env, policy, theta, n_steps: int, rng: np.random.Generator, *,
            previous: Batch | None = None) -> Batch:
    """Run ``policy(theta)`` for ``n_steps`` steps in each of ``env.num_envs`` environments.

    Parameters
    ----------
    env : a vectorised environment with ``num_envs``, ``reset(seed)`` and ``step(actions)``
        (``TabularEnv``, ``CartPoleVecEnv``).
    policy, theta : a pgkit policy and its parameters [n_params]
    n_steps : int
        T.
    rng : np.random.Generator
        Draws the actions and, without ``previous``, the environment's reset seed.
    previous : Batch, optional
        Continue from the end of this batch (same ``env``, not reset in between),
        so episodes run on across batches.

    Returns
    -------
    Batch with arrays [T, B, ...].
    """
    T = _checks.check_positive_int(n_steps, "n_steps")
    _checks.check_rng(rng)
    B = env.num_envs
    if previous is None:
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        running_return, running_length = np.zeros(B), np.zeros(B, dtype=np.int64)
    else:
        if previous.n_envs != B:
            raise ValueError(f"previous batch has {previous.n_envs} environments, env has {B}")
        obs = previous.resume_observations
        running_return = previous.running_returns.copy()
        running_length = previous.running_lengths.copy()
    steps_before = running_length.copy()
    observations, next_observations, actions = [], [], []
    rewards = np.zeros((T, B))
    terminated = np.zeros((T, B), dtype=bool)
    truncated = np.zeros((T, B), dtype=bool)
    ep_returns, ep_lengths = [], []
    for t in range(T):
        a = policy.sample(theta, obs, rng)
        observations.append(obs)
        actions.append(a)
        obs, rewards[t], terminated[t], truncated[t], info = env.step(a)
        next_observations.append(info["final_obs"])
        running_return += rewards[t]
        running_length += 1
        done = terminated[t] | truncated[t]
        if done.any():
            ep_returns.extend(running_return[done])
            ep_lengths.extend(running_length[done])
            running_return[done] = 0.0
            running_length[done] = 0
    observations = np.stack(observations)
    actions = np.stack(actions)
    return Batch(
        observations=observations,
        actions=actions,
        rewards=rewards,
        log_probs=policy.log_prob(theta, observations, actions),
        terminated=terminated,
        truncated=truncated,
        next_observations=np.stack(next_observations),
        resume_observations=obs,
        episode_returns=np.asarray(ep_returns, dtype=np.float64),
        episode_lengths=np.asarray(ep_lengths, dtype=np.int64),
        steps_before=steps_before,
        running_returns=running_return,
        running_lengths=running_length,
    )
