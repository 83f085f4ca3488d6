"""Importance sampling: slow equation-shaped loops, exact enumeration, Monte Carlo, log space, errors."""

import itertools
import math
from decimal import Decimal, localcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgkit import importance as I
from pgkit import mdp as M
from pgkit.policies import TabularSoftmaxPolicy

SHAPES = [(1, 1), (1, 4), (5, 1), (7, 3), (12, 5)]


# ----------------------------------------------------------------- slow references


def slow_product_of_ratios(log_rhos, t, b):
    """rho_{0:t} of column b as a product of the ratios, by the definition."""
    rho = 1.0
    for k in range(t + 1):
        rho *= math.exp(log_rhos[k, b])
    return rho


def slow_trajectory_is(rewards, log_rhos, gamma):
    T, B = rewards.shape
    out = np.zeros(B)
    for b in range(B):
        ret = sum(gamma**t * rewards[t, b] for t in range(T))
        out[b] = slow_product_of_ratios(log_rhos, T - 1, b) * ret
    return out


def slow_per_decision_is(rewards, log_rhos, gamma):
    T, B = rewards.shape
    out = np.zeros(B)
    for b in range(B):
        for t in range(T):
            out[b] += gamma**t * slow_product_of_ratios(log_rhos, t, b) * rewards[t, b]
    return out


def slow_trajectory_is_gradient(scores, rewards, log_rhos, gamma):
    T, B, P = scores.shape
    out = np.zeros((B, P))
    for b in range(B):
        rho = slow_product_of_ratios(log_rhos, T - 1, b)
        ret = sum(gamma**t * rewards[t, b] for t in range(T))
        for t in range(T):
            out[b] += rho * scores[t, b] * ret
    return out


def slow_per_decision_is_gradient(scores, rewards, log_rhos, gamma):
    T, B, P = scores.shape
    out = np.zeros((B, P))
    for b in range(B):
        for t in range(T):
            for u in range(t, T):
                out[b] += scores[t, b] * gamma**u * slow_product_of_ratios(log_rhos, u, b) * rewards[u, b]
    return out


def random_batch(shape, seed, P=3):
    rng = np.random.default_rng(seed)
    T, B = shape
    return (rng.normal(size=(T, B, P)), rng.normal(size=(T, B)), 0.5 * rng.normal(size=(T, B)))


# ----------------------------------------------------------------- reference tests


@pytest.mark.parametrize("shape", SHAPES)
def test_log_weights_match_products_of_ratios(shape):
    rng = np.random.default_rng(sum(shape))
    target, behaviour = np.log(rng.random(shape)), np.log(rng.random(shape))
    log_rhos = I.log_importance_weights(target, behaviour)
    np.testing.assert_allclose(np.exp(log_rhos), np.exp(target) / np.exp(behaviour), rtol=1e-12)
    T, B = shape
    cum = I.cumulative_log_weights(log_rhos)
    slow = np.array([[slow_product_of_ratios(log_rhos, t, b) for b in range(B)] for t in range(T)])
    np.testing.assert_allclose(np.exp(cum), slow, rtol=1e-12)
    np.testing.assert_allclose(np.exp(I.trajectory_log_weights(log_rhos)), slow[-1], rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gamma", [0.0, 0.9, 1.0])
def test_off_policy_estimators_match_slow_loops(shape, gamma):
    scores, rewards, log_rhos = random_batch(shape, seed=7 * shape[0] + shape[1])
    np.testing.assert_allclose(I.trajectory_is_returns(rewards, log_rhos, gamma),
                               slow_trajectory_is(rewards, log_rhos, gamma), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(I.per_decision_is_returns(rewards, log_rhos, gamma),
                               slow_per_decision_is(rewards, log_rhos, gamma), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(I.trajectory_is_policy_gradients(scores, rewards, log_rhos, gamma),
                               slow_trajectory_is_gradient(scores, rewards, log_rhos, gamma),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(I.per_decision_is_policy_gradients(scores, rewards, log_rhos, gamma),
                               slow_per_decision_is_gradient(scores, rewards, log_rhos, gamma),
                               rtol=1e-10, atol=1e-12)


def test_zero_target_probability_gives_zero_weight_from_that_step_on():
    target = [[np.log(0.5)], [-np.inf], [np.log(0.5)]]   # the target never takes the second action
    behaviour = np.log(np.full((3, 1), 0.25))
    log_rhos = I.log_importance_weights(target, behaviour)
    np.testing.assert_array_equal(np.exp(I.cumulative_log_weights(log_rhos))[:, 0], [2.0, 0.0, 0.0])
    rewards = np.ones((3, 1))
    np.testing.assert_allclose(I.per_decision_is_returns(rewards, log_rhos, 1.0), [2.0])
    np.testing.assert_allclose(I.trajectory_is_returns(rewards, log_rhos, 1.0), [0.0])


@pytest.mark.parametrize("N, P", [(1, None), (6, None), (6, 1), (9, 4)])
def test_sample_estimators_match_slow_loops(N, P):
    rng = np.random.default_rng(N + (P or 0))
    log_w = 2.0 * rng.normal(size=N)
    values = rng.normal(size=(N,) if P is None else (N, P))
    w = [math.exp(x) for x in log_w]
    total = sum(w)
    ordinary = sum(w[i] * values[i] for i in range(N)) / N
    self_norm = sum(w[i] * values[i] for i in range(N)) / total
    np.testing.assert_allclose(I.ordinary_is_estimate(values, log_w), ordinary, rtol=1e-12)
    np.testing.assert_allclose(I.self_normalised_is_estimate(values, log_w), self_norm, rtol=1e-12)
    np.testing.assert_allclose(I.normalised_weights(log_w), [x / total for x in w], rtol=1e-12)
    np.testing.assert_allclose(I.effective_sample_size(log_w),
                               total**2 / sum(x * x for x in w), rtol=1e-12)
    c = 1.5
    np.testing.assert_allclose(np.exp(I.truncated_log_weights(log_w, c)), [min(x, c) for x in w],
                               rtol=1e-12)
    assert np.ndim(I.ordinary_is_estimate(values, log_w)) == (0 if P is None else 1)


def test_ordinary_estimate_of_all_zero_weights_is_zero():
    assert I.ordinary_is_estimate([1.0, 2.0], [-np.inf, -np.inf]) == 0.0
    np.testing.assert_array_equal(I.ordinary_is_estimate(np.ones((2, 3)), [-np.inf, -np.inf]), 0.0)


def test_mixture_and_multiple_importance_weights_match_slow_loops():
    rng = np.random.default_rng(3)
    K, N = 3, 8
    p, qs = rng.random(N), rng.random((K, N))
    alpha = np.array([0.2, 0.0, 0.8])
    mixture = [sum(alpha[k] * qs[k, i] for k in range(K)) for i in range(N)]
    np.testing.assert_allclose(np.exp(I.mixture_log_density(np.log(qs), alpha)), mixture, rtol=1e-12)
    counts = np.array([3, 0, 5])
    balance = [p[i] / sum(counts[k] / N * qs[k, i] for k in range(K)) for i in range(N)]
    np.testing.assert_allclose(np.exp(I.balance_heuristic_log_weights(np.log(p), np.log(qs), counts)),
                               balance, rtol=1e-12)
    beta = 0.3
    defensive = [p[i] / (beta * p[i] + (1 - beta) * qs[0, i]) for i in range(N)]
    np.testing.assert_allclose(np.exp(I.defensive_log_weights(np.log(p), np.log(qs[0]), beta)),
                               defensive, rtol=1e-12)
    # a defensive mixture is a two-component mixture; the balance heuristic with counts
    # proportional to alpha is the mixture weight
    np.testing.assert_allclose(
        I.defensive_log_weights(np.log(p), np.log(qs[0]), 0.25),
        I.balance_heuristic_log_weights(np.log(p), np.log(np.stack([p, qs[0]])), [2, 6]), rtol=1e-12)


def test_defensive_and_balance_weights_work_on_prefix_arrays():
    rng = np.random.default_rng(4)
    log_p, log_q = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    lw = I.defensive_log_weights(log_p, log_q, 0.4)
    assert lw.shape == (4, 5)
    np.testing.assert_allclose(lw, log_p - np.log(0.4 * np.exp(log_p) + 0.6 * np.exp(log_q)))
    mis = I.balance_heuristic_log_weights(log_p, np.stack([log_p, log_q]), [2, 3])
    np.testing.assert_allclose(mis, log_p - np.log(0.4 * np.exp(log_p) + 0.6 * np.exp(log_q)))


# ----------------------------------------------------------------- exact enumeration: tabular MDP


def enumerate_trajectories(mdp):
    """Every trajectory of a finite-horizon MDP as a column: states, actions [H, B]."""
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    columns = list(itertools.product(*([range(S), range(A)] * H)))
    steps = np.array(columns).T                       # [2H, B]: s_0, a_0, s_1, a_1, ...
    return steps[0::2], steps[1::2]


def trajectory_probabilities(mdp, pi, states, actions):
    """P(tau) under the policy table pi [S, A] (or a list of per-step tables) by the definition."""
    H, B = states.shape
    prob = np.empty(B)
    for b in range(B):
        x = mdp.initial_distribution[states[0, b]]
        for h in range(H):
            table = pi[h] if isinstance(pi, list) else pi
            x *= table[states[h, b], actions[h, b]]
            if h + 1 < H:
                x *= mdp.transitions[states[h, b], actions[h, b], states[h + 1, b]]
        prob[b] = x
    return prob


@pytest.fixture(scope="module")
def tabular_problem():
    rng = np.random.default_rng(2024)
    mdp = M.random_mdp(2, 2, rng, horizon=3, gamma=0.9)
    policy = TabularSoftmaxPolicy(2, 2)
    theta = rng.normal(size=policy.n_params)
    target = M.policy_table(policy, theta, 2)
    behaviour = rng.dirichlet(np.ones(2), size=2)
    states, actions = enumerate_trajectories(mdp)
    return dict(mdp=mdp, policy=policy, theta=theta, target=target, behaviour=behaviour,
                states=states, actions=actions, rewards=mdp.rewards[states, actions],
                q_behaviour=trajectory_probabilities(mdp, behaviour, states, actions),
                log_rhos=I.log_importance_weights(policy.log_prob(theta, states, actions),
                                                  np.log(behaviour[states, actions])))


def test_enumeration_covers_every_trajectory(tabular_problem):
    tp = tabular_problem
    assert tp["states"].shape == (3, 64)
    np.testing.assert_allclose(tp["q_behaviour"].sum(), 1.0, rtol=1e-12)
    R = np.sum(0.9 ** np.arange(3)[:, None] * tp["rewards"], axis=0)
    p_target = trajectory_probabilities(tp["mdp"], tp["target"], tp["states"], tp["actions"])
    np.testing.assert_allclose(p_target @ R, M.expected_return(tp["mdp"], tp["target"]), rtol=1e-12)


@pytest.mark.parametrize("estimator", [I.trajectory_is_returns, I.per_decision_is_returns])
def test_off_policy_returns_are_unbiased_by_enumeration(tabular_problem, estimator):
    tp = tabular_problem
    estimates = estimator(tp["rewards"], tp["log_rhos"], tp["mdp"].gamma)
    exact = M.expected_return(tp["mdp"], tp["target"])
    np.testing.assert_allclose(tp["q_behaviour"] @ estimates, exact, rtol=1e-12)
    assert abs(M.expected_return(tp["mdp"], tp["behaviour"]) - exact) > 1e-2   # off-policy for real


@pytest.mark.parametrize("estimator", [I.trajectory_is_policy_gradients,
                                       I.per_decision_is_policy_gradients])
def test_off_policy_gradients_are_unbiased_by_enumeration(tabular_problem, estimator):
    tp = tabular_problem
    scores = tp["policy"].score(tp["theta"], tp["states"], tp["actions"])
    estimates = estimator(scores, tp["rewards"], tp["log_rhos"], tp["mdp"].gamma)
    exact = M.exact_policy_gradient(tp["mdp"], tp["policy"], tp["theta"])
    assert np.linalg.norm(exact) > 1e-2
    np.testing.assert_allclose(tp["q_behaviour"] @ estimates, exact, rtol=1e-10, atol=1e-12)


def test_per_decision_has_smaller_variance_here(tabular_problem):
    tp = tabular_problem
    var = {}
    for name, est in [("traj", I.trajectory_is_returns), ("pd", I.per_decision_is_returns)]:
        x = est(tp["rewards"], tp["log_rhos"], tp["mdp"].gamma)
        var[name] = tp["q_behaviour"] @ x**2 - (tp["q_behaviour"] @ x) ** 2
    assert var["pd"] < var["traj"]


def test_defensive_trajectory_mixture_is_unbiased_but_a_per_step_mixture_is_not(tabular_problem):
    tp = tabular_problem
    mdp, states, actions, rewards = tp["mdp"], tp["states"], tp["actions"], tp["rewards"]
    pi = np.array([[0.9, 0.1], [0.2, 0.8]])            # two policies far apart
    mu = np.array([[0.1, 0.9], [0.7, 0.3]])
    beta = 0.5
    exact = M.expected_return(mdp, pi)
    log_pi = np.log(pi[states, actions])
    log_mu = np.log(mu[states, actions])
    R = np.sum(mdp.gamma ** np.arange(3)[:, None] * rewards, axis=0)
    lw = I.defensive_log_weights(log_pi.sum(axis=0), log_mu.sum(axis=0), beta)
    # right sampler: pick pi or mu once per episode
    p_pi = trajectory_probabilities(mdp, pi, states, actions)
    p_mix = beta * p_pi + (1 - beta) * trajectory_probabilities(mdp, mu, states, actions)
    np.testing.assert_allclose(p_mix @ (np.exp(lw) * R), exact, rtol=1e-12)
    # per-decision variant: prefix densities from cumulative log-probabilities
    lw_prefix = I.defensive_log_weights(np.cumsum(log_pi, 0), np.cumsum(log_mu, 0), beta)
    pd = np.sum(mdp.gamma ** np.arange(3)[:, None] * np.exp(lw_prefix) * rewards, axis=0)
    np.testing.assert_allclose(p_mix @ pd, exact, rtol=1e-12)
    # wrong sampler: mix the action probabilities at every step
    per_step = beta * pi + (1 - beta) * mu
    p_per_step = trajectory_probabilities(mdp, per_step, states, actions)
    assert abs(p_per_step @ (np.exp(lw) * R) - exact) > 1e-2
    # ... which is fine with its own (per-step) ratios
    log_rhos = I.log_importance_weights(log_pi, np.log(per_step[states, actions]))
    np.testing.assert_allclose(p_per_step @ I.trajectory_is_returns(rewards, log_rhos, mdp.gamma),
                               exact, rtol=1e-12)


def test_defensive_beta_one_reproduces_on_policy(tabular_problem):
    tp = tabular_problem
    log_pi = np.log(tp["target"][tp["states"], tp["actions"]])
    log_mu = np.log(tp["behaviour"][tp["states"], tp["actions"]])
    lw = I.defensive_log_weights(np.cumsum(log_pi, 0), np.cumsum(log_mu, 0), 1.0)
    np.testing.assert_array_equal(lw, 0.0)
    assert np.all(I.defensive_log_weights(np.log([0.3, 0.7]), [-np.inf, -np.inf], 1.0) == 0.0)


# ----------------------------------------------------------------- exact enumeration: discrete


def random_discrete(seed, n=5, zeros=False):
    rng = np.random.default_rng(seed)
    p, q = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
    if zeros:
        p[0], q[1] = 0.0, 0.0
        p, q = p / p.sum(), q / q.sum()
    return p, q, rng.normal(size=n) + 0.5


def log_or_minus_inf(x):
    with np.errstate(divide="ignore"):
        return np.log(x)


@pytest.mark.parametrize("P", [None, 3])
def test_ordinary_is_is_unbiased_by_enumeration_for_two_samples(P):
    p, q, f = random_discrete(11)
    if P is not None:
        f = np.random.default_rng(1).normal(size=(5, P))
    lw = np.log(p / q)
    total = 0.0
    for i, j in itertools.product(range(5), repeat=2):
        total = total + q[i] * q[j] * I.ordinary_is_estimate(f[[i, j]], lw[[i, j]])
    np.testing.assert_allclose(total, p @ f, rtol=1e-12)


def test_self_normalised_is_biased_for_two_samples():
    p, q, f = random_discrete(11)
    lw = np.log(p / q)
    expectation = 0.0
    for i, j in itertools.product(range(5), repeat=2):
        w_i, w_j = p[i] / q[i], p[j] / q[j]
        by_hand = (w_i * f[i] + w_j * f[j]) / (w_i + w_j)
        estimate = I.self_normalised_is_estimate(f[[i, j]], lw[[i, j]])
        np.testing.assert_allclose(estimate, by_hand, rtol=1e-12)
        expectation += q[i] * q[j] * estimate
    assert abs(expectation - p @ f) > 1e-3


def test_self_normalised_is_converges():
    p, q, f = random_discrete(11)
    rng = np.random.default_rng(0)
    x = rng.choice(5, size=200_000, p=q)
    lw = np.log(p[x] / q[x])
    estimate = I.self_normalised_is_estimate(f[x], lw)
    w = I.normalised_weights(lw)
    standard_error = np.sqrt(np.sum(w**2 * (f[x] - estimate) ** 2))   # delta method, from the sample
    assert abs(estimate - p @ f) < 4 * standard_error


def test_balance_heuristic_is_unbiased_by_enumeration_of_every_sample_set():
    rng = np.random.default_rng(5)
    n = 4
    p = rng.dirichlet(np.ones(n))
    qs = rng.dirichlet(np.ones(n), size=3)
    qs[0, 0] = 0.0                                       # each sampler alone may miss some mass
    qs[0] /= qs[0].sum()
    f = rng.normal(size=n)
    counts = np.array([1, 0, 2])
    sampler_of_sample = np.repeat(np.arange(3), counts)  # [0, 2, 2]
    expectation = 0.0
    for xs in itertools.product(range(n), repeat=3):
        xs = np.array(xs)
        prob = np.prod(qs[sampler_of_sample, xs])
        lw = I.balance_heuristic_log_weights(np.log(p[xs]), log_or_minus_inf(qs[:, xs]), counts)
        expectation += prob * I.ordinary_is_estimate(f[xs], lw)
    np.testing.assert_allclose(expectation, p @ f, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.01, 1.0), zeros=st.booleans())
def test_defensive_weights_are_unbiased_and_bound_the_second_moment(seed, beta, zeros):
    p, q, f = random_discrete(seed, zeros=zeros)
    lw = I.defensive_log_weights(log_or_minus_inf(p), log_or_minus_inf(q), beta)
    w = np.exp(lw)
    mixture = beta * p + (1 - beta) * q
    np.testing.assert_allclose(mixture @ (w * f), p @ f, rtol=1e-10, atol=1e-12)
    assert np.all(w <= 1 / beta * (1 + 1e-12))
    assert mixture @ (w * f) ** 2 <= (p @ f**2) / beta * (1 + 1e-12)


# ----------------------------------------------------------------- exact variances


def test_exact_is_variance_matches_its_formula_and_enumeration():
    for seed, zeros in [(1, False), (2, True), (3, False)]:
        p, q, f = random_discrete(seed, zeros=zeros)
        if zeros:
            f[1] = 0.0                                     # q = 0 only where p f = 0
        formula = sum(p[x] ** 2 * f[x] ** 2 / q[x] for x in range(5) if q[x] > 0) - (p @ f) ** 2
        y = np.where(q > 0, p / np.where(q > 0, q, 1) * f, 0.0)           # w f per outcome
        enumerated = q @ (y - q @ y) ** 2
        np.testing.assert_allclose(I.exact_is_variance(p, q, f), formula, rtol=1e-10)
        np.testing.assert_allclose(I.exact_is_variance(p, q, f), enumerated, rtol=1e-10)


def test_exact_is_variance_matches_monte_carlo():
    p, q, f = random_discrete(21)
    M_ = 400_000
    x = np.random.default_rng(1).choice(5, size=M_, p=q)
    y = p[x] / q[x] * f[x]
    centred = y - y.mean()
    sample_var = centred.var(ddof=1)
    # standard error of a sample variance: sqrt((mu_4 - sigma^4) / M)
    se = np.sqrt((np.mean(centred**4) - sample_var**2) / M_)
    assert abs(sample_var - I.exact_is_variance(p, q, f)) < 4 * se
    # the N-sample estimate has variance / N
    N, reps = 10, 20_000
    xs = np.random.default_rng(2).choice(5, size=(reps, N), p=q)
    estimates = np.mean(p[xs] / q[xs] * f[xs], axis=1)
    est_var = estimates.var(ddof=1)
    se_n = np.sqrt((np.mean((estimates - estimates.mean()) ** 4) - est_var**2) / reps)
    assert abs(est_var - I.exact_is_variance(p, q, f) / N) < 4 * se_n


def test_snis_asymptotic_variance_matches_monte_carlo():
    p, q, f = random_discrete(31)
    N, reps = 500, 2000
    rng = np.random.default_rng(3)
    xs = rng.choice(5, size=(reps, N), p=q)
    w = p[xs] / q[xs]
    estimates = np.sum(w * f[xs], axis=1) / np.sum(w, axis=1)
    np.testing.assert_allclose(N * estimates.var(ddof=1), I.snis_asymptotic_variance(p, q, f), rtol=0.15)
    # and by its definition
    mu = p @ f
    np.testing.assert_allclose(I.snis_asymptotic_variance(p, q, f),
                               sum(p[x] ** 2 * (f[x] - mu) ** 2 / q[x] for x in range(5)), rtol=1e-12)


def test_minimum_variance_proposal_has_zero_variance_for_positive_f():
    p, _, f = random_discrete(41)
    f = np.abs(f) + 0.1
    q_star = I.minimum_variance_proposal(p, f)
    np.testing.assert_allclose(q_star.sum(), 1.0)
    np.testing.assert_allclose(q_star, p * f / (p @ f), rtol=1e-12)
    assert I.exact_is_variance(p, q_star, f) < 1e-20
    assert I.exact_is_variance(p, p, f) > 1e-3               # on-policy sampling is not optimal


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 7))
def test_no_random_proposal_beats_the_minimum_variance_proposal(seed, n):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(n))
    f = rng.normal(size=n)
    q_star = I.minimum_variance_proposal(p, f)
    best = I.exact_is_variance(p, q_star, f)
    np.testing.assert_allclose(best, (p @ np.abs(f)) ** 2 - (p @ f) ** 2, atol=1e-12)
    for q in rng.dirichlet(np.full(n, 0.5), size=10):
        assert I.exact_is_variance(p, q, f) >= best - 1e-12


# ----------------------------------------------------------------- log space


def decimal_exp(x):
    return Decimal(float(x)).exp()


def test_thousand_step_trajectory_weights_stay_finite():
    rng = np.random.default_rng(1000)
    T, B = 1000, 6
    behaviour = np.log(rng.uniform(0.02, 0.08, size=(T, B)))   # each step's action prob. about 5%
    target = behaviour + rng.normal(size=(T, B))               # log rho_t ~ N(0, 1)
    with np.errstate(under="ignore", invalid="ignore"):
        naive = np.prod(np.exp(target), axis=0) / np.prod(np.exp(behaviour), axis=0)
    assert np.all(np.isnan(naive))                             # 0 / 0: both products underflow
    ours = I.trajectory_log_weights(I.log_importance_weights(target, behaviour))
    assert np.all(np.isfinite(ours))
    with localcontext() as ctx:
        ctx.prec = 50
        for b in range(B):
            p = math.prod((decimal_exp(x) for x in target[:, b]), start=Decimal(1))
            q = math.prod((decimal_exp(x) for x in behaviour[:, b]), start=Decimal(1))
            assert abs(float((p / q).ln()) - ours[b]) < 1e-9 * max(1.0, abs(ours[b]))


@pytest.mark.parametrize("mean, sd, kind", [(-2.0, 2.0, "underflow"), (1.0, 1.0, "overflow")])
def test_thousand_step_weights_normalise_in_log_space(mean, sd, kind):
    rng = np.random.default_rng(7)
    T, B = 1000, 8
    log_rhos = rng.normal(mean, sd, size=(T, B))
    f = rng.normal(size=B)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        naive_w = np.prod(np.exp(log_rhos), axis=0)
        naive_snis = np.sum(naive_w * f) / np.sum(naive_w)
    assert np.all(naive_w == (0.0 if kind == "underflow" else np.inf))
    assert np.isnan(naive_snis)
    lw = I.trajectory_log_weights(log_rhos)
    with localcontext() as ctx:
        ctx.prec = 60
        W = [math.prod((decimal_exp(x) for x in log_rhos[:, b]), start=Decimal(1)) for b in range(B)]
        total = sum(W)
        ref_w = [float(x / total) for x in W]
        ref_ess = float(total**2 / sum(x * x for x in W))
        ref_snis = float(sum(x * Decimal(float(v)) for x, v in zip(W, f)) / total)
    np.testing.assert_allclose(I.normalised_weights(lw), ref_w, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(I.effective_sample_size(lw), ref_ess, rtol=1e-9)
    np.testing.assert_allclose(I.self_normalised_is_estimate(f, lw), ref_snis, rtol=1e-9)


def test_thousand_step_per_decision_return_matches_decimal_reference():
    rng = np.random.default_rng(8)
    T, B, gamma = 1000, 3, 0.999
    log_rhos, rewards = rng.normal(size=(T, B)), rng.random((T, B))
    ours = I.per_decision_is_returns(rewards, log_rhos, gamma)
    with localcontext() as ctx:
        ctx.prec = 50
        for b in range(B):
            rho, total = Decimal(1), Decimal(0)
            for t in range(T):
                rho *= decimal_exp(log_rhos[t, b])
                total += Decimal(gamma) ** t * rho * Decimal(float(rewards[t, b]))
            np.testing.assert_allclose(ours[b], float(total), rtol=1e-9)


# ----------------------------------------------------------------- effective sample size


def test_effective_sample_size_extremes_and_scale_invariance():
    assert I.effective_sample_size(np.full(17, 800.0)) == 17.0     # equal (and huge) weights
    assert I.effective_sample_size([0.0] + [-np.inf] * 9) == 1.0   # one weight carries everything
    np.testing.assert_allclose(I.effective_sample_size([0.0] + [-50.0] * 9), 1.0, rtol=1e-12)
    lw = np.random.default_rng(0).normal(size=20)
    np.testing.assert_allclose(I.effective_sample_size(lw + 1234.5), I.effective_sample_size(lw),
                               rtol=1e-12)


# ----------------------------------------------------------------- properties


log_weight_lists = st.lists(st.one_of(st.floats(-1e4, 1e4), st.just(-np.inf)), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(lw=log_weight_lists)
def test_normalised_weights_and_ess_properties(lw):
    lw = np.array(lw)
    if np.all(np.isneginf(lw)):
        lw[0] = 0.0
    w = I.normalised_weights(lw)
    assert np.all(w >= 0) and np.all(np.isfinite(w))
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-12)
    assert np.all(w[np.isneginf(lw)] == 0)
    assert w[np.argmax(lw)] == w.max()
    ess = I.effective_sample_size(lw)
    n_positive = np.sum(np.isfinite(lw))
    assert 1.0 - 1e-12 <= ess <= n_positive * (1 + 1e-12)
    np.testing.assert_allclose(ess, 1.0 / np.sum(w**2), rtol=1e-10)


@settings(max_examples=150, deadline=None)
@given(lw=log_weight_lists, threshold=st.floats(1e-6, 1e6))
def test_truncation_never_increases_a_weight(lw, threshold):
    lw = np.array(lw)
    truncated = I.truncated_log_weights(lw, threshold)
    assert np.all(truncated <= lw)
    assert np.all(truncated <= np.log(threshold))
    untouched = lw <= np.log(threshold)
    np.testing.assert_array_equal(truncated[untouched], lw[untouched])


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 10), B=st.integers(1, 4), seed=st.integers(0, 10_000),
       gamma=st.sampled_from([0.0, 0.5, 1.0]))
def test_per_decision_equals_trajectory_is_when_the_last_step_alone_has_reward(T, B, seed, gamma):
    rng = np.random.default_rng(seed)
    log_rhos = rng.normal(size=(T, B))
    rewards = np.zeros((T, B))
    rewards[-1] = rng.normal(size=B)
    np.testing.assert_allclose(I.per_decision_is_returns(rewards, log_rhos, gamma),
                               I.trajectory_is_returns(rewards, log_rhos, gamma), rtol=1e-10, atol=1e-14)
    # and both reduce to the discounted return on-policy
    on_policy = np.sum(gamma ** np.arange(T)[:, None] * rewards, axis=0)
    np.testing.assert_allclose(I.per_decision_is_returns(rewards, np.zeros((T, B)), gamma), on_policy)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 4), n=st.integers(0, 50))
def test_mixture_components_are_valid_indices(seed, K, n):
    rng = np.random.default_rng(seed)
    alpha = rng.dirichlet(np.ones(K))
    alpha[0] = 0.0
    if K > 1:
        alpha /= alpha.sum()
    else:
        alpha[0] = 1.0
    k = I.sample_mixture_components(alpha, n, np.random.default_rng(seed))
    assert k.shape == (n,) and k.dtype.kind == "i"
    assert np.all((k >= 0) & (k < K))
    if K > 1:
        assert not np.any(k == 0)                      # a zero-weight component is never drawn


def test_mixture_components_follow_the_weights():
    alpha = np.array([0.1, 0.6, 0.3])
    n = 100_000
    k = I.sample_mixture_components(alpha, n, np.random.default_rng(9))
    freq = np.bincount(k, minlength=3) / n
    assert np.all(np.abs(freq - alpha) < 4 * np.sqrt(alpha * (1 - alpha) / n))
    again = I.sample_mixture_components(alpha, n, np.random.default_rng(9))
    np.testing.assert_array_equal(k, again)


# ----------------------------------------------------------------- input errors

GOOD_T_B = np.zeros((3, 2))
GOOD_SCORES = np.zeros((3, 2, 4))
P5 = np.full(5, 0.2)


@pytest.mark.parametrize("call, message", [
    (lambda: I.log_importance_weights(np.zeros(3), np.zeros(4)),
     r"target_log_probs and behaviour_log_probs must have the same shape, got \(3,\) and \(4,\)"),
    (lambda: I.log_importance_weights([0.0, np.nan], [0.0, 0.0]), r"target_log_probs contains NaN"),
    (lambda: I.log_importance_weights([0.0, 0.0], [np.inf, 0.0]), r"behaviour_log_probs contains \+inf"),
    (lambda: I.log_importance_weights([[0.0, -1.0]], [[0.0, -np.inf]]),
     r"support violation: behaviour_log_probs is -inf where target_log_probs is finite "
     r"\(first at index \(0, 1\)\)"),
    (lambda: I.cumulative_log_weights(np.zeros(5)), r"log_rhos must have shape \[T, B\], got \(5,\)"),
    (lambda: I.trajectory_log_weights(np.full((2, 2), np.inf)), r"log_rhos contains \+inf"),
    (lambda: I.trajectory_is_returns(np.zeros((3, 1)), GOOD_T_B, 0.9),
     r"log_rhos and rewards must have the same shape"),
    (lambda: I.per_decision_is_returns(GOOD_T_B, GOOD_T_B, 1.5), r"gamma must be in \[0, 1\]"),
    (lambda: I.per_decision_is_returns(np.full((3, 2), np.inf), GOOD_T_B, 0.9),
     r"rewards must be finite"),
    (lambda: I.trajectory_is_policy_gradients(np.zeros((3, 2)), GOOD_T_B, GOOD_T_B, 0.9),
     r"scores must have shape \[T, B, P\], got \(3, 2\)"),
    (lambda: I.per_decision_is_policy_gradients(np.zeros((2, 2, 4)), GOOD_T_B, GOOD_T_B, 0.9),
     r"scores must have shape \[T, B, P\] = \(3, 2, P\), got \(2, 2, 4\)"),
    (lambda: I.per_decision_is_policy_gradients(GOOD_SCORES, GOOD_T_B, np.full((3, 2), np.nan), 0.9),
     r"log_rhos contains NaN"),
    (lambda: I.truncated_log_weights([0.0], -1.0), r"threshold must be a positive number"),
    (lambda: I.truncated_log_weights([0.0], 0.0), r"threshold must be a positive number"),
    (lambda: I.truncated_log_weights([0.0], np.nan), r"threshold must be a positive number"),
    (lambda: I.truncated_log_weights([np.nan], 1.0), r"log_weights contains NaN"),
    (lambda: I.normalised_weights([-np.inf, -np.inf]), r"every log weight is -inf"),
    (lambda: I.normalised_weights(np.zeros((2, 2))), r"log_weights must have shape \[N\]"),
    (lambda: I.effective_sample_size([]), r"log_weights is empty"),
    (lambda: I.effective_sample_size([-np.inf]), r"every log weight is -inf"),
    (lambda: I.ordinary_is_estimate(np.zeros(3), np.zeros(4)), r"values must have N = 4 rows"),
    (lambda: I.ordinary_is_estimate(np.zeros((4, 2, 2)), np.zeros(4)),
     r"values must have shape \[N\] or \[N, P\]"),
    (lambda: I.self_normalised_is_estimate([np.inf, 0.0], [0.0, 0.0]), r"values must be finite"),
    (lambda: I.self_normalised_is_estimate([1.0, 0.0], [-np.inf, -np.inf]), r"every log weight is -inf"),
    (lambda: I.mixture_log_density(np.zeros((2, 3)), [0.5, 0.6]),
     r"mixture_weights must sum to one"),
    (lambda: I.mixture_log_density(np.zeros((2, 3)), [1.5, -0.5]),
     r"mixture_weights must be non-negative"),
    (lambda: I.mixture_log_density(np.zeros((2, 3)), [1.0]),
     r"mixture_weights must have shape \[K\] = \(2,\)"),
    (lambda: I.mixture_log_density(np.zeros(3), [1.0]), r"component_log_densities must have shape \[K, N\]"),
    (lambda: I.defensive_log_weights(np.zeros(3), np.zeros(3), 1.5), r"beta must be in \[0, 1\]"),
    (lambda: I.defensive_log_weights(np.zeros(3), np.zeros(3), -0.1), r"beta must be in \[0, 1\]"),
    (lambda: I.defensive_log_weights(np.zeros(3), np.zeros(3), np.nan), r"beta must be in \[0, 1\]"),
    (lambda: I.defensive_log_weights(np.zeros(3), np.zeros(2), 0.5),
     r"target_log_density and behaviour_log_density must have the same shape"),
    (lambda: I.defensive_log_weights(np.zeros(2), [0.0, -np.inf], 0.0),
     r"support violation: the mixture log-density is -inf where target_log_density is finite"),
    (lambda: I.balance_heuristic_log_weights(np.zeros(4), np.zeros((2, 4)), [1, 2]),
     r"counts must sum to the number of samples N = 4"),
    (lambda: I.balance_heuristic_log_weights(np.zeros(4), np.zeros((2, 4)), [5, -1]),
     r"counts must be >= 0, got -1"),
    (lambda: I.balance_heuristic_log_weights(np.zeros(4), np.zeros((2, 4)), [1.5, 2.5]),
     r"counts must be integers"),
    (lambda: I.balance_heuristic_log_weights(np.zeros(4), np.zeros((2, 4)), [4]),
     r"counts must have shape \[K\] = \(2,\)"),
    (lambda: I.balance_heuristic_log_weights(np.zeros(4), np.zeros((2, 3)), [2, 2]),
     r"sampler_log_densities must have shape \[K, N\] = \(K, 4\)"),
    (lambda: I.balance_heuristic_log_weights(np.zeros(2), [[0.0, -np.inf], [0.0, 0.0]], [2, 0]),
     r"support violation: the mixture log-density is -inf where target_log_density is finite "
     r"\(first at index 1\)"),
    (lambda: I.sample_mixture_components([0.5, 0.6], 3, np.random.default_rng(0)),
     r"mixture_weights must sum to one"),
    (lambda: I.sample_mixture_components([0.5, 0.5], -1, np.random.default_rng(0)), r"n must be >= 0"),
    (lambda: I.sample_mixture_components([0.5, 0.5], 3, 0), r"rng must be a numpy.random.Generator"),
    (lambda: I.exact_is_variance([0.5, 0.6], [0.5, 0.5], [1.0, 1.0]), r"p must sum to one"),
    (lambda: I.exact_is_variance(P5, np.full(4, 0.25), np.ones(5)),
     r"p and q must have the same shape, got \(5,\) and \(4,\)"),
    (lambda: I.exact_is_variance(P5, P5, np.ones(4)), r"p and f must have the same shape"),
    (lambda: I.exact_is_variance(P5, [0.5, 0.5, 0.0, 0.0, 0.0], np.ones(5)),
     r"support violation: q is 0 where p \* f is not \(first at outcome 2\)"),
    (lambda: I.exact_is_variance(P5, [-0.2, 0.4, 0.4, 0.2, 0.2], np.ones(5)), r"q must be non-negative"),
    (lambda: I.snis_asymptotic_variance(P5, [0.5, 0.5, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0]),
     r"support violation: q is 0 where p is not \(first at outcome 2\)"),
    (lambda: I.snis_asymptotic_variance(P5, P5, [1.0, np.nan, 0, 0, 0]), r"f contains NaN"),
    (lambda: I.minimum_variance_proposal(P5, np.zeros(5)), r"f is zero wherever p is positive"),
    (lambda: I.minimum_variance_proposal(np.full(5, 0.3), np.ones(5)), r"p must sum to one"),
])
def test_bad_input_is_rejected_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_support_violation_is_not_raised_where_it_is_harmless():
    # q = 0 where p * f = 0 is fine for ordinary IS
    p, q, f = np.array([0.5, 0.5]), np.array([1.0, 0.0]), np.array([2.0, 0.0])
    np.testing.assert_allclose(I.exact_is_variance(p, q, f), 0.0, atol=1e-15)
    # the target may have zero probability where the behaviour has none either
    np.testing.assert_array_equal(I.log_importance_weights([-np.inf, 0.0], [-np.inf, 0.0]), [-np.inf, 0.0])


def test_every_public_name_is_listed_and_documented():
    for name in I.__all__:
        obj = getattr(I, name)
        assert obj.__doc__ and "Returns" in obj.__doc__, name
