"""The network training loops: vanilla PG (with a critic), NPG, TRPO, PPO-KL and PPO-clip.

Smoke tests at a tiny budget on CartPole and on a tabular MDP (History well
formed, the same seed gives the same run), the PPO step's gradient against
finite differences of the clipped objective written like the equation, TRPO's
accepted step against the KL constraint measured on the batch, stop_at,
progress and bad input. Speed is measured in benchmarks/bench_ppo.py, never here.
"""

import numpy as np
import pytest

from pgkit.envs import CartPoleVecEnv
from pgkit.gradients import one_hot_features
from pgkit.mdp import chain_mdp
from pgkit.nn import CategoricalMLPPolicy, ValueMLP
from pgkit.policies import TabularSoftmaxPolicy
from pgkit.ppo import normalise_advantages, train_ppo
from pgkit.returns import gae
from pgkit.rollout import TabularEnv, collect
from pgkit.training import History, train_policy_gradient
from pgkit.trust_region import train_trust_region

LOOPS = {
    "vanilla": (train_ppo, {"variant": "vanilla"}),
    "ppo-clip": (train_ppo, {"variant": "clip"}),
    "ppo-kl": (train_ppo, {"variant": "kl"}),
    "ppo-kl-dual": (train_ppo, {"variant": "kl-dual"}),
    "npg": (train_trust_region, {"line_search": False}),
    "trpo": (train_trust_region, {"line_search": True}),
}
COMMON = {"vanilla", "ppo-clip", "ppo-kl", "ppo-kl-dual"}
DIAGNOSTICS = {
    "ppo": {"approx_kl", "kl", "clip_fraction", "entropy", "explained_variance", "ratio_ess",
            "value_loss", "beta"},
    "trust_region": {"kl", "step_fraction", "approx_kl", "ratio_ess", "entropy",
                     "explained_variance", "value_loss"},
}
CHAIN = chain_mdp(4, horizon=5, gamma=1.0)


def cartpole_problem():
    return CartPoleVecEnv(2), CategoricalMLPPolicy(4, 2, hidden=(8,)), ValueMLP(4, hidden=(8,)), {}


def tabular_problem():
    S = CHAIN.n_states
    return (TabularEnv(CHAIN, 3), CategoricalMLPPolicy(S, 2, hidden=()), ValueMLP(S, hidden=()),
            {"obs_features": lambda s: one_hot_features(s, S), "gamma": 1.0})


PROBLEMS = {"cartpole": cartpole_problem, "tabular": tabular_problem}


def run(loop: str, problem: str, seed: int = 0, n_steps: int = 16, n_iterations: int = 3, **kw):
    train, options = LOOPS[loop]
    env, policy, value_fn, extra = PROBLEMS[problem]()
    total_steps = n_steps * env.num_envs * n_iterations
    history = train(env, policy, value_fn, np.random.default_rng(seed), total_steps=total_steps,
                    n_steps=n_steps, **options, **extra, **kw)
    return history, env, policy, value_fn


# ------------------------------------------------------------------------- smoke tests

@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("loop", LOOPS)
def test_every_loop_runs_and_returns_a_well_formed_history(loop, problem):
    h, env, policy, value_fn = run(loop, problem)
    assert isinstance(h, History)
    B = env.num_envs
    np.testing.assert_array_equal(h.env_steps, [16 * B, 32 * B, 48 * B])
    for name in ("iteration_returns", "grad_norms", "wall_time"):
        assert getattr(h, name).shape == (3,), name
    assert np.all(np.diff(h.wall_time) >= 0) and h.wall_time[0] >= 0
    assert np.all(np.isfinite(h.grad_norms)) and np.all(h.grad_norms >= 0)
    assert h.episode_returns.size > 0 and h.episode_returns.shape == h.episode_end_steps.shape
    assert np.all(np.diff(h.episode_end_steps) >= 0)
    assert 0 < h.episode_end_steps[0] and h.episode_end_steps[-1] <= h.env_steps[-1]
    assert np.all(h.episode_end_steps % B == 0)                      # whole vector steps
    assert h.theta.shape == (policy.n_params,) and np.all(np.isfinite(h.theta))
    assert h.value_params.shape == (value_fn.n_params,) and np.all(np.isfinite(h.value_params))
    kind = "trust_region" if LOOPS[loop][0] is train_trust_region else "ppo"
    assert set(h.diagnostics) == DIAGNOSTICS[kind]
    for name, values in h.diagnostics.items():
        assert values.shape == (3,), name
        if name == "beta" and loop in ("vanilla", "ppo-clip"):
            assert np.all(np.isnan(values))
        else:
            assert np.all(np.isfinite(values)), name
    assert np.all(h.diagnostics["kl"] >= 0) and np.all(h.diagnostics["approx_kl"] >= 0)
    assert np.all((h.diagnostics["ratio_ess"] > 0) & (h.diagnostics["ratio_ess"] <= 1 + 1e-12))
    if problem == "tabular":                                        # horizon 5: 3 ends per 5 steps
        assert h.episode_returns.size == 3 * (48 // 5)


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("loop", LOOPS)
def test_the_same_seed_gives_the_same_history_apart_from_wall_time(loop, problem):
    a, b, c = (run(loop, problem, seed=seed)[0] for seed in (7, 7, 8))
    for name in ("iteration_returns", "episode_returns", "episode_end_steps", "grad_norms",
                 "env_steps", "theta", "value_params"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.diagnostics.keys() == b.diagnostics.keys()
    for name in a.diagnostics:
        np.testing.assert_array_equal(a.diagnostics[name], b.diagnostics[name], err_msg=name)
    assert not np.array_equal(a.theta, c.theta)


def test_vanilla_pg_is_one_policy_gradient_step_per_batch():
    seed, n_steps = 4, 16
    policy, value_fn = CategoricalMLPPolicy(4, 2, hidden=(8,)), ValueMLP(4, hidden=(8,))
    init = np.random.default_rng(1)
    params, value_params = policy.init(init), value_fn.init(init)
    optimizer = RecordingAscent(length=0.1)
    h = train_ppo(CartPoleVecEnv(2), policy, value_fn, np.random.default_rng(seed), variant="vanilla",
                  total_steps=3 * 2 * n_steps, n_steps=n_steps, max_grad_norm=None,
                  optimizer=optimizer, params=params, value_params=value_params)
    assert len(optimizer.grads) == h.env_steps.size == 3                # one step per batch
    batch = collect(CartPoleVecEnv(2), policy, params, n_steps, np.random.default_rng(seed))
    values = value_fn.value(value_params, batch.observations)
    next_values = value_fn.value(value_params, batch.next_observations)
    adv = normalise_advantages(gae(batch.rewards, values, next_values, batch.terminated,
                                   batch.truncated, 0.98, 0.8))
    # the policy gradient (1/N) sum_i A_i grad log pi(a_i | s_i)
    pg = policy.grad_log_prob(params, batch.observations, batch.actions, adv / adv.size)
    np.testing.assert_allclose(optimizer.grads[0], pg, rtol=1e-10, atol=1e-14)


def test_train_policy_gradient_history_keeps_its_fields():
    policy = TabularSoftmaxPolicy(CHAIN.n_states, 2)
    h = train_policy_gradient(TabularEnv(CHAIN, 4), policy, policy.init_params(),
                              np.random.default_rng(0), n_iterations=2, n_steps=5)
    assert h.diagnostics == {} and h.value_params is None
    assert h.grad_norms.shape == (2,)


# ------------------------------------------------------------------ stop_at and progress

def test_stop_at_stops_after_the_first_iteration_that_reaches_it():
    h, *_ = run("ppo-clip", "tabular", n_steps=5, n_iterations=10, stop_at=-1.0, stop_window=3)
    assert h.env_steps.size == 1                      # 3 episodes end in the first batch
    h, *_ = run("trpo", "tabular", n_steps=5, n_iterations=4, stop_at=1e9)
    assert h.env_steps.size == 4                      # never reached: the whole budget


def test_progress_callable_and_flag(capsys):
    seen = []
    run("ppo-kl", "tabular", progress=seen.append)
    assert [info["iteration"] for info in seen] == [1, 2, 3]
    assert {"env_steps", "wall_time", "mean_return", "last_mean_return", "solved", "beta",
            "approx_kl"} <= set(seen[0])
    assert capsys.readouterr().out == ""              # quiet unless asked
    run("trpo", "tabular", progress=True)
    assert capsys.readouterr().out.count("iteration") == 3
    run("trpo", "tabular")
    assert capsys.readouterr().out == ""


# ------------------------------------------- the PPO step against the equation

class RecordingAscent:
    """Ascends by a fixed-length step along the gradient and records what it was given."""

    def __init__(self, length: float):
        self.length, self.thetas, self.grads = length, [], []

    def step(self, theta, grad):
        self.thetas.append(np.array(theta))
        self.grads.append(np.array(grad))
        return theta + self.length * grad / np.linalg.norm(grad)


def slow_ppo_objective(policy, theta, obs, actions, old_log_probs, advantages, clip_eps, ent_coef):
    """(1/N) sum_i [min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i) + c H(pi(.|s_i))], sample by sample."""
    logits = policy.logits(theta, obs)
    total = 0.0
    for z, a, old, A in zip(logits, actions, old_log_probs, advantages):
        log_pi = z - np.log(np.sum(np.exp(z)))
        r = np.exp(log_pi[a] - old)
        total += min(r * A, min(max(r, 1 - clip_eps), 1 + clip_eps) * A)
        total += ent_coef * -np.sum(np.exp(log_pi) * log_pi)
    return total / len(actions)


def test_ppo_gradient_step_equals_finite_differences_of_the_clipped_objective():
    seed, n_steps, clip_eps, ent_coef = 3, 32, 0.2, 0.01
    policy, value_fn = CategoricalMLPPolicy(4, 2, hidden=(8,)), ValueMLP(4, hidden=(8,))
    init = np.random.default_rng(99)
    params, value_params = policy.init(init), value_fn.init(init)
    params[-2:] = [0.3, -0.2]                          # a policy that is not uniform
    optimizer = RecordingAscent(length=0.3)
    train_ppo(CartPoleVecEnv(2), policy, value_fn, np.random.default_rng(seed), variant="clip",
              total_steps=n_steps * 2, n_steps=n_steps, update_epochs=2, n_minibatches=1,
              max_grad_norm=None, clip_eps=clip_eps, ent_coef=ent_coef, optimizer=optimizer,
              params=params, value_params=value_params)

    # the batch the loop saw: collect is its first use of rng when both parameters are given
    batch = collect(CartPoleVecEnv(2), policy, params, n_steps, np.random.default_rng(seed))
    values = value_fn.value(value_params, batch.observations)
    next_values = value_fn.value(value_params, batch.next_observations)
    adv = gae(batch.rewards, values, next_values, batch.terminated, batch.truncated, 0.98, 0.8)
    adv = normalise_advantages(adv.ravel())            # one minibatch: the whole batch
    obs, actions, old = batch.observations.reshape(-1, 4), batch.actions.ravel(), batch.log_probs.ravel()

    def objective(theta):
        return slow_ppo_objective(policy, theta, obs, actions, old, adv, clip_eps, ent_coef)

    np.testing.assert_array_equal(optimizer.thetas[0], params)
    ratio = np.exp(policy.log_prob(optimizer.thetas[1], obs, actions) - old)
    clipped = np.mean(np.abs(ratio - 1) > clip_eps)
    assert 0.1 < clipped < 0.9, f"the second step should meet the clip, fraction {clipped}"
    for theta, grad in zip(optimizer.thetas, optimizer.grads):   # r = 1, then the clip binds
        h = 1e-6
        numeric = np.array([(objective(theta + h * e) - objective(theta - h * e)) / (2 * h)
                            for e in np.eye(theta.size)])
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


# -------------------------------------------- TRPO's step respects the trust region

@pytest.mark.parametrize("damping", [0.1, 0.0])
def test_trpo_accepted_step_satisfies_the_kl_constraint_on_the_batch(damping):
    seed, n_steps, max_kl = 5, 64, 0.01
    env, policy, value_fn, _ = cartpole_problem()
    init = np.random.default_rng(11)
    params, value_params = policy.init(init), value_fn.init(init)
    kw = dict(total_steps=n_steps * 2, n_steps=n_steps, max_kl=max_kl, damping=damping,
              params=params, value_params=value_params)
    h = train_trust_region(env, policy, value_fn, np.random.default_rng(seed), line_search=True, **kw)
    batch = collect(CartPoleVecEnv(2), policy, params, n_steps, np.random.default_rng(seed))
    kl = policy.kl(params, h.theta, batch.observations).mean()
    assert h.diagnostics["step_fraction"][0] > 0                  # a step was accepted
    assert 0 < kl <= max_kl
    np.testing.assert_allclose(h.diagnostics["kl"][0], kl, rtol=1e-10)
    # the accepted step improves the surrogate (1/N) sum r A with the loop's advantages
    values = value_fn.value(value_params, batch.observations)
    next_values = value_fn.value(value_params, batch.next_observations)
    adv = normalise_advantages(gae(batch.rewards, values, next_values, batch.terminated,
                                   batch.truncated, 0.98, 0.8))
    ratio = np.exp(policy.log_prob(h.theta, batch.observations, batch.actions) - batch.log_probs)
    assert np.mean(ratio * adv) > np.mean(adv)
    npg = train_trust_region(CartPoleVecEnv(2), policy, value_fn, np.random.default_rng(seed),
                             line_search=False, **kw)
    assert npg.diagnostics["step_fraction"][0] == 1
    if damping == 0:
        # the undamped Fisher of a nearly uniform policy is ill-conditioned: the natural step's
        # quadratic model is far off, NPG's full step overshoots, and TRPO backtracked
        assert npg.diagnostics["kl"][0] > 10 * max_kl
        assert h.diagnostics["step_fraction"][0] < 1
    else:
        # damped, the model overestimates the KL: the full step is inside and TRPO takes it
        assert h.diagnostics["step_fraction"][0] == 1
        np.testing.assert_array_equal(npg.theta, h.theta)


# ------------------------------------------------------------------------ bad input

def _cartpole(**kw):
    env, policy, value_fn, _ = cartpole_problem()
    args = dict(env=env, policy=policy, value_fn=value_fn, rng=np.random.default_rng(0),
                total_steps=64, n_steps=16)
    args.update(kw)
    return args


def _ppo(**kw):
    a = _cartpole(**kw)
    return lambda: train_ppo(a.pop("env"), a.pop("policy"), a.pop("value_fn"), a.pop("rng"), **a)


def _trpo(**kw):
    a = _cartpole(**kw)
    return lambda: train_trust_region(a.pop("env"), a.pop("policy"), a.pop("value_fn"), a.pop("rng"), **a)


@pytest.mark.parametrize("call, match", [
    (_ppo(variant="ppo"), "variant must be one of"),
    (_ppo(policy=TabularSoftmaxPolicy(3, 2)), "policy must be a pgkit.nn.CategoricalMLPPolicy"),
    (_ppo(value_fn=CategoricalMLPPolicy(4, 2)), "value_fn must be a pgkit.nn.ValueMLP"),
    (_ppo(value_fn=ValueMLP(3)), r"same observations: obs_dim 3 != 4"),
    (_ppo(policy=CategoricalMLPPolicy(4, 3)), "env has 2 actions, the policy 3"),
    (_ppo(env="CartPole-v1"), "env must be a vectorised environment"),
    (_ppo(env=TabularEnv(CHAIN, 2), policy=CategoricalMLPPolicy(4, 2), value_fn=ValueMLP(4)),
     r"observations have shape \(\).*one_hot_features"),
    (_ppo(env=TabularEnv(CHAIN, 2), obs_features=lambda s: s[:, None] * np.ones(3)),
     r"obs_features must map observations .* \[B, obs_dim\] = \(2, 4\), got \(2, 3\)"),
    (_ppo(obs_features="one-hot"), "obs_features must be a callable"),
    (_ppo(rng=0), "rng must be a numpy.random.Generator"),
    (_ppo(total_steps=31), r"one batch of n_steps \* num_envs = 16 \* 2 = 32"),
    (_ppo(total_steps=0), "total_steps must be >= 1"),
    (_ppo(n_steps=2.5), "n_steps must be an integer"),
    (_ppo(gamma=1.5), r"gamma must be in \[0, 1\]"),
    (_ppo(gae_lambda=-0.1), r"gae_lambda must be in \[0, 1\]"),
    (_ppo(lr=0.0), "lr must be positive"),
    (_ppo(update_epochs=0), "update_epochs must be >= 1"),
    (_ppo(n_minibatches=0), "n_minibatches must be >= 1"),
    (_ppo(n_minibatches=33), r"n_minibatches must be <= n_steps \* num_envs = 32"),
    (_ppo(value_minibatches=40), r"value_minibatches must be <= n_steps \* num_envs = 32"),
    (_ppo(clip_eps=1.0), r"clip_eps must be in \[0, 1\)"),
    (_ppo(ent_coef=-1), "ent_coef must be non-negative"),
    (_ppo(variant="kl", kl_target=0), "kl_target must be positive"),
    (_ppo(beta=-1.0), "beta must be non-negative"),
    (_ppo(norm_adv="yes"), "norm_adv must be True or False"),
    (_ppo(max_grad_norm=0), "max_grad_norm must be positive"),
    (_ppo(value_lr=-1), "value_lr must be non-negative"),
    (_ppo(optimizer=object()), "optimizer must have a step"),
    (_ppo(params=np.zeros(3)), r"params must have shape \[n_params\] = \(58,\), got \(3,\)"),
    (_ppo(value_params=np.full(49, np.inf)), "value_params must be finite"),
    (_ppo(stop_at=np.nan), "stop_at must be a finite number"),
    (_ppo(stop_window=0), "stop_window must be >= 1"),
    (_ppo(progress="loud"), "progress must be True, False or a callable"),
    (_trpo(line_search="yes"), r"line_search must be True \(TRPO\) or False \(NPG\)"),
    (_trpo(max_kl=0), "max_kl must be a positive finite number"),
    (_trpo(cg_iters=0), "cg_iters must be >= 1"),
    (_trpo(damping=-0.1), "damping must be non-negative"),
    (_trpo(backtrack_ratio=1.0), r"backtrack_ratio must be in \(0, 1\)"),
    (_trpo(max_backtracks=-1), "max_backtracks must be >= 0"),
    (_trpo(value_epochs=-1), "value_epochs must be >= 0"),
    (_trpo(value_optimizer="adam"), "value_optimizer must have a step"),
    (_trpo(policy=ValueMLP(4)), "policy must be a pgkit.nn.CategoricalMLPPolicy"),
])
def test_bad_input_fails_with_a_message(call, match):
    with pytest.raises(ValueError, match=match):
        call()
