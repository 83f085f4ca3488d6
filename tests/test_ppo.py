"""PPO's objectives, gradients and diagnostics against their definitions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgkit.mdp import finite_difference_gradient as fd
from pgkit import ppo
from pgkit.importance import effective_sample_size
from pgkit.nn import CategoricalMLPPolicy, ValueMLP




# ----------------------------------------------------------------------------- clipped surrogate

@pytest.mark.parametrize("r, A, value, grad", [
    (1.5, 2.0, 1.2 * 2.0, 0.0),      # A > 0, r past 1 + eps: clipped, gradient exactly 0
    (0.5, 2.0, 0.5 * 2.0, 2.0),      # A > 0, r below 1 - eps: unclipped, may still rise
    (0.5, -2.0, 0.8 * -2.0, 0.0),    # A < 0, r below 1 - eps: clipped, gradient exactly 0
    (1.5, -2.0, 1.5 * -2.0, -2.0),   # A < 0, r past 1 + eps: unclipped, pushed back
    (1.1, 2.0, 1.1 * 2.0, 2.0),      # inside the range
    (0.9, -2.0, 0.9 * -2.0, -2.0),
    (1.2, 2.0, 1.2 * 2.0, 2.0),      # at the kink: the unclipped derivative
    (1.5, 0.0, 0.0, 0.0),
])
def test_clipped_surrogate_four_cases(r, A, value, grad):
    s, g = ppo.clipped_surrogate(np.array([r]), np.array([A]), 0.2, return_grad=True)
    np.testing.assert_allclose(s, [value])
    assert g[0] == grad                                   # exact, including the zeros
    np.testing.assert_allclose(ppo.clipped_surrogate([r], [A], 0.2), [value])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.sampled_from([0.1, 0.2, 0.3]))
def test_clipped_surrogate_against_definition_and_finite_differences(seed, eps):
    rng = np.random.default_rng(seed)
    ratio = rng.uniform(0.3, 1.8, size=(6, 3))
    adv = rng.normal(size=(6, 3))
    s, g = ppo.clipped_surrogate(ratio, adv, eps, return_grad=True)
    np.testing.assert_allclose(s, np.minimum(ratio * adv, np.clip(ratio, 1 - eps, 1 + eps) * adv))
    away = np.minimum(np.abs(ratio - 1 - eps), np.abs(ratio - 1 + eps)) > 1e-4
    numeric = fd(lambda r: ppo.clipped_surrogate(r, adv, eps).sum(), ratio)
    np.testing.assert_allclose(g[away], numeric[away], atol=1e-6)
    held = ((adv > 0) & (ratio > 1 + eps)) | ((adv < 0) & (ratio < 1 - eps))
    assert np.all(g[held] == 0.0) and np.all(g[~held] == adv[~held])


def test_clipped_policy_objective_gradient_in_log_probs_and_through_a_network():
    rng = np.random.default_rng(0)
    old = np.log(rng.uniform(0.1, 0.9, size=20))
    new = old + rng.normal(scale=0.3, size=20)
    adv = rng.normal(size=20)
    J, grad = ppo.clipped_policy_objective(new, old, adv, 0.2)
    np.testing.assert_allclose(J, ppo.clipped_surrogate(np.exp(new - old), adv, 0.2).mean())
    np.testing.assert_allclose(grad, fd(lambda lp: ppo.clipped_policy_objective(lp, old, adv, 0.2)[0], new),
                               atol=1e-7)
    # chained through a policy network: weights = dJ/dlog pi give dJ/dparams
    policy = CategoricalMLPPolicy(3, 4, hidden=(5,))
    params_old = policy.init(rng)
    params = params_old + 0.3 * rng.normal(size=policy.n_params)
    obs, actions = rng.normal(size=(20, 3)), rng.integers(0, 4, size=20)
    old_lp = policy.log_prob(params_old, obs, actions)

    def objective(p):
        return ppo.clipped_policy_objective(policy.log_prob(p, obs, actions), old_lp, adv, 0.2)[0]

    _, w = ppo.clipped_policy_objective(policy.log_prob(params, obs, actions), old_lp, adv, 0.2)
    np.testing.assert_allclose(policy.grad_log_prob(params, obs, actions, w), fd(objective, params),
                               atol=1e-6)


# ----------------------------------------------------------------------------- KL penalty

def test_kl_penalty_surrogate_and_its_gradients():
    ratio, adv, kl = np.array([0.5, 1.0, 2.0]), np.array([1.0, -1.0, 3.0]), np.array([0.0, 0.1, 0.4])
    s, g_r, g_kl = ppo.kl_penalty_surrogate(ratio, adv, kl, 2.0, return_grad=True)
    np.testing.assert_allclose(s, ratio * adv - 2.0 * kl)
    np.testing.assert_array_equal(g_r, adv)
    np.testing.assert_array_equal(g_kl, [-2.0, -2.0, -2.0])
    np.testing.assert_allclose(ppo.kl_penalty_surrogate(ratio, adv, kl, 0.0), ratio * adv)


@pytest.mark.parametrize("kl, expected", [
    (0.031, 2.0), (1.5 * 0.02, 1.0), (0.02, 1.0), (0.02 / 1.5, 1.0), (0.013, 0.5), (0.0, 0.5)])
def test_adaptive_kl_coefficient_doubles_halves_or_keeps(kl, expected):
    assert ppo.adaptive_kl_coefficient(1.0, kl, 0.02) == expected


def test_adaptive_kl_coefficient_settles_where_kl_tracks_the_target():
    # a toy: the KL an update makes falls as 1 / beta; beta moves until KL is within [target/1.5, 1.5 target]
    beta = 1e-3
    for _ in range(40):
        beta = ppo.adaptive_kl_coefficient(beta, 0.1 / beta, 0.01)
    assert 0.01 / 1.5 <= 0.1 / beta <= 1.5 * 0.01


def test_dual_kl_coefficient_is_projected_gradient_ascent_on_the_violation():
    assert ppo.dual_kl_coefficient(1.0, 0.03, 0.01, 10.0) == pytest.approx(1.2)
    assert ppo.dual_kl_coefficient(1.0, 0.005, 0.01, 10.0) == pytest.approx(0.95)
    assert ppo.dual_kl_coefficient(0.01, 0.0, 0.01, 10.0) == 0.0        # never negative
    assert ppo.dual_kl_coefficient(1.0, 0.5, 0.01, 0.0) == 1.0
    # the multiplier of a toy constraint: KL(beta) = 0.1 / (1 + beta); the fixed point has KL = target
    beta = 0.0
    for _ in range(2000):
        beta = ppo.dual_kl_coefficient(beta, 0.1 / (1 + beta), 0.02, 20.0)
    assert 0.1 / (1 + beta) == pytest.approx(0.02, rel=1e-3)


# ----------------------------------------------------------------------------- entropy and value losses

def test_entropy_bonus_matches_the_policy_entropy_and_its_gradient():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 3, 5))
    bonus, grad = ppo.entropy_bonus(logits, 0.01)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(bonus, 0.01 * np.mean(-np.sum(p * np.log(p), -1)))
    np.testing.assert_allclose(grad, fd(lambda z: ppo.entropy_bonus(z, 0.01)[0], logits), atol=1e-9)
    # chained through a network it equals coef / N times the policy's own grad_entropy
    policy = CategoricalMLPPolicy(2, 5, hidden=(4,))
    params, obs = policy.init(rng) + 0.5 * rng.normal(size=policy.n_params), rng.normal(size=(7, 2))
    out, cache = policy.mlp.forward(params, obs)
    np.testing.assert_allclose(ppo.entropy_bonus(out, 0.5)[0], 0.5 * policy.entropy(params, obs).mean())
    np.testing.assert_allclose(policy.mlp.backward(params, cache, ppo.entropy_bonus(out, 0.5)[1]),
                               0.5 / 7 * policy.grad_entropy(params, obs), atol=1e-12)


def test_value_loss_unclipped_matches_value_mlp():
    rng = np.random.default_rng(2)
    values, returns = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    loss, grad = ppo.value_loss(values, returns)
    np.testing.assert_allclose(loss, 0.5 * np.mean((values - returns) ** 2))
    np.testing.assert_allclose(grad, fd(lambda v: ppo.value_loss(v, returns)[0], values), atol=1e-9)
    critic = ValueMLP(3, hidden=(4,))
    phi, obs, R = critic.init(rng), rng.normal(size=(9, 3)), rng.normal(size=9)
    out, cache = critic.mlp.forward(phi, obs)
    loss, grad = ppo.value_loss(out[..., 0], R)
    np.testing.assert_allclose(loss, critic.value_loss(phi, obs, R))
    np.testing.assert_allclose(critic.mlp.backward(phi, cache, grad[..., None]),
                               critic.grad_value_loss(phi, obs, R), atol=1e-12)


def test_value_loss_clipped_against_cleanrl_definition_and_gradient():
    rng = np.random.default_rng(3)
    old, returns = rng.normal(size=40), rng.normal(scale=2.0, size=40)
    values = old + rng.normal(scale=0.5, size=40)
    c = 0.2
    loss, grad = ppo.value_loss(values, returns, old_values=old, clip_range=c)
    clipped = old + np.clip(values - old, -c, c)
    np.testing.assert_allclose(loss, 0.5 * np.mean(np.maximum((values - returns) ** 2,
                                                              (clipped - returns) ** 2)))
    away = np.abs(np.abs(values - old) - c) > 1e-4
    numeric = fd(lambda v: ppo.value_loss(v, returns, old_values=old, clip_range=c)[0], values)
    np.testing.assert_allclose(grad[away], numeric[away], atol=1e-8)
    held = (clipped - returns) ** 2 > (values - returns) ** 2
    assert held.any() and np.all(grad[held] == 0.0)
    # inside the clip range the clipped and unclipped losses agree
    near = old + 0.5 * c * np.tanh(values - old)
    for a, b in zip(ppo.value_loss(near, returns, old, c), ppo.value_loss(near, returns)):
        np.testing.assert_allclose(a, b)


# ----------------------------------------------------------------------------- advantages and minibatches

@pytest.mark.parametrize("shape", [(1,), (7,), (16, 4)])
def test_normalise_advantages(shape):
    adv = np.random.default_rng(4).normal(3.0, 5.0, size=shape)
    out = ppo.normalise_advantages(adv)
    assert out.shape == shape
    np.testing.assert_allclose(out.mean(), 0.0, atol=1e-12)
    if adv.size > 1:
        np.testing.assert_allclose(out.std(), 1.0, rtol=1e-7)
    np.testing.assert_allclose(out, (adv - adv.mean()) / (adv.std() + 1e-8))
    np.testing.assert_array_equal(ppo.normalise_advantages(np.full(5, 2.5)), np.zeros(5))
    np.testing.assert_array_equal(ppo.normalise_advantages(np.full(5, 2.5), eps=0.0), np.zeros(5))


@pytest.mark.parametrize("n, k", [(12, 4), (10, 3), (5, 5), (7, 1)])
def test_minibatches_cover_every_index_once_per_epoch(n, k):
    rng = np.random.default_rng(5)
    epochs = [ppo.minibatches(n, k, rng) for _ in range(3)]
    for batches in epochs:
        assert len(batches) == k
        sizes = [len(b) for b in batches]
        assert max(sizes) - min(sizes) <= 1
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(n))
    if n > 1:
        assert not all(np.array_equal(np.concatenate(epochs[0]), np.concatenate(e)) for e in epochs[1:])
    again = ppo.minibatches(n, k, np.random.default_rng(5))
    for a, b in zip(again, epochs[0]):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- diagnostics

def test_diagnostics_against_cleanrl_definitions():
    rng = np.random.default_rng(6)
    log_ratio = rng.normal(scale=0.2, size=(8, 4))
    r = np.exp(log_ratio)
    np.testing.assert_allclose(ppo.approx_kl(log_ratio), np.mean((r - 1) - log_ratio), rtol=1e-12)
    np.testing.assert_allclose(ppo.old_approx_kl(log_ratio), np.mean(-log_ratio))
    assert ppo.clip_fraction(r, 0.2) == np.mean(np.abs(r - 1) > 0.2)
    assert ppo.clip_fraction([1.0, 1.2, 0.7, 1.5], 0.2) == 0.5
    np.testing.assert_allclose(ppo.ratio_ess(log_ratio), r.sum() ** 2 / (r.size * np.sum(r ** 2)))
    np.testing.assert_allclose(ppo.ratio_ess(log_ratio),
                               effective_sample_size(log_ratio.ravel()) / log_ratio.size)
    assert ppo.ratio_ess(np.zeros(10)) == pytest.approx(1.0)
    assert ppo.ratio_ess([0.0, -1e4, -1e4, -1e4]) == pytest.approx(0.25)   # one sample dominates
    assert ppo.approx_kl(np.zeros(3)) == 0.0
    assert ppo.approx_kl([1e-9]) == pytest.approx(0.5e-18, rel=1e-5)     # accurate near r = 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-20, 20), min_size=1, max_size=30))
def test_approx_kl_is_nonnegative(log_ratio):
    assert ppo.approx_kl(log_ratio) >= 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_approx_kl_estimators_are_unbiased_for_kl_old_new(seed):
    rng = np.random.default_rng(seed)
    old = rng.dirichlet(np.ones(5))
    new = rng.dirichlet(np.ones(5))                                   # far apart
    exact = np.sum(old * (np.log(old) - np.log(new)))                 # KL(old || new)
    actions = rng.choice(5, size=200_000, p=old)                      # sampled by the old policy
    log_ratio = np.log(new[actions]) - np.log(old[actions])
    k3 = np.expm1(log_ratio) - log_ratio
    for estimate, terms in ((ppo.approx_kl(log_ratio), k3), (ppo.old_approx_kl(log_ratio), -log_ratio)):
        se = terms.std(ddof=1) / np.sqrt(terms.size)
        assert abs(estimate - exact) < 4 * se
    assert k3.min() >= 0                                              # every term, not just the mean


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_approx_kl_has_the_smaller_variance_for_nearby_policies(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=5)
    old = np.exp(logits) / np.exp(logits).sum()
    nearby = logits + 0.1 * rng.normal(size=5)                        # one PPO update away
    new = np.exp(nearby) / np.exp(nearby).sum()
    actions = rng.choice(5, size=20_000, p=old)
    log_ratio = np.log(new[actions]) - np.log(old[actions])
    k3 = np.expm1(log_ratio) - log_ratio
    assert k3.var() < 0.1 * log_ratio.var()


def test_explained_variance():
    rng = np.random.default_rng(7)
    returns = rng.normal(size=(6, 5))
    values = returns + 0.3 * rng.normal(size=(6, 5))
    np.testing.assert_allclose(ppo.explained_variance(values, returns),
                               1 - np.var(returns - values) / np.var(returns))
    assert ppo.explained_variance(returns, returns) == 1.0
    assert ppo.explained_variance(returns + 4.0, returns) == pytest.approx(1.0)   # blind to a shift
    assert ppo.explained_variance(np.full((6, 5), returns.mean()), returns) == pytest.approx(0.0)
    assert ppo.explained_variance(-returns, returns) < 0
    # constant returns: 1 if the residuals are constant too, else 0 (never NaN)
    assert ppo.explained_variance(np.full(4, 3.0), np.full(4, 1.0)) == 1.0
    assert ppo.explained_variance([0.0, 1.0, 0.0, 1.0], np.full(4, 1.0)) == 0.0
    assert ppo.explained_variance([2.0], [1.0]) == 1.0


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, message", [
    (lambda: ppo.clipped_surrogate([1.0, 1.0], [1.0], 0.2), "ratio and advantages must have the same shape"),
    (lambda: ppo.clipped_surrogate([-0.5], [1.0], 0.2), "ratio must be non-negative"),
    (lambda: ppo.clipped_surrogate([np.inf], [1.0], 0.2), "ratio must be finite"),
    (lambda: ppo.clipped_surrogate([1.0], [np.nan], 0.2), "advantages contains NaN"),
    (lambda: ppo.clipped_surrogate([1.0], [1.0], 1.5), r"clip_eps must be in \[0, 1\)"),
    (lambda: ppo.clipped_surrogate([1.0], [1.0], "0.2"), "clip_eps must be a finite number"),
    (lambda: ppo.clipped_surrogate([], [], 0.2), "ratio is empty"),
    (lambda: ppo.clipped_policy_objective([0.0], [0.0, 0.0], [1.0], 0.2),
     "log_probs and old_log_probs must have the same shape"),
    (lambda: ppo.clipped_policy_objective([0.0], [0.0], [1.0, 2.0], 0.2),
     "log_probs and advantages must have the same shape"),
    (lambda: ppo.kl_penalty_surrogate([1.0], [1.0], [-0.1], 1.0), "kl must be non-negative"),
    (lambda: ppo.kl_penalty_surrogate([1.0], [1.0], [0.1], -1.0), "beta must be non-negative"),
    (lambda: ppo.adaptive_kl_coefficient(-1.0, 0.1, 0.01), "beta must be non-negative"),
    (lambda: ppo.adaptive_kl_coefficient(1.0, np.nan, 0.01), "kl must be a finite number"),
    (lambda: ppo.adaptive_kl_coefficient(1.0, 0.1, 0.0), "kl_target must be positive"),
    (lambda: ppo.dual_kl_coefficient(1.0, 0.1, 0.01, -1.0), "step_size must be non-negative"),
    (lambda: ppo.entropy_bonus(1.0, 0.01), r"logits must have shape \[\*batch, A\]"),
    (lambda: ppo.entropy_bonus([[1.0, np.inf]], 0.01), "logits must be finite"),
    (lambda: ppo.value_loss([1.0], [1.0, 2.0]), "values and returns must have the same shape"),
    (lambda: ppo.value_loss([1.0], [1.0], old_values=[1.0]), "give both old_values and clip_range"),
    (lambda: ppo.value_loss([1.0], [1.0], old_values=[1.0], clip_range=0.0), "clip_range must be positive"),
    (lambda: ppo.value_loss([1.0], [1.0], old_values=[1.0, 2.0], clip_range=0.2),
     "values and old_values must have the same shape"),
    (lambda: ppo.normalise_advantages([1.0, np.nan]), "advantages contains NaN"),
    (lambda: ppo.normalise_advantages([1.0], eps=-1.0), "eps must be non-negative"),
    (lambda: ppo.minibatches(10, 11, np.random.default_rng()), "n_minibatches must be <= n = 10"),
    (lambda: ppo.minibatches(0, 1, np.random.default_rng()), "n must be >= 1"),
    (lambda: ppo.minibatches(10, 2.0, np.random.default_rng()), "n_minibatches must be an integer"),
    (lambda: ppo.minibatches(10, 2, 0), "rng must be a numpy.random.Generator"),
    (lambda: ppo.approx_kl([]), "log_ratio is empty"),
    (lambda: ppo.approx_kl([np.inf]), "log_ratio must be finite"),
    (lambda: ppo.old_approx_kl([np.nan]), "log_ratio contains NaN"),
    (lambda: ppo.clip_fraction([1.0], -0.1), r"clip_eps must be in \[0, 1\)"),
    (lambda: ppo.explained_variance([1.0, 2.0], [1.0]), "values and returns must have the same shape"),
    (lambda: ppo.ratio_ess([-np.inf, 0.0]), "log_ratio must be finite"),
])
def test_ppo_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
