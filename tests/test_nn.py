"""Tests of pgkit.nn.

Every derivative is compared with central finite differences; the forward pass
and the densities with slow loops written like the formulas (``math`` functions,
one sample and one unit at a time); the population axis with a loop over its
members; sampling with Monte Carlo at 4 standard errors and a fixed seed.
"""

import math

import numpy as np
import pytest

from pgkit.mdp import finite_difference_gradient as finite_difference
from pgkit.nn import MLP, CategoricalMLPPolicy, GaussianMLPPolicy, MLPCache, ValueMLP
from pgkit.policies import LinearSoftmaxPolicy

SIZES = [(3, 1), (2, 5, 3), (4, 6, 5, 2)]
POPULATIONS = [None, 3]
BATCHES = [(), (5,), (4, 3)]




def random_params(model, rng, population, scale=0.7):
    """Parameters with non-zero biases (init sets them to zero) and a random log-std."""
    shape = (model.n_params,) if population is None else (population, model.n_params)
    return scale * rng.standard_normal(shape)


def inputs(n_in, population, batch, rng):
    lead = () if population is None else (population,)
    return rng.normal(size=lead + tuple(batch) + (n_in,))


def members(population):
    return range(population)


# ---------------------------------------------------------------- the network

def slow_forward(mlp, params, x):
    """One input vector at a time, one unit at a time: h_j = tanh(sum_i h_i W[i, j] + b_j)."""
    layers = mlp.unflatten(params)
    h = list(x)
    for l, (W, b) in enumerate(layers):
        z = [sum(h[i] * W[i, j] for i in range(len(h))) + b[j] for j in range(W.shape[1])]
        h = z if l == len(layers) - 1 else [math.tanh(v) for v in z]
    return h


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("sizes", SIZES)
def test_forward_matches_slow_loop(sizes, batch):
    rng = np.random.default_rng(0)
    mlp = MLP(sizes)
    params = random_params(mlp, rng, None)
    x = inputs(sizes[0], None, batch, rng)
    out, _ = mlp.forward(params, x)
    assert out.shape == tuple(batch) + (sizes[-1],)
    for idx in np.ndindex(*batch):
        np.testing.assert_allclose(out[idx], slow_forward(mlp, params, x[idx]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [(), (4, 3)])
@pytest.mark.parametrize("population", POPULATIONS)
@pytest.mark.parametrize("sizes", SIZES)
def test_backward_matches_finite_differences(sizes, population, batch):
    rng = np.random.default_rng(1)
    mlp = MLP(sizes)
    params = random_params(mlp, rng, population)
    x = inputs(sizes[0], population, batch, rng)
    out, cache = mlp.forward(params, x)
    grad_out = rng.normal(size=out.shape)
    grad = mlp.backward(params, cache, grad_out)
    assert grad.shape == params.shape
    # members are independent, so d(sum over members)/d params[k] is member k's gradient
    expected = finite_difference(lambda p: np.sum(grad_out * mlp.forward(p, x)[0]), params)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("batch", [(), (4, 3)])
@pytest.mark.parametrize("population", POPULATIONS)
@pytest.mark.parametrize("sizes", SIZES)
def test_jvp_matches_finite_differences(sizes, population, batch):
    rng = np.random.default_rng(2)
    mlp = MLP(sizes)
    params = random_params(mlp, rng, population)
    x = inputs(sizes[0], population, batch, rng)
    v = rng.normal(size=params.shape)
    eps = 1e-6
    expected = (mlp.forward(params + eps * v, x)[0] - mlp.forward(params - eps * v, x)[0]) / (2 * eps)
    tangent = mlp.jvp(params, x, v)
    assert tangent.shape == expected.shape
    np.testing.assert_allclose(tangent, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("population", POPULATIONS)
@pytest.mark.parametrize("sizes", SIZES)
def test_jvp_and_backward_are_adjoint(sizes, population):
    """u . (J v) = (J^T u) . v, member by member."""
    rng = np.random.default_rng(3)
    mlp = MLP(sizes)
    params = random_params(mlp, rng, population)
    x = inputs(sizes[0], population, (6,), rng)
    v = rng.normal(size=params.shape)
    out, cache = mlp.forward(params, x)
    u = rng.normal(size=out.shape)
    lhs = np.sum((u * mlp.jvp(params, x, v)).reshape(params.shape[:-1] + (-1,)), axis=-1)
    rhs = np.sum(mlp.backward(params, cache, u) * v, axis=-1)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize("sizes", SIZES)
def test_population_equals_loop_over_members(sizes):
    rng = np.random.default_rng(4)
    mlp = MLP(sizes)
    S = 4
    params = random_params(mlp, rng, S)
    x = inputs(sizes[0], S, (2, 3), rng)
    v = rng.normal(size=params.shape)
    out, cache = mlp.forward(params, x)
    grad_out = rng.normal(size=out.shape)
    grad = mlp.backward(params, cache, grad_out)
    tangent = mlp.jvp(params, x, v)
    for k in members(S):
        out_k, cache_k = mlp.forward(params[k], x[k])
        np.testing.assert_allclose(out[k], out_k, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(grad[k], mlp.backward(params[k], cache_k, grad_out[k]),
                                   rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(tangent[k], mlp.jvp(params[k], x[k], v[k]), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("output_gain", [1.0, 0.01])
@pytest.mark.parametrize("sizes", [(3, 8, 8, 2), (10, 4, 7, 1), (5, 5)])
def test_orthogonal_init(sizes, output_gain):
    mlp = MLP(sizes, output_gain=output_gain)
    for population in POPULATIONS:
        params = mlp.init(np.random.default_rng(5), population)
        assert params.shape == ((mlp.n_params,) if population is None else (population, mlp.n_params))
        for member in np.reshape(params, (-1, mlp.n_params)):
            for l, (W, b) in enumerate(mlp.unflatten(member)):
                gain = output_gain if l == len(sizes) - 2 else math.sqrt(2)
                n_in, n_out = W.shape
                gram = W.T @ W if n_in >= n_out else W @ W.T       # W^T W = gain^2 I for tall W
                np.testing.assert_allclose(gram, gain**2 * np.eye(min(n_in, n_out)), atol=1e-12)
                assert np.all(b == 0)
    # members differ; init(rng) is member 0 of init(rng, 1); same seed, same params
    pop = mlp.init(np.random.default_rng(6), 3)
    assert not np.allclose(pop[0], pop[1])
    np.testing.assert_array_equal(mlp.init(np.random.default_rng(6)),
                                  mlp.init(np.random.default_rng(6), 1)[0])
    np.testing.assert_array_equal(mlp.init(np.random.default_rng(7)), mlp.init(np.random.default_rng(7)))


def test_orthogonal_init_is_rotation_invariant_in_distribution():
    """Haar-distributed columns: the mean of W[0, 0] over many draws is 0 (sign convention fixed)."""
    mlp = MLP((4, 4), output_gain=1.0)
    draws = mlp.init(np.random.default_rng(8), 4000)[:, 0]     # W[0, 0], variance 1/4
    assert abs(draws.mean()) < 4 * math.sqrt(0.25 / 4000)


@pytest.mark.parametrize("population", POPULATIONS)
def test_unflatten_gives_views_and_flatten_inverts_it(population):
    mlp = MLP((3, 4, 2))
    params = random_params(mlp, np.random.default_rng(9), population)
    layers = mlp.unflatten(params)
    lead = () if population is None else (population,)
    assert [W.shape for W, _ in layers] == [lead + (3, 4), lead + (4, 2)]
    assert [b.shape for _, b in layers] == [lead + (4,), lead + (2,)]
    assert all(np.shares_memory(W, params) and np.shares_memory(b, params) for W, b in layers)
    np.testing.assert_array_equal(mlp.flatten(layers), params)
    assert mlp.n_params == 3 * 4 + 4 + 4 * 2 + 2
    # the flat layout: W_1 row-major, then b_1, then W_2, b_2
    member = np.reshape(params, (-1, mlp.n_params))[0]
    np.testing.assert_array_equal(np.reshape(layers[0][0], (-1, 3, 4))[0].ravel(), member[:12])


# ------------------------------------------------------------------ the heads

def head_cases():
    return [CategoricalMLPPolicy(3, 4, hidden=(5,)), CategoricalMLPPolicy(2, 2, hidden=(4, 3)),
            CategoricalMLPPolicy(3, 3, hidden=()),
            GaussianMLPPolicy(3, 2, hidden=(5,)), GaussianMLPPolicy(2, 1, hidden=(4, 3))]


def head_actions(policy, population, batch, rng):
    lead = (() if population is None else (population,)) + tuple(batch)
    if isinstance(policy, CategoricalMLPPolicy):
        return rng.integers(0, policy.n_actions, size=lead)
    return rng.normal(size=lead + (policy.action_dim,))


HEADS = head_cases()
HEAD_IDS = [repr(h) for h in HEADS]


def test_head_parameter_counts():
    assert CategoricalMLPPolicy(3, 4, hidden=(5,)).n_params == 3 * 5 + 5 + 5 * 4 + 4
    assert GaussianMLPPolicy(3, 2, hidden=(5,)).n_params == 3 * 5 + 5 + 5 * 2 + 2 + 2
    assert ValueMLP(3, hidden=(5, 6)).n_params == 3 * 5 + 5 + 5 * 6 + 6 + 6 + 1
    policy = GaussianMLPPolicy(3, 2, init_std=0.5)
    params = policy.init(np.random.default_rng(0), 4)
    np.testing.assert_allclose(policy.log_std(params), np.log(0.5))
    assert params.shape == (4, policy.n_params)


@pytest.mark.parametrize("batch", [(), (4, 3)])
@pytest.mark.parametrize("population", POPULATIONS)
@pytest.mark.parametrize("policy", HEADS, ids=HEAD_IDS)
def test_grad_log_prob_matches_finite_differences(policy, population, batch):
    rng = np.random.default_rng(10)
    params = random_params(policy, rng, population)
    obs = inputs(policy.obs_dim, population, batch, rng)
    actions = head_actions(policy, population, batch, rng)
    weights = rng.normal(size=np.shape(actions)[:len(batch) + (population is not None)])

    def objective(p):
        return np.sum(weights * policy.log_prob(p, obs, actions))
    grad = policy.grad_log_prob(params, obs, actions, weights)
    assert grad.shape == params.shape
    np.testing.assert_allclose(grad, finite_difference(objective, params), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("population", POPULATIONS)
@pytest.mark.parametrize("policy", HEADS, ids=HEAD_IDS)
def test_grad_entropy_and_grad_kl_match_finite_differences(policy, population):
    rng = np.random.default_rng(11)
    params = random_params(policy, rng, population)
    other = random_params(policy, rng, population)
    obs = inputs(policy.obs_dim, population, (4,), rng)
    np.testing.assert_allclose(policy.grad_entropy(params, obs),
                               finite_difference(lambda p: policy.entropy(p, obs).sum(), params),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(policy.grad_kl(other, params, obs),
                               finite_difference(lambda p: policy.kl(other, p, obs).sum(), params),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("population", POPULATIONS)
@pytest.mark.parametrize("sizes", [(3, 5), (2, 4, 3)])
def test_value_loss_gradient_matches_finite_differences(sizes, population):
    rng = np.random.default_rng(12)
    value = ValueMLP(sizes[0], hidden=sizes[1:])
    params = random_params(value, rng, population)
    obs = inputs(value.obs_dim, population, (3, 2), rng)
    returns = rng.normal(size=obs.shape[:-1])
    v = value.value(params, obs)
    assert v.shape == returns.shape
    loss = value.value_loss(params, obs, returns)
    expected_loss = 0.5 * np.mean(((v - returns) ** 2).reshape(np.shape(loss) + (-1,)), axis=-1)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    grad = value.grad_value_loss(params, obs, returns)
    expected = finite_difference(lambda p: np.sum(value.value_loss(p, obs, returns)), params)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("policy", HEADS, ids=HEAD_IDS)
def test_head_population_equals_loop_over_members(policy):
    rng = np.random.default_rng(13)
    S = 3
    params = random_params(policy, rng, S)
    other = random_params(policy, rng, S)
    obs = inputs(policy.obs_dim, S, (2, 3), rng)
    actions = head_actions(policy, S, (2, 3), rng)
    weights = rng.normal(size=(S, 2, 3))
    together = [policy.log_prob(params, obs, actions), policy.entropy(params, obs),
                policy.kl(other, params, obs), policy.grad_log_prob(params, obs, actions, weights),
                policy.grad_entropy(params, obs), policy.grad_kl(other, params, obs)]
    for k in members(S):
        alone = [policy.log_prob(params[k], obs[k], actions[k]), policy.entropy(params[k], obs[k]),
                 policy.kl(other[k], params[k], obs[k]),
                 policy.grad_log_prob(params[k], obs[k], actions[k], weights[k]),
                 policy.grad_entropy(params[k], obs[k]), policy.grad_kl(other[k], params[k], obs[k])]
        for t, a in zip(together, alone):
            np.testing.assert_allclose(t[k], a, rtol=1e-12, atol=1e-13)
    value = ValueMLP(policy.obs_dim, hidden=(4,))
    vparams = random_params(value, rng, S)
    returns = rng.normal(size=(S, 2, 3))
    loss, grad = value.value_loss(vparams, obs, returns), value.grad_value_loss(vparams, obs, returns)
    for k in members(S):
        assert loss[k] == pytest.approx(value.value_loss(vparams[k], obs[k], returns[k]), rel=1e-12)
        np.testing.assert_allclose(grad[k], value.grad_value_loss(vparams[k], obs[k], returns[k]),
                                   rtol=1e-12, atol=1e-13)


# ------------------------------------------------------- densities by formula

@pytest.mark.parametrize("population", POPULATIONS)
def test_categorical_probabilities_sum_to_one_and_match_slow_softmax(population):
    rng = np.random.default_rng(14)
    policy = CategoricalMLPPolicy(3, 4, hidden=(5,))
    params = random_params(policy, rng, population, scale=2.0)
    obs = inputs(3, population, (6,), rng)
    lead = obs.shape[:-1]
    log_probs = np.stack([policy.log_prob(params, obs, np.full(lead, a)) for a in range(4)], axis=-1)
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(log_probs, policy.log_probs_all(params, obs), rtol=1e-12)
    logits = policy.logits(params, obs)
    for idx in np.ndindex(*lead):
        z = logits[idx]
        for a in range(4):
            slow = math.log(math.exp(z[a]) / sum(math.exp(zb) for zb in z))
            assert log_probs[idx + (a,)] == pytest.approx(slow, rel=1e-12)
        entropy = -sum(math.exp(lp) * lp for lp in log_probs[idx])
        assert policy.entropy(params, obs)[idx] == pytest.approx(entropy, rel=1e-12)


@pytest.mark.parametrize("population", POPULATIONS)
def test_gaussian_log_prob_entropy_and_kl_match_slow_formulas(population):
    rng = np.random.default_rng(15)
    policy = GaussianMLPPolicy(3, 2, hidden=(5,))
    params, other = random_params(policy, rng, population), random_params(policy, rng, population)
    obs = inputs(3, population, (4,), rng)
    actions = head_actions(policy, population, (4,), rng)
    mu, mu_o = policy.mean(params, obs), policy.mean(other, obs)
    sd, sd_o = np.exp(policy.log_std(params)), np.exp(policy.log_std(other))
    log_prob, entropy = policy.log_prob(params, obs, actions), policy.entropy(params, obs)
    kl = policy.kl(other, params, obs)
    for idx in np.ndindex(*obs.shape[:-1]):
        s, s_o = sd[idx[:-1]], sd_o[idx[:-1]]     # sigma of this member
        density = 1.0
        for j in range(2):
            density *= math.exp(-(actions[idx][j] - mu[idx][j]) ** 2 / (2 * s[j] ** 2)) \
                / math.sqrt(2 * math.pi * s[j] ** 2)
        assert log_prob[idx] == pytest.approx(math.log(density), rel=1e-12)
        assert entropy[idx] == pytest.approx(sum(0.5 * math.log(2 * math.pi * math.e * s[j] ** 2)
                                                 for j in range(2)), rel=1e-12)
        slow_kl = sum(math.log(s[j] / s_o[j]) + (s_o[j] ** 2 + (mu_o[idx][j] - mu[idx][j]) ** 2)
                      / (2 * s[j] ** 2) - 0.5 for j in range(2))
        assert kl[idx] == pytest.approx(slow_kl, rel=1e-10)


def test_categorical_with_no_hidden_layer_is_the_linear_softmax_policy():
    """hidden=() gives logits x W + b: the same policy and gradients as per_action_linear."""
    rng = np.random.default_rng(16)
    policy = CategoricalMLPPolicy(3, 4, hidden=())
    linear = LinearSoftmaxPolicy.per_action_linear(3, 4)
    params = random_params(policy, rng, None)
    (W, b), = policy.mlp.unflatten(params)
    theta = np.concatenate([W.T, b[:, None]], axis=1).ravel()    # rows [w_a, b_a]
    obs, actions = rng.normal(size=(7, 3)), rng.integers(0, 4, size=7)
    weights = rng.normal(size=7)
    np.testing.assert_allclose(policy.log_prob(params, obs, actions),
                               linear.log_prob(theta, obs, actions), rtol=1e-12)
    grad = policy.grad_log_prob(params, obs, actions, weights)
    (gW, gb), = policy.mlp.unflatten(grad)
    expected = np.einsum("i,ip->p", weights, linear.score(theta, obs, actions))
    np.testing.assert_allclose(np.concatenate([gW.T, gb[:, None]], axis=1).ravel(), expected,
                               rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------- sampling

def test_categorical_sample_frequencies_match_probabilities():
    rng = np.random.default_rng(17)
    policy = CategoricalMLPPolicy(2, 3, hidden=(4,))
    params = random_params(policy, rng, 2, scale=1.5)
    obs = inputs(2, 2, (3,), rng)                                   # 2 members x 3 states
    n = 20_000
    samples = policy.sample(params, np.repeat(obs[:, :, None], n, axis=2), rng)   # [2, 3, n]
    assert samples.shape == (2, 3, n) and samples.dtype.kind == "i"
    probs = np.exp(policy.log_probs_all(params, obs))                # [2, 3, A]
    for a in range(3):
        freq = (samples == a).mean(axis=-1)
        se = np.sqrt(probs[..., a] * (1 - probs[..., a]) / n)
        assert np.all(np.abs(freq - probs[..., a]) <= 4 * se + 1e-12)


@pytest.mark.parametrize("population", POPULATIONS)
def test_gaussian_sample_mean_and_std(population):
    rng = np.random.default_rng(18)
    policy = GaussianMLPPolicy(2, 2, hidden=(3,))
    params = random_params(policy, rng, population)
    obs = inputs(2, population, (), rng)
    n = 20_000
    lead = () if population is None else (population,)
    many = np.broadcast_to(obs[..., None, :], lead + (n, 2))
    samples = policy.sample(params, many, rng)                       # [S?, n, D]
    mu, sd = policy.mean(params, obs), np.exp(policy.log_std(params))
    assert np.all(np.abs(samples.mean(axis=-2) - mu) <= 4 * sd / math.sqrt(n))
    assert np.all(np.abs(samples.std(axis=-2) - sd) <= 4 * sd / math.sqrt(2 * n))


@pytest.mark.parametrize("policy", HEADS, ids=HEAD_IDS)
def test_same_seed_same_parameters_and_samples(policy):
    def run(seed):
        rng = np.random.default_rng(seed)
        params = policy.init(rng, 2)
        return params, policy.sample(params, np.ones((2, 5, policy.obs_dim)), rng)
    (p1, a1), (p2, a2), (p3, _) = run(0), run(0), run(1)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(p1, p3)


# ------------------------------------------------------------------ stability

def test_huge_logits_give_no_nan():
    policy = CategoricalMLPPolicy(2, 3, hidden=())
    params = np.array([1e4, -1e4, 0.0, 0.0, 0.0, 3e4, 0.0, 0.0, 0.0])   # W [2, 3], b [3]
    obs = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    actions = np.array([1, 0, 2])
    with np.errstate(over="raise", divide="raise", invalid="raise"):   # underflow to 0 is fine
        log_prob = policy.log_prob(params, obs, actions)
        results = [log_prob, policy.entropy(params, obs), policy.kl(params, -params, obs),
                   policy.grad_log_prob(params, obs, actions, np.ones(3)),
                   policy.grad_entropy(params, obs), policy.grad_kl(-params, params, obs)]
    assert all(np.isfinite(r).all() for r in results)
    np.testing.assert_allclose(log_prob, [-2e4, -2e4, 0.0], rtol=1e-12)
    assert set(np.unique(policy.sample(params, obs[[0] * 100], np.random.default_rng(0)))) == {0}


# ------------------------------------------------------------------ bad input

MLP3 = MLP((3, 4, 2))
CAT = CategoricalMLPPolicy(3, 4, hidden=(5,))
GAUSS = GaussianMLPPolicy(3, 2, hidden=(5,))
VALUE = ValueMLP(3, hidden=(5,))
P = np.zeros(MLP3.n_params)
PC = np.zeros(CAT.n_params)
PG = np.zeros(GAUSS.n_params)
X = np.zeros((5, 3))
RNG = np.random.default_rng(0)
_, CACHE = MLP3.forward(P, X)

BAD = [
    (lambda: MLP((3,)), "at least an input and an output"),
    (lambda: MLP((3, 0, 2)), "every layer size must be >= 1"),
    (lambda: MLP((3, 2.5)), "every layer size must be an integer"),
    (lambda: MLP(3), "sizes must be a sequence"),
    (lambda: MLP((3, 2), output_gain=-1.0), "output_gain must be a non-negative"),
    (lambda: MLP((3, 2), output_gain=float("nan")), "output_gain must be a non-negative"),
    (lambda: MLP3.init(RNG, population=0), "population must be >= 1"),
    (lambda: MLP3.init(0), "rng must be a numpy.random.Generator"),
    (lambda: MLP3.forward(np.zeros(7), X), r"params must have shape \[n_params\] = \(26,\)"),
    (lambda: MLP3.forward(np.zeros((2, 2, 26)), X), r"or \[S, n_params\]"),
    (lambda: MLP3.forward(np.full(26, np.nan), X), "params contains NaN"),
    (lambda: MLP3.forward(np.full(26, np.inf), X), "params must be finite"),
    (lambda: MLP3.forward(P, np.zeros((5, 4))), r"x must have shape \[\*batch, 3\], got \(5, 4\)"),
    (lambda: MLP3.forward(P, np.full((5, 3), np.nan)), "x contains NaN"),
    (lambda: MLP3.forward(P, np.zeros((0, 3))), "x must hold at least one input"),
    (lambda: MLP3.forward(np.zeros((2, 26)), np.zeros((3, 5, 3))),
     r"x must have shape \[S, \*batch, 3\] with S = 2"),
    (lambda: MLP3.backward(P, CACHE, np.zeros((5, 3))), r"grad_out must have shape \[\*batch, 2\] = \(5, 2\)"),
    (lambda: MLP3.backward(P, (1, 2), np.zeros((5, 2))), "cache must be the MLPCache"),
    (lambda: MLP3.backward(np.zeros((1, 26)), CACHE, np.zeros((5, 2))), "another population size"),
    (lambda: MLP3.jvp(P, X, np.zeros(5)), r"v must have the shape of params, \(26,\)"),
    (lambda: MLP3.flatten([(np.zeros((3, 4)), np.zeros(4))]), "layers must hold 2"),
    (lambda: MLP3.flatten([(np.zeros((3, 4)), np.zeros(4)), (np.zeros((4, 3)), np.zeros(2))]),
     "layer 1 must have W"),
    (lambda: CategoricalMLPPolicy(0, 2), "obs_dim must be >= 1"),
    (lambda: CategoricalMLPPolicy(3, 2, hidden=64), "hidden must be a sequence"),
    (lambda: CategoricalMLPPolicy(3, 2, hidden=(64, -1)), "hidden layer width must be >= 1"),
    (lambda: GaussianMLPPolicy(3, 2, init_std=0.0), "init_std must be positive"),
    (lambda: CAT.log_prob(PC, X, np.full(5, 4)), r"actions must be integers in \[0, 4\), got 4"),
    (lambda: CAT.log_prob(PC, X, np.zeros(4, dtype=int)), r"actions must have shape \[\*batch\] = \(5,\)"),
    (lambda: CAT.log_prob(PC, X, np.full(5, 0.5)), "actions must be integers"),
    (lambda: CAT.grad_log_prob(PC, X, np.zeros(5, dtype=int), np.zeros(4)), r"weights must have shape"),
    (lambda: CAT.grad_log_prob(PC, X, np.zeros(5, dtype=int), np.full(5, np.nan)), "weights contains NaN"),
    (lambda: CAT.kl(PC, np.zeros((2, CAT.n_params)), X), "params_old and params_new must have the same shape"),
    (lambda: CAT.logits(PC, np.zeros((5, 2))), r"obs must have shape \[\*batch, 3\]"),
    (lambda: CAT.sample(PC, X, 1), "rng must be a numpy.random.Generator"),
    (lambda: GAUSS.log_prob(PG, X, np.zeros((5, 3))), r"actions must have shape \[\*batch, 2\] = \(5, 2\)"),
    (lambda: GAUSS.log_prob(PG, X, np.full((5, 2), np.inf)), "actions must be finite"),
    (lambda: GAUSS.log_prob(np.zeros((2, GAUSS.n_params)), np.zeros((2, 5, 3)), np.zeros((5, 2))),
     r"actions must have shape \[S, \*batch, 2\] = \(2, 5, 2\)"),
    (lambda: VALUE.value_loss(np.zeros(VALUE.n_params), X, np.zeros(6)), r"returns must have shape"),
]


@pytest.mark.parametrize("call, match", BAD, ids=[m for _, m in BAD])
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_cache_is_an_mlp_cache():
    _, cache = MLP3.forward(P, X)
    assert isinstance(cache, MLPCache) and not cache.population and cache.batch_shape == (5,)
