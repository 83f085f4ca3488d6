"""The LQ problem: exact return and gradient against slow references, finite
differences and Monte Carlo; the optimal gains; rollouts and policy densities."""

import numpy as np
import pytest

from pgkit.mdp import finite_difference_gradient as fd
from pgkit.envs import LinearQuadratic, Trajectories, linear_gaussian_log_probs
from pgkit.envs import linear_gaussian_scores
from pgkit.policies import LinearGaussianPolicy

SCALAR = LinearQuadratic(1, 1, 1, 1, horizon=10, gamma=0.9)


def random_problem(seed, n=3, m=2, horizon=6, gamma=0.95):
    rng = np.random.default_rng(seed)
    A = rng.normal(scale=0.5, size=(n, n))
    B = rng.normal(size=(n, m))
    Q = (lambda X: X @ X.T)(rng.normal(size=(n, n)))
    R = (lambda X: X @ X.T + 0.5 * np.eye(m))(rng.normal(size=(m, m)))
    return LinearQuadratic(A, B, Q, R, horizon, gamma), rng




def slow_return(env, gains, stds):
    """J by the backward recursion of the cost-to-go (an independent computation):
    J = -tr(P_0 Sigma_0) - sum_t gamma^t tr(G_t D^2), G_t = R + gamma B'P_{t+1}B."""
    A, B, Q, R, g = env.A, env.B, env.Q, env.R, env.gamma
    H, n = env.horizon, env.state_dim
    D2 = np.diag(np.broadcast_to(np.asarray(stds, float), (env.action_dim,)) ** 2)
    P = np.zeros((n, n))
    noise = 0.0
    for t in reversed(range(H)):
        K = gains[t]
        noise += g ** t * np.trace((R + g * B.T @ P @ B) @ D2)
        L = A + B @ K
        P = Q + K.T @ R @ K + g * L.T @ P @ L
    return -np.trace(P) / 3.0 - noise


# ------------------------------------------------------------------ construction


def test_dimensions_come_from_the_matrices():
    env, _ = random_problem(0, n=3, m=2)
    assert (env.state_dim, env.action_dim, env.n_params) == (3, 2, 6)
    assert (SCALAR.state_dim, SCALAR.action_dim) == (1, 1)
    assert SCALAR.A.shape == (1, 1) and not SCALAR.A.flags.writeable


@pytest.mark.parametrize("args, message", [
    ((np.ones((2, 3)), np.ones((2, 1)), np.eye(2), 1, 5, 0.9), "A must be square"),
    ((np.eye(2), np.ones((3, 1)), np.eye(2), 1, 5, 0.9), "B must have shape"),
    ((np.eye(2), np.ones((2, 1)), np.eye(3), 1, 5, 0.9), "Q must have shape"),
    ((np.eye(2), np.ones((2, 1)), np.eye(2), np.eye(2), 5, 0.9), "R must have shape"),
    ((np.eye(2), np.ones((2, 1)), [[1, 1], [0, 1]], 1, 5, 0.9), "Q must be symmetric"),
    ((np.eye(2), np.ones((2, 1)), -np.eye(2), 1, 5, 0.9), "Q must be positive semi-def"),
    ((1, 1, 1, 0, 5, 0.9), "R must be positive definite"),
    ((1, 1, 1, 1, 0, 0.9), "horizon must be >= 1"),
    ((1, 1, 1, 1, 5, 1.5), r"gamma must be in \[0, 1\]"),
    ((np.nan, 1, 1, 1, 5, 0.9), "A contains NaN"),
    ((np.full((2, 2), np.inf), np.ones((2, 1)), np.eye(2), 1, 5, 0.9), "A must be finite"),
])
def test_bad_problems(args, message):
    with pytest.raises(ValueError, match=message):
        LinearQuadratic(*args)


# ------------------------------------------------------------------ exact return


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_second_moments_against_a_slow_loop_and_monte_carlo(seed):
    env, rng = random_problem(seed, n=2, m=2, horizon=4)
    K = rng.normal(scale=0.3, size=(2, 2))
    std = np.array([0.3, 0.7])
    sigmas = env.second_moments(K, std)
    slow = [np.eye(2) / 3]
    for _ in range(3):
        s = slow[-1]
        slow.append((env.A + env.B @ K) @ s @ (env.A + env.B @ K).T
                    + env.B @ np.diag(std ** 2) @ env.B.T)
    np.testing.assert_allclose(sigmas, slow, rtol=1e-12)
    # Monte Carlo: the empirical E[s_t s_t'] within 4 standard errors, entry by entry
    tr = env.rollout(K, std, 40_000, np.random.default_rng(seed))
    products = tr.states[:, :, :, None] * tr.states[:, :, None, :]      # [T, B, n, n]
    mean, se = products.mean(axis=1), products.std(axis=1) / np.sqrt(40_000)
    assert np.all(np.abs(mean - sigmas) < 4 * se + 1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_exact_return_against_the_backward_recursion(seed):
    env, rng = random_problem(seed)
    K = rng.normal(scale=0.3, size=(2, 3))
    for std in (0.0, 0.4, np.array([0.2, 1.1])):
        np.testing.assert_allclose(env.exact_return(K, std),
                                   slow_return(env, [K] * env.horizon, std), rtol=1e-11)
        Ks = rng.normal(scale=0.3, size=(env.horizon, 2, 3))
        np.testing.assert_allclose(env.exact_return(Ks, std), slow_return(env, Ks, std),
                                   rtol=1e-11)


def test_scalar_return_by_hand():
    """H = 2: J = -[(1 + k^2)/3 + s^2] - 0.9 [(1 + k^2)((1 + k)^2/3 + s^2) + s^2]."""
    env = LinearQuadratic(1, 1, 1, 1, horizon=2, gamma=0.9)
    for k, s in [(-0.5, 0.3), (0.2, 1.0), (0.0, 0.0)]:
        by_hand = -((1 + k * k) / 3 + s * s) \
            - 0.9 * ((1 + k * k) * ((1 + k) ** 2 / 3 + s * s) + s * s)
        np.testing.assert_allclose(env.exact_return([[k]], s), by_hand, rtol=1e-14)


@pytest.mark.parametrize("env, K, std", [
    (SCALAR, [[-0.3]], 0.5),
    (SCALAR, [[0.2]], 1.0),
    (random_problem(4, n=2, m=1, horizon=5)[0], [[0.1, -0.4]], 0.6),
])
def test_exact_return_against_monte_carlo(env, K, std):
    n = 100_000
    returns = env.rollout(K, std, n, np.random.default_rng(7)).discounted_returns(env.gamma)
    se = returns.std() / np.sqrt(n)
    assert abs(returns.mean() - env.exact_return(K, std)) < 4 * se


# ------------------------------------------------------------------ exact gradients


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_exact_gradient_against_finite_differences(seed):
    env, rng = random_problem(seed)
    K = rng.normal(scale=0.3, size=(2, 3))
    for std in (0.0, 0.5, np.array([0.3, 0.9])):
        grad = env.exact_gradient(K, std)
        assert grad.shape == K.shape
        numeric = fd(lambda k: env.exact_return(k, std), K)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


def test_exact_gradient_of_time_varying_gains_is_per_step():
    env, rng = random_problem(5, n=2, m=2, horizon=4)
    Ks = rng.normal(scale=0.3, size=(4, 2, 2))
    grads = env.exact_gradient(Ks, 0.7)
    assert grads.shape == (4, 2, 2)
    np.testing.assert_allclose(grads, fd(lambda k: env.exact_return(k, 0.7), Ks),
                               rtol=1e-6, atol=1e-7)
    # a stationary gain's gradient is the sum of the per-step ones at K_t = K
    K = Ks[0]
    np.testing.assert_allclose(env.exact_gradient(np.stack([K] * 4), 0.7).sum(axis=0),
                               env.exact_gradient(K, 0.7), rtol=1e-12)


def test_scalar_gradient_matches_finite_differences_on_a_grid():
    for k in np.linspace(-1.5, 0.5, 9):
        for s in (0.1, 0.5, 1.0):
            numeric = fd(lambda x: SCALAR.exact_return(x, s), np.array([[k]]), eps=1e-6)
            np.testing.assert_allclose(SCALAR.exact_gradient([[k]], s), numeric,
                                       rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_std_gradient_against_finite_differences(seed):
    env, rng = random_problem(seed)
    K = rng.normal(scale=0.3, size=(2, 3))
    # one shared sigma: the derivative along it
    numeric = (env.exact_return(K, 0.5 + 1e-6) - env.exact_return(K, 0.5 - 1e-6)) / 2e-6
    np.testing.assert_allclose(env.exact_std_gradient(K, 0.5), numeric, rtol=1e-6)
    assert isinstance(env.exact_std_gradient(K, 0.5), float)
    # one sigma per action dimension
    stds = np.array([0.3, 0.8])
    numeric = fd(lambda s: env.exact_return(K, s), stds)
    np.testing.assert_allclose(env.exact_std_gradient(K, stds), numeric, rtol=1e-6)
    assert np.all(env.exact_std_gradient(K, stds) < 0)          # the noise only costs
    assert env.exact_std_gradient(K, 0.0) == 0.0


# ------------------------------------------------------------------ optimal gains


def test_riccati_gain_of_the_scalar_problem():
    """0.9 P^2 - 0.8 P - 1 = 0 and K = -0.9 P / (1 + 0.9 P)."""
    P = (0.8 + np.sqrt(0.64 + 3.6)) / 1.8
    np.testing.assert_allclose(SCALAR.riccati_gain(), [[-0.9 * P / (1 + 0.9 * P)]],
                               rtol=1e-9)


def test_riccati_gain_is_a_fixed_point_and_the_limit_of_the_time_varying_gains():
    env, _ = random_problem(1, n=3, m=2, horizon=200, gamma=0.9)
    K = env.riccati_gain()
    np.testing.assert_allclose(env.time_varying_gains()[0], K, atol=1e-8)
    long_env = LinearQuadratic(env.A, env.B, env.Q, env.R, 400, env.gamma)
    np.testing.assert_allclose(long_env.time_varying_gains()[0], K, atol=1e-9)


def test_riccati_gain_fails_for_an_unstabilisable_problem():
    env = LinearQuadratic(np.diag([2.0, 0.5]), [[0.0], [1.0]], np.eye(2), 1, 5, 1.0)
    with pytest.raises(ValueError, match="not stabilisable"):
        env.riccati_gain(max_iter=10_000)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_time_varying_gains_are_optimal(seed):
    env, rng = random_problem(seed)
    Ks = env.time_varying_gains()
    for std in (0.0, 0.5):
        grads = env.exact_gradient(Ks, std)
        assert np.abs(grads).max() < 1e-9 * max(1.0, abs(env.exact_return(Ks, std)))
        best = env.exact_return(Ks, std)
        for _ in range(20):                  # any other gains, time-varying or not, do worse
            other = Ks + rng.normal(scale=0.05, size=Ks.shape)
            assert env.exact_return(other, std) < best
        assert env.exact_return(env.optimal_gain(std), std) <= best + 1e-12


@pytest.mark.parametrize("std", [0.1, 0.5, 1.0])
def test_scalar_optimal_gain_against_a_grid_search(std):
    K = SCALAR.optimal_gain(std)
    grid = np.linspace(-2.0, 1.0, 3_001)                    # steps of 1e-3, then 1e-6
    values = [SCALAR.exact_return([[k]], std) for k in grid]
    fine = grid[int(np.argmax(values))] + np.linspace(-1e-3, 1e-3, 2_001)
    values = [SCALAR.exact_return([[k]], std) for k in fine]
    assert abs(K[0, 0] - fine[int(np.argmax(values))]) <= 2e-6
    assert SCALAR.exact_return(K, std) >= max(values) - 1e-12
    assert abs(SCALAR.exact_gradient(K, std)[0, 0]) < 1e-8


def test_optimal_stationary_gain_depends_on_the_std_and_is_a_local_maximum():
    gains = [SCALAR.optimal_gain(s)[0, 0] for s in (0.0, 0.5, 1.0)]
    assert len(set(np.round(gains, 6))) == 3
    env, rng = random_problem(3)
    K = env.optimal_gain(0.4)
    J = env.exact_return(K, 0.4)
    assert np.linalg.norm(env.exact_gradient(K, 0.4)) < 1e-8 * max(1, abs(J))
    for _ in range(20):
        assert env.exact_return(K + rng.normal(scale=1e-3, size=K.shape), 0.4) < J


# ------------------------------------------------------------------ rollouts and densities


def test_rollout_shapes_and_dynamics():
    env, rng = random_problem(2, n=3, m=2, horizon=5)
    K = rng.normal(size=(2, 3))
    tr = env.rollout(K, [0.5, 1.0], 7, np.random.default_rng(0))
    assert isinstance(tr, Trajectories)
    assert tr.states.shape == (5, 7, 3) and tr.actions.shape == (5, 7, 2)
    assert tr.rewards.shape == tr.alive.shape == tr.log_probs.shape == (5, 7)
    assert tr.scores.shape == (5, 7, 6) and tr.final_states.shape == (7, 3)
    assert tr.alive.all() and (tr.n_trajectories, tr.horizon) == (7, 5)
    assert np.all(np.abs(tr.states[0]) <= 1)
    for t in range(5):
        s, a = tr.states[t], tr.actions[t]
        nxt = tr.states[t + 1] if t < 4 else tr.final_states
        np.testing.assert_allclose(nxt, s @ env.A.T + a @ env.B.T, rtol=1e-12, atol=1e-14)
        reward = -np.array([si @ env.Q @ si + ai @ env.R @ ai for si, ai in zip(s, a)])
        np.testing.assert_allclose(tr.rewards[t], reward, rtol=1e-12)
        step = env.step(s, a)
        np.testing.assert_allclose(step[0], nxt, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(step[1], tr.rewards[t], rtol=1e-12)
    np.testing.assert_allclose(tr.discounted_returns(env.gamma),
                               (env.gamma ** np.arange(5)) @ tr.rewards, rtol=1e-12)


def test_rollout_is_reproducible_and_the_noise_has_the_std():
    a = SCALAR.rollout([[-0.5]], 0.3, 20_000, np.random.default_rng(3))
    b = SCALAR.rollout([[-0.5]], 0.3, 20_000, np.random.default_rng(3))
    np.testing.assert_array_equal(a.actions, b.actions)
    noise = a.actions[..., 0] + 0.5 * a.states[..., 0]
    assert abs(noise.std() - 0.3) < 0.01 and abs(noise.mean()) < 0.01


def test_log_probs_and_scores_against_pgkits_gaussian_policy():
    env, rng = random_problem(6, n=3, m=2, horizon=4)
    K = rng.normal(size=(2, 3))
    tr = env.rollout(K, 0.7, 5, rng)
    policy = LinearGaussianPolicy(3, 2, bias=False, learn_std=False, std=0.7)
    theta = K.ravel()
    np.testing.assert_allclose(tr.log_probs, policy.log_prob(theta, tr.states, tr.actions),
                               rtol=1e-12)
    np.testing.assert_allclose(tr.scores, policy.score(theta, tr.states, tr.actions),
                               rtol=1e-12)
    # another policy on the same trajectories
    K2 = rng.normal(size=(2, 3))
    np.testing.assert_allclose(linear_gaussian_log_probs(K2, 0.7, tr),
                               policy.log_prob(K2.ravel(), tr.states, tr.actions), rtol=1e-12)


def test_scores_are_the_derivative_of_the_log_probs():
    env, rng = random_problem(7, n=2, m=2, horizon=3)
    tr = env.rollout(rng.normal(size=(2, 2)), [0.4, 0.9], 4, rng)
    K = rng.normal(size=(2, 2))
    scores = linear_gaussian_scores(K, [0.4, 0.9], tr)                  # [T, B, 4]
    numeric = fd(lambda k: linear_gaussian_log_probs(k, [0.4, 0.9], tr).sum(), K)
    np.testing.assert_allclose(scores.sum(axis=(0, 1)), numeric.ravel(), rtol=1e-6)


def test_rollout_with_one_gain_per_trajectory():
    K = np.array([[[-0.2]], [[-0.9]], [[0.4]]])
    stds = np.array([[0.1], [0.5], [1.0]])
    tr = SCALAR.rollout(K, stds, 3, np.random.default_rng(0))
    for b in range(3):
        expected = linear_gaussian_log_probs(K[b], stds[b], tr)[:, b]
        np.testing.assert_allclose(tr.log_probs[:, b], expected, rtol=1e-12)
        np.testing.assert_allclose(tr.scores[:, b], linear_gaussian_scores(K[b], stds[b],
                                                                            tr)[:, b])


@pytest.mark.parametrize("call, message", [
    (lambda: SCALAR.exact_return([[0.0, 1.0]], 0.5), r"gain must have shape"),
    (lambda: SCALAR.exact_return(np.zeros((3, 1, 1)), 0.5), r"\[H, action_dim"),
    (lambda: SCALAR.exact_return([[np.nan]], 0.5), "gain contains NaN"),
    (lambda: SCALAR.exact_return([[np.inf]], 0.5), "gain must be finite"),
    (lambda: SCALAR.exact_return([[0.0]], -0.1), "std must be non-negative"),
    (lambda: SCALAR.exact_gradient([[0.0]], [0.1, 0.2]), "std must be a number or"),
    (lambda: SCALAR.rollout([[0.0]], 0.0, 5, np.random.default_rng(0)), "std must be positive"),
    (lambda: SCALAR.rollout([[0.0]], 0.5, 0, np.random.default_rng(0)), "n_trajectories"),
    (lambda: SCALAR.rollout([[0.0]], 0.5, 5, 0), "rng must be a numpy.random.Generator"),
    (lambda: SCALAR.rollout(np.zeros((4, 1, 1)), 0.5, 5, np.random.default_rng(0)),
     r"\[n_trajectories, action_dim"),
    (lambda: SCALAR.step([[0.0, 1.0]], [[0.0]]), "states must have shape"),
    (lambda: SCALAR.step([[0.0]], [[0.0], [1.0]]), "actions must have shape"),
    (lambda: linear_gaussian_log_probs([[0.0]], 0.5, "x"), "pgkit.envs.Trajectories"),
    (lambda: SCALAR.optimal_gain(0.5, tol=0.0), "tol must be positive"),
])
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()
