"""Gradient estimators: slow loops, exact enumeration against the exact gradient, training smoke tests."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgkit import gradients as G
from pgkit.envs import CartPoleVecEnv
from pgkit.mdp import exact_objective, exact_policy_gradient, random_mdp
from pgkit.optim import Adam, GradientAscent
from pgkit.policies import LinearSoftmaxPolicy, TabularSoftmaxPolicy
from pgkit.rollout import TabularEnv
from pgkit.training import History, train_policy_gradient


def random_flags(rng, T, B):
    return rng.random((T, B)) < 0.2, rng.random((T, B)) < 0.1


def slow_weights(rewards, terminated, truncated, gamma, baseline, kind):
    """Split each column into episodes and write the weights as the equations do."""
    T, B = rewards.shape
    w = np.zeros((T, B))
    for b in range(B):
        start = 0
        for t in range(T):
            if terminated[t, b] or truncated[t, b] or t == T - 1:
                ep = range(start, t + 1)
                R = sum(gamma ** (u - start) * rewards[u, b] for u in ep)
                for u in ep:
                    if kind == "reinforce":
                        w[u, b] = R - baseline[u, b]
                    else:
                        G_u = sum(gamma ** (v - u) * rewards[v, b] for v in range(u, t + 1))
                        w[u, b] = gamma ** (u - start) * (G_u - baseline[u, b])
                start = t + 1
    return w


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 10), B=st.integers(1, 4), gamma=st.sampled_from([0.5, 0.9, 1.0]),
       seed=st.integers(0, 9999))
def test_weights_match_slow_loops(T, B, gamma, seed):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, B))
    terminated, truncated = random_flags(rng, T, B)
    baseline = rng.normal(size=(T, B))
    np.testing.assert_allclose(G.reinforce_weights(rewards, terminated, truncated, gamma, baseline),
                               slow_weights(rewards, terminated, truncated, gamma, baseline, "reinforce"),
                               atol=1e-12)
    np.testing.assert_allclose(G.reward_to_go_weights(rewards, terminated, truncated, gamma, baseline),
                               slow_weights(rewards, terminated, truncated, gamma, baseline, "rtg"),
                               atol=1e-12)


def test_steps_in_episode_and_steps_before():
    terminated = np.array([[0, 0], [1, 0], [0, 0], [0, 1]], bool)
    truncated = np.zeros_like(terminated)
    k = G.steps_in_episode(terminated, truncated, steps_before=[3, 0])
    np.testing.assert_array_equal(k, [[3, 0], [4, 1], [0, 2], [1, 3]])
    w = G.reward_to_go_weights(np.ones((4, 2)), terminated, truncated, 0.5, steps_before=[3, 0])
    assert w[0, 0] == pytest.approx(0.5 ** 3 * 1.5)
    w_plain = G.reward_to_go_weights(np.ones((4, 2)), terminated, truncated, 0.5,
                                     discount_from_start=False)
    assert w_plain[0, 0] == pytest.approx(1.5)


def test_score_weighted_sum_matches_loop():
    rng = np.random.default_rng(0)
    scores, weights = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 3))
    slow = np.array([sum(scores[t, b] * weights[t, b] for t in range(5)) for b in range(3)])
    np.testing.assert_allclose(G.score_weighted_sum(scores, weights), slow)


def enumerate_episodes(mdp, policy, theta):
    """Every trajectory of a finite-horizon MDP as one column, with its probability."""
    S, A, H = mdp.n_states, mdp.n_actions, mdp.horizon
    pi = policy.probs(theta, np.arange(S))
    cols, probs = [], []
    for traj in itertools.product(range(S), range(A), repeat=H):
        s, a = np.array(traj[0::2]), np.array(traj[1::2])
        p = mdp.initial_distribution[s[0]] * np.prod(pi[s, a])
        p *= np.prod(mdp.transitions[s[:-1], a[:-1], s[1:]])
        cols.append((s, a, mdp.rewards[s, a]))
        probs.append(p)
    states, actions, rewards = (np.stack(x, axis=1) for x in zip(*cols))
    terminated = np.zeros(states.shape, bool)
    terminated[-1] = True
    return states, actions, rewards, terminated, np.array(probs)


@pytest.mark.parametrize("gamma", [1.0, 0.8])
@pytest.mark.parametrize("kind", ["reinforce", "reward_to_go"])
@pytest.mark.parametrize("baseline_kind", ["none", "constant", "time", "state"])
def test_estimators_are_unbiased_by_exact_enumeration(gamma, kind, baseline_kind):
    rng = np.random.default_rng(1)
    mdp = random_mdp(2, 2, rng, horizon=3, gamma=gamma)
    policy = TabularSoftmaxPolicy(2, 2)
    theta = rng.normal(size=policy.n_params)
    states, actions, rewards, terminated, probs = enumerate_episodes(mdp, policy, theta)
    assert probs.sum() == pytest.approx(1.0)
    truncated = np.zeros_like(terminated)
    # baselines fixed in advance (not functions of the trajectory they weigh)
    baseline = {"none": None, "constant": 0.7,
                "time": np.broadcast_to(np.array([1.5, 0.5, -0.3])[:, None], states.shape),
                "state": np.array([2.0, -1.0])[states]}[baseline_kind]
    if kind == "reinforce":
        w = G.reinforce_weights(rewards, terminated, truncated, gamma, baseline)
    else:
        w = G.reward_to_go_weights(rewards, terminated, truncated, gamma, baseline)
    per_episode = G.score_weighted_sum(policy.score(theta, states, actions), w)
    expected = probs @ per_episode
    np.testing.assert_allclose(expected, exact_policy_gradient(mdp, policy, theta), atol=1e-12)


def test_an_action_dependent_baseline_is_biased():
    """Subtracting Q(s, a)-like numbers that depend on the action breaks unbiasedness."""
    rng = np.random.default_rng(2)
    mdp = random_mdp(2, 2, rng, horizon=3, gamma=1.0)
    policy = TabularSoftmaxPolicy(2, 2)
    theta = rng.normal(size=policy.n_params)
    states, actions, rewards, terminated, probs = enumerate_episodes(mdp, policy, theta)
    baseline = np.array([[1.0, -1.0], [0.5, 2.0]])[states, actions]
    w = G.reward_to_go_weights(rewards, terminated, np.zeros_like(terminated), 1.0, baseline)
    expected = probs @ G.score_weighted_sum(policy.score(theta, states, actions), w)
    assert np.max(np.abs(expected - exact_policy_gradient(mdp, policy, theta))) > 1e-2


def test_linear_value_fit():
    rng = np.random.default_rng(0)
    states = rng.integers(0, 4, size=(6, 50))
    targets = rng.normal(size=(6, 50))
    w = G.fit_linear_value(G.one_hot_features(states, 4), targets, ridge=0.0)
    means = [targets[states == s].mean() for s in range(4)]
    np.testing.assert_allclose(w, means)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    np.testing.assert_allclose(G.fit_linear_value(X, y, ridge=0.0), np.linalg.lstsq(X, y, rcond=None)[0])
    feats = G.polynomial_features(np.array([[2.0, 3.0]]), degree=2)
    np.testing.assert_allclose(feats, [[1, 2, 3, 4, 9]])


def test_adam_matches_reference_and_ascends():
    grads = [np.array([1.0, -2.0]), np.array([0.5, 0.5]), np.array([-1.0, 3.0])]
    adam = Adam(0.1, beta1=0.9, beta2=0.99, eps=1e-8)
    theta = np.zeros(2)
    m = v = np.zeros(2)
    ref = np.zeros(2)
    for k, g in enumerate(grads, start=1):
        theta = adam.step(theta, g)
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        ref = ref + 0.1 * (m / (1 - 0.9 ** k)) / (np.sqrt(v / (1 - 0.99 ** k)) + 1e-8)
    np.testing.assert_allclose(theta, ref)
    assert Adam(0.1).step(np.zeros(1), np.ones(1))[0] > 0            # ascent
    np.testing.assert_allclose(GradientAscent(0.5).step(np.ones(2), np.array([2.0, -2.0])), [2.0, 0.0])


def test_training_improves_a_tabular_policy_and_is_reproducible():
    rng = np.random.default_rng(0)
    mdp = random_mdp(3, 2, rng, horizon=4, gamma=1.0)
    policy = TabularSoftmaxPolicy(3, 2)
    theta0 = policy.init_params()
    runs = [train_policy_gradient(TabularEnv(mdp, 64), policy, theta0, np.random.default_rng(5),
                                  n_iterations=30, n_steps=4, gamma=1.0,
                                  value_features=lambda s: G.one_hot_features(s, 3),
                                  optimizer=Adam(0.1)) for _ in range(2)]
    h = runs[0]
    assert isinstance(h, History)
    np.testing.assert_array_equal(h.theta, runs[1].theta)
    assert exact_objective(mdp, policy, h.theta) > exact_objective(mdp, policy, theta0) + 0.05
    assert h.iteration_returns.shape == (30,) and h.env_steps[-1] == 30 * 4 * 64
    assert np.all(np.diff(h.wall_time) >= 0) and h.episode_returns.size == 30 * 64


@pytest.mark.parametrize("estimator", ["reward_to_go", "reinforce"])
def test_training_smoke_on_cartpole(estimator, capsys):
    policy = LinearSoftmaxPolicy.per_action_linear(4, 2)
    h = train_policy_gradient(CartPoleVecEnv(4), policy, policy.init_params(), np.random.default_rng(0),
                              n_iterations=3, n_steps=20, estimator=estimator,
                              value_features=G.polynomial_features)
    assert h.grad_norms.shape == (3,) and np.isfinite(h.grad_norms).all()
    assert capsys.readouterr().out == ""                             # quiet by default
    train_policy_gradient(CartPoleVecEnv(2), policy, policy.init_params(), np.random.default_rng(0),
                          n_iterations=2, n_steps=5, progress=True)
    assert "iteration" in capsys.readouterr().out


@pytest.mark.parametrize("call, message", [
    (lambda: G.reinforce_weights(np.zeros((3, 2)), np.zeros((3, 2), bool), np.zeros((3, 2), bool), 0.9,
                                 baseline=np.zeros((2, 2))), r"baseline must have shape \[T, B\] = \(3, 2\)"),
    (lambda: G.score_weighted_sum(np.zeros((3, 2)), np.zeros((3, 2))), r"scores must have shape \[T, B, P\]"),
    (lambda: G.score_weighted_sum(np.zeros((3, 2, 4)), np.zeros((3, 1))), r"weights must have shape \[T, B\] = \(3, 2\)"),
    (lambda: G.fit_linear_value(np.zeros((5, 2)), np.zeros(4)), "must agree"),
    (lambda: G.fit_linear_value(np.zeros((5, 2)), np.zeros(5), ridge=-1), "ridge must be non-negative"),
    (lambda: G.steps_in_episode(np.zeros((3, 2), bool), np.zeros((3, 2), bool), [1]), r"steps_before must have shape \[B\]"),
    (lambda: G.one_hot_features([0, 4], 4), "indices must be < 4"),
    (lambda: Adam(0.1, beta1=1.0), r"beta1 must be in \[0, 1\)"),
    (lambda: GradientAscent(-1.0), "step_size must be non-negative"),
    (lambda: train_policy_gradient(CartPoleVecEnv(1), LinearSoftmaxPolicy.per_action_linear(4, 2), np.zeros(10),
                                   np.random.default_rng(), n_iterations=1, n_steps=1, estimator="ppo"),
     "estimator must be 'reward_to_go' or 'reinforce'"),
    (lambda: train_policy_gradient(CartPoleVecEnv(1), LinearSoftmaxPolicy.per_action_linear(4, 2), np.zeros(3),
                                   np.random.default_rng(), n_iterations=1, n_steps=1), r"theta must have shape"),
])
def test_gradient_tools_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
