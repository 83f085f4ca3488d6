"""Tests of pgkit.policies.

Every quantity is compared against an independent, deliberately slow
computation written like the textbook formula (Python loops over the batch,
``math`` functions), against finite differences, or against Monte Carlo
estimates with a 4-standard-error tolerance and a fixed seed.
"""

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgkit.policies import (
    LinearGaussianPolicy,
    LinearSoftmaxPolicy,
    TabularSoftmaxPolicy,
)

SHAPES = [(), (5,), (4, 3)]          # batch shapes: scalar, [B], [T, B]
BATCHED = [(5,), (4, 3)]


# ----------------------------------------------------------------- test cases

@dataclass
class Case:
    name: str
    policy: object
    slow_logits: Callable | None = None   # (theta, one observation) -> list of A logits


def _tabular_case():
    policy = TabularSoftmaxPolicy(4, 3)

    def slow_logits(theta, s):
        return [theta[int(s) * 3 + a] for a in range(3)]
    return Case("tabular", policy, slow_logits)


_PHI = np.random.default_rng(123).normal(size=(5, 3, 4))


def _state_features_case():
    policy = LinearSoftmaxPolicy.from_state_features(_PHI)

    def slow_logits(theta, s):
        return [sum(theta[k] * _PHI[int(s), a, k] for k in range(4)) for a in range(3)]
    return Case("state_features", policy, slow_logits)


def _per_action_case(obs_dim, n_actions, bias):
    policy = LinearSoftmaxPolicy.per_action_linear(obs_dim, n_actions, bias=bias)
    k = obs_dim + bias

    def slow_logits(theta, x):
        out = []
        for a in range(n_actions):
            w = theta[a * k:a * k + obs_dim]
            logit = sum(w[j] * x[j] for j in range(obs_dim))
            if bias:
                logit += theta[a * k + obs_dim]
            out.append(logit)
        return out
    return Case(f"per_action_bias={bias}", policy, slow_logits)


DISCRETE = [_tabular_case(), _state_features_case(),
            _per_action_case(3, 4, True), _per_action_case(2, 3, False)]
GAUSSIAN = [Case("gauss", LinearGaussianPolicy(3, 2)),
            Case("gauss_fixed_std_nobias",
                 LinearGaussianPolicy(2, 3, bias=False, learn_std=False, std=0.7)),
            Case("gauss_1d", LinearGaussianPolicy(1, 1))]
ALL = DISCRETE + GAUSSIAN


def ids(cases):
    return [c.name for c in cases]


def make_obs(policy, shape, rng):
    """Random valid observations with batch shape ``shape``."""
    if hasattr(policy, "n_states"):
        return rng.integers(0, policy.n_states, size=shape)
    return rng.normal(size=tuple(shape) + (policy.obs_dim,))


def make_actions(policy, shape, rng):
    if isinstance(policy, LinearGaussianPolicy):
        return rng.normal(size=tuple(shape) + (policy.action_dim,))
    return rng.integers(0, policy.n_actions, size=shape)


def repeat_obs(obs, n):
    """Stack n copies of obs along a new leading axis: batch [n, *batch]."""
    return np.broadcast_to(obs, (n,) + np.shape(obs)).copy()


def slow_probs(case, theta, obs_one):
    """pi(a|s) = 1 / sum_b exp(l_b - l_a), one state at a time."""
    logits = case.slow_logits(theta, obs_one)
    return [1.0 / sum(math.exp(lb - la) for lb in logits) for la in logits]


def batch_indices(obs, policy):
    """Iterate over the batch positions of obs."""
    batch = np.shape(obs) if hasattr(policy, "n_states") else np.shape(obs)[:-1]
    return list(np.ndindex(*batch))


# ------------------------------------------------------ softmax: probabilities

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", DISCRETE, ids=ids(DISCRETE))
def test_probs_match_slow_softmax_and_sum_to_one(case, shape):
    rng = np.random.default_rng(0)
    policy = case.policy
    theta = policy.init_params(rng, scale=1.5)
    obs = make_obs(policy, shape, rng)
    probs = policy.probs(theta, obs)
    assert probs.shape == tuple(shape) + (policy.n_actions,)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    for idx in batch_indices(obs, policy):
        np.testing.assert_allclose(policy.logits(theta, obs)[idx],
                                   case.slow_logits(theta, obs[idx]), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(probs[idx], slow_probs(case, theta, obs[idx]), rtol=1e-12)
    np.testing.assert_allclose(policy.log_probs_all(theta, obs), np.log(probs), rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", DISCRETE, ids=ids(DISCRETE))
def test_log_prob_is_log_of_probs(case, shape):
    rng = np.random.default_rng(1)
    policy = case.policy
    theta = policy.init_params(rng, scale=1.0)
    obs = make_obs(policy, shape, rng)
    actions = make_actions(policy, shape, rng)
    log_prob = policy.log_prob(theta, obs, actions)
    assert np.shape(log_prob) == tuple(shape)
    for idx in batch_indices(obs, policy):
        expected = math.log(slow_probs(case, theta, obs[idx])[int(actions[idx])])
        assert log_prob[idx] == pytest.approx(expected, rel=1e-12)


def test_softmax_is_stable_for_huge_logits():
    policy = TabularSoftmaxPolicy(2, 3)
    theta = np.array([1000.0, -1000.0, 1000.0,
                      -1000.0, -1000.0, 1000.0])
    states = np.array([0, 1])
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is fine
        probs = policy.probs(theta, states)
        log_pi = policy.log_probs_all(theta, states)
        entropy = policy.entropy(theta, states)
        kl = policy.kl(theta, -theta, states)
        score = policy.score(theta, states, np.array([0, 2]))
    np.testing.assert_allclose(probs, [[0.5, 0.0, 0.5], [0.0, 0.0, 1.0]], atol=1e-300)
    np.testing.assert_allclose(log_pi, [[-math.log(2), -2000 - math.log(2), -math.log(2)],
                                        [-2000.0, -2000.0, 0.0]], rtol=1e-12)
    np.testing.assert_allclose(entropy, [math.log(2), 0.0], atol=1e-12)
    for arr in (probs, log_pi, entropy, kl, score):
        assert np.isfinite(arr).all()
    # q = softmax(-logits). State 0: p = (1/2, 0, 1/2), log q = (-2000, 0, -2000),
    # so KL = log(1/2) + 2000. State 1: p = (0, 0, 1), log q(2) = -2000 - log 2.
    np.testing.assert_allclose(kl, [2000 - math.log(2), 2000 + math.log(2)], rtol=1e-12)
    # a zero-probability action is never sampled
    rng = np.random.default_rng(0)
    samples = policy.sample(theta, np.zeros(10_000, dtype=int), rng)
    assert set(np.unique(samples)) == {0, 2}


def test_per_action_linear_is_stable_for_huge_observations():
    policy = LinearSoftmaxPolicy.per_action_linear(2, 3)
    theta = np.array([1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    obs = np.array([[1e4, 0.0], [-1e4, 0.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is fine
        probs = policy.probs(theta, obs)
        entropy = policy.entropy(theta, obs)
        score = policy.score(theta, obs, np.array([0, 1]))
    np.testing.assert_allclose(probs, [[1, 0, 0], [0, 1, 0]], atol=1e-300)
    assert np.isfinite(entropy).all() and np.isfinite(score).all()


# --------------------------------------------------------------------- scores

def finite_difference_score(policy, theta, obs, actions, eps=1e-6):
    """Central differences of log_prob, one coordinate of theta at a time."""
    grads = []
    for i in range(policy.n_params):
        step = np.zeros_like(theta)
        step[i] = eps
        grads.append((policy.log_prob(theta + step, obs, actions)
                      - policy.log_prob(theta - step, obs, actions)) / (2 * eps))
    return np.stack(grads, axis=-1)


@pytest.mark.parametrize("shape", BATCHED)
@pytest.mark.parametrize("case", ALL, ids=ids(ALL))
def test_score_matches_finite_differences(case, shape):
    rng = np.random.default_rng(2)
    policy = case.policy
    theta = rng.normal(size=policy.n_params) * 0.5
    obs = make_obs(policy, shape, rng)
    actions = make_actions(policy, shape, rng)
    score = policy.score(theta, obs, actions)
    assert score.shape == tuple(shape) + (policy.n_params,)
    expected = finite_difference_score(policy, theta, obs, actions)
    np.testing.assert_allclose(score, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", DISCRETE, ids=ids(DISCRETE))
def test_expected_score_is_zero_by_enumeration(case, shape):
    rng = np.random.default_rng(3)
    policy = case.policy
    theta = policy.init_params(rng, scale=1.0)
    obs = make_obs(policy, shape, rng)
    for idx in batch_indices(obs, policy):
        pi = slow_probs(case, theta, obs[idx])
        total = np.zeros(policy.n_params)
        for a in range(policy.n_actions):
            total += pi[a] * policy.score(theta, obs[idx], a)
        np.testing.assert_allclose(total, 0.0, atol=1e-12)


@pytest.mark.parametrize("case", GAUSSIAN, ids=ids(GAUSSIAN))
def test_expected_score_is_zero_gaussian_monte_carlo(case):
    rng = np.random.default_rng(4)
    policy = case.policy
    theta = rng.normal(size=policy.n_params) * 0.5
    obs = repeat_obs(make_obs(policy, (3,), rng), 20_000)      # [N, 3, obs_dim]
    actions = policy.sample(theta, obs, rng)
    score = policy.score(theta, obs, actions)                  # [N, 3, n_params]
    mean = score.mean(axis=0)
    se = score.std(axis=0) / math.sqrt(score.shape[0])
    assert (np.abs(mean) <= 4 * se + 1e-12).all()
    # the check has power: the score at a shifted mean is not zero on average
    shifted = policy.score(theta, obs, actions + 0.3)
    assert (np.abs(shifted.mean(axis=0)) > 4 * se).any()


# ------------------------------------------------------------ entropy and KL

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", DISCRETE, ids=ids(DISCRETE))
def test_discrete_entropy_and_kl_by_enumeration(case, shape):
    rng = np.random.default_rng(5)
    policy = case.policy
    theta_p = policy.init_params(rng, scale=1.0)
    theta_q = policy.init_params(rng, scale=1.0)
    obs = make_obs(policy, shape, rng)
    entropy = policy.entropy(theta_p, obs)
    kl = policy.kl(theta_p, theta_q, obs)
    assert np.shape(entropy) == np.shape(kl) == tuple(shape)
    for idx in batch_indices(obs, policy):
        p = slow_probs(case, theta_p, obs[idx])
        q = slow_probs(case, theta_q, obs[idx])
        slow_h = -sum(p[a] * math.log(p[a]) for a in range(policy.n_actions))
        slow_kl = sum(p[a] * math.log(p[a] / q[a]) for a in range(policy.n_actions))
        assert entropy[idx] == pytest.approx(slow_h, rel=1e-10)
        assert kl[idx] == pytest.approx(slow_kl, rel=1e-10)


def _normal_logpdf_1d(x, mu, sigma):
    return -((x - mu) ** 2) / (2 * sigma ** 2) - math.log(sigma * math.sqrt(2 * math.pi))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", GAUSSIAN, ids=ids(GAUSSIAN))
def test_gaussian_against_one_dimensional_textbook_formulas(case, shape):
    """Diagonal Gaussian = product of 1-D Gaussians: log-densities, entropies
    and KLs add up over action dimensions."""
    rng = np.random.default_rng(6)
    policy = case.policy
    theta_p = rng.normal(size=policy.n_params)
    theta_q = rng.normal(size=policy.n_params)
    obs = make_obs(policy, shape, rng)
    actions = make_actions(policy, shape, rng)
    W_p, b_p, _ = policy.unpack(theta_p)
    W_q, b_q, _ = policy.unpack(theta_q)
    sd_p, sd_q = policy.stds(theta_p), policy.stds(theta_q)
    log_prob = policy.log_prob(theta_p, obs, actions)
    entropy = policy.entropy(theta_p, obs)
    kl = policy.kl(theta_p, theta_q, obs)
    mean = policy.mean(theta_p, obs)
    for idx in batch_indices(obs, policy):
        s = obs[idx]
        slow_lp = slow_h = slow_kl = 0.0
        for i in range(policy.action_dim):
            mu_p = sum(W_p[i, j] * s[j] for j in range(policy.obs_dim)) + (b_p[i] if policy.bias else 0)
            mu_q = sum(W_q[i, j] * s[j] for j in range(policy.obs_dim)) + (b_q[i] if policy.bias else 0)
            assert mean[idx][i] == pytest.approx(mu_p, rel=1e-12, abs=1e-12)
            slow_lp += _normal_logpdf_1d(actions[idx][i], mu_p, sd_p[i])
            slow_h += 0.5 * math.log(2 * math.pi * math.e * sd_p[i] ** 2)
            slow_kl += (math.log(sd_q[i] / sd_p[i])
                        + (sd_p[i] ** 2 + (mu_p - mu_q) ** 2) / (2 * sd_q[i] ** 2) - 0.5)
        assert log_prob[idx] == pytest.approx(slow_lp, rel=1e-12)
        assert entropy[idx] == pytest.approx(slow_h, rel=1e-12, abs=1e-12)
        assert kl[idx] == pytest.approx(slow_kl, rel=1e-10)


@pytest.mark.parametrize("case", GAUSSIAN, ids=ids(GAUSSIAN))
def test_gaussian_entropy_and_kl_against_monte_carlo(case):
    rng = np.random.default_rng(7)
    policy = case.policy
    theta_p = rng.normal(size=policy.n_params) * 0.5
    theta_q = rng.normal(size=policy.n_params) * 0.5
    obs = repeat_obs(make_obs(policy, (3,), rng), 40_000)      # [N, 3, obs_dim]
    actions = policy.sample(theta_p, obs, rng)
    log_p = policy.log_prob(theta_p, obs, actions)
    log_q = policy.log_prob(theta_q, obs, actions)
    n = obs.shape[0]
    for estimate, exact in [(-log_p, policy.entropy(theta_p, obs[0])),
                            (log_p - log_q, policy.kl(theta_p, theta_q, obs[0]))]:
        se = estimate.std(axis=0) / math.sqrt(n)
        assert (np.abs(estimate.mean(axis=0) - exact) <= 4 * se).all()


def _theta_pair(n_params):
    floats = st.floats(-3.0, 3.0, allow_nan=False)
    vec = st.lists(floats, min_size=n_params, max_size=n_params).map(np.array)
    return st.tuples(vec, vec)


@pytest.mark.parametrize("case", ALL, ids=ids(ALL))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_kl_is_zero_to_itself_and_nonnegative(case, data):
    policy = case.policy
    theta_p, theta_q = data.draw(_theta_pair(policy.n_params))
    obs = make_obs(policy, (4, 2), np.random.default_rng(8))
    np.testing.assert_array_equal(policy.kl(theta_p, theta_p, obs), 0.0)
    kl = policy.kl(theta_p, theta_q, obs)
    assert kl.shape == (4, 2)
    assert (kl >= -1e-12).all()
    # zero only where the two policies agree on that state
    if isinstance(policy, LinearGaussianPolicy):
        differ = (np.abs(policy.mean(theta_p, obs) - policy.mean(theta_q, obs)).max(-1)
                  + np.abs(policy.stds(theta_p) - policy.stds(theta_q)).max()) > 1e-3
    else:
        differ = np.abs(policy.probs(theta_p, obs) - policy.probs(theta_q, obs)).max(-1) > 1e-3
    assert (kl[differ] > 0).all()


# ------------------------------------------------------------------- sampling

@pytest.mark.parametrize("case", DISCRETE, ids=ids(DISCRETE))
def test_sample_frequencies_match_probs(case):
    rng = np.random.default_rng(9)
    policy = case.policy
    theta = policy.init_params(rng, scale=1.0)
    obs = make_obs(policy, (3,), rng)
    n = 20_000
    samples = policy.sample(theta, repeat_obs(obs, n), rng)     # [N, 3]
    assert samples.shape == (n, 3) and samples.dtype.kind == "i"
    for b in range(3):
        freq = np.bincount(samples[:, b], minlength=policy.n_actions) / n
        p = np.array(slow_probs(case, theta, obs[b]))
        se = np.sqrt(p * (1 - p) / n)
        assert (np.abs(freq - p) <= 4 * se).all(), (freq, p)


class _UniformNearOne(np.random.Generator):
    """A Generator whose uniforms are all the largest float below 1."""

    def random(self, size=None):
        return np.full(size, np.nextafter(1.0, 0.0))


def test_sample_stays_in_range_when_the_cdf_rounds_below_one():
    policy = TabularSoftmaxPolicy(1, 7)
    theta = np.array([1.7, 0.1, -0.6, 0.6, 0.2, -1.0, -0.8])
    u = np.nextafter(1.0, 0.0)
    assert np.cumsum(policy.probs(theta, 0))[-1] < u     # the case being tested
    actions = policy.sample(theta, np.zeros(3, dtype=int), _UniformNearOne(np.random.PCG64(0)))
    np.testing.assert_array_equal(actions, 6)


@pytest.mark.parametrize("case", GAUSSIAN, ids=ids(GAUSSIAN))
def test_gaussian_sample_mean_and_std(case):
    rng = np.random.default_rng(10)
    policy = case.policy
    theta = rng.normal(size=policy.n_params) * 0.5
    obs = make_obs(policy, (3,), rng)
    n = 20_000
    samples = policy.sample(theta, repeat_obs(obs, n), rng)     # [N, 3, D]
    assert samples.shape == (n, 3, policy.action_dim)
    W, b, _ = policy.unpack(theta)
    mu = obs @ W.T + (b if policy.bias else 0.0)               # independent of policy.mean
    sigma = policy.stds(theta)
    assert (np.abs(samples.mean(axis=0) - mu) <= 4 * sigma / math.sqrt(n)).all()
    assert (np.abs(samples.std(axis=0) - sigma) <= 4 * sigma / math.sqrt(2 * n)).all()


@pytest.mark.parametrize("case", ALL, ids=ids(ALL))
def test_same_seed_gives_same_samples(case):
    policy = case.policy
    theta = policy.init_params(np.random.default_rng(11), scale=1.0)
    obs = make_obs(policy, (6, 5), np.random.default_rng(12))
    a1 = policy.sample(theta, obs, np.random.default_rng(42))
    a2 = policy.sample(theta, obs, np.random.default_rng(42))
    a3 = policy.sample(theta, obs, np.random.default_rng(43))
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a1, a3)


@pytest.mark.parametrize("case", ALL, ids=ids(ALL))
def test_scalar_batch_shape(case):
    policy = case.policy
    rng = np.random.default_rng(13)
    theta = policy.init_params(rng, scale=1.0)
    obs = make_obs(policy, (), rng)
    a = policy.sample(theta, obs, rng)
    assert np.shape(policy.log_prob(theta, obs, a)) == ()
    assert np.shape(policy.entropy(theta, obs)) == ()
    assert policy.score(theta, obs, a).shape == (policy.n_params,)


# -------------------------------------------------- tabular = one-hot linear

def test_tabular_equals_linear_softmax_with_one_hot_features():
    S, A = 4, 3
    tabular = TabularSoftmaxPolicy(S, A)
    one_hot = np.zeros((S, A, S * A))
    for s in range(S):
        for a in range(A):
            one_hot[s, a, s * A + a] = 1.0
    linear = LinearSoftmaxPolicy.from_state_features(one_hot)
    assert linear.n_params == tabular.n_params
    rng = np.random.default_rng(14)
    theta_p, theta_q = rng.normal(size=(2, S * A))
    states = rng.integers(0, S, size=(5, 2))
    actions = rng.integers(0, A, size=(5, 2))
    for method, args in [("probs", (theta_p, states)),
                         ("logits", (theta_p, states)),
                         ("log_prob", (theta_p, states, actions)),
                         ("score", (theta_p, states, actions)),
                         ("entropy", (theta_p, states)),
                         ("kl", (theta_p, theta_q, states))]:
        np.testing.assert_allclose(getattr(tabular, method)(*args),
                                   getattr(linear, method)(*args), rtol=1e-12, atol=1e-15)


def test_tabular_score_is_zero_outside_the_visited_row():
    policy = TabularSoftmaxPolicy(3, 2)
    theta = np.arange(6.0) / 3
    score = policy.score(theta, 1, 0).reshape(3, 2)
    pi = policy.probs(theta, 1)
    np.testing.assert_array_equal(score[[0, 2]], 0.0)
    np.testing.assert_allclose(score[1], [1 - pi[0], -pi[1]], rtol=1e-15)


# --------------------------------------------------------- Gaussian helpers

def test_gaussian_pack_unpack_layout():
    policy = LinearGaussianPolicy(3, 2)
    W = np.arange(6.0).reshape(2, 3)
    b = np.array([10.0, 11.0])
    log_std = np.array([-1.0, 0.5])
    theta = policy.pack(W, b, log_std)
    np.testing.assert_array_equal(theta, [0, 1, 2, 3, 4, 5, 10, 11, -1, 0.5])
    W2, b2, log_std2 = policy.unpack(theta)
    np.testing.assert_array_equal(W2, W)
    np.testing.assert_array_equal(b2, b)
    np.testing.assert_array_equal(log_std2, log_std)
    np.testing.assert_allclose(policy.stds(theta), np.exp(log_std))
    np.testing.assert_allclose(policy.mean(theta, [1.0, 0.0, -1.0]), [8.0, 9.0])


def test_gaussian_fixed_std_and_no_bias():
    policy = LinearGaussianPolicy(2, 1, bias=False, learn_std=False, std=0.3)
    assert policy.n_params == 2
    theta = policy.pack(np.array([[2.0, -1.0]]))
    W, b, log_std = policy.unpack(theta)
    assert b is None and log_std is None
    np.testing.assert_allclose(policy.stds(theta), [0.3])
    np.testing.assert_allclose(policy.mean(theta, [[1.0, 1.0], [0.0, 2.0]]), [[1.0], [-2.0]])


def test_init_params():
    policy = TabularSoftmaxPolicy(3, 2)
    np.testing.assert_array_equal(policy.init_params(), np.zeros(6))
    t1 = policy.init_params(np.random.default_rng(0), scale=0.1)
    t2 = policy.init_params(np.random.default_rng(0), scale=0.1)
    np.testing.assert_array_equal(t1, t2)
    assert t1.shape == (6,) and 0 < np.abs(t1).max() < 1
    gauss = LinearGaussianPolicy(2, 2, std=0.5)
    theta = gauss.init_params()
    np.testing.assert_allclose(gauss.stds(theta), [0.5, 0.5])
    np.testing.assert_array_equal(gauss.mean(theta, [[3.0, 4.0]]), [[0.0, 0.0]])


# ------------------------------------------------------------- input errors

_tab = TabularSoftmaxPolicy(4, 3)
_lin = LinearSoftmaxPolicy.per_action_linear(3, 2)
_feat = LinearSoftmaxPolicy.from_state_features(_PHI)
_gau = LinearGaussianPolicy(3, 2)
_bad_features = LinearSoftmaxPolicy(3, lambda obs: np.zeros((len(obs), 2, 4)), 4)
_rng = np.random.default_rng(0)

ERRORS = [
    ("theta wrong shape", lambda: _tab.probs(np.zeros((3, 4)), 0),
     r"theta must have shape \[n_params\] = \(12,\), got \(3, 4\)"),
    ("theta wrong length", lambda: _gau.mean(np.zeros(9), np.zeros(3)),
     r"theta must have shape \[n_params\] = \(10,\), got \(9,\)"),
    ("theta NaN", lambda: _lin.probs(np.full(8, np.nan), np.zeros(3)), r"theta contains NaN"),
    ("theta_q wrong length", lambda: _tab.kl(np.zeros(12), np.zeros(11), 0),
     r"theta_q must have shape \[n_params\] = \(12,\), got \(11,\)"),
    ("state too large", lambda: _tab.probs(np.zeros(12), [0, 4]),
     r"states must be integers in \[0, 4\), got 4"),
    ("state negative", lambda: _feat.probs(np.zeros(4), [-1, 2]),
     r"states must be integers in \[0, 5\), got -1"),
    ("state not integer", lambda: _tab.probs(np.zeros(12), [0.5]), r"states must be integers"),
    ("state NaN", lambda: _tab.probs(np.zeros(12), [np.nan]), r"states contains NaN"),
    ("action too large", lambda: _tab.log_prob(np.zeros(12), [0, 1], [0, 3]),
     r"actions must be integers in \[0, 3\), got 3"),
    ("action negative", lambda: _lin.score(np.zeros(8), np.zeros((2, 3)), [-1, 0]),
     r"actions must be integers in \[0, 2\), got -1"),
    ("actions wrong shape", lambda: _tab.score(np.zeros(12), [0, 1], [0, 1, 2]),
     r"actions must have shape \[\*batch\] = \(2,\)"),
    ("gaussian actions missing axis", lambda: _gau.log_prob(np.zeros(10), np.zeros((5, 3)), np.zeros(5)),
     r"actions must have shape \[\*batch, action_dim\] = \(5, 2\), got \(5,\)"),
    ("NaN obs linear", lambda: _lin.probs(np.zeros(8), [[0.0, np.nan, 1.0]]), r"obs contains NaN"),
    ("NaN obs gaussian", lambda: _gau.sample(np.zeros(10), [np.nan, 0, 0], _rng), r"obs contains NaN"),
    ("obs_dim linear", lambda: _lin.probs(np.zeros(8), np.zeros((5, 2))),
     r"obs must have shape \[\*batch, obs_dim\] = \[\.\.\., 3\], got \(5, 2\)"),
    ("obs_dim gaussian", lambda: _gau.entropy(np.zeros(10), np.zeros((4, 5, 4))),
     r"obs must have shape \[\*batch, obs_dim\] = \[\.\.\., 3\], got \(4, 5, 4\)"),
    ("scalar obs gaussian", lambda: _gau.mean(np.zeros(10), 1.0),
     r"obs must have shape \[\*batch, obs_dim\]"),
    ("std zero", lambda: LinearGaussianPolicy(2, 1, std=0.0), r"std must be positive"),
    ("std negative", lambda: LinearGaussianPolicy(2, 1, learn_std=False, std=-1.0),
     r"std must be positive"),
    ("std NaN", lambda: LinearGaussianPolicy(2, 1, std=float("nan")), r"std must be positive"),
    ("rng int", lambda: _tab.sample(np.zeros(12), [0, 1], 0),
     r"rng must be a numpy\.random\.Generator"),
    ("rng legacy", lambda: _gau.sample(np.zeros(10), np.zeros(3), np.random.RandomState(0)),
     r"rng must be a numpy\.random\.Generator"),
    ("init rng", lambda: _tab.init_params(rng=1, scale=1.0), r"rng must be a numpy\.random\.Generator"),
    ("init scale without rng", lambda: _tab.init_params(scale=1.0), r"needs an rng"),
    ("n_states zero", lambda: TabularSoftmaxPolicy(0, 2), r"n_states must be >= 1"),
    ("n_actions float", lambda: TabularSoftmaxPolicy(3, 2.0), r"n_actions must be an integer"),
    ("phi wrong ndim", lambda: LinearSoftmaxPolicy.from_state_features(np.zeros((3, 4))),
     r"phi must have shape \[S, A, d\], got \(3, 4\)"),
    ("features wrong shape", lambda: _bad_features.probs(np.zeros(4), np.zeros((5, 1))),
     r"features\(obs\) must have shape \[\*batch, A, d\] = \[\.\.\., 3, 4\], got \(5, 2, 4\)"),
    ("features not callable", lambda: LinearSoftmaxPolicy(2, np.zeros((3, 2, 4)), 4),
     r"features must be callable"),
    ("pack missing b", lambda: _gau.pack(np.zeros((2, 3)), log_std=np.zeros(2)),
     r"b is required"),
    ("pack W shape", lambda: _gau.pack(np.zeros((3, 2)), np.zeros(2), np.zeros(2)),
     r"W must have shape \(2, 3\), got \(3, 2\)"),
    ("pack unexpected log_std",
     lambda: LinearGaussianPolicy(1, 1, learn_std=False).pack([[1.0]], [0.0], [0.0]),
     r"log_std must be None"),
]


@pytest.mark.parametrize("call, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_input_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
