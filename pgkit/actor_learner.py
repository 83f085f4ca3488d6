r"""An actor-learner simulation: actors act with stale policies, a learner corrects.

In IMPALA (Espeholt et al. 2018, arXiv:1802.01561) actors generate unrolls with
the parameters they last fetched while the learner keeps updating, so the
behaviour policy :math:`\mu` of a batch is the learner's policy of some
updates ago. :func:`train_actor_learner` simulates this deterministically, in
one process: at learner update u, actor b generates an unroll of T steps with
the parameters :math:`\theta_{u - k}` (the lag k fixed, or drawn afresh for
every unroll), and the learner takes one actor-critic step on the batch, with
one of three corrections for the mismatch
:math:`\rho_s = \pi_{\theta_u}(a_s|x_s) / \mu(a_s|x_s)`:

``"none"``
    the batch is treated as on-policy: :math:`\rho_s` is ignored (set to 1, and
    no threshold applies, so :math:`c_s = \lambda`), the critic's targets are
    the :math:`\lambda`-returns of the behaviour data (GAE(:math:`\lambda`)
    plus V) and the advantages :math:`r_s + \gamma_s v_{s+1} - V(x_s)`;
``"is"``
    the same targets, and the policy-gradient advantage multiplied by the
    truncated ratio :math:`\min(\bar\rho_{pg}, \rho_s)`;
``"vtrace"``
    V-trace (:func:`pgkit.vtrace.from_importance_weights`): corrected targets
    and corrected advantages.

With a lag of 0 every ratio is exactly 1 and the three corrections take the
same steps.

Several independent runs go in lockstep along the population axis of
:mod:`pgkit.nn` (``population=S``): one forward pass computes every member's
actions, and each member may have its own correction and lag, so a whole grid
of seeds x lags x corrections costs about one run's Python overhead.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from pgkit import _checks
from pgkit.nn import _backward, _flat, _log_softmax
from pgkit.optim import Adam, _clip_grad_norm
from pgkit.training import History, _check_fraction_int, _check_networks, _Recorder
from pgkit.vtrace import _clipped_ratios, _threshold, _vtrace

__all__ = ["CORRECTIONS", "train_actor_learner"]

CORRECTIONS = ("none", "is", "vtrace")
_LAG_DISTRIBUTIONS = ("fixed", "uniform")
_DIAGNOSTICS = ("mean_rho", "rho_clip_fraction", "policy_lag", "approx_kl", "entropy",
                "value_loss", "explained_variance")


# ---------------------------------------------------------------- input checks

def _per_member(x, name: str, S: int, check) -> list:
    """A value shared by every member, or a sequence of S values, each checked."""
    if isinstance(x, (str, numbers.Number)) or x is None:
        return [check(x)] * S
    items = list(x)
    if len(items) != S:
        raise ValueError(f"{name} must be one value or a sequence of population = {S} "
                         f"values, got {len(items)}")
    return [check(item) for item in items]


def _correction(c) -> int:
    if c not in CORRECTIONS:
        names = ", ".join(map(repr, CORRECTIONS))
        raise ValueError(f"correction must be one of {names}, got {c!r}")
    return CORRECTIONS.index(c)


def _lag(k) -> int:
    return _checks.check_positive_int(k, "lag", minimum=0)


def _initial(params, head, name: str, rng, S: int) -> np.ndarray:
    """[S, n_params]: head.init(rng, S), or ``params`` ([n_params] or [S, n_params])."""
    P = head.n_params
    if params is None:
        return head.init(rng, S)
    arr = _checks.as_float_array(params, name, ndim=(1, 2),
                                 shape_doc=f"[n_params] or [S, n_params] ({P} params)")
    if arr.shape not in ((P,), (S, P)) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, of shape [n_params] = ({P},) or "
                         f"[S, n_params] = ({S}, {P}), got "
                         f"{_checks._shape_str(arr.shape)}")
    return np.broadcast_to(arr, (S, P)).copy()


def _positive(x, name: str) -> float:
    if not 0 < _checks.check_nonnegative(x, name) < math.inf:
        raise ValueError(f"{name} must be positive and finite, got {x}")
    return float(x)


class _Episodes:
    """What _Recorder.record reads of a batch: flags [T, B], returns of episodes."""

    def __init__(self, terminated, truncated, episode_returns):
        self.terminated, self.truncated = terminated, truncated
        self.episode_returns = episode_returns


# ---------------------------------------------------------------- the learner's targets

def _corrected_targets(log_rhos, discounts, rewards, values, bootstrap_value,
                       vs_corrected, pg_corrected, log_rho_bar, log_c_bar,
                       log_pg_rho_bar, lam):
    r"""The critic's targets and the policy gradient's weights of each correction.

    Unchecked. Every array is ``[T, S, B]`` (``bootstrap_value`` ``[S, B]``);
    ``vs_corrected`` and ``pg_corrected`` are booleans broadcastable to it
    (``"vtrace"``: both; ``"is"``: the policy gradient only; ``"none"``:
    neither); the thresholds are logs (``+inf`` for no clipping).

    Returns ``(vs, weights, q_minus_v)``, each ``[T, S, B]``: the targets
    :math:`v_s` (V-trace, or with every ratio set to 1), the weights
    :math:`\min(\bar\rho_{pg}, \rho_s)` (or 1) and
    :math:`\hat A_s = r_s + \gamma_s v_{s+1} - V(x_s)`; for ``"vtrace"``,
    ``weights * q_minus_v`` are V-trace's ``pg_advantages``.
    """
    rho, c, pg_rho = _clipped_ratios(log_rhos, log_rho_bar, log_c_bar, log_pg_rho_bar,
                                     lam)
    # [book:actor-learner-corrections]
    rho = np.where(vs_corrected, rho, 1.0)         # "none", "is": targets ignore rho
    c = np.where(vs_corrected, c, lam)
    weights = np.where(pg_corrected, pg_rho, 1.0)  # "none": so does the gradient
    vs, q_minus_v = _vtrace(rho, c, np.ones_like(rho), discounts, rewards, values,
                            bootstrap_value)
    # [/book:actor-learner-corrections]
    return vs, weights, q_minus_v


# ---------------------------------------------------------------- the loop

def train_actor_learner(env, policy, value_fn, rng: np.random.Generator, *,
                        total_steps: int, correction="vtrace", lag=0,
                        lag_distribution: str = "fixed", population: int | None = None,
                        n_steps: int = 16, gamma: float = 0.99, gae_lambda: float = 1.0,
                        clip_rho_threshold: float | None = 1.0,
                        clip_pg_rho_threshold: float | None = 1.0,
                        clip_c_threshold: float | None = 1.0, lr: float = 1e-3,
                        ent_coef: float = 0.0, norm_adv: bool = True,
                        value_lr: float = 3e-3, value_epochs: int = 4,
                        value_minibatches: int = 1, max_grad_norm: float | None = 0.5,
                        params=None, value_params=None, obs_features=None,
                        stop_at: float | None = None, stop_window: int = 20,
                        progress=False) -> History | list[History]:
    r"""Simulate stale actors and a learner that corrects for them; returns a History.

    Each iteration u (a learner update):

    1. every actor b draws its lag :math:`k_b` (``lag_distribution``:
       ``"fixed"``, always ``lag``; ``"uniform"``, uniform on
       :math:`\{0, \dots, 2\,\text{lag}\}`, mean ``lag``, drawn afresh for every
       unroll), at most u, and generates T = ``n_steps`` steps in its own
       environment with the learner's parameters :math:`\theta_{u-k_b}`,
       recording the behaviour log-probabilities :math:`\log\mu(a_s|x_s)`
       (episodes run on across unrolls);
    2. the learner computes
       :math:`\log\rho_s = \log\pi_{\theta_u}(a_s|x_s) - \log\mu(a_s|x_s)`
       (exactly 0 where :math:`k_b = 0`) and, with the current critic, the
       targets :math:`v_s` and advantages of the ``correction`` (module
       docstring) by the V-trace recursion with
       :math:`\bar\rho, \bar\rho_{pg}, \bar c, \lambda`
       (:func:`pgkit.vtrace.from_importance_weights`); discounts are
       :math:`\gamma` times "the episode goes on", and at a truncation the
       bootstrap :math:`\gamma V(x'_s)` from the true final observation is
       added to the reward and the discount set to 0 (the same numbers as
       bootstrapping there, with the trace cut);
    3. takes one ascent step (Adam, gradient clipped to ``max_grad_norm``) on

       .. math:: \frac1N \sum_s w_s \hat A_s \log\pi_\theta(a_s|x_s)
           + c_H \frac1N \sum_s H(\pi_\theta(\cdot|x_s)), \qquad N = T B,

       with :math:`w_s` the weight of the correction
       (:math:`\min(\bar\rho_{pg}, \rho_s)`, or 1 for ``"none"``) and
       :math:`\hat A_s = r_s + \gamma_s v_{s+1} - V(x_s)`, normalised over
       each member's batch when ``norm_adv``, *before* it is weighted
       (normalised after, a sample of weight 0 would get minus the mean as its
       advantage, which pushes the policy further from the actions it has
       stopped taking: in the benchmark this made both corrections worse than
       none at large lags);
    4. regresses the critic on :math:`v_s`: ``value_epochs`` passes of
       ``value_minibatches`` minibatches of :math:`\frac12 (V_\phi(x_s) - v_s)^2`,
       its own Adam.

    With ``population=S``, S independent runs go in lockstep: the
    environments are split into S groups of B = ``env.num_envs // S`` actors,
    every network carries a population axis, and ``correction`` and ``lag``
    may be given per member. The members share one rng (their runs are
    independent replicates, but member s is not the run a single call makes).

    Parameters
    ----------
    env : vectorised environment (``CartPoleVecEnv``, ``TabularEnv``)
        One actor per environment; ``num_envs`` a multiple of S.
    policy : :class:`~pgkit.nn.CategoricalMLPPolicy`
    value_fn : :class:`~pgkit.nn.ValueMLP` (same ``obs_dim``)
    rng : np.random.Generator
        Draws, in this order, the initial policy parameters (unless given),
        the critic's (unless given), the environments' reset seed, then for
        every iteration the lags (``"uniform"`` only), the actions and the
        critic's minibatches. Same rng state, same run.
    total_steps : int
        Environment steps per member; the run has
        ``total_steps // (n_steps * B)`` iterations.
    correction : ``"none"``, ``"is"`` or ``"vtrace"``, or a sequence of S of them
    lag : int >= 0, or a sequence of S of them
        k, in learner updates (its mean for ``"uniform"``).
    lag_distribution : ``"fixed"`` or ``"uniform"``
    population : int or None
        S; None for a single run.
    n_steps : int
        T, the unroll length.
    gamma, gae_lambda : float in [0, 1]
        The discount and the :math:`\lambda` of the traces,
        :math:`c_s = \lambda\min(\bar c, \rho_s)` (with ``"none"``,
        :math:`v_s - V(x_s)` is exactly GAE(:math:`\lambda`)).
    clip_rho_threshold, clip_pg_rho_threshold, clip_c_threshold : float >= 0 or None
        :math:`\bar\rho, \bar\rho_{pg}, \bar c`; None does not clip (huge
        ratios may then overflow: this loop does not check its kernels).
    lr : float > 0
        The policy's Adam step size.
    ent_coef : float >= 0
    norm_adv : bool
        Normalise :math:`\hat A_s` over each member's batch to mean 0 and
        standard deviation 1, before the correction's weights multiply it.
    value_lr : float > 0
    value_epochs : int >= 0
    value_minibatches : int in [1, n_steps * B]
    max_grad_norm : float > 0 or None
        Clip each gradient (each member's, policy and critic separately).
    params, value_params : arrays or None
        Initial parameters, ``[n_params]`` (shared by every member) or
        ``[S, n_params]``; None draws them from ``rng``.
    obs_features : callable or None
        Observations ``[num_envs, ...]`` to inputs ``[num_envs, obs_dim]``, as
        in :func:`pgkit.ppo.train_ppo`.
    stop_at : float or None
        Stop after the first iteration at which the mean return of the last
        ``stop_window`` finished episodes is at least this, for every member.
    stop_window : int
    progress : bool or callable
        True prints a line every tenth of the run; a callable gets a dict
        after every iteration (``iteration``, ``n_iterations``, ``env_steps``,
        ``wall_time``, ``last_mean_return``, ``solved``; the last two [S]
        with a population).

    Returns
    -------
    :class:`~pgkit.training.History`, or a list of S of them with a population:
    ``theta`` and ``value_params`` the final parameters; ``diagnostics``
    [n_iterations] arrays, measured on each batch before the update:
    ``mean_rho`` (of the unclipped :math:`\rho_s`, each capped at
    :math:`e^{600}`), ``rho_clip_fraction`` (the fraction above
    :math:`\bar\rho`; NaN without clipping), ``policy_lag`` (mean
    :math:`k_b`), ``approx_kl``
    (:math:`\frac1N\sum_s (\rho_s - 1) - \log\rho_s`, an estimate of
    :math:`\mathrm{KL}(\mu \| \pi)`), ``entropy`` (of :math:`\pi_{\theta_u}`),
    ``value_loss`` (:math:`\frac1{2N}\sum_s (V(x_s) - v_s)^2`) and
    ``explained_variance`` (of the targets by the critic). ``grad_norms`` are
    the policy gradient's norms before clipping.

    Notes
    -----
    Measured by ``benchmarks/bench_vtrace.py`` on CartPole-v1, with 8 actors
    per member, 64 x 64 networks and 100k environment steps per member, at
    the defaults: a population of 27 (3 replicates x lags 0, 4, 16 x the three
    corrections) takes about 25 s on one core (12 s with 32 x 32 networks);
    at lag 0 every member reached a mean return of 475 over its last 20
    episodes, after a median of about 50k steps. The corrections separate
    only at large lags, and noisily: with 6 replicates at lags 0, 8 and 32,
    the mean return of the episodes of the last tenth of training was 500 for
    each correction at lag 0, and 122 (``"none"``), 337 (``"is"``) and 356
    (``"vtrace"``) at lag 32. The defaults (one Adam step of 1e-3 per batch of
    16 steps per actor, :math:`\gamma = 0.99`, :math:`\lambda = 1`, four
    critic steps of 3e-3, advantages normalised, gradients clipped to 0.5)
    were chosen on these runs, for lag 0 to learn quickly and for the lag to
    matter; the runs continue after they first reach 475, and some collapse
    again, most often without a correction.
    """
    # ---- checks
    _checks.check_rng(rng)
    env = _check_networks(env, policy, value_fn, obs_features)
    single = population is None
    S = 1 if single else _checks.check_positive_int(population, "population")
    if env.num_envs % S:
        raise ValueError(f"env.num_envs = {env.num_envs} must be a multiple of "
                         f"population = {S}")
    B = env.num_envs // S
    T = _checks.check_positive_int(n_steps, "n_steps")
    total_steps = _checks.check_positive_int(total_steps, "total_steps")
    if total_steps < T * B:
        raise ValueError(f"total_steps must allow one batch of n_steps * B = {T} * {B} "
                         f"= {T * B} steps per member, got {total_steps}")
    codes = np.array(_per_member(correction, "correction", S, _correction))
    lags = np.array(_per_member(lag, "lag", S, _lag))
    if lag_distribution not in _LAG_DISTRIBUTIONS:
        raise ValueError(f"lag_distribution must be 'fixed' or 'uniform', got "
                         f"{lag_distribution!r}")
    gamma = _checks.check_discount(gamma)
    lam = _checks.check_discount(gae_lambda, "gae_lambda")
    log_rho_bar = _threshold(clip_rho_threshold, "clip_rho_threshold")
    log_pg_rho_bar = _threshold(clip_pg_rho_threshold, "clip_pg_rho_threshold")
    log_c_bar = _threshold(clip_c_threshold, "clip_c_threshold")
    lr, value_lr = _positive(lr, "lr"), _positive(value_lr, "value_lr")
    ent_coef = _checks.check_nonnegative(ent_coef, "ent_coef")
    if not isinstance(norm_adv, (bool, np.bool_)):
        raise ValueError(f"norm_adv must be True or False, got {norm_adv!r}")
    value_epochs = _checks.check_positive_int(value_epochs, "value_epochs", minimum=0)
    value_minibatches = _check_fraction_int(value_minibatches, "value_minibatches",
                                            T * B, "n_steps * B")
    if max_grad_norm is not None:
        max_grad_norm = _positive(max_grad_norm, "max_grad_norm")
    if stop_at is not None and (isinstance(stop_at, bool)
                                or not isinstance(stop_at, numbers.Real)
                                or not math.isfinite(stop_at)):
        raise ValueError(f"stop_at must be a finite number (a mean return) or None, "
                         f"got {stop_at!r}")
    stop_window = _checks.check_positive_int(stop_window, "stop_window")
    if not (isinstance(progress, (bool, np.bool_)) or callable(progress)):
        raise ValueError(f"progress must be True, False or a callable, got "
                         f"{type(progress).__name__}")
    params = _initial(params, policy, "params", rng, S)
    value_params = _initial(value_params, value_fn, "value_params", rng, S)

    # ---- state
    n_iterations = total_steps // (T * B)
    N, A, d = T * B, policy.n_actions, policy.obs_dim
    recorders = [_Recorder(B, T, n_iterations, stop_at, stop_window,
                           progress if single else False, _DIAGNOSTICS)
                 for _ in range(S)]
    optimizer, value_optimizer = Adam(lr, eps=1e-5), Adam(value_lr, eps=1e-5)
    max_lags = lags * (2 if lag_distribution == "uniform" else 1)
    n_kept = int(max_lags.max()) + 1                   # parameter versions kept
    versions = np.empty((n_kept, S, policy.n_params))  # version v in slot v % n_kept
    versions[0] = params
    members = np.arange(S)
    vs_corrected = (codes == CORRECTIONS.index("vtrace"))[None, :, None]   # [1, S, 1]
    pg_corrected = (codes != CORRECTIONS.index("none"))[None, :, None]
    reset_obs = env.reset(seed=int(rng.integers(2**31)))[0]
    obs = np.asarray(reset_obs, dtype=float).reshape(S, B, d)
    running_return = np.zeros((S, B))

    observations = np.empty((S, T, B, d))
    final_obs = np.empty((S, T, B, d))
    actions = np.empty((T, S, B), dtype=np.int64)
    behaviour_log_probs = np.empty((T, S, B))
    rewards = np.empty((T, S, B))
    terminated = np.empty((T, S, B), dtype=bool)
    truncated = np.empty((T, S, B), dtype=bool)
    for u in range(n_iterations):
        # ---- actors: which parameters each one holds
        if lag_distribution == "fixed":
            k = np.broadcast_to(lags[:, None], (S, B))
        else:
            k = rng.integers(0, 2 * lags[:, None] + 1, size=(S, B))
        k = np.minimum(k, u)
        slots = (u - k) % n_kept
        shared = bool(np.all(slots == slots[:, :1]))   # one version per member
        actor_params = (versions[slots[:, 0], members] if shared
                        else versions[slots, members[:, None]].reshape(S * B, -1))
        episode_returns = [[] for _ in range(S)]
        for t in range(T):
            x = obs if shared else obs.reshape(S * B, 1, d)
            logits = policy._body(actor_params, x)[0]
            log_pi = _log_softmax(logits).reshape(S, B, A)
            draw = rng.random((S, B))
            below = np.cumsum(np.exp(log_pi), axis=-1) <= draw[..., None]
            a = np.minimum(below.sum(axis=-1), A - 1)                # inverse CDF
            observations[:, t] = obs
            actions[t] = a
            chosen = np.take_along_axis(log_pi, a[..., None], axis=-1)
            behaviour_log_probs[t] = chosen[..., 0]
            next_obs, r, term, trunc, info = env.step(a.reshape(S * B))
            obs = np.asarray(next_obs, dtype=float).reshape(S, B, d)
            final_obs[:, t] = np.reshape(info["final_obs"], (S, B, d))
            rewards[t] = np.reshape(r, (S, B))
            terminated[t] = np.reshape(term, (S, B))
            truncated[t] = np.reshape(trunc, (S, B))
            running_return += rewards[t]
            done = terminated[t] | truncated[t]
            if done.any():
                for s, b in zip(*np.nonzero(done)):
                    episode_returns[s].append(running_return[s, b])
                running_return[done] = 0.0

        # ---- learner: ratios, critic values, targets
        flat_obs = observations.reshape(S, N, d)
        out, layers, inputs = policy._body(params, flat_obs)
        log_pi = _log_softmax(out)                                       # [S, N, A]
        taken = actions.transpose(1, 0, 2).reshape(S, N)
        learner_log_probs = np.take_along_axis(log_pi, taken[..., None], -1)[..., 0]
        log_rhos = (learner_log_probs.reshape(S, T, B).transpose(1, 0, 2)
                    - behaviour_log_probs)
        log_rhos = np.where(k == 0, 0.0, log_rhos)      # the same parameters: rho = 1

        cut = truncated & ~terminated                    # bootstrap from the final obs
        rows_t, rows_b = np.nonzero(cut.any(axis=1))
        critic_in = np.concatenate([flat_obs, obs, final_obs[:, rows_t, rows_b]], 1)
        v_all = value_fn._body(value_params, critic_in)[0][..., 0]     # [S, N + B + K]
        values = v_all[:, :N].reshape(S, T, B).transpose(1, 0, 2)     # [T, S, B]
        bootstrap_value = v_all[:, N:N + B]
        boot = np.zeros((T, S, B))
        boot[rows_t, :, rows_b] = v_all[:, N + B:].T
        step_rewards = rewards + gamma * np.where(cut, boot, 0.0)
        discounts = gamma * ~(terminated | truncated)
        vs, weights, q_minus_v = _corrected_targets(
            log_rhos, discounts, step_rewards, values, bootstrap_value, vs_corrected,
            pg_corrected, log_rho_bar, log_c_bar, log_pg_rho_bar, lam)

        # ---- learner: one policy step, then the critic's regression
        adv = q_minus_v.transpose(1, 0, 2).reshape(S, N)   # r + gamma v_{s+1} - V(x_s)
        if norm_adv:                                        # before the weights: a
            adv = adv - adv.mean(axis=1, keepdims=True)     # weight of 0 stays 0
            adv = adv / (adv.std(axis=1, keepdims=True) + 1e-8)
        adv = weights.transpose(1, 0, 2).reshape(S, N) * adv
        pi = np.exp(log_pi)
        entropy = -np.sum(pi * log_pi, axis=-1)                          # [S, N]
        grad_logits = adv[..., None] / N * (np.eye(A)[taken] - pi)
        if ent_coef:
            grad_logits -= ent_coef / N * pi * (log_pi + entropy[..., None])
        grad = _flat(_backward(layers, inputs, grad_logits))
        grad_norm = np.sqrt(np.sum(grad ** 2, axis=1))
        if max_grad_norm is not None:
            grad = _clip_grad_norm(grad, max_grad_norm)[0]
        params = optimizer.step(params, grad)

        targets = vs.transpose(1, 0, 2).reshape(S, N)
        for _ in range(value_epochs):
            for mb in np.array_split(rng.permutation(N), value_minibatches):
                v_out, layers_v, inputs_v = value_fn._body(value_params,
                                                           flat_obs[:, mb])
                error = (v_out - targets[:, mb, None]) / mb.size
                v_grad = _flat(_backward(layers_v, inputs_v, error))
                if max_grad_norm is not None:
                    v_grad = _clip_grad_norm(v_grad, max_grad_norm)[0]
                value_params = value_optimizer.step(value_params, -v_grad)
        versions[(u + 1) % n_kept] = params

        # ---- bookkeeping
        diagnostics = _diagnostics(log_rhos, log_rho_bar, clip_rho_threshold is None, k,
                                   entropy, targets, v_all[:, :N])
        solved = []
        for s, recorder in enumerate(recorders):
            batch = _Episodes(terminated[:, s], truncated[:, s],
                              np.asarray(episode_returns[s]))
            row = {key: float(value[s]) for key, value in diagnostics.items()}
            solved.append(recorder.record(batch, float(grad_norm[s]), row))
        if not single:
            _report(progress, recorders, u + 1, n_iterations, solved)
        if all(solved):
            break
    histories = [recorder.history(params[s], value_params[s])
                 for s, recorder in enumerate(recorders)]
    return histories[0] if single else histories


def _diagnostics(log_rhos, log_rho_bar, unclipped, k, entropy, targets, values) -> dict:
    """Each diagnostic of the docstring, [S]: log_rhos [T, S, B], the rest [S, ...]."""
    S = targets.shape[0]
    capped = np.minimum(log_rhos, 600.0)
    residuals = targets - values
    var_targets = np.var(targets, axis=1)
    constant = var_targets == 0
    explained = 1 - np.var(residuals, axis=1) / np.where(constant, 1.0, var_targets)
    clipped = np.mean(log_rhos > log_rho_bar, axis=(0, 2))
    return {
        "mean_rho": np.mean(np.exp(capped), axis=(0, 2)),
        "rho_clip_fraction": np.full(S, np.nan) if unclipped else clipped,
        "policy_lag": np.mean(k, axis=1),
        "approx_kl": np.mean(np.expm1(capped) - capped, axis=(0, 2)),
        "entropy": entropy.mean(axis=1),
        "value_loss": 0.5 * np.mean(residuals ** 2, axis=1),
        # as pgkit.ppo.explained_variance: constant targets give 1 or 0, never NaN
        "explained_variance": np.where(
            constant, np.where(np.ptp(residuals, axis=1) == 0, 1.0, 0.0), explained),
    }


def _report(progress, recorders, k: int, n_iterations: int, solved) -> None:
    """A population's progress: a line (True) or a dict with [S] arrays (a callable)."""
    if not callable(progress) and not progress:
        return
    first = recorders[0].rows
    last = np.array([rec.last_mean() for rec in recorders])
    info = {"iteration": k, "n_iterations": n_iterations,
            "env_steps": first["env_steps"][-1], "wall_time": first["wall_time"][-1],
            "last_mean_return": last, "solved": np.array(solved)}
    if callable(progress):
        progress(info)
    elif all(solved) or k == n_iterations or k % max(1, n_iterations // 10) == 0:
        median = np.nanmedian(last) if np.isfinite(last).any() else np.nan
        print(f"iteration {k:5d}/{n_iterations}: {info['env_steps']:8d} steps per "
              f"member, {info['wall_time']:6.1f} s, mean return of the last "
              f"{recorders[0].stop_window} episodes: median {median:7.2f} over "
              f"{len(recorders)} members, {int(np.sum(solved))} at stop_at")
