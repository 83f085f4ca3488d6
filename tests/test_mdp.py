"""Exact tabular tools against slow references: enumeration, series, finite differences."""

import itertools

import numpy as np
import pytest

from pgkit import mdp as M
from pgkit.policies import LinearSoftmaxPolicy, TabularSoftmaxPolicy


def random_policy(S, A, rng):
    return rng.dirichlet(np.ones(A), size=S)


def enumerate_return(mdp, pi):
    """J of a finite-horizon MDP by summing over every trajectory (slow, exact)."""
    S, A, H = mdp.n_states, mdp.n_actions, mdp.horizon
    total = 0.0
    for traj in itertools.product(range(S), range(A), repeat=H):
        states, actions = traj[0::2], traj[1::2]
        p = mdp.initial_distribution[states[0]]
        ret = 0.0
        for h in range(H):
            table = pi[h] if pi.ndim == 3 else pi
            p *= table[states[h], actions[h]]
            if h + 1 < H:
                p *= mdp.transitions[states[h], actions[h], states[h + 1]]
            ret += mdp.gamma ** h * mdp.rewards[states[h], actions[h]]
        total += p * ret
    return total


def series_visitation(mdp, pi, n_terms=3000):
    """(1 - gamma) sum_t gamma^t Pr(s_t = s), summed term by term."""
    P_pi = np.einsum("sa,sat->st", pi, mdp.transitions)
    d, dist = np.zeros(mdp.n_states), mdp.initial_distribution.copy()
    for t in range(n_terms):
        d += (1 - mdp.gamma) * mdp.gamma ** t * dist
        dist = dist @ P_pi
    return d


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("time_dependent", [False, True])
def test_finite_horizon_return_matches_enumeration(seed, time_dependent):
    rng = np.random.default_rng(seed)
    mdp = M.random_mdp(2, 2, rng, horizon=3, gamma=[1.0, 0.8][seed % 2])
    pi = rng.dirichlet(np.ones(2), size=(3, 2) if time_dependent else 2)
    assert M.expected_return(mdp, pi) == pytest.approx(enumerate_return(mdp, pi), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_discounted_values_solve_bellman_and_match_series(seed):
    rng = np.random.default_rng(seed)
    mdp = M.random_mdp(5, 3, rng, gamma=0.8)
    pi = random_policy(5, 3, rng)
    V, Q, A = M.evaluate_policy(mdp, pi)
    # Bellman equations, written out term by term
    for s in range(5):
        assert V[s] == pytest.approx(sum(pi[s, a] * Q[s, a] for a in range(3)))
        for a in range(3):
            expected = mdp.rewards[s, a] + 0.8 * sum(mdp.transitions[s, a, t] * V[t] for t in range(5))
            assert Q[s, a] == pytest.approx(expected)
    np.testing.assert_allclose(np.sum(pi * A, axis=1), 0, atol=1e-12)
    d = M.state_visitation(mdp, pi)
    np.testing.assert_allclose(d, series_visitation(mdp, pi), atol=1e-10)
    assert d.sum() == pytest.approx(1.0)
    J = M.expected_return(mdp, pi)
    assert J == pytest.approx(np.sum(d[:, None] * pi * mdp.rewards) / (1 - 0.8))


@pytest.mark.parametrize("seed", range(3))
def test_finite_horizon_visitation_rows_are_step_distributions(seed):
    rng = np.random.default_rng(seed)
    mdp = M.random_mdp(4, 2, rng, horizon=6, gamma=1.0)
    pi = random_policy(4, 2, rng)
    d = M.state_visitation(mdp, pi)
    assert d.shape == (6, 4)
    np.testing.assert_allclose(d.sum(axis=1), 1.0)
    # J = sum_h E_{s ~ d_h} [r_pi(s)]
    assert M.expected_return(mdp, pi) == pytest.approx(np.einsum("hs,sa,sa->", d, pi, mdp.rewards))


def softmax_policies(mdp, rng):
    tab = TabularSoftmaxPolicy(mdp.n_states, mdp.n_actions)
    phi = rng.normal(size=(mdp.n_states, mdp.n_actions, 3))
    lin = LinearSoftmaxPolicy.from_state_features(phi)
    return [(tab, rng.normal(size=tab.n_params)), (lin, rng.normal(size=lin.n_params))]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("horizon", [None, 5])
def test_policy_gradient_theorem_matches_finite_differences(seed, horizon):
    rng = np.random.default_rng(seed)
    mdp = M.random_mdp(4, 3, rng, gamma=0.9 if horizon is None else 0.95, horizon=horizon)
    for policy, theta in softmax_policies(mdp, rng):
        exact = M.exact_policy_gradient(mdp, policy, theta)
        fd = M.finite_difference_gradient(lambda th: M.exact_objective(mdp, policy, th), theta)
        np.testing.assert_allclose(exact, fd, rtol=1e-6, atol=1e-8)
        assert np.linalg.norm(exact) > 1e-3          # a zero gradient would pass trivially


def test_policy_gradient_differs_from_a_wrong_formula():
    """Dropping the 1/(1 - gamma) factor must be caught by the finite-difference check."""
    rng = np.random.default_rng(0)
    mdp = M.random_mdp(3, 2, rng, gamma=0.5)
    policy = TabularSoftmaxPolicy(3, 2)
    theta = rng.normal(size=policy.n_params)
    fd = M.finite_difference_gradient(lambda th: M.exact_objective(mdp, policy, th), theta)
    wrong = M.exact_policy_gradient(mdp, policy, theta) * (1 - mdp.gamma)
    assert not np.allclose(wrong, fd, rtol=1e-3)


@pytest.mark.parametrize("n", range(1, 9))
def test_combination_lock_random_policy_opens_with_probability_three_to_minus_n(n):
    lock = M.combination_lock(n)
    assert lock.horizon == n
    assert M.expected_return(lock, M.uniform_policy(lock)) == pytest.approx(3.0 ** -n, rel=1e-12)
    # the right combination opens it surely
    pi = np.zeros((n, 3))
    pi[np.arange(n), np.arange(n) % 3] = 1.0
    assert M.expected_return(lock, pi) == pytest.approx(1.0)


def test_combination_lock_by_enumeration_and_custom_combination():
    lock = M.combination_lock(3, combination=[2, 0, 1])
    uniform = M.uniform_policy(lock)
    assert enumerate_return(lock, uniform) == pytest.approx(3.0 ** -3)
    assert lock.transitions[0, 2, 1] == 1 and lock.transitions[0, 0, 0] == 1
    # a longer horizon gives the random policy more tries
    assert M.expected_return(lock.with_setting(horizon=9), uniform) > 3.0 ** -3


def test_chain_deterministic_values():
    chain = M.chain_mdp(4, slip=0.0, gamma=0.9)
    left = np.tile([1.0, 0.0], (4, 1))
    right = np.tile([0.0, 1.0], (4, 1))
    assert M.expected_return(chain, left) == pytest.approx(0.1 / 0.1)
    assert M.expected_return(chain, right) == pytest.approx(0.9 ** 3 / 0.1)
    np.testing.assert_allclose(chain.transitions.sum(-1), 1.0)


def test_random_mdp_is_reproducible():
    a = M.random_mdp(3, 2, np.random.default_rng(7))
    b = M.random_mdp(3, 2, np.random.default_rng(7))
    np.testing.assert_array_equal(a.transitions, b.transitions)
    assert a.discounted and not a.with_setting(horizon=4).discounted


# ----------------------------------------------------------------------------- bad input

def good_parts():
    P = np.full((2, 2, 2), 0.5)
    return P, np.zeros((2, 2)), np.array([1.0, 0.0])


@pytest.mark.parametrize("change, message", [
    (dict(transitions=np.full((2, 2), 0.5)), r"transitions must have shape \[S, A, S\]"),
    (dict(transitions=np.full((2, 2, 2), 0.6)), r"must sum to one"),
    (dict(transitions=np.where(np.eye(2)[None] > 0, 1.5, -0.5).repeat(2, 0)), r"non-negative"),
    (dict(rewards=np.zeros(2)), r"rewards must have shape \[S, A\]"),
    (dict(rewards=np.array([[0, np.nan], [0, 0]])), r"rewards contains NaN"),
    (dict(initial_distribution=np.array([0.5, 0.4])), r"initial_distribution must sum to one"),
    (dict(gamma=1.0), r"gamma must be in \[0, 1\)"),
    (dict(gamma=-0.1, horizon=3), r"gamma must be in \[0, 1\]"),
    (dict(gamma=0.5, horizon=0), r"horizon must be >= 1"),
])
def test_mdp_rejects_bad_input(change, message):
    P, r, mu = good_parts()
    kwargs = dict(transitions=P, rewards=r, initial_distribution=mu, gamma=0.9, horizon=None)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        M.TabularMDP(**kwargs)


def test_policy_table_errors():
    P, r, mu = good_parts()
    mdp = M.TabularMDP(P, r, mu, gamma=0.9)
    with pytest.raises(ValueError, match=r"pi must have shape \[S, A\]"):
        M.evaluate_policy(mdp, np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match=r"pi\[s, :\] must sum to one"):
        M.evaluate_policy(mdp, np.full((2, 2), 0.6))
    with pytest.raises(ValueError, match="needs a finite-horizon MDP"):
        M.evaluate_policy(mdp, np.full((4, 2, 2), 0.5))
    with pytest.raises(ValueError, match="eps must be positive"):
        M.finite_difference_gradient(np.sum, np.zeros(2), eps=0)
    with pytest.raises(ValueError, match="combination must be < 3"):
        M.combination_lock(2, combination=[0, 3])
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        M.random_mdp(2, 2, rng=0)
