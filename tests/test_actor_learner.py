"""The actor-learner simulation: its targets, a step-by-step reference run, lag 0, determinism.

The learner's targets per correction against pgkit.vtrace.from_importance_weights;
a whole run (stale actors, truncations and terminations included) against a
slow reference written with the public, checked functions, episode by
episode; with a lag of 0 every ratio is exactly 1 and the three corrections take
identical steps; the same seed gives the same run; the population axis; smoke
tests at tiny budgets and bad input. Learning speed is measured in
benchmarks/bench_vtrace.py, never here.
"""

import math

import numpy as np
import pytest

from pgkit import actor_learner
from pgkit.actor_learner import CORRECTIONS, train_actor_learner
from pgkit.envs import CartPoleVecEnv
from pgkit.gradients import one_hot_features
from pgkit.mdp import chain_mdp
from pgkit.nn import CategoricalMLPPolicy, ValueMLP
from pgkit.optim import Adam, clip_grad_norm
from pgkit.rollout import TabularEnv
from pgkit.training import History
from pgkit.vtrace import from_importance_weights

DIAGNOSTICS = {"mean_rho", "rho_clip_fraction", "policy_lag", "approx_kl", "entropy",
               "value_loss", "explained_variance"}


def nets(hidden=(8,)):
    return CategoricalMLPPolicy(4, 2, hidden=hidden), ValueMLP(4, hidden=hidden)


def run(seed=0, num_envs=2, n_steps=8, n_iterations=4, env=None, **kw):
    policy, value_fn = nets()
    env = CartPoleVecEnv(num_envs) if env is None else env
    per_member = env.num_envs // (kw.get("population") or 1)
    return train_actor_learner(env, policy, value_fn, np.random.default_rng(seed),
                               total_steps=n_steps * per_member * n_iterations, n_steps=n_steps, **kw)


def same_history(h1: History, h2: History) -> bool:
    arrays = ["iteration_returns", "episode_returns", "episode_end_steps", "grad_norms", "env_steps",
              "theta", "value_params"]
    same = all(np.array_equal(getattr(h1, a), getattr(h2, a), equal_nan=True) for a in arrays)
    return same and all(np.array_equal(h1.diagnostics[k], h2.diagnostics[k], equal_nan=True)
                        for k in h1.diagnostics)


# ----------------------------------------------------------------------------- the learner's targets

@pytest.mark.parametrize("lam", [1.0, 0.8])
def test_corrected_targets_are_vtrace_or_vtrace_with_unit_ratios(lam):
    rng = np.random.default_rng(0)
    T, S, B = 6, 3, 4
    log_rhos = rng.normal(scale=0.7, size=(T, S, B))
    discounts = 0.95 * (rng.random((T, S, B)) > 0.1)
    rewards, values, bootstrap = rng.normal(size=(T, S, B)), rng.normal(size=(T, S, B)), rng.normal(size=(S, B))
    codes = np.array([CORRECTIONS.index(c) for c in ("none", "is", "vtrace")])
    vs_corrected = (codes == 2)[None, :, None]
    pg_corrected = (codes != 0)[None, :, None]
    thresholds = dict(clip_rho_threshold=1.3, clip_pg_rho_threshold=0.9, clip_c_threshold=0.8)
    vs, weights, q_minus_v = actor_learner._corrected_targets(
        log_rhos, discounts, rewards, values, bootstrap, vs_corrected, pg_corrected,
        math.log(1.3), math.log(0.8), math.log(0.9), lam)
    for s, name in enumerate(("none", "is", "vtrace")):
        args = (discounts[:, s], rewards[:, s], values[:, s], bootstrap[s])
        corrected = from_importance_weights(log_rhos[:, s], *args, **thresholds, lambda_=lam)
        on_policy = from_importance_weights(np.zeros((T, B)), *args, None, None, None, lambda_=lam)
        expected_vs = corrected.vs if name == "vtrace" else on_policy.vs
        np.testing.assert_allclose(vs[:, s], expected_vs, rtol=1e-12, atol=1e-12)
        expected_w = np.ones((T, B)) if name == "none" else np.minimum(0.9, np.exp(log_rhos[:, s]))
        np.testing.assert_allclose(weights[:, s], expected_w, rtol=1e-12)
        if name == "vtrace":
            np.testing.assert_allclose(weights[:, s] * q_minus_v[:, s], corrected.pg_advantages,
                                       rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_allclose(q_minus_v[:, s], on_policy.pg_advantages, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- a reference run

class RecordingEnv:
    """Passes everything through to ``env`` and keeps what the loop saw."""

    def __init__(self, env):
        self.env, self.num_envs, self.n_actions = env, env.num_envs, env.n_actions
        self.observation_shape = env.observation_shape
        self.steps = []

    def reset(self, seed=None):
        obs, info = self.env.reset(seed=seed)
        self.first = np.array(obs, dtype=float)
        return obs, info

    def step(self, actions):
        obs, r, term, trunc, info = self.env.step(actions)
        self.steps.append(dict(actions=np.array(actions), obs=np.array(obs, dtype=float),
                               rewards=np.array(r), terminated=np.array(term),
                               truncated=np.array(trunc),
                               final_obs=np.array(info["final_obs"], dtype=float)))
        return obs, r, term, trunc, info


def reference_run(recording, policy, value_fn, params, value_params, *, n_steps, n_iterations,
                  lag, correction, gamma, gae_lambda, clip_rho_threshold, clip_pg_rho_threshold,
                  clip_c_threshold, lr, value_lr, value_epochs, ent_coef, norm_adv, max_grad_norm):
    """The loop written plainly: each column split into its episodes, each episode's targets by
    from_importance_weights, bootstrapping from the true final observation at a truncation."""
    T, B = n_steps, recording.num_envs
    N = T * B
    thetas, phi = [params], value_params
    optimizer, value_optimizer = Adam(lr, eps=1e-5), Adam(value_lr, eps=1e-5)
    steps, obs = iter(recording.steps), recording.first
    thresholds = dict(clip_rho_threshold=clip_rho_threshold, clip_c_threshold=clip_c_threshold,
                      clip_pg_rho_threshold=clip_pg_rho_threshold, lambda_=gae_lambda)
    for u in range(n_iterations):
        behaviour, theta = thetas[max(0, u - lag)], thetas[-1]
        batch = {key: [] for key in ("obs", "actions", "rewards", "terminated", "truncated",
                                     "final_obs")}
        for _ in range(T):
            step = next(steps)
            batch["obs"].append(obs)
            for key in ("actions", "rewards", "terminated", "truncated", "final_obs"):
                batch[key].append(step[key])
            obs = step["obs"]
        batch = {key: np.array(value) for key, value in batch.items()}
        X, actions = batch["obs"], batch["actions"]
        log_rhos = policy.log_prob(theta, X, actions) - policy.log_prob(behaviour, X, actions)
        values = value_fn.value(phi, X)
        vs, q_minus_v = np.zeros((T, B)), np.zeros((T, B))
        for b in range(B):
            start = 0
            for t in range(T):
                term, trunc = batch["terminated"][t, b], batch["truncated"][t, b]
                if not (term or trunc or t == T - 1):
                    continue
                seg = slice(start, t + 1)
                n = t + 1 - start
                discounts = np.full(n, gamma)
                if term:
                    discounts[-1], boot = 0.0, 0.0
                elif trunc:
                    boot = value_fn.value(phi, batch["final_obs"][t, b][None])[0]
                else:
                    boot = value_fn.value(phi, obs[b][None])[0]      # where the next batch starts
                if correction == "vtrace":
                    ratios, clips = log_rhos[seg, b], thresholds
                else:                                   # every ratio 1, nothing clipped
                    ratios, clips = np.zeros(n), dict(clip_rho_threshold=None, lambda_=gae_lambda,
                                                      clip_c_threshold=None)
                out = from_importance_weights(ratios[:, None], discounts[:, None],
                                              batch["rewards"][seg, b][:, None],
                                              values[seg, b][:, None], np.array([boot]), **clips)
                vs[seg, b] = out.vs[:, 0]
                next_vs = np.append(out.vs[1:, 0], boot)
                q_minus_v[seg, b] = batch["rewards"][seg, b] + discounts * next_vs - values[seg, b]
                start = t + 1
        adv = q_minus_v
        if norm_adv:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        if correction != "none":
            adv = np.minimum(clip_pg_rho_threshold, np.exp(log_rhos)) * adv
        grad = policy.grad_log_prob(theta, X, actions, adv / N)
        grad = grad + ent_coef / N * policy.grad_entropy(theta, X)
        thetas.append(optimizer.step(theta, clip_grad_norm(grad, max_grad_norm)[0]))
        for _ in range(value_epochs):
            v_grad = value_fn.grad_value_loss(phi, X.reshape(N, -1), vs.reshape(N))
            phi = value_optimizer.step(phi, -clip_grad_norm(v_grad, max_grad_norm)[0])
    return thetas[-1], phi


@pytest.mark.parametrize("correction", CORRECTIONS)
@pytest.mark.parametrize("lag, norm_adv, ent_coef, gae_lambda", [(2, True, 0.0, 1.0),
                                                                 (1, False, 0.05, 0.9)])
def test_a_run_equals_the_reference_written_with_public_functions(correction, lag, norm_adv,
                                                                  ent_coef, gae_lambda):
    policy, value_fn = nets()
    rng = np.random.default_rng(1)
    params, value_params = policy.init(rng) + 0.5 * rng.normal(size=policy.n_params), value_fn.init(rng)
    recording = RecordingEnv(CartPoleVecEnv(3, max_episode_steps=11))
    options = dict(n_steps=6, lag=lag, correction=correction, gamma=0.97, gae_lambda=gae_lambda,
                   clip_rho_threshold=1.1, clip_pg_rho_threshold=0.95, clip_c_threshold=0.9,
                   lr=0.05, value_lr=0.02, value_epochs=3, ent_coef=ent_coef, norm_adv=norm_adv,
                   max_grad_norm=0.5)
    n_iterations = 6
    h = train_actor_learner(recording, policy, value_fn, np.random.default_rng(2),
                            total_steps=6 * 3 * n_iterations, params=params,
                            value_params=value_params, **options)
    flags = np.array([(s["terminated"].any(), s["truncated"].any()) for s in recording.steps])
    assert flags[:, 0].any() and flags[:, 1].any()       # both kinds of episode end happened
    assert h.diagnostics["approx_kl"][-1] > 1e-4          # stale actors: the ratios matter
    theta, phi = reference_run(recording, policy, value_fn, params, value_params,
                               n_iterations=n_iterations, **options)
    np.testing.assert_allclose(h.theta, theta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h.value_params, phi, rtol=1e-9, atol=1e-12)


def test_the_corrections_differ_once_actors_are_stale():
    histories = [run(correction=c, lag=2, n_iterations=6) for c in CORRECTIONS]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.allclose(histories[i].theta, histories[j].theta)


# ----------------------------------------------------------------------------- lag 0

@pytest.mark.parametrize("thresholds", [{}, dict(clip_rho_threshold=None, clip_pg_rho_threshold=None,
                                                 clip_c_threshold=None)])
@pytest.mark.parametrize("lag_distribution", ["fixed", "uniform"])
def test_with_lag_0_every_ratio_is_one_and_the_corrections_agree(thresholds, lag_distribution):
    histories = [run(correction=c, lag=0, lag_distribution=lag_distribution, **thresholds)
                 for c in CORRECTIONS]
    for h in histories:
        np.testing.assert_array_equal(h.diagnostics["mean_rho"], 1.0)
        np.testing.assert_array_equal(h.diagnostics["approx_kl"], 0.0)
        np.testing.assert_array_equal(h.diagnostics["policy_lag"], 0.0)
        assert same_history(h, histories[0])


def test_with_lag_0_the_ratio_is_one_even_if_two_forward_passes_differ_in_the_last_bits(monkeypatch):
    # the actors' forward pass ([S, B] rows a step) and the learner's ([S, T B] rows) may round
    # differently on another BLAS; simulate that, and the ratios must still be exactly 1
    exact = actor_learner._log_softmax

    def rounding_differently(z):
        out = exact(z)
        return out * (1 + 1e-15) if z.shape[1] == 2 else out          # the actors' rows (B = 2)

    monkeypatch.setattr(actor_learner, "_log_softmax", rounding_differently)
    histories = [run(correction=c, lag=0, n_steps=8) for c in CORRECTIONS]
    for h in histories:
        np.testing.assert_array_equal(h.diagnostics["mean_rho"], 1.0)
        assert same_history(h, histories[0])


# ----------------------------------------------------------------------------- determinism, population

def test_the_same_seed_gives_the_same_run_and_another_seed_another():
    a, b, c = run(seed=3, lag=2), run(seed=3, lag=2), run(seed=4, lag=2)
    assert same_history(a, b)
    assert not np.array_equal(a.theta, c.theta)
    pa = run(seed=5, num_envs=6, population=3, lag=[0, 1, 3], correction=["none", "is", "vtrace"],
             lag_distribution="uniform")
    pb = run(seed=5, num_envs=6, population=3, lag=[0, 1, 3], correction=["none", "is", "vtrace"],
             lag_distribution="uniform")
    assert all(same_history(x, y) for x, y in zip(pa, pb))


def test_population_members_are_independent_runs_with_their_own_settings():
    hs = run(num_envs=8, population=4, n_iterations=5, lag=[0, 2, 0, 3],
             correction=["vtrace", "none", "is", "vtrace"])
    assert isinstance(hs, list) and len(hs) == 4
    for h, lag in zip(hs, [0, 2, 0, 3]):
        assert isinstance(h, History)
        np.testing.assert_array_equal(h.env_steps, 16 * np.arange(1, 6))    # 2 actors x 8 steps
        np.testing.assert_array_equal(h.diagnostics["policy_lag"], np.minimum(lag, np.arange(5)))
        assert (h.diagnostics["mean_rho"] == 1.0).all() == (lag == 0)
    assert not np.array_equal(hs[0].theta, hs[2].theta)                     # different draws
    # one shared initial parameter vector gives every member the same start
    policy, value_fn = nets()
    shared = policy.init(np.random.default_rng(0))
    hs = train_actor_learner(CartPoleVecEnv(4), policy, value_fn, np.random.default_rng(0),
                             total_steps=8, n_steps=4, population=2, params=shared)
    assert hs[0].theta.shape == shared.shape


def test_uniform_lags_have_the_requested_mean():
    h = run(num_envs=64, n_steps=2, n_iterations=40, lag=3, lag_distribution="uniform")
    lags = h.diagnostics["policy_lag"][6:]                  # past the first updates (lag <= u)
    draws = 64 * lags.size                                  # uniform on {0..6}: variance 4
    assert abs(lags.mean() - 3.0) < 4 * math.sqrt(4.0 / draws)
    h = run(lag=3, lag_distribution="fixed", n_iterations=6)
    np.testing.assert_array_equal(h.diagnostics["policy_lag"], [0, 1, 2, 3, 3, 3])


# ----------------------------------------------------------------------------- smoke tests

def test_smoke_history_is_well_formed():
    h = run(num_envs=3, n_steps=16, n_iterations=5, lag=2, ent_coef=0.01)
    assert isinstance(h, History) and set(h.diagnostics) == DIAGNOSTICS
    np.testing.assert_array_equal(h.env_steps, 48 * np.arange(1, 6))
    for name in ("iteration_returns", "grad_norms", "wall_time", *[f"d:{k}" for k in DIAGNOSTICS]):
        arr = h.diagnostics[name[2:]] if name.startswith("d:") else getattr(h, name)
        assert arr.shape == (5,), name
    assert np.all(np.isfinite(h.grad_norms)) and np.all(h.grad_norms >= 0)
    assert h.episode_returns.size > 0 and h.episode_returns.shape == h.episode_end_steps.shape
    assert np.all(np.diff(h.episode_end_steps) >= 0) and np.all(h.episode_end_steps % 3 == 0)
    assert np.all((h.diagnostics["rho_clip_fraction"] >= 0) & (h.diagnostics["rho_clip_fraction"] <= 1))
    assert np.all(h.diagnostics["approx_kl"] >= 0) and np.all(h.diagnostics["entropy"] > 0)
    policy, value_fn = nets()
    assert h.theta.shape == (policy.n_params,) and h.value_params.shape == (value_fn.n_params,)
    none = run(lag=2, clip_rho_threshold=None, clip_pg_rho_threshold=None, clip_c_threshold=None)
    assert np.isnan(none.diagnostics["rho_clip_fraction"]).all()


def test_smoke_on_a_tabular_mdp_with_features():
    mdp = chain_mdp(4, gamma=0.9)
    S = mdp.n_states
    h = train_actor_learner(TabularEnv(mdp, 3, max_episode_steps=10), CategoricalMLPPolicy(S, 2, ()),
                            ValueMLP(S, ()), np.random.default_rng(0), total_steps=3 * 5 * 4,
                            n_steps=5, lag=1, obs_features=lambda s: one_hot_features(s, S))
    assert h.env_steps[-1] == 60 and np.isfinite(h.theta).all()


def test_stop_at_and_progress():
    seen = []
    h = run(n_iterations=20, stop_at=0.0, stop_window=1, progress=seen.append)
    assert h.env_steps.size < 20 and seen[-1]["solved"]                  # stops once every member did
    seen = []
    hs = run(num_envs=4, population=2, n_iterations=3, progress=seen.append)
    assert len(seen) == 3 and seen[-1]["last_mean_return"].shape == (2,)
    assert len(hs) == 2


def test_progress_true_prints(capsys):
    run(n_iterations=3, progress=True)
    run(num_envs=4, population=2, n_iterations=3, progress=True)
    out = capsys.readouterr().out
    assert "iteration" in out and "over 2 members" in out


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw, message", [
    (dict(correction="retrace"), "correction must be one of 'none', 'is', 'vtrace', got 'retrace'"),
    (dict(lag=-1), "lag must be >= 0"),
    (dict(lag=1.5), "lag must be an integer"),
    (dict(population=2, num_envs=2, lag=[0, 1, 2]), "lag must be one value or a sequence of population = 2"),
    (dict(population=2, num_envs=3), "env.num_envs = 3 must be a multiple of population = 2"),
    (dict(population=0), "population must be >= 1"),
    (dict(lag_distribution="poisson"), "lag_distribution must be 'fixed' or 'uniform'"),
    (dict(gamma=1.5), r"gamma must be in \[0, 1\]"),
    (dict(gae_lambda=-0.1), r"gae_lambda must be in \[0, 1\]"),
    (dict(clip_rho_threshold=-1.0), "clip_rho_threshold must be non-negative"),
    (dict(clip_c_threshold="a"), "clip_c_threshold must be a non-negative number or None"),
    (dict(lr=0.0), "lr must be positive and finite"),
    (dict(value_lr=np.inf), "value_lr must be positive and finite"),
    (dict(ent_coef=-1.0), "ent_coef must be non-negative"),
    (dict(norm_adv=1), "norm_adv must be True or False"),
    (dict(value_minibatches=1000), "value_minibatches must be <= n_steps \\* B"),
    (dict(max_grad_norm=0.0), "max_grad_norm must be positive and finite"),
    (dict(stop_at="high"), "stop_at must be a finite number"),
    (dict(progress="yes"), "progress must be True, False or a callable"),
    (dict(params=np.zeros(3)), r"params must be finite, of shape \[n_params\]"),
    (dict(population=2, num_envs=4, value_params=np.zeros((3, 17))), "value_params must be finite"),
])
def test_bad_input(kw, message):
    with pytest.raises(ValueError, match=message):
        run(**kw)


@pytest.mark.parametrize("call, message", [
    (lambda p, v: train_actor_learner(CartPoleVecEnv(2), "policy", v, np.random.default_rng(0),
                                      total_steps=100), "policy must be a pgkit.nn.CategoricalMLPPolicy"),
    (lambda p, v: train_actor_learner(CartPoleVecEnv(2), p, ValueMLP(3), np.random.default_rng(0),
                                      total_steps=100), "must read the same observations"),
    (lambda p, v: train_actor_learner(CartPoleVecEnv(2), p, v, 0, total_steps=100),
     "rng must be a numpy.random.Generator"),
    (lambda p, v: train_actor_learner(CartPoleVecEnv(2), p, v, np.random.default_rng(0),
                                      total_steps=10, n_steps=8), "total_steps must allow one batch"),
    (lambda p, v: train_actor_learner(object(), p, v, np.random.default_rng(0), total_steps=100),
     "env must be a vectorised environment"),
    (lambda p, v: train_actor_learner(TabularEnv(chain_mdp(4), 2), p, v, np.random.default_rng(0),
                                      total_steps=100), "give obs_features"),
])
def test_bad_arguments(call, message):
    policy, value_fn = nets()
    with pytest.raises(ValueError, match=message):
        call(policy, value_fn)
