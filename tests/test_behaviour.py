"""Active importance sampling (pgkit.behaviour): estimators against slow loops and
against the exact LQ gradient, the defensive weights and their 1/beta bound, the
minimum-variance sampler, the cross-entropy fit, the KL estimate, the beta rule,
the training loops, the sweeps and the variance study."""

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgkit import behaviour as bh
from pgkit import importance
from pgkit.envs import (ContinuousCartPole, LinearQuadratic, linear_gaussian_log_probs,
                        linear_gaussian_scores)

LQ = LinearQuadratic(1, 1, 1, 1, horizon=10, gamma=0.9)
LQ2 = LinearQuadratic([[0.9, 0.2], [0.0, 0.8]], [[1.0], [0.5]], np.eye(2), 0.5,
                      horizon=6, gamma=0.95)
CARTPOLE = ContinuousCartPole(horizon=30)


def random_episodes(seed, T=7, B=5, P=3):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(T, B, P)), rng.normal(size=(T, B)),
            rng.normal(scale=0.3, size=(T, B)), rng)


def slow_gpomdp(scores, rewards, gamma, prefix_weights):
    """sum_t gamma^t w_{0:t} r_t sum_{k<=t} score_k, one trajectory at a time."""
    T, B, P = scores.shape
    out = np.zeros((B, P))
    for b in range(B):
        for t in range(T):
            out[b] += gamma ** t * prefix_weights[t, b] * rewards[t, b] * scores[:t + 1, b].sum(0)
    return out


def within(samples, exact, n_se=4.0):
    """Every coordinate of the mean of samples [N, P] within n_se standard errors of exact."""
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    z = (mean - np.ravel(exact)) / se
    return bool(np.all(np.abs(z) < n_se)), z


def mixture_sample(env, K, Kb, std, std_b, beta, n, rng, split=False):
    """n trajectories of the defensive mixture, one component per trajectory."""
    if split:
        behaviour = np.arange(n) >= round(beta * n)
    else:
        behaviour = rng.random(n) >= beta
    gains = np.where(behaviour[:, None, None], Kb, K)
    stds = np.where(behaviour[:, None], np.atleast_1d(std_b), np.atleast_1d(std))
    return env.rollout(gains, stds, n, rng), behaviour


# ------------------------------------------------------------------ estimators


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 3), (12, 2, 6)])
def test_gpomdp_and_reinforce_against_slow_loops(shape):
    scores, rewards, _, _ = random_episodes(sum(shape), *shape)
    T, B, P = shape
    np.testing.assert_allclose(bh.gpomdp_gradients(scores, rewards, 0.9),
                               slow_gpomdp(scores, rewards, 0.9, np.ones((T, B))),
                               rtol=1e-12, atol=1e-12)
    returns = (0.9 ** np.arange(T)) @ rewards
    np.testing.assert_allclose(bh.reinforce_gradients(scores, rewards, 0.9),
                               scores.sum(axis=0) * returns[:, None], rtol=1e-12, atol=1e-12)


def test_off_policy_gradients_against_slow_loops_and_pgkit_importance():
    scores, rewards, log_rhos, _ = random_episodes(1)
    prefix = np.cumsum(log_rhos, axis=0)
    per_decision = bh.off_policy_gradients(scores, rewards, 0.9, prefix)
    np.testing.assert_allclose(per_decision, slow_gpomdp(scores, rewards, 0.9, np.exp(prefix)),
                               rtol=1e-12)
    np.testing.assert_allclose(per_decision, importance.per_decision_is_policy_gradients(
        scores, rewards, log_rhos, 0.9), rtol=1e-12)
    whole = bh.off_policy_gradients(scores, rewards, 0.9, prefix[-1])
    np.testing.assert_allclose(whole, np.exp(prefix[-1])[:, None]
                               * bh.gpomdp_gradients(scores, rewards, 0.9), rtol=1e-12)
    reinforce = bh.off_policy_gradients(scores, rewards, 0.9, prefix[-1], estimator="reinforce")
    np.testing.assert_allclose(reinforce, importance.trajectory_is_policy_gradients(
        scores, rewards, log_rhos, 0.9), rtol=1e-12)


def test_off_policy_gradients_in_log_space():
    """Weights of e^800 on zero rewards contribute exactly 0; a weight of -inf is 0."""
    scores, rewards, _, _ = random_episodes(2, T=5, B=3)
    rewards[2:] = 0.0
    log_w = np.zeros((5, 3))
    log_w[2:] = 800.0
    log_w[:, 2] = -np.inf
    with np.errstate(all="raise"):
        out = bh.off_policy_gradients(scores, rewards, 0.9, log_w)
    expected = slow_gpomdp(scores[:2], rewards[:2], 0.9, np.ones((2, 3)))
    expected[2] = 0.0
    np.testing.assert_allclose(out, expected, rtol=1e-12)


# ------------------------------------------------------------------ defensive weights


def test_defensive_weights_against_the_formula():
    rng = np.random.default_rng(3)
    lp, lq = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    P, Q = np.exp(np.cumsum(lp, 0)), np.exp(np.cumsum(lq, 0))
    for beta in (0.0, 0.3, 0.9):
        expected = np.log(P / (beta * P + (1 - beta) * Q))
        np.testing.assert_allclose(bh.defensive_trajectory_log_weights(lp, lq, beta),
                                   expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(bh.defensive_trajectory_log_weights(
            lp, lq, beta, per_decision=False), expected[-1], rtol=1e-12, atol=1e-12)
    # the fixed split is the balance heuristic, i.e. beta = n_p / N
    expected = np.log(P / (0.75 * P + 0.25 * Q))
    np.testing.assert_allclose(bh.defensive_trajectory_log_weights(lp, lq, counts=(3, 1)),
                               expected, rtol=1e-12, atol=1e-12)


def test_defensive_weights_are_of_whole_prefixes_not_per_step_mixtures():
    rng = np.random.default_rng(4)
    lp, lq = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    per_step = np.cumsum(lp - np.logaddexp(np.log(0.5) + lp, np.log(0.5) + lq), axis=0)
    assert not np.allclose(bh.defensive_trajectory_log_weights(lp, lq, 0.5), per_step)


def test_defensive_weights_over_a_long_horizon_stay_finite_and_bounded():
    rng = np.random.default_rng(5)
    lp, lq = rng.normal(-1, 3, size=(2000, 4)), rng.normal(-1, 3, size=(2000, 4))
    lw = bh.defensive_trajectory_log_weights(lp, lq, 0.2)
    assert np.isfinite(lw).all() and np.all(lw <= -np.log(0.2) + 1e-12)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.01, 1.0))
def test_every_defensive_weight_is_at_most_one_over_beta(seed, beta):
    rng = np.random.default_rng(seed)
    lp, lq = rng.normal(scale=3, size=(8, 6)), rng.normal(scale=3, size=(8, 6))
    w = np.exp(bh.defensive_trajectory_log_weights(lp, lq, beta))
    assert np.all(w <= (1 + 1e-12) / beta)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.01, 1.0))
def test_defensive_second_moment_bound_exactly_on_discrete_distributions(seed, beta):
    """sum_x Phi(x) (p/Phi)^2 ||g||^2 <= E_p ||g||^2 / beta for every q (eq is-defensive-bound)."""
    rng = np.random.default_rng(seed)
    p, q = rng.dirichlet(np.ones(7)), rng.dirichlet(np.full(7, 0.2))
    g = rng.normal(size=(7, 2)) * rng.exponential(size=(7, 1))
    phi = beta * p + (1 - beta) * q
    second = np.sum(p ** 2 * np.sum(g ** 2, 1) / phi)
    assert second <= np.sum(p * np.sum(g ** 2, 1)) / beta * (1 + 1e-12)


def test_beta_one_reproduces_on_policy_gpomdp_exactly():
    tr = LQ2.rollout([[0.1, -0.4]], 0.6, 50, np.random.default_rng(6))
    gpomdp = bh.gpomdp_gradients(tr.scores, tr.rewards, LQ2.gamma)
    reinforce = bh.reinforce_gradients(tr.scores, tr.rewards, LQ2.gamma)
    behaviour = linear_gaussian_log_probs([[0.5, 0.5]], 1.3, tr)
    for per_decision in (True, False):
        for kw in ({"beta": 1.0}, {"counts": (50, 0)}):
            lw = bh.defensive_trajectory_log_weights(tr.log_probs, behaviour,
                                                     per_decision=per_decision, **kw)
            assert np.all(lw == 0.0)
            np.testing.assert_array_equal(
                bh.off_policy_gradients(tr.scores, tr.rewards, LQ2.gamma, lw), gpomdp)
            if not per_decision:
                np.testing.assert_array_equal(bh.off_policy_gradients(
                    tr.scores, tr.rewards, LQ2.gamma, lw, estimator="reinforce"), reinforce)


# ------------------------------------------------------------------ unbiasedness on LQ


@pytest.mark.parametrize("env, K, std", [(LQ, [[-0.3]], 0.5), (LQ2, [[0.1, -0.4]], 0.6)])
def test_on_policy_estimators_are_unbiased(env, K, std):
    tr = env.rollout(K, std, 40_000, np.random.default_rng(10))
    exact = env.exact_gradient(K, std)
    for grads in (bh.gpomdp_gradients(tr.scores, tr.rewards, env.gamma),
                  bh.reinforce_gradients(tr.scores, tr.rewards, env.gamma)):
        ok, z = within(grads, exact)
        assert ok, z


@pytest.mark.parametrize("env, K, Kb, std, std_b", [
    (LQ, [[-0.3]], [[-0.6]], 0.5, 0.6),
    (LQ2, [[0.1, -0.4]], [[0.0, -0.2]], 0.6, 0.7),
])
def test_off_policy_estimators_from_one_behaviour_are_unbiased(env, K, Kb, std, std_b):
    tr = env.rollout(Kb, std_b, 60_000, np.random.default_rng(11))
    log_rhos = linear_gaussian_log_probs(K, std, tr) - tr.log_probs
    scores = linear_gaussian_scores(K, std, tr)
    exact = env.exact_gradient(K, std)
    for log_w, estimator in ((np.cumsum(log_rhos, 0), "gpomdp"),
                             (log_rhos.sum(0), "gpomdp"), (log_rhos.sum(0), "reinforce")):
        grads = bh.off_policy_gradients(scores, tr.rewards, env.gamma, log_w,
                                        estimator=estimator)
        ok, z = within(grads, exact)
        assert ok, (estimator, log_w.ndim, z)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("env, K, Kb, std, std_b, beta", [
    (LQ, [[-0.3]], [[-1.0]], 0.5, 0.5, 0.5),
    (LQ, [[-0.3]], [[0.1]], 0.5, 0.8, 0.2),
    (LQ2, [[0.1, -0.4]], [[0.3, -0.8]], 0.6, 0.5, 0.4),
])
def test_defensive_estimators_are_unbiased(env, K, Kb, std, std_b, beta, split):
    n = 50_000
    tr, from_behaviour = mixture_sample(env, K, Kb, std, std_b, beta, n,
                                        np.random.default_rng(12), split)
    lp = linear_gaussian_log_probs(K, std, tr)
    lq = linear_gaussian_log_probs(Kb, std_b, tr)
    scores = linear_gaussian_scores(K, std, tr)
    exact = env.exact_gradient(K, std)
    kw = {"counts": (n - from_behaviour.sum(), from_behaviour.sum())} if split else {"beta": beta}
    for per_decision in (True, False):
        lw = bh.defensive_trajectory_log_weights(lp, lq, per_decision=per_decision, **kw)
        ok, z = within(bh.off_policy_gradients(scores, tr.rewards, env.gamma, lw), exact)
        assert ok, (per_decision, z)


def test_a_per_step_mixture_density_is_detectably_biased():
    """The bug the notes warn about: weighting with prod_t (beta pi + (1-beta) pi~)
    instead of the trajectory mixture. The same check that passes above fails here."""
    K, Kb, std, beta, n = [[-0.3]], [[-1.0]], 0.5, 0.5, 50_000
    tr, _ = mixture_sample(LQ, K, Kb, std, std, beta, n, np.random.default_rng(12))
    lp = linear_gaussian_log_probs(K, std, tr)
    lq = linear_gaussian_log_probs(Kb, std, tr)
    per_step = np.cumsum(lp - np.logaddexp(np.log(beta) + lp, np.log(1 - beta) + lq), 0)
    grads = bh.off_policy_gradients(linear_gaussian_scores(K, std, tr), tr.rewards, 0.9,
                                    per_step)
    ok, z = within(grads, LQ.exact_gradient(K, std), n_se=6.0)
    assert not ok


def test_defensive_second_moment_bound_by_monte_carlo():
    """Pointwise w <= 1/beta, and E_Phi[w ||g||^2] = E_p ||g||^2, give the 1/beta bound."""
    K, Kb, std, beta, n = [[-0.3]], [[-1.0]], 0.5, 0.3, 40_000
    tr, _ = mixture_sample(LQ, K, Kb, std, std, beta, n, np.random.default_rng(13))
    lp, lq = linear_gaussian_log_probs(K, std, tr), linear_gaussian_log_probs(Kb, std, tr)
    lw = bh.defensive_trajectory_log_weights(lp, lq, beta, per_decision=False)
    g = bh.gpomdp_gradients(linear_gaussian_scores(K, std, tr), tr.rewards, 0.9)
    w, sq = np.exp(lw), np.sum(g ** 2, axis=1)
    assert np.all(w <= (1 + 1e-12) / beta)
    assert np.all((w * w * sq) <= sq * w / beta * (1 + 1e-12))
    on = LQ.rollout(K, std, n, np.random.default_rng(14))
    sq_on = np.sum(bh.gpomdp_gradients(on.scores, on.rewards, 0.9) ** 2, axis=1)
    diff = w * sq
    se = np.sqrt(diff.var() / n + sq_on.var() / n)
    assert abs(diff.mean() - sq_on.mean()) < 4 * se
    assert np.mean(w * w * sq) <= sq_on.mean() / beta + 4 * se / beta


# ------------------------------------------------------------------ the optimal sampler


def brute_force_minimum(p, g, n_iter=20_000):
    """Minimise sum p^2 ||g||^2 / q over the simplex by exponentiated gradient."""
    a = p ** 2 * np.sum(g ** 2, axis=1)
    q = np.full(p.size, 1 / p.size)
    for _ in range(n_iter):
        grad = -a / q ** 2
        q = q * np.exp(-0.5 * grad / np.abs(grad).max())
        q /= q.sum()
    return q


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minimum_variance_weight_is_the_norm_not_its_square(seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(6))
    g = rng.normal(size=(6, 2)) * rng.exponential(size=(6, 1))
    norms = np.linalg.norm(g, axis=1)
    q_norm = bh.minimum_variance_behaviour(p, g)
    np.testing.assert_allclose(q_norm, p * norms / np.sum(p * norms), rtol=1e-12)
    q_square = p * norms ** 2 / np.sum(p * norms ** 2)
    q_brute = brute_force_minimum(p, g)
    v_norm, v_square = bh.variance_trace(p, q_norm, g), bh.variance_trace(p, q_square, g)
    v_brute, v_on = bh.variance_trace(p, q_brute, g), bh.variance_trace(p, p, g)
    closed = np.sum(p * norms) ** 2 - np.sum((p @ g) ** 2)
    np.testing.assert_allclose(v_norm, closed, rtol=1e-10)
    np.testing.assert_allclose(v_brute, v_norm, rtol=1e-6)
    np.testing.assert_allclose(q_brute, q_norm, atol=1e-4)
    assert v_norm < v_square - 1e-3 * abs(v_norm) and v_norm < v_on
    for q in rng.dirichlet(np.ones(6), size=2000):          # no distribution does better
        assert bh.variance_trace(p, q, g) >= v_norm - 1e-12


def test_variance_trace_against_its_formula():
    rng = np.random.default_rng(3)
    p, q = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
    g = rng.normal(size=(5, 3))
    expected = np.sum(p ** 2 * np.sum(g ** 2, 1) / q) - np.sum((p @ g) ** 2)
    np.testing.assert_allclose(bh.variance_trace(p, q, g), expected, rtol=1e-12)


def test_behaviour_weights():
    g = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(bh.behaviour_weights(g), [5.0, 0.0, 1.0])
    np.testing.assert_allclose(bh.behaviour_weights(g, power=2.0), [25.0, 0.0, 1.0])


# ------------------------------------------------------------------ cross-entropy fit


def slow_fit(tr, c, ridge=0.0, prior=None):
    """Weighted least squares over the alive steps by lstsq on sqrt(c)-scaled rows."""
    n, m = tr.states.shape[-1], tr.actions.shape[-1]
    rows = [(np.sqrt(c[b]) * tr.states[t, b], np.sqrt(c[b]) * tr.actions[t, b])
            for t in range(tr.horizon) for b in range(tr.n_trajectories) if tr.alive[t, b]]
    X, Y = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    lam = ridge * np.trace(X.T @ X) / n
    prior = np.zeros((m, n)) if prior is None else prior
    X = np.vstack([X, np.sqrt(lam) * np.eye(n)])
    Y = np.vstack([Y, np.sqrt(lam) * prior.T])
    return np.linalg.lstsq(X, Y, rcond=None)[0].T


def test_fit_against_weighted_least_squares():
    rng = np.random.default_rng(20)
    tr = LQ2.rollout([[0.1, -0.4]], 0.6, 40, rng)
    c = rng.exponential(size=40)
    np.testing.assert_allclose(bh.fit_behaviour(tr, c, 0.6, ridge=0.0).gain, slow_fit(tr, c),
                               rtol=1e-9)
    prior = np.array([[1.0, 2.0]])
    np.testing.assert_allclose(bh.fit_behaviour(tr, c, 0.6, ridge=0.3, prior_gain=prior).gain,
                               slow_fit(tr, c, 0.3, prior), rtol=1e-9)
    # the weights' scale does not matter, the std is kept unless fitted
    fit = bh.fit_behaviour(tr, 1000 * c, 0.6)
    np.testing.assert_allclose(fit.gain, bh.fit_behaviour(tr, c, 0.6).gain, rtol=1e-10)
    np.testing.assert_array_equal(fit.std, [0.6])


def test_fit_maximises_the_weighted_likelihood():
    rng = np.random.default_rng(21)
    tr = LQ2.rollout([[0.1, -0.4]], 0.6, 30, rng)
    c = rng.exponential(size=30)
    fit = bh.fit_behaviour(tr, c, 0.6, ridge=0.0, fit_std=True)
    scores = linear_gaussian_scores(fit.gain, fit.std, tr)                  # [T, B, P]
    stationarity = np.einsum("b,tbp->p", c, scores)
    assert np.abs(stationarity).max() < 1e-8 * np.abs(np.einsum("b,tbp->p", c,
                                                                np.abs(scores))).max()
    resid = tr.actions[..., 0] - np.einsum("tbn,n->tb", tr.states, fit.gain[0])
    np.testing.assert_allclose(fit.std[0] ** 2, np.sum(c * resid ** 2) / (c.sum() * tr.horizon),
                               rtol=1e-10)
    loglik = lambda K, s: c @ linear_gaussian_log_probs(K, s, tr).sum(0)  # noqa: E731
    best = loglik(fit.gain, fit.std)
    for _ in range(20):
        assert loglik(fit.gain + rng.normal(scale=0.01, size=(1, 2)), fit.std) < best
        assert loglik(fit.gain, fit.std * np.exp(rng.normal(scale=0.05))) < best


def test_fit_with_equal_weights_recovers_the_sampling_policy():
    K, std = np.array([[0.1, -0.4]]), 0.6
    tr = LQ2.rollout(K, std, 20_000, np.random.default_rng(22))
    fit = bh.fit_behaviour(tr, np.ones(20_000), std, fit_std=True)
    np.testing.assert_allclose(fit.gain, K, atol=0.01)
    np.testing.assert_allclose(fit.std, [std], rtol=0.005)


def test_fit_ignores_absorbed_steps_and_zero_weights():
    rng = np.random.default_rng(23)
    tr = CARTPOLE.rollout(np.zeros((1, 4)), 3.0, 30, rng)
    assert not tr.alive.all()
    c = rng.exponential(size=30)
    np.testing.assert_allclose(bh.fit_behaviour(tr, c, 3.0, ridge=0.0).gain, slow_fit(tr, c),
                               rtol=1e-8)
    prior = np.array([[1.0, 2.0, 3.0, 4.0]])
    fit = bh.fit_behaviour(tr, np.zeros(30), 3.0, fit_std=True, prior_gain=prior)
    np.testing.assert_array_equal(fit.gain, prior)
    np.testing.assert_array_equal(fit.std, [3.0])


# ------------------------------------------------------------------ KL and beta


def test_kl_is_zero_when_the_fit_is_the_optimal_distribution():
    tr = LQ.rollout([[-0.3]], 0.5, 100, np.random.default_rng(30))
    lp = tr.log_probs.sum(0)
    assert bh.kl_from_optimal(lp, lp, np.ones(100)) == 0.0
    assert bh.kl_from_optimal(lp, lp, np.full(100, 7.0)) == 0.0


def test_kl_of_a_wider_behaviour_with_equal_weights_is_exact():
    """Equal weights: q* = p. Same means, stds s and s~ at every one of the H steps:
    KL = H [log(s~/s) + s^2 / (2 s~^2) - 1/2]."""
    K, s, s_b, n = [[-0.3]], 0.5, 0.8, 20_000
    tr = LQ.rollout(K, s, n, np.random.default_rng(31))
    lp, lq = tr.log_probs.sum(0), linear_gaussian_log_probs(K, s_b, tr).sum(0)
    exact = LQ.horizon * (np.log(s_b / s) + s ** 2 / (2 * s_b ** 2) - 0.5)
    estimate = bh.kl_from_optimal(lp, lq, np.ones(n))
    se = (lp - lq).std() / np.sqrt(n)
    assert abs(estimate - exact) < 4 * se


def test_kl_against_enumeration_on_a_discrete_distribution():
    rng = np.random.default_rng(32)
    p, q_fit = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
    c_of = rng.exponential(size=5)
    q_star = p * c_of / np.sum(p * c_of)
    exact = np.sum(q_star * np.log(q_star / q_fit))
    x = rng.choice(5, size=200_000, p=p)
    c = c_of[x]
    estimate = bh.kl_from_optimal(np.log(p[x]), np.log(q_fit[x]), c)
    f = np.log(p[x] / q_fit[x]) + np.log(c) - np.log(c.mean())
    se = np.sqrt(np.sum((c * (f - estimate)) ** 2)) / c.sum()
    assert abs(estimate - exact) < 4 * se
    # trajectories with zero weight do not count
    c0 = np.concatenate([c[:1000], [0.0]])
    lp0, lq0 = np.log(p[x[:1001]]), np.log(q_fit[x[:1001]])
    np.testing.assert_allclose(bh.kl_from_optimal(lp0, lq0, c0),
                               bh.kl_from_optimal(lp0[:1000], lq0[:1000], c[:1000])
                               + np.log(1001 / 1000), rtol=1e-12)


def test_cross_fitted_kl_by_hand():
    rng = np.random.default_rng(33)
    tr = LQ2.rollout([[0.1, -0.4]], 0.6, 9, rng)
    c = rng.exponential(size=9)
    halves = []
    for fit_on, held in ((slice(0, 4), slice(4, 9)), (slice(4, 9), slice(0, 4))):
        sub = lambda s: type(tr)(*(getattr(tr, f)[:, s] if f != "final_states"  # noqa: E731
                                   else tr.final_states[s] for f in tr.__dataclass_fields__))
        fit = bh.fit_behaviour(sub(fit_on), c[fit_on], 0.6, fit_std=True)
        held_out = sub(held)
        halves.append(bh.kl_from_optimal(
            held_out.log_probs.sum(0),
            linear_gaussian_log_probs(fit.gain, fit.std, held_out).sum(0), c[held]))
    np.testing.assert_allclose(bh.cross_fitted_kl(tr, c, 0.6, fit_std=True),
                               np.mean(halves), rtol=1e-12)


def test_in_sample_kl_is_optimistic_and_cross_fitting_is_not():
    """Against the KL of each fit measured on 50 000 independent trajectories: the
    in-sample estimate is far too low; the held-out one is off by a small fraction
    of that."""
    rng = np.random.default_rng(34)
    K, std, n_bpo = [[-0.3]], 0.5, 10
    big = LQ.rollout(K, std, 50_000, rng)
    c_big = np.linalg.norm(bh.gpomdp_gradients(big.scores, big.rewards, 0.9), axis=1)
    in_sample, held_out, truth = [], [], []
    for _ in range(200):
        tr = LQ.rollout(K, std, n_bpo, rng)
        c = np.linalg.norm(bh.gpomdp_gradients(tr.scores, tr.rewards, 0.9), axis=1)
        fit = bh.fit_behaviour(tr, c, std, prior_gain=K)
        kl = lambda t, w: bh.kl_from_optimal(  # noqa: E731
            t.log_probs.sum(0), linear_gaussian_log_probs(fit.gain, fit.std, t).sum(0), w)
        in_sample.append(kl(tr, c))
        truth.append(kl(big, c_big))
        held_out.append(bh.cross_fitted_kl(tr, c, std, prior_gain=K))
    d_in = np.array(truth) - np.array(in_sample)             # > 0: optimistic
    d_out = np.array(truth) - np.array(held_out)
    assert d_in.mean() > 4 * d_in.std(ddof=1) / np.sqrt(d_in.size)
    assert np.mean(np.array(in_sample) < 0) > 0.05
    assert abs(d_out.mean()) < 0.25 * d_in.mean()


def test_beta_rule():
    assert bh.beta_from_kl(0.0) == 0.0
    assert bh.beta_from_kl(1.0) == 1.0
    np.testing.assert_allclose(bh.beta_from_kl(0.5), np.sqrt(0.5 / 1.5))
    np.testing.assert_allclose(bh.beta_from_kl(0.2), np.sqrt(0.2 / 1.8))
    assert bh.beta_from_kl(3.0) == 1.0 and bh.beta_from_kl(-0.2) == 0.0
    values = [bh.beta_from_kl(e) for e in np.linspace(0, 1.5, 50)]
    assert np.all(np.diff(values) >= 0)


# ------------------------------------------------------------------ training loops


@pytest.mark.parametrize("algorithm, cost", [("gpomdp", [5]), ("bpo", [8]),
                                             ("storm", [20, 5])])
@pytest.mark.parametrize("env", [LQ, CARTPOLE], ids=["lq", "cartpole"])
def test_loops_count_every_trajectory(env, algorithm, cost):
    options = {"bpo": {"n_bpo": 3}, "storm": {"init_batch_size": 20}}.get(algorithm, {})
    curve = bh.train_algorithm(algorithm, env, np.zeros((1, env.state_dim)), 0.5,
                               np.random.default_rng(0), n_trajectories=63, batch_size=5,
                               step_size=1e-3, **options)
    steps = np.diff(curve.trajectories)
    assert curve.trajectories[0] == 0 and np.all(steps[1:] == cost[-1]) and steps[0] == cost[0]
    assert curve.trajectories[-1] <= 63 < curve.trajectories[-1] + cost[-1]
    K = len(steps)
    assert curve.gains.shape == (K + 1, 1, env.state_dim)
    for name in ("batch_returns", "grad_norms", "betas", "kls"):
        assert getattr(curve, name).shape == (K,)
    assert curve.wall_time.shape == (K + 1,) and not curve.diverged
    if env is LQ:
        np.testing.assert_allclose(curve.exact_returns,
                                   [LQ.exact_return(k, 0.5) for k in curve.gains])
    else:
        assert curve.exact_returns is None
    if algorithm == "bpo":
        assert np.all((curve.betas >= 0) & (curve.betas <= 1))
        assert np.isfinite(curve.kls).all()
    else:
        assert np.isnan(curve.betas).all()


def test_storm_with_alpha_one_is_gpomdp():
    common = dict(n_trajectories=200, batch_size=10, step_size=0.002)
    gpomdp = bh.train_gpomdp(LQ, [[0.0]], 0.5, np.random.default_rng(1), **common)
    storm = bh.train_storm(LQ, [[0.0]], 0.5, np.random.default_rng(1), alpha=1.0,
                           init_batch_size=10, **common)
    np.testing.assert_array_equal(storm.gains, gpomdp.gains)
    other = bh.train_storm(LQ, [[0.0]], 0.5, np.random.default_rng(1), alpha=0.5,
                           init_batch_size=10, **common)
    assert not np.array_equal(other.gains, gpomdp.gains)


def test_storm_update_by_hand():
    """Replay the first two STORM steps from the same random stream."""
    rng = np.random.default_rng(2)
    curve = bh.train_storm(LQ2, [[0.1, -0.4]], 0.6, rng, n_trajectories=35, batch_size=10,
                           init_batch_size=15, alpha=0.7, step_size=0.01)
    rng = np.random.default_rng(2)
    K0 = np.array([[0.1, -0.4]])
    b0 = LQ2.rollout(K0, 0.6, 15, rng)
    u = bh.gpomdp_gradients(b0.scores, b0.rewards, LQ2.gamma).mean(0)
    K1 = K0 + 0.01 * u.reshape(1, 2)
    b1 = LQ2.rollout(K1, 0.6, 10, rng)
    fresh = bh.gpomdp_gradients(b1.scores, b1.rewards, LQ2.gamma).mean(0)
    log_w = (linear_gaussian_log_probs(K0, 0.6, b1) - b1.log_probs).sum(0)
    old = bh.off_policy_gradients(linear_gaussian_scores(K0, 0.6, b1), b1.rewards,
                                  LQ2.gamma, log_w).mean(0)
    K2 = K1 + 0.01 * (fresh + 0.3 * (u - old)).reshape(1, 2)
    np.testing.assert_allclose(curve.gains[:3], [K0, K1, K2], rtol=1e-12)


def test_bpo_with_beta_one_steps_along_on_policy_gpomdp():
    """Replay: with beta = 1 (a split of N target trajectories) every step is GPOMDP on
    the N_PG trajectories drawn after the N_BPO fitting ones."""
    curve = bh.train_bpo(LQ, [[0.0]], 0.5, np.random.default_rng(3), n_trajectories=45,
                         batch_size=10, n_bpo=5, beta=1.0, sampling="split", step_size=0.003)
    rng = np.random.default_rng(3)
    K = np.array([[0.0]])
    gains = [K]
    for _ in range(3):
        LQ.rollout(K, 0.5, 5, rng)
        batch = LQ.rollout(np.broadcast_to(K, (10, 1, 1)), np.full((10, 1), 0.5), 10, rng)
        K = K + 0.003 * bh.gpomdp_gradients(batch.scores, batch.rewards, 0.9).mean(0)[None]
        gains.append(K)
    np.testing.assert_array_equal(curve.gains, gains)
    assert np.all(curve.betas == 1.0)


def test_bpo_iteration_by_hand():
    """Replay one iteration of BPO with the rule, i.i.d. mixture, per-decision weights."""
    curve = bh.train_bpo(LQ2, [[0.1, -0.4]], 0.6, np.random.default_rng(4),
                         n_trajectories=30, batch_size=20, n_bpo=10, step_size=0.01,
                         fit_std=True)
    rng = np.random.default_rng(4)
    K = np.array([[0.1, -0.4]])
    on = LQ2.rollout(K, 0.6, 10, rng)
    c = bh.behaviour_weights(bh.gpomdp_gradients(on.scores, on.rewards, LQ2.gamma))
    fit = bh.fit_behaviour(on, c, 0.6, fit_std=True, prior_gain=K)
    kl = bh.cross_fitted_kl(on, c, 0.6, fit_std=True, prior_gain=K)
    beta = bh.beta_from_kl(kl)
    components = importance.sample_mixture_components([beta, 1 - beta], 20, rng)
    gains = np.where(components[:, None, None] == 1, fit.gain, K)
    stds = np.where(components[:, None] == 1, fit.std, 0.6)
    batch = LQ2.rollout(gains, stds, 20, rng)
    lw = bh.defensive_trajectory_log_weights(linear_gaussian_log_probs(K, 0.6, batch),
                                             linear_gaussian_log_probs(fit.gain, fit.std,
                                                                       batch), beta)
    grad = bh.off_policy_gradients(linear_gaussian_scores(K, 0.6, batch), batch.rewards,
                                   LQ2.gamma, lw).mean(0)
    np.testing.assert_allclose(curve.gains[1], K + 0.01 * grad[None], rtol=1e-12)
    np.testing.assert_allclose([curve.kls[0], curve.betas[0]], [kl, beta], rtol=1e-12)


@pytest.mark.parametrize("algorithm", ["gpomdp", "bpo", "storm"])
def test_loops_improve_the_lq_return(algorithm):
    curve = bh.train_algorithm(algorithm, LQ, [[0.0]], 0.5, np.random.default_rng(5),
                               n_trajectories=1500, batch_size=10, step_size=0.003)
    optimum = LQ.exact_return(LQ.optimal_gain(0.5), 0.5)
    start, end = curve.exact_returns[0], curve.exact_returns[-1]
    assert optimum - end < 0.05 * (optimum - start)


def test_evaluation_does_not_change_the_run_and_optimizers():
    kw = dict(n_trajectories=100, batch_size=10, step_size=0.01)
    a = bh.train_bpo(CARTPOLE, np.zeros((1, 4)), 1.0, np.random.default_rng(6), **kw)
    b = bh.train_bpo(CARTPOLE, np.zeros((1, 4)), 1.0, np.random.default_rng(6), n_eval=7, **kw)
    np.testing.assert_array_equal(a.gains, b.gains)
    assert a.eval_returns is None and b.eval_returns.shape == (len(b.gains),)
    assert np.all((b.eval_returns > 0) & (b.eval_returns <= (1 - 0.99 ** 30) / 0.01 + 1e-9))
    adam = bh.train_gpomdp(LQ, [[0.0]], 0.5, np.random.default_rng(6), optimizer="adam", **kw)
    assert not np.array_equal(adam.gains[1], bh.train_gpomdp(
        LQ, [[0.0]], 0.5, np.random.default_rng(6), **kw).gains[1])


def test_divergence_ends_the_run_and_learning_curve_at():
    curve = bh.train_gpomdp(LQ, [[3.0]], 0.5, np.random.default_rng(7), n_trajectories=500,
                            batch_size=5, step_size=1e6)
    assert curve.diverged and curve.trajectories[-1] < 500
    assert np.isfinite(curve.gains).all() and np.isfinite(curve.exact_returns).all()
    last = curve.trajectories[-1]
    values = curve.at([-1.0, 0.0, last, last + 1, 1000.0])
    assert np.isnan(values[[0, 3, 4]]).all()                  # before the start, after the end
    assert values[1] == curve.exact_returns[0] and values[2] == curve.exact_returns[-1]
    ok = bh.train_gpomdp(LQ, [[0.0]], 0.5, np.random.default_rng(7), n_trajectories=20,
                         batch_size=5)
    np.testing.assert_array_equal(ok.at([0, 4, 5, 19, 20, 100]), ok.exact_returns[
        [0, 0, 1, 3, 4, 4]])


@pytest.mark.parametrize("call, message", [
    (lambda: bh.train_algorithm("ppo", LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5),
     "algorithm must be one of"),
    (lambda: bh.train_gpomdp("env", [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5),
     "env must be a pgkit.envs environment"),
    (lambda: bh.train_gpomdp(LQ, [[0.0, 1.0]], 0.5, np.random.default_rng(0),
                             n_trajectories=5), "gain must have shape"),
    (lambda: bh.train_gpomdp(LQ, [[0.0]], 0.0, np.random.default_rng(0), n_trajectories=5),
     "std must be positive"),
    (lambda: bh.train_gpomdp(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=0),
     "n_trajectories must be >= 1"),
    (lambda: bh.train_gpomdp(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                             estimator="ppo"), "estimator must be one of"),
    (lambda: bh.train_gpomdp(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                             optimizer="rmsprop"), "optimizer must be"),
    (lambda: bh.train_gpomdp(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                             max_grad_norm=0.0), "max_grad_norm must be positive"),
    (lambda: bh.train_bpo(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                          beta="auto"), "beta must be a number in"),
    (lambda: bh.train_bpo(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                          beta=1.5), r"beta must be in \[0, 1\]"),
    (lambda: bh.train_bpo(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                          sampling="stratified"), "sampling must be one of"),
    (lambda: bh.train_bpo(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                          estimator="reinforce"), "REINFORCE takes whole-trajectory"),
    (lambda: bh.train_bpo(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                          n_bpo=1), "n_bpo must be >= 2"),
    (lambda: bh.train_bpo(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                          n_bpo=0, kl_estimate="in-sample"), "n_bpo must be >= 1"),
    (lambda: bh.train_bpo(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                          kl_estimate="exact"), "kl_estimate must be one of"),
    (lambda: bh.train_storm(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                            alpha=2.0), r"alpha must be in \[0, 1\]"),
    (lambda: bh.train_storm(LQ, [[0.0]], 0.5, np.random.default_rng(0), n_trajectories=5,
                            weighting="full"), "weighting must be one of"),
    (lambda: bh.train_from_seed("bpo", LQ, [[0.0]], 0.5, -1, n_trajectories=5),
     "seed must be >= 0"),
])
def test_loop_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------ sweeps


def test_sweep_serial_runs_every_setting_and_seed_without_joblib(monkeypatch):
    monkeypatch.setitem(sys.modules, "joblib", None)          # importing it would fail
    settings_ = [dict(algorithm="gpomdp", env=LQ, gain=[[0.0]], std=0.5, n_trajectories=30),
                 dict(algorithm="bpo", env=LQ, gain=[[0.0]], std=0.5, n_trajectories=30)]
    results = bh.sweep(bh.train_from_seed, settings_, seeds=[0, 3])
    assert len(results) == 2 and all(len(r) == 2 for r in results)
    direct = bh.train_algorithm("bpo", LQ, [[0.0]], 0.5, np.random.default_rng(3), n_trajectories=30)
    np.testing.assert_array_equal(results[1][1].gains, direct.gains)
    assert results[0][0].algorithm == "gpomdp" and results[1][0].algorithm == "bpo"


@pytest.mark.parametrize("n_jobs, backend", [(2, None), (2, "threading")])
def test_sweep_in_parallel_gives_the_serial_results(n_jobs, backend):
    settings_ = [dict(algorithm=a, env=LQ, gain=[[0.0]], std=0.5, n_trajectories=40)
                 for a in ("gpomdp", "storm")]
    serial = bh.sweep(bh.train_from_seed, settings_, seeds=[1, 2])
    parallel = bh.sweep(bh.train_from_seed, settings_, seeds=[1, 2], n_jobs=n_jobs,
                        backend=backend)
    for row_s, row_p in zip(serial, parallel):
        for a, b in zip(row_s, row_p):
            np.testing.assert_array_equal(a.gains, b.gains)


@pytest.mark.parametrize("kwargs, message", [
    (dict(task=1, settings=[{}], seeds=[0]), "task must be callable"),
    (dict(task=bh.train_from_seed, settings=[1], seeds=[0]), "settings must be a sequence"),
    (dict(task=bh.train_from_seed, settings=[{}], seeds=[-1]), "seed must be >= 0"),
    (dict(task=bh.train_from_seed, settings=[{}], seeds=[0], n_jobs=0), "n_jobs must be"),
])
def test_sweep_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bh.sweep(**kwargs)


# ------------------------------------------------------------------ variance study


def test_variance_study_on_lq():
    study = bh.gradient_variance_study(LQ, [[-0.3]], 0.5, np.random.default_rng(8),
                                       n_samples=20_000, n_bpo=100)
    assert study.labels == ["on-policy", "ideal", "beta=0", "beta=0.4", "beta=0.8",
                            "beta=rule"]
    z = study.z_scores()
    assert np.isnan(z[1]).all()
    assert np.all(np.abs(np.delete(z, 1, axis=0)) < 4.5)          # every sampler unbiased
    v, se = study.variance_traces, study.variance_ses
    assert v[1] + 4 * se[1] < v[0] - 4 * se[0]                    # the ideal sampler wins
    assert np.all(v[1] <= v + 4 * np.hypot(se, se[1]))            # and nothing beats it
    assert 0 <= study.rule_beta <= 1 and np.isfinite(study.kl)


def test_variance_study_on_cartpole_has_no_exact_gradient():
    study = bh.gradient_variance_study(CARTPOLE, np.zeros((1, 4)), 1.0,
                                       np.random.default_rng(9), n_samples=50, n_bpo=20,
                                       betas=(0.5,), sampling="split")
    assert study.exact_gradient is None and study.labels[-1] == "beta=0.5"
    with pytest.raises(ValueError, match="no exact gradient"):
        study.z_scores()


@pytest.mark.parametrize("call, message", [
    (lambda: bh.gpomdp_gradients(np.zeros((3, 2)), np.zeros((3, 2)), 0.9),
     r"scores must have shape \[T, B, P\]"),
    (lambda: bh.gpomdp_gradients(np.zeros((3, 2, 1)), np.zeros((3, 3)), 0.9),
     r"scores must have shape \[T, B, P\] = \(3, 3, P\)"),
    (lambda: bh.reinforce_gradients(np.zeros((3, 2, 1)), np.full((3, 2), np.nan), 0.9),
     "rewards contains NaN"),
    (lambda: bh.gpomdp_gradients(np.zeros((3, 2, 1)), np.zeros((3, 2)), 1.2), "gamma must"),
    (lambda: bh.off_policy_gradients(np.zeros((3, 2, 1)), np.zeros((3, 2)), 0.9, np.zeros(3)),
     r"log_weights must have shape \[B\] = \(2,\)"),
    (lambda: bh.off_policy_gradients(np.zeros((3, 2, 1)), np.zeros((3, 2)), 0.9,
                                     np.full(2, np.inf)), r"log_weights contains \+inf"),
    (lambda: bh.off_policy_gradients(np.zeros((3, 2, 1)), np.zeros((3, 2)), 0.9,
                                     np.zeros((3, 2)), estimator="reinforce"),
     "REINFORCE takes whole-trajectory weights"),
    (lambda: bh.defensive_trajectory_log_weights(np.zeros((3, 2)), np.zeros((3, 2))),
     "give exactly one of beta"),
    (lambda: bh.defensive_trajectory_log_weights(np.zeros((3, 2)), np.zeros((3, 2)), 0.5,
                                                 counts=(1, 1)), "give exactly one of beta"),
    (lambda: bh.defensive_trajectory_log_weights(np.zeros((3, 2)), np.zeros((3, 3)), 0.5),
     "must have the same shape"),
    (lambda: bh.defensive_trajectory_log_weights(np.zeros((3, 2)), np.zeros((3, 2)),
                                                 counts=(1, 2)), "counts must sum to"),
    (lambda: bh.defensive_trajectory_log_weights(np.zeros((3, 2)), np.zeros((3, 2)),
                                                 counts=(1, 1, 0)), "counts must be a pair"),
    (lambda: bh.defensive_trajectory_log_weights(np.zeros((3, 2)), np.zeros((3, 2)), -0.1),
     r"beta must be in \[0, 1\]"),
    (lambda: bh.defensive_trajectory_log_weights(np.zeros((3, 2)), np.full((3, 2), -np.inf),
                                                 0.0), "support violation"),
    (lambda: bh.minimum_variance_behaviour([0.5, 0.5], np.zeros((2, 2))), "f is zero"),
    (lambda: bh.minimum_variance_behaviour([0.5, 0.6], np.ones((2, 2))), "must sum to one"),
    (lambda: bh.variance_trace([0.5, 0.5], [1.0, 0.0], np.ones((2, 1))), "support violation"),
    (lambda: bh.behaviour_weights(np.ones(3)), r"gradients must have shape \[N, P\]"),
    (lambda: bh.behaviour_weights(np.ones((3, 1)), power=-1), "power must be non-negative"),
    (lambda: bh.fit_behaviour("x", np.ones(3), 0.5), "pgkit.envs.Trajectories"),
    (lambda: bh.fit_behaviour(LQ.rollout([[0.0]], 0.5, 3, np.random.default_rng(0)),
                              np.ones(4), 0.5), r"weights must have shape \[B\] = \(3,\)"),
    (lambda: bh.fit_behaviour(LQ.rollout([[0.0]], 0.5, 3, np.random.default_rng(0)),
                              -np.ones(3), 0.5), "weights must be finite and non-negative"),
    (lambda: bh.fit_behaviour(LQ.rollout([[0.0]], 0.5, 3, np.random.default_rng(0)),
                              np.ones(3), 0.5, prior_gain=[[1.0, 2.0]]), "gain must have"),
    (lambda: bh.kl_from_optimal(np.zeros(3), np.zeros(3), np.zeros(3)),
     "not all zero"),
    (lambda: bh.kl_from_optimal(np.zeros(3), np.zeros(2), np.ones(3)),
     "must have the same shape"),
    (lambda: bh.kl_from_optimal(np.zeros(3), np.full(3, -np.inf), np.ones(3)),
     "log-densities must be finite"),
    (lambda: bh.beta_from_kl(float("nan")), "kl must be a number"),
    (lambda: bh.cross_fitted_kl(LQ.rollout([[0.0]], 0.5, 1, np.random.default_rng(0)),
                                np.ones(1), 0.5), "at least 2 trajectories"),
    (lambda: bh.cross_fitted_kl(LQ.rollout([[0.0]], 0.5, 3, np.random.default_rng(0)),
                                np.ones(2), 0.5), r"weights must have shape \[B\]"),
    (lambda: bh.beta_from_kl("0.3"), "kl must be a number"),
    (lambda: bh.gradient_variance_study(LQ, [[0.0]], 0.5, np.random.default_rng(0),
                                        n_samples=1), "n_samples must be >= 2"),
    (lambda: bh.gradient_variance_study(LQ, [[0.0]], 0.5, np.random.default_rng(0),
                                        betas=("best",)), "betas must be numbers"),
    (lambda: LQ.rollout([[0.0]], 0.5, 3, np.random.default_rng(0)) and bh.LearningCurve(
        "x", np.zeros(1), np.zeros((1, 1, 1)), None, None, *[np.zeros(0)] * 4,
        np.zeros(1)).at([1.0]), "this run has no exact_returns"),
])
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()
