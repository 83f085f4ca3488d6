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

The module also holds what every training loop shares: :class:`History`, the
record a loop returns, and the private plumbing of the neural-network loops
(:func:`pgkit.ppo.train_ppo`, :func:`pgkit.trust_region.train_trust_region`):
their argument checks, GAE with a :class:`~pgkit.nn.ValueMLP`, the critic's
regression, and the bookkeeping of episodes, diagnostics, ``stop_at`` and
``progress``. Each algorithm's loop lives in its own module.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from pgkit import _checks
from pgkit.gradients import fit_linear_value, reinforce_weights, reward_to_go_weights, score_weighted_sum
from pgkit.nn import CategoricalMLPPolicy, ValueMLP, _backward, _flat
from pgkit.optim import Adam, _clip_grad_norm
from pgkit.returns import _gae, reward_to_go
from pgkit.rollout import collect

__all__ = ["History", "train_policy_gradient"]


@dataclass
class History:
    """What a training run did, one entry per iteration unless said otherwise.

    - ``iteration_returns`` [n_iterations]: mean undiscounted return of the episodes
      that ended in the iteration (NaN when none did).
    - ``episode_returns`` [n_episodes], ``episode_end_steps`` [n_episodes]: every
      finished episode's return and the number of environment steps taken when it ended.
    - ``grad_norms`` [n_iterations]: the norm of each gradient estimate (for loops
      that take several steps per batch, the mean over the steps, before any clipping).
    - ``env_steps`` [n_iterations]: environment steps taken so far.
    - ``wall_time`` [n_iterations]: seconds since the start.
    - ``theta`` [n_params]: the final parameters.
    - ``value_params`` [n_value_params] or None: the final critic's parameters, for
      loops that learn one.
    - ``diagnostics``: name -> [n_iterations] array, per-iteration quantities a loop
      measures (``approx_kl``, ``kl``, ``clip_fraction``, ``explained_variance``,
      ``entropy``, ``ratio_ess``, ``value_loss``, ``beta``, ``step_fraction``...);
      each loop's docstring lists its own. Empty for :func:`train_policy_gradient`.
    """

    iteration_returns: np.ndarray
    episode_returns: np.ndarray
    episode_end_steps: np.ndarray
    grad_norms: np.ndarray
    env_steps: np.ndarray
    wall_time: np.ndarray
    theta: np.ndarray = field(repr=False)
    value_params: np.ndarray | None = field(default=None, repr=False)
    diagnostics: dict = field(default_factory=dict, repr=False)

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


# ------------------------------------------------ plumbing shared by the network loops
#
# pgkit.ppo.train_ppo and pgkit.trust_region.train_trust_region have one
# signature: (env, policy, value_fn, rng, *, total_steps, n_steps, gamma,
# gae_lambda, <the algorithm's own options>, value_lr, value_epochs,
# value_minibatches, max_grad_norm, params, value_params, obs_features,
# stop_at, stop_window, progress). What they share is checked and computed
# here, once; the loops call these private, unchecked kernels.

class _FeatureEnv:
    """``env`` with ``obs_features`` applied to its observations (and to ``info["final_obs"]``).

    The features of the first reset are checked (shape ``[B, obs_dim]``, finite);
    later ones are not.
    """

    def __init__(self, env, obs_features, obs_dim: int):
        self.env, self.obs_features, self.obs_dim = env, obs_features, obs_dim
        self.num_envs = env.num_envs
        self.n_actions = env.n_actions
        self.observation_shape = (obs_dim,)
        self._checked = False

    def reset(self, seed=None):
        obs, info = self.env.reset(seed=seed)
        features = np.asarray(self.obs_features(obs), dtype=float)
        if not self._checked:
            shape = (self.num_envs, self.obs_dim)
            if features.shape != shape or not np.isfinite(features).all():
                raise ValueError(f"obs_features must map observations [B, ...] to finite features "
                                 f"[B, obs_dim] = {_checks._shape_str(shape)}, got "
                                 f"{_checks._shape_str(features.shape)}")
            self._checked = True
        return features, info

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        info = dict(info, final_obs=np.asarray(self.obs_features(info["final_obs"]), dtype=float))
        return np.asarray(self.obs_features(obs), dtype=float), rewards, terminated, truncated, info


def _check_params(params, head, name: str, rng) -> np.ndarray:
    """``params`` checked against ``head`` (a copy), or ``head.init(rng)`` when None."""
    if params is None:
        return head.init(rng)
    arr = _checks.as_float_array(params, name, ndim=1, shape_doc=f"[n_params] = ({head.n_params},)")
    if arr.shape != (head.n_params,):
        raise ValueError(f"{name} must have shape [n_params] = ({head.n_params},), got "
                         f"{_checks._shape_str(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got an infinite value")
    return arr.copy()


def _check_fraction_int(n, name, upper, upper_name):
    n = _checks.check_positive_int(n, name)
    if n > upper:
        raise ValueError(f"{name} must be <= {upper_name} = {upper} (every minibatch needs a sample), "
                         f"got {n}")
    return n


class _LoopSetup:
    """What :func:`_setup_loop` checked: the environment to collect from, the
    initial parameters, the number of iterations and the recorder."""

    def __init__(self, env, params, value_params, n_iterations, batch_size, recorder):
        self.env, self.params, self.value_params = env, params, value_params
        self.n_iterations, self.batch_size, self.recorder = n_iterations, batch_size, recorder


def _check_networks(env, policy, value_fn, obs_features):
    """The network and environment checks every network loop makes (unchecked kernels follow).

    Returns ``env``, wrapped in a :class:`_FeatureEnv` when ``obs_features`` is given.
    """
    if not isinstance(policy, CategoricalMLPPolicy):
        raise ValueError("policy must be a pgkit.nn.CategoricalMLPPolicy (the loops call its "
                         f"unchecked kernels), got {type(policy).__name__}")
    if not isinstance(value_fn, ValueMLP):
        raise ValueError(f"value_fn must be a pgkit.nn.ValueMLP, got {type(value_fn).__name__}")
    if value_fn.obs_dim != policy.obs_dim:
        raise ValueError(f"value_fn and policy must read the same observations: obs_dim "
                         f"{value_fn.obs_dim} != {policy.obs_dim}")
    for attr in ("num_envs", "reset", "step"):
        if not hasattr(env, attr):
            raise ValueError(f"env must be a vectorised environment (num_envs, reset, step), "
                             f"such as CartPoleVecEnv or TabularEnv; it has no {attr!r}")
    if getattr(env, "n_actions", policy.n_actions) != policy.n_actions:
        raise ValueError(f"env has {env.n_actions} actions, the policy {policy.n_actions}")
    if obs_features is None:
        shape = tuple(getattr(env, "observation_shape", (policy.obs_dim,)))
        if shape != (policy.obs_dim,):
            hint = (" (a TabularEnv's observations are state indices: pass obs_features="
                    "lambda s: pgkit.gradients.one_hot_features(s, n_states))" if shape == () else "")
            raise ValueError(f"env observations have shape {_checks._shape_str(shape)}, the policy "
                             f"reads [obs_dim] = ({policy.obs_dim},): give obs_features{hint}")
    elif not callable(obs_features):
        raise ValueError(f"obs_features must be a callable (observations -> features [..., obs_dim]) "
                         f"or None, got {type(obs_features).__name__}")
    else:
        env = _FeatureEnv(env, obs_features, policy.obs_dim)
    return env


def _setup_loop(env, policy, value_fn, rng, *, total_steps, n_steps, gamma, gae_lambda,
                value_lr, value_epochs, minibatch_counts, max_grad_norm, params, value_params,
                obs_features, stop_at, stop_window, progress, diagnostics) -> _LoopSetup:
    """Check the arguments every network loop shares; draw missing initial parameters from ``rng``.

    ``minibatch_counts`` maps names (``"value_minibatches"``...) to numbers of
    minibatches per pass over a batch, checked in order: integers in [1, n_steps * B].

    ``rng`` is used here only to initialise: first the policy's parameters
    (when ``params`` is None), then the critic's (when ``value_params`` is None).
    """
    _checks.check_rng(rng)
    env = _check_networks(env, policy, value_fn, obs_features)
    B = env.num_envs
    total_steps = _checks.check_positive_int(total_steps, "total_steps")
    n_steps = _checks.check_positive_int(n_steps, "n_steps")
    batch_size = n_steps * B
    if total_steps < batch_size:
        raise ValueError(f"total_steps must allow one batch of n_steps * num_envs = {n_steps} * {B} "
                         f"= {batch_size} environment steps, got {total_steps}")
    _checks.check_discount(gamma)
    _checks.check_discount(gae_lambda, "gae_lambda")
    if not 0 < _checks.check_nonnegative(value_lr, "value_lr") < np.inf:
        raise ValueError(f"value_lr must be positive and finite, got {value_lr}")
    _checks.check_positive_int(value_epochs, "value_epochs", minimum=0)
    for name, count in minibatch_counts.items():
        _check_fraction_int(count, name, batch_size, "n_steps * num_envs")
    if max_grad_norm is not None and \
            not 0 < _checks.check_nonnegative(max_grad_norm, "max_grad_norm") < np.inf:
        raise ValueError(f"max_grad_norm must be positive and finite, or None, got {max_grad_norm}")
    if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, numbers.Real)
                                or not math.isfinite(stop_at)):
        raise ValueError(f"stop_at must be a finite number (a mean return) or None, got {stop_at!r}")
    stop_window = _checks.check_positive_int(stop_window, "stop_window")
    if not (isinstance(progress, (bool, np.bool_)) or callable(progress)):
        raise ValueError(f"progress must be True, False or a callable, got {type(progress).__name__}")
    params = _check_params(params, policy, "params", rng)
    value_params = _check_params(value_params, value_fn, "value_params", rng)
    recorder = _Recorder(B, n_steps, total_steps // batch_size, stop_at, stop_window, progress,
                         diagnostics)
    return _LoopSetup(env, params, value_params, total_steps // batch_size, batch_size, recorder)


def _values_and_advantages(value_fn, value_params, batch, gamma, gae_lambda):
    """Critic values of a batch and GAE on it (unchecked).

    Returns ``(values, advantages, returns)``, each [T, B]; ``returns = advantages + values``
    are the critic's regression targets.
    """
    T, B = batch.rewards.shape
    obs = np.concatenate([batch.observations, batch.next_observations]).reshape(1, 2 * T * B, -1)
    v = value_fn._body(value_params[None], obs)[0][0, :, 0]
    values, next_values = v[:T * B].reshape(T, B), v[T * B:].reshape(T, B)
    advantages = _gae(batch.rewards, values, next_values, batch.terminated, batch.truncated,
                      gamma, gae_lambda)
    return values, advantages, advantages + values


def _fit_value(value_fn, value_params, optimizer, obs, returns, epochs, n_minibatches,
               max_grad_norm, rng):
    r"""Regress the critic on ``returns`` (unchecked): ``epochs`` passes of shuffled minibatches.

    Each minibatch takes one descent step on :math:`\frac1{2m}\sum_i (V_\phi(s_i) - R_i)^2`
    (the gradient of :func:`pgkit.ppo.value_loss`, chained through the network),
    clipped to norm ``max_grad_norm`` when given. ``obs`` [N, obs_dim], ``returns`` [N].
    """
    for _ in range(epochs):
        for mb in np.array_split(rng.permutation(returns.size), n_minibatches):
            out, layers, inputs = value_fn._body(value_params[None], obs[None, mb])
            grad_out = (out - returns[mb, None]) / mb.size                     # dL/dV
            grad = _flat(_backward(layers, inputs, grad_out))
            if max_grad_norm is not None:
                grad = _clip_grad_norm(grad, max_grad_norm)[0]
            value_params = optimizer.step(value_params, -grad[0])             # descend
    return value_params


class _Recorder:
    """Per-iteration bookkeeping of the network loops: episodes, diagnostics, stop_at, progress."""

    def __init__(self, B, n_steps, n_iterations, stop_at, stop_window, progress, diagnostics):
        self.B, self.n_steps, self.n_iterations = B, n_steps, n_iterations
        self.stop_at, self.stop_window, self.progress = stop_at, stop_window, progress
        self.rows = {k: [] for k in ("iteration_returns", "grad_norms", "env_steps", "wall_time")}
        self.diagnostics = {k: [] for k in diagnostics}
        self.episode_returns, self.episode_end_steps = [], []
        self.start = time.perf_counter()

    def last_mean(self) -> float:
        ends = self.episode_returns[-self.stop_window:]
        return float(np.mean(ends)) if ends else float("nan")

    def record(self, batch, grad_norm: float, diagnostics: dict) -> bool:
        """Record one iteration; True when ``stop_at`` is reached."""
        before = len(self.rows["env_steps"]) * self.n_steps * self.B
        steps = before + self.n_steps * self.B
        ended_at, _ = np.nonzero(batch.terminated | batch.truncated)    # collect's episode order
        self.episode_returns.extend(batch.episode_returns.tolist())
        self.episode_end_steps.extend((before + (ended_at + 1) * self.B).tolist())
        mean_return = float(batch.episode_returns.mean()) if batch.episode_returns.size else math.nan
        for key, value in (("iteration_returns", mean_return), ("grad_norms", grad_norm),
                           ("env_steps", steps), ("wall_time", time.perf_counter() - self.start)):
            self.rows[key].append(value)
        for key in self.diagnostics:
            self.diagnostics[key].append(diagnostics[key])
        solved = (self.stop_at is not None and len(self.episode_returns) >= self.stop_window
                  and self.last_mean() >= self.stop_at)
        self._report(solved)
        return solved

    def _report(self, solved: bool) -> None:
        if not callable(self.progress) and not self.progress:
            return
        k = len(self.rows["env_steps"])
        info = {"iteration": k, "n_iterations": self.n_iterations,
                "env_steps": self.rows["env_steps"][-1], "wall_time": self.rows["wall_time"][-1],
                "mean_return": self.rows["iteration_returns"][-1], "last_mean_return": self.last_mean(), "solved": solved,
                **{key: values[-1] for key, values in self.diagnostics.items()}}
        if callable(self.progress):
            self.progress(info)
        elif solved or k == self.n_iterations or k % max(1, self.n_iterations // 10) == 0:
            print(f"iteration {k:5d}/{self.n_iterations}: {info['env_steps']:8d} steps, "
                  f"{info['wall_time']:6.1f} s, mean return of the last {self.stop_window} episodes "
                  f"{info['last_mean_return']:7.2f}" + (" (stop_at reached)" if solved else ""))

    def history(self, theta, value_params) -> History:
        return History(**{k: np.asarray(v, dtype=float) for k, v in self.rows.items()},
                       episode_returns=np.asarray(self.episode_returns, dtype=float),
                       episode_end_steps=np.asarray(self.episode_end_steps, dtype=np.int64),
                       theta=theta, value_params=value_params,
                       diagnostics={k: np.asarray(v, dtype=float) for k, v in self.diagnostics.items()})
