"""The performance-difference lemma, the surrogate and the trust-region bounds, checked exactly.

Each pgkit function is compared with something computed another way: the lemma
with differences of exact returns, the surrogate and the distances with slow
loops written like the formulas, the surrogate's gradient with the policy
gradient theorem, and every bound with the quantity it bounds on many random
MDPs (and with a case where it is attained).
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgkit import mdp as M
from pgkit import surrogate as G
from pgkit.policies import TabularSoftmaxPolicy


# ----------------------------------------------------------------- helpers

def random_table(shape, rng, concentration=1.0):
    """Random distributions along the last axis."""
    return rng.dirichlet(np.full(shape[-1], concentration), size=shape[:-1])


def mix_towards(pi, size, rng):
    """(1 - size) pi + size q with q random: every per-state TV is at most size."""
    return (1 - size) * pi + size * random_table(pi.shape, rng, concentration=0.5)


def tilt(pi, size, rng):
    """pi(a|s) exp(size z(s, a)), renormalised: a softmax-style step of length size."""
    w = pi * np.exp(size * rng.standard_normal(pi.shape))
    return w / w.sum(axis=-1, keepdims=True)


def step_table(pi, h):
    return pi if pi.ndim == 2 else pi[h]


def slow_finite_horizon(mdp, pi_old, pi_new):
    """(J_old, lemma RHS, surrogate, d_old, d_new, A_old), everything by explicit loops over h, s, a."""
    P, r, mu, gamma, H = mdp.transitions, mdp.rewards, mdp.initial_distribution, mdp.gamma, mdp.horizon
    S, A = r.shape
    V = np.zeros((H + 1, S))
    Q = np.zeros((H, S, A))
    for h in reversed(range(H)):
        for s in range(S):
            for a in range(A):
                Q[h, s, a] = r[s, a] + gamma * sum(P[s, a, s2] * V[h + 1, s2] for s2 in range(S))
            V[h, s] = sum(step_table(pi_old, h)[s, a] * Q[h, s, a] for a in range(A))
    adv = Q - V[:H, :, None]

    def visitation(pi):
        d = np.zeros((H, S))
        d[0] = mu
        for h in range(H - 1):
            for s in range(S):
                for a in range(A):
                    for s2 in range(S):
                        d[h + 1, s2] += d[h, s] * step_table(pi, h)[s, a] * P[s, a, s2]
        return d

    d_old, d_new = visitation(pi_old), visitation(pi_new)
    j_old = sum(mu[s] * V[0, s] for s in range(S))
    lemma = surrogate_gain = 0.0
    for h in range(H):
        for s in range(S):
            for a in range(A):
                term = gamma ** h * step_table(pi_new, h)[s, a] * adv[h, s, a]
                lemma += d_new[h, s] * term
                surrogate_gain += d_old[h, s] * term
    return j_old, lemma, j_old + surrogate_gain, d_old, d_new, adv


def slow_discounted(mdp, pi_old, pi_new, n_terms=4000):
    """The same for a discounted MDP: values and visitations summed as series."""
    P, r, mu, gamma = mdp.transitions, mdp.rewards, mdp.initial_distribution, mdp.gamma
    S, A = r.shape

    def series(pi):
        P_pi = np.array([[sum(pi[s, a] * P[s, a, s2] for a in range(A)) for s2 in range(S)]
                         for s in range(S)])
        r_pi = np.array([sum(pi[s, a] * r[s, a] for a in range(A)) for s in range(S)])
        V, d = np.zeros(S), np.zeros(S)
        reward_t, dist_t = r_pi.copy(), mu.copy()
        for t in range(n_terms):                     # V = sum_t gamma^t P_pi^t r_pi,  d likewise
            V += gamma ** t * reward_t
            d += (1 - gamma) * gamma ** t * dist_t
            reward_t, dist_t = P_pi @ reward_t, dist_t @ P_pi
        return V, d

    V_old, d_old = series(pi_old)
    _, d_new = series(pi_new)
    adv = np.array([[r[s, a] + gamma * sum(P[s, a, s2] * V_old[s2] for s2 in range(S)) - V_old[s]
                     for a in range(A)] for s in range(S)])
    j_old = sum(mu[s] * V_old[s] for s in range(S))
    lemma = surrogate_gain = 0.0
    for s in range(S):
        for a in range(A):
            lemma += d_new[s] * pi_new[s, a] * adv[s, a] / (1 - gamma)
            surrogate_gain += d_old[s] * pi_new[s, a] * adv[s, a] / (1 - gamma)
    return j_old, lemma, j_old + surrogate_gain, d_old, d_new, adv


def trap_mdp(gamma=1.0, horizon=None):
    """State 0 keeps the agent with action 0; action 1 drops it into state 1, which it never leaves."""
    P = np.zeros((2, 2, 2))
    P[0, 0, 0] = P[0, 1, 1] = 1.0
    P[1, :, 1] = 1.0
    r = np.array([[1.0, 0.0], [-1.0, -1.0]])
    return M.TabularMDP(P, r, np.array([1.0, 0.0]), gamma, horizon)


def trap_policies(epsilon):
    """Old: always action 0. New: action 1 with probability epsilon (in every state)."""
    pi_old = np.array([[1.0, 0.0], [1.0, 0.0]])
    pi_new = np.array([[1 - epsilon, epsilon], [1 - epsilon, epsilon]])
    return pi_old, pi_new


# ------------------------------------------------------- the lemma, exactly

@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), S=st.integers(1, 5), A=st.integers(1, 4),
       H=st.integers(1, 6), gamma=st.sampled_from([1.0, 0.95, 0.5]),
       time_dependent=st.sampled_from([(False, False), (True, False), (False, True), (True, True)]))
def test_lemma_is_exact_finite_horizon(seed, S, A, H, gamma, time_dependent):
    rng = np.random.default_rng(seed)
    mdp = M.random_mdp(S, A, rng, horizon=H, gamma=gamma)
    old_td, new_td = time_dependent
    pi_old = random_table((H, S, A) if old_td else (S, A), rng)
    pi_new = random_table((H, S, A) if new_td else (S, A), rng)
    gain = M.expected_return(mdp, pi_new) - M.expected_return(mdp, pi_old)
    np.testing.assert_allclose(G.performance_difference(mdp, pi_old, pi_new), gain,
                               rtol=1e-10, atol=1e-13)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), S=st.integers(1, 6), A=st.integers(1, 4),
       gamma=st.sampled_from([0.0, 0.5, 0.9, 0.99]))
def test_lemma_is_exact_discounted(seed, S, A, gamma):
    rng = np.random.default_rng(seed)
    mdp = M.random_mdp(S, A, rng, gamma=gamma)
    pi_old, pi_new = random_table((S, A), rng), random_table((S, A), rng, concentration=0.3)
    gain = M.expected_return(mdp, pi_new) - M.expected_return(mdp, pi_old)
    # round-off in A = Q - V is ~1e-16 of V ~ 1/(1-gamma), multiplied by 1/(1-gamma) in the lemma
    np.testing.assert_allclose(G.performance_difference(mdp, pi_old, pi_new), gain,
                               rtol=1e-10, atol=1e-14 / (1 - gamma) ** 2)


def test_lemma_with_deterministic_policies_and_the_combination_lock():
    mdp = M.combination_lock(4)
    right = np.eye(3)[np.arange(4) % 3]                 # the whole combination: J = 1
    uniform = M.uniform_policy(mdp)                     # J = 3^-4
    assert G.performance_difference(mdp, uniform, right) == pytest.approx(1 - 3.0 ** -4, rel=1e-12)
    assert G.performance_difference(mdp, right, uniform) == pytest.approx(3.0 ** -4 - 1, rel=1e-12)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 2), (4, 2, 3), (3, 3, 1)])
@pytest.mark.parametrize("time_dependent", [False, True])
def test_lemma_and_surrogate_match_slow_loops_finite_horizon(shape, time_dependent):
    S, A, H = shape
    rng = np.random.default_rng(S * 100 + A * 10 + H)
    mdp = M.random_mdp(S, A, rng, horizon=H, gamma=0.9)
    pi_old = random_table((H, S, A) if time_dependent else (S, A), rng)
    pi_new = random_table((H, S, A) if time_dependent else (S, A), rng)
    j_old, lemma, surrogate, d_old, d_new, _ = slow_finite_horizon(mdp, pi_old, pi_new)
    np.testing.assert_allclose(G.performance_difference(mdp, pi_old, pi_new), lemma, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(G.surrogate_objective(mdp, pi_old, pi_new), surrogate, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(G.state_distribution_drift(mdp, pi_old, pi_new),
                               [0.5 * sum(abs(d_new[h, s] - d_old[h, s]) for s in range(S)) for h in range(H)],
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape, gamma", [((1, 1), 0.5), ((3, 2), 0.8), ((4, 3), 0.9)])
def test_lemma_and_surrogate_match_slow_loops_discounted(shape, gamma):
    S, A = shape
    rng = np.random.default_rng(S * 10 + A)
    mdp = M.random_mdp(S, A, rng, gamma=gamma)
    pi_old, pi_new = random_table((S, A), rng), random_table((S, A), rng)
    j_old, lemma, surrogate, d_old, d_new, _ = slow_discounted(mdp, pi_old, pi_new)
    np.testing.assert_allclose(G.performance_difference(mdp, pi_old, pi_new), lemma, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(G.surrogate_objective(mdp, pi_old, pi_new), surrogate, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(G.state_distribution_drift(mdp, pi_old, pi_new),
                               0.5 * np.abs(d_new - d_old).sum(), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------- the surrogate, first order

@pytest.mark.parametrize("horizon", [None, 4])
@pytest.mark.parametrize("seed", range(3))
def test_surrogate_is_j_at_the_old_policy_and_differs_elsewhere(horizon, seed):
    rng = np.random.default_rng(seed)
    mdp = M.random_mdp(4, 3, rng, horizon=horizon, gamma=0.9)
    pi_old, pi_new = random_table((4, 3), rng), random_table((4, 3), rng)
    assert G.surrogate_objective(mdp, pi_old, pi_old) == pytest.approx(M.expected_return(mdp, pi_old), rel=1e-12)
    assert G.performance_difference(mdp, pi_old, pi_old) == pytest.approx(0.0, abs=1e-12)
    # away from pi_old the old states are not the new ones: the surrogate is not J
    assert abs(G.surrogate_objective(mdp, pi_old, pi_new) - M.expected_return(mdp, pi_new)) > 1e-4


@pytest.mark.parametrize("horizon, gamma", [(None, 0.9), (None, 0.6), (5, 1.0), (3, 0.8)])
@pytest.mark.parametrize("seed", range(2))
def test_surrogate_gradient_is_the_policy_gradient(horizon, gamma, seed):
    rng = np.random.default_rng(seed)
    S, A = 4, 3
    mdp = M.random_mdp(S, A, rng, horizon=horizon, gamma=gamma)
    policy = TabularSoftmaxPolicy(S, A)
    theta_old = policy.init_params(rng, scale=1.0)
    pi_old = M.policy_table(policy, theta_old, S)

    def surrogate(theta):
        return G.surrogate_objective(mdp, pi_old, M.policy_table(policy, theta, S))

    fd = M.finite_difference_gradient(surrogate, theta_old, eps=1e-6)
    exact = M.exact_policy_gradient(mdp, policy, theta_old)
    np.testing.assert_allclose(fd, exact, rtol=1e-6, atol=1e-8)
    assert np.abs(exact).max() > 1e-3                     # a gradient worth comparing


@pytest.mark.parametrize("horizon", [None, 6])
@pytest.mark.parametrize("seed", range(3))
def test_surrogate_error_shrinks_quadratically(horizon, seed):
    rng = np.random.default_rng(seed)
    S, A = 5, 3
    mdp = M.random_mdp(S, A, rng, horizon=horizon, gamma=0.9)
    policy = TabularSoftmaxPolicy(S, A)
    theta_old = policy.init_params(rng, scale=1.0)
    direction = rng.standard_normal(policy.n_params)
    pi_old = M.policy_table(policy, theta_old, S)

    def errors(step):
        pi_new = M.policy_table(policy, theta_old + step * direction, S)
        j_new = M.expected_return(mdp, pi_new)
        return (abs(G.surrogate_objective(mdp, pi_old, pi_new) - j_new),
                abs(j_new - M.expected_return(mdp, pi_old)))

    (err, change), (err_half, change_half) = errors(0.002), errors(0.001)
    assert err > 1e-11                                    # the surrogate is not exact (round-off is ~1e-15)...
    assert err_half / err == pytest.approx(0.25, abs=0.02)       # ...its error is second order,
    assert change_half / change == pytest.approx(0.5, abs=0.02)  # while J itself moves at first order


# ------------------------------------------------------------------ distances

@pytest.mark.parametrize("shape", [(3,), (4, 2), (3, 4, 5), (2, 1)])
def test_total_variation_and_kl_match_loops(shape):
    rng = np.random.default_rng(len(shape))
    p, q = random_table(shape, rng), random_table(shape, rng)
    if shape[-1] > 1:
        p[..., 0] = 0.0                                    # zeros in p: 0 log 0 = 0
        p /= p.sum(axis=-1, keepdims=True)
    tv, kl = G.total_variation(p, q), G.kl_divergence(p, q)
    assert np.shape(tv) == shape[:-1] and np.shape(kl) == shape[:-1]
    for idx in np.ndindex(*shape[:-1]):
        n = shape[-1]
        assert np.asarray(tv)[idx] == pytest.approx(0.5 * sum(abs(p[idx][i] - q[idx][i]) for i in range(n)), abs=1e-15)
        slow_kl = sum(p[idx][i] * np.log(p[idx][i] / q[idx][i]) for i in range(n) if p[idx][i] > 0)
        assert np.asarray(kl)[idx] == pytest.approx(max(slow_kl, 0.0), rel=1e-12, abs=1e-15)


def test_total_variation_is_the_largest_difference_of_an_event():
    rng = np.random.default_rng(0)
    p, q = random_table((5,), rng), random_table((5,), rng)
    events = [np.array([(k >> i) & 1 for i in range(5)], bool) for k in range(2 ** 5)]
    assert G.total_variation(p, q) == pytest.approx(max(abs(p[e].sum() - q[e].sum()) for e in events), rel=1e-12)


def test_kl_edge_cases():
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # no log(0) or 0 * inf warnings
        assert G.kl_divergence([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]) == pytest.approx(np.log(2), rel=1e-14)
        assert G.kl_divergence([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0    # 0 log(0/0) = 0
        assert G.kl_divergence([0.5, 0.5], [1.0, 0.0]) == np.inf           # q = 0 < p
        assert G.kl_divergence([1.0, 0.0], [1.0, 0.0]) == 0.0
        assert G.kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(np.log(2), rel=1e-14)
        p = np.array([[0.5, 0.5], [0.3, 0.7]])
        np.testing.assert_array_equal(G.kl_divergence(p, np.array([[0.0, 1.0], [0.3, 0.7]])), [np.inf, 0.0])
        assert G.total_variation([1.0, 0.0], [0.0, 1.0]) == 1.0
        assert G.total_variation([0.2, 0.8], [0.2, 0.8]) == 0.0


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 8), concentration=st.sampled_from([0.05, 0.5, 1.0, 20.0]))
def test_pinsker(seed, n, concentration):
    rng = np.random.default_rng(seed)
    p, q = random_table((3, n), rng, concentration), random_table((3, n), rng, concentration)
    q = 0.5 * q + 0.5 * p if seed % 2 else q              # close pairs as well as far ones
    assert np.all(G.total_variation(p, q) <= np.sqrt(G.kl_divergence(p, q) / 2) + 1e-12)


def test_pinsker_constant_is_nearly_attained_by_close_bernoullis():
    delta = 1e-3
    p, q = [0.5 + delta, 0.5 - delta], [0.5, 0.5]
    tv, kl = G.total_variation(p, q), G.kl_divergence(p, q)
    assert tv == pytest.approx(delta, rel=1e-9)
    assert tv / np.sqrt(kl / 2) > 0.9999                   # TV <= sqrt(KL/2) is nearly an equality
    assert tv > np.sqrt(0.49 * kl)                         # so no constant below 1/2 would do


def test_max_policy_tv_matches_a_loop_and_broadcasts_over_steps():
    rng = np.random.default_rng(1)
    H, S, A = 3, 4, 2
    pi_old, pi_new = random_table((S, A), rng), random_table((H, S, A), rng)
    slow = max(0.5 * sum(abs(pi_new[h, s, a] - pi_old[s, a]) for a in range(A))
               for h in range(H) for s in range(S))
    assert G.max_policy_tv(pi_old, pi_new) == pytest.approx(slow, rel=1e-14)
    assert G.max_policy_tv(pi_new, pi_old) == pytest.approx(slow, rel=1e-14)
    assert G.max_policy_tv(pi_old, pi_new[0]) == pytest.approx(
        max(0.5 * sum(abs(pi_new[0, s, a] - pi_old[s, a]) for a in range(A)) for s in range(S)), rel=1e-14)


@pytest.mark.parametrize("horizon, time_dependent", [(None, False), (4, False), (4, True)])
def test_expected_policy_kl_matches_a_loop(horizon, time_dependent):
    rng = np.random.default_rng(7)
    S, A = 3, 3
    mdp = M.random_mdp(S, A, rng, horizon=horizon, gamma=0.8)
    pi_old = random_table((S, A), rng)
    pi_new = random_table((horizon, S, A) if time_dependent else (S, A), rng)
    if horizon is None:
        _, _, _, d_old, _, _ = slow_discounted(mdp, pi_old, pi_new)
        slow = sum(d_old[s] * sum(pi_old[s, a] * np.log(pi_old[s, a] / pi_new[s, a]) for a in range(A))
                   for s in range(S))
        rtol = 1e-9
    else:
        _, _, _, d_old, _, _ = slow_finite_horizon(mdp, pi_old, pi_new)
        slow = sum(d_old[h, s] * sum(pi_old[s, a] * np.log(pi_old[s, a] / step_table(pi_new, h)[s, a])
                                     for a in range(A))
                   for h in range(horizon) for s in range(S)) / horizon
        rtol = 1e-12
    assert G.expected_policy_kl(mdp, pi_old, pi_new) == pytest.approx(slow, rel=rtol)


def test_expected_policy_kl_counts_only_visited_states():
    # Both actions keep the agent where it is; it starts in state 0 and never sees state 1.
    P = np.zeros((2, 2, 2))
    P[0, :, 0] = P[1, :, 1] = 1.0
    mdp = M.TabularMDP(P, np.zeros((2, 2)), np.array([1.0, 0.0]), 1.0, 3)
    pi_old = np.array([[0.5, 0.5], [0.5, 0.5]])
    unvisited_change = np.array([[0.5, 0.5], [1.0, 0.0]])      # KL = inf, but only in state 1
    visited_change = np.array([[1.0, 0.0], [0.5, 0.5]])        # KL = inf in state 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # no 0 * inf
        assert G.expected_policy_kl(mdp, pi_old, unvisited_change) == 0.0
        assert G.expected_policy_kl(mdp, pi_old, visited_change) == np.inf
        assert G.expected_policy_kl(mdp.with_setting(gamma=0.9, horizon=None), pi_old, unvisited_change) == 0.0


# ------------------------------------------------------ drift and its bounds

def test_coupling_drift_bound_values():
    np.testing.assert_allclose(G.coupling_drift_bound(0.1, 4), [0.0, 0.1, 0.19, 0.271], rtol=1e-14)
    np.testing.assert_array_equal(G.coupling_drift_bound(0.0, 3), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(G.coupling_drift_bound(1.0, 3), [0.0, 1.0, 1.0])
    for eps in (1e-6, 0.01, 0.3, 0.9):
        bound = G.coupling_drift_bound(eps, 50)
        assert bound.shape == (50,)
        assert np.all(bound <= eps * np.arange(50) + 1e-15)            # <= epsilon h
        assert np.all(np.diff(bound) >= 0) and np.all(bound <= 1)
    for gamma in (0.0, 0.5, 0.99):
        for eps in (0.0, 0.05, 1.0):
            series = (1 - gamma) * sum(gamma ** t * (1 - (1 - eps) ** t) for t in range(20000))
            assert G.discounted_drift_bound(eps, gamma) == pytest.approx(series, rel=1e-9, abs=1e-15)
            assert G.discounted_drift_bound(eps, gamma) <= gamma * eps / (1 - gamma) + 1e-15


def _perturbations(pi_old, rng, H):
    """Policies at several distances from pi_old, stationary and time-dependent."""
    out = []
    for size in (1e-3, 0.05, 0.3, 1.0):
        out.append(mix_towards(pi_old, size, rng))
        out.append(tilt(pi_old, size, rng))
        if H is not None:
            out.append(mix_towards(np.broadcast_to(pi_old, (H,) + pi_old.shape), size, rng))
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), S=st.integers(1, 5), A=st.integers(2, 3),
       horizon=st.sampled_from([None, 1, 3, 8]), gamma=st.sampled_from([0.5, 0.9, 1.0]))
def test_drift_never_exceeds_the_coupling_bound(seed, S, A, horizon, gamma):
    if horizon is None and gamma == 1.0:
        gamma = 0.99
    rng = np.random.default_rng(seed)
    mdp = M.random_mdp(S, A, rng, horizon=horizon, gamma=gamma, concentration=0.3)
    pi_old = random_table((S, A), rng, concentration=0.5)
    for pi_new in _perturbations(pi_old, rng, horizon):
        eps = G.max_policy_tv(pi_old, pi_new)
        drift = G.state_distribution_drift(mdp, pi_old, pi_new)
        if horizon is None:
            assert drift <= G.discounted_drift_bound(eps, gamma) + 1e-12
        else:
            assert drift.shape == (horizon,) and drift[0] == 0.0
            assert np.all(drift <= G.coupling_drift_bound(eps, horizon) + 1e-12)


@pytest.mark.parametrize("epsilon", [0.0, 0.01, 0.2, 0.7, 1.0])
def test_drift_bounds_are_attained_by_the_trap(epsilon):
    pi_old, pi_new = trap_policies(epsilon)
    assert G.max_policy_tv(pi_old, pi_new) == pytest.approx(epsilon, abs=1e-15)
    H = 12
    drift = G.state_distribution_drift(trap_mdp(horizon=H), pi_old, pi_new)
    np.testing.assert_allclose(drift, G.coupling_drift_bound(epsilon, H), rtol=1e-12, atol=1e-15)
    for gamma in (0.5, 0.95):
        drift = G.state_distribution_drift(trap_mdp(gamma=gamma), pi_old, pi_new)
        assert drift == pytest.approx(G.discounted_drift_bound(epsilon, gamma), rel=1e-10, abs=1e-15)


def test_the_l1_convention_doubles_the_bound():
    # Sources that write "2 epsilon t" use the L1 distance sum |p - q| (no 1/2) for the states.
    epsilon, H = 0.1, 6
    pi_old, pi_new = trap_policies(epsilon)
    mdp = trap_mdp(horizon=H)
    l1 = np.abs(M.state_visitation(mdp, pi_new) - M.state_visitation(mdp, pi_old)).sum(axis=1)
    np.testing.assert_allclose(l1, 2 * G.coupling_drift_bound(epsilon, H), rtol=1e-12)
    assert np.all(l1 <= 2 * epsilon * np.arange(H) + 1e-15)
    assert np.any(l1[1:] > epsilon * np.arange(1, H))          # epsilon t alone would be violated


def test_surrogate_error_bound_formula_by_loop():
    rng = np.random.default_rng(3)
    for horizon, gamma in ((5, 1.0), (7, 0.9), (None, 0.9), (None, 0.5)):
        mdp = M.random_mdp(3, 2, rng, horizon=horizon, gamma=gamma)
        r_max = np.abs(mdp.rewards).max()
        for eps in (0.0, 0.01, 0.3, 1.0):
            if horizon is None:
                drift = (1 - gamma) * sum(gamma ** t * (1 - (1 - eps) ** t) for t in range(5000))
                alpha = 2 * r_max / (1 - gamma)
                slow = 2 * drift * 2 * eps * alpha / (1 - gamma)
                closed = 4 * gamma * eps ** 2 * alpha / (1 - gamma) ** 2
            else:
                alpha = 2 * r_max * sum(gamma ** h for h in range(horizon))
                slow = sum(gamma ** h * 2 * (1 - (1 - eps) ** h) * 2 * eps * alpha for h in range(horizon))
                closed = 2 * eps ** 2 * alpha * horizon * (horizon - 1)
            bound = G.surrogate_error_bound(eps, mdp)
            assert bound == pytest.approx(slow, rel=1e-9, abs=1e-15)
            assert bound <= closed * (1 + 1e-12) + 1e-15          # the simpler forms in the docstring
            assert G.surrogate_error_bound(eps, mdp, advantage_bound=1.0) == pytest.approx(slow / alpha, rel=1e-9, abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), S=st.integers(1, 5), A=st.integers(2, 3),
       horizon=st.sampled_from([None, 2, 5, 10]), gamma=st.sampled_from([0.5, 0.9, 1.0]))
def test_surrogate_error_never_exceeds_the_bound(seed, S, A, horizon, gamma):
    if horizon is None and gamma == 1.0:
        gamma = 0.95
    rng = np.random.default_rng(seed)
    mdp = M.random_mdp(S, A, rng, horizon=horizon, gamma=gamma, concentration=0.3)
    mdp = M.TabularMDP(mdp.transitions, 2 * mdp.rewards - 1, mdp.initial_distribution, gamma, horizon)
    pi_old = random_table((S, A), rng, concentration=0.5)
    max_adv = np.abs(M.evaluate_policy(mdp, pi_old).advantages).max()
    for pi_new in _perturbations(pi_old, rng, horizon):
        eps = G.max_policy_tv(pi_old, pi_new)
        error = abs(M.expected_return(mdp, pi_new) - G.surrogate_objective(mdp, pi_old, pi_new))
        assert error <= G.surrogate_error_bound(eps, mdp) + 1e-12
        # the sharper bound with the true largest advantage holds as well
        assert error <= G.surrogate_error_bound(eps, mdp, advantage_bound=max_adv) + 1e-12


def test_surrogate_error_bound_is_within_a_small_factor_on_the_trap():
    # Old: stay in the rewarding state 0. New: fall into the trap with probability epsilon.
    H, epsilon = 10, 0.05
    mdp = trap_mdp(horizon=H)
    pi_old, pi_new = trap_policies(epsilon)
    error = abs(M.expected_return(mdp, pi_new) - G.surrogate_objective(mdp, pi_old, pi_new))
    max_adv = np.abs(M.evaluate_policy(mdp, pi_old).advantages).max()
    bound = G.surrogate_error_bound(epsilon, mdp, advantage_bound=max_adv)
    assert error <= bound
    # Not vacuous: the bound loses two factors of 2 (from TV to sums of absolute values,
    # for the actions and for the states) and max_h of the advantage, nothing more.
    assert bound < 20 * error
    # and both are second order in epsilon
    half_error = abs(M.expected_return(mdp, trap_policies(epsilon / 2)[1])
                     - G.surrogate_objective(mdp, pi_old, trap_policies(epsilon / 2)[1]))
    assert half_error / error == pytest.approx(0.25, abs=0.03)
    assert G.surrogate_error_bound(epsilon / 2, mdp, advantage_bound=max_adv) / bound == pytest.approx(0.25, abs=0.03)


# ------------------------------------------------------------------ bad input

def _bad_calls():
    rng = np.random.default_rng(0)
    disc = M.random_mdp(3, 2, rng, gamma=0.9)
    fin = M.random_mdp(3, 2, rng, horizon=4)
    pi = random_table((3, 2), rng)
    not_summing = pi.copy()
    not_summing[1, 0] += 0.1
    negative = np.array([[1.2, -0.2], [0.5, 0.5], [0.5, 0.5]])
    with_nan = pi.copy()
    with_nan[0, 0] = np.nan
    return [
        (lambda: G.performance_difference(disc, pi, pi[:2]), r"pi_new must have shape \[S, A\] = \(3, 2\)"),
        (lambda: G.surrogate_objective(disc, np.ones((3, 3)) / 3, pi), r"pi_old must have shape \[S, A\] = \(3, 2\)"),
        (lambda: G.surrogate_objective(fin, pi, np.full((5, 3, 2), 0.5)),
         r"pi_new must have shape \[H, S, A\] = \(4, 3, 2\)"),
        (lambda: G.performance_difference(disc, pi, np.full((4, 3, 2), 0.5)), "needs a finite-horizon MDP"),
        (lambda: G.performance_difference(disc, pi, pi[0]), r"pi_new must have shape \[S, A\] \(or \[H, S, A\]\)"),
        (lambda: G.performance_difference(disc, not_summing, pi), r"pi_old\[s, :\] must sum to one"),
        (lambda: G.surrogate_objective(fin, pi, negative), r"pi_new\[s, :\] must be non-negative"),
        (lambda: G.expected_policy_kl(disc, with_nan, pi), "pi_old contains NaN"),
        (lambda: G.state_distribution_drift(fin, pi, with_nan), "pi_new contains NaN"),
        (lambda: G.performance_difference("mdp", pi, pi), "mdp must be a TabularMDP"),
        (lambda: G.total_variation([0.5, 0.5], [0.2, 0.3, 0.5]), "p and q must have the same shape"),
        (lambda: G.total_variation([0.5, 0.6], [0.5, 0.5]), "p must sum to one"),
        (lambda: G.kl_divergence([0.5, 0.5], [np.nan, 0.5]), "q contains NaN"),
        (lambda: G.kl_divergence(1.0, 1.0), r"p must have shape \[\.\.\., n\]"),
        (lambda: G.max_policy_tv(pi, np.full((3, 3), 1 / 3)), "pi_old and pi_new must have the same shape"),
        (lambda: G.max_policy_tv(np.full((2, 3, 2), 0.5), np.full((4, 3, 2), 0.5)),
         "pi_old and pi_new must have the same shape"),
        (lambda: G.max_policy_tv(pi, not_summing), r"pi_new\[s, :\] must sum to one"),
        (lambda: G.coupling_drift_bound(-0.1, 3), r"epsilon must be a total-variation distance in \[0, 1\], got -0.1"),
        (lambda: G.coupling_drift_bound(1.5, 3), r"epsilon must be a total-variation distance in \[0, 1\], got 1.5"),
        (lambda: G.coupling_drift_bound(np.nan, 3), "epsilon is NaN"),
        (lambda: G.coupling_drift_bound("0.1", 3), "epsilon must be a number"),
        (lambda: G.coupling_drift_bound(0.1, 0), "horizon must be >= 1"),
        (lambda: G.discounted_drift_bound(0.1, 1.0), r"gamma must be in \[0, 1\)"),
        (lambda: G.discounted_drift_bound(2.0, 0.9), r"epsilon must be a total-variation distance"),
        (lambda: G.surrogate_error_bound(-1e-3, fin), r"epsilon must be a total-variation distance"),
        (lambda: G.surrogate_error_bound(float("nan"), disc), "epsilon is NaN"),
        (lambda: G.surrogate_error_bound(0.1, fin, advantage_bound=-1.0), "advantage_bound must be non-negative"),
        (lambda: G.surrogate_error_bound(0.1, None), "mdp must be a TabularMDP"),
    ]


@pytest.mark.parametrize("call, match", _bad_calls())
def test_bad_input_is_reported(call, match):
    with pytest.raises(ValueError, match=match):
        call()
