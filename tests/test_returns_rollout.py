"""Returns against slow per-episode loops; rollouts of the tabular environment against exact J."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgkit import budget, mdp as M
from pgkit.policies import TabularSoftmaxPolicy
from pgkit.returns import episode_returns, episode_starts, reward_to_go
from pgkit.rollout import Batch, TabularEnv, collect


def slow_returns(rewards, terminated, truncated, gamma, next_values):
    """Per column: split into episodes, then sum discounted rewards by the definition."""
    T, B = rewards.shape
    to_go, whole = np.zeros((T, B)), np.zeros((T, B))
    for b in range(B):
        start = 0
        for t in range(T):
            if terminated[t, b] or truncated[t, b] or t == T - 1:
                end = t                                     # episode segment [start, end]
                tail = 0.0 if terminated[end, b] else next_values[end, b]
                for u in range(start, end + 1):
                    k = np.arange(end - u + 1)
                    to_go[u, b] = np.sum(gamma ** k * rewards[u:end + 1, b]) + gamma ** (end - u + 1) * tail
                whole[start:end + 1, b] = to_go[start, b]
                start = t + 1
    return to_go, whole


flags = st.integers(0, 3)


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 12), B=st.integers(1, 4), gamma=st.sampled_from([0.0, 0.5, 0.99, 1.0]),
       seed=st.integers(0, 10_000), with_values=st.booleans())
def test_returns_match_slow_loop(T, B, gamma, seed, with_values):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, B))
    terminated = rng.random((T, B)) < 0.2
    truncated = rng.random((T, B)) < 0.2
    next_values = rng.normal(size=(T, B)) if with_values else np.zeros((T, B))
    to_go, whole = slow_returns(rewards, terminated, truncated, gamma, next_values)
    nv = next_values if with_values else None
    np.testing.assert_allclose(reward_to_go(rewards, terminated, truncated, gamma, nv), to_go, atol=1e-12)
    np.testing.assert_allclose(episode_returns(rewards, terminated, truncated, gamma, nv), whole, atol=1e-12)


def test_truncation_bootstraps_from_next_value_but_termination_does_not():
    rewards = np.ones((3, 2))
    terminated = np.array([[False, False], [True, False], [False, False]])
    truncated = np.array([[False, False], [False, True], [False, False]])
    next_values = np.full((3, 2), 10.0)
    G = reward_to_go(rewards, terminated, truncated, 0.5, next_values)
    np.testing.assert_allclose(G[:, 0], [1.5, 1.0, 1 + 0.5 * 10])
    np.testing.assert_allclose(G[:, 1], [1 + 0.5 * 6, 1 + 0.5 * 10, 1 + 0.5 * 10])
    np.testing.assert_array_equal(episode_starts(terminated, truncated)[:, 0], [True, False, True])


@pytest.mark.parametrize("bad, message", [
    (dict(rewards=np.zeros(5)), r"rewards must have shape \[T, B\], got \(5,\)"),
    (dict(terminated=np.zeros((2, 2), bool)), r"terminated must have shape \[T, B\] = \(3, 2\)"),
    (dict(truncated=np.full((3, 2), 2)), r"truncated must be booleans"),
    (dict(gamma=1.5), r"gamma must be in \[0, 1\]"),
    (dict(rewards=np.full((3, 2), np.nan)), r"rewards contains NaN"),
    (dict(next_values=np.zeros((3, 1))), r"next_values and rewards must have the same shape"),
])
def test_returns_reject_bad_input(bad, message):
    kwargs = dict(rewards=np.zeros((3, 2)), terminated=np.zeros((3, 2), bool),
                  truncated=np.zeros((3, 2), bool), gamma=0.9, next_values=None)
    kwargs.update(bad)
    with pytest.raises(ValueError, match=message):
        reward_to_go(**kwargs)


# ----------------------------------------------------------------------------- rollouts


def test_finite_horizon_rollouts_estimate_exact_return():
    rng = np.random.default_rng(0)
    mdp = M.random_mdp(4, 3, rng, horizon=5, gamma=1.0)
    policy = TabularSoftmaxPolicy(4, 3)
    theta = rng.normal(size=policy.n_params)
    env = TabularEnv(mdp, num_envs=4000)
    batch = collect(env, policy, theta, 5, rng)
    # one whole episode per column, terminated exactly at h = H-1
    assert batch.terminated[:-1].sum() == 0 and batch.terminated[-1].all()
    assert not batch.truncated.any()
    returns = batch.rewards.sum(axis=0)
    se = returns.std(ddof=1) / np.sqrt(returns.size)
    J = M.exact_objective(mdp, policy, theta)
    assert abs(returns.mean() - J) < 4 * se
    np.testing.assert_allclose(batch.episode_returns, returns)
    # the per-step state frequencies match the exact distributions d_h
    d = M.state_visitation(mdp, M.policy_table(policy, theta, 4))
    freq = np.stack([np.bincount(batch.observations[h], minlength=4) / 4000 for h in range(5)])
    np.testing.assert_allclose(freq, d, atol=4 * np.sqrt(0.25 / 4000))
    np.testing.assert_allclose(batch.log_probs,
                               policy.log_prob(theta, batch.observations, batch.actions))


def test_truncated_tabular_episodes_keep_the_true_final_state():
    rng = np.random.default_rng(1)
    chain = M.chain_mdp(5, slip=0.0, gamma=0.9)
    env = TabularEnv(chain, num_envs=3, max_episode_steps=3)
    right = TabularSoftmaxPolicy(5, 2)
    theta = np.tile([-50.0, 50.0], 5)                    # always push right
    batch = collect(env, right, theta, 7, rng)
    np.testing.assert_array_equal(batch.truncated[:, 0], [0, 0, 1, 0, 0, 1, 0])
    assert not batch.terminated.any()
    np.testing.assert_array_equal(batch.next_observations[2], [3, 3, 3])   # true final state
    np.testing.assert_array_equal(batch.observations[3], [0, 0, 0])        # reset state
    again = collect(env, right, theta, 2, rng, previous=batch)
    np.testing.assert_array_equal(again.observations[0], batch.resume_observations)
    assert again.truncated[1].all() and again.episode_lengths.tolist() == [3, 3, 3]


def test_collect_is_reproducible_from_a_seed():
    mdp = M.random_mdp(3, 2, np.random.default_rng(0), gamma=0.9)
    policy = TabularSoftmaxPolicy(3, 2)
    theta = np.zeros(policy.n_params)
    a = collect(TabularEnv(mdp, 5), policy, theta, 20, np.random.default_rng(3))
    b = collect(TabularEnv(mdp, 5), policy, theta, 20, np.random.default_rng(3))
    c = collect(TabularEnv(mdp, 5), policy, theta, 20, np.random.default_rng(4))
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(a.actions, c.actions)
    assert isinstance(a, Batch) and a.n_steps == 20 and a.n_envs == 5


def test_tabular_env_errors():
    mdp = M.chain_mdp(3)
    with pytest.raises(ValueError, match="mdp must be a TabularMDP"):
        TabularEnv("chain", 2)
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        TabularEnv(mdp, 0)
    env = TabularEnv(mdp, 2)
    with pytest.raises(ValueError, match=r"call reset\(\) first"):
        env.step([0, 1])
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must have shape \[B\] = \(2,\)"):
        env.step([0, 1, 1])
    with pytest.raises(ValueError, match="actions must be < 2"):
        env.step([0, 2])
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        collect(env, TabularSoftmaxPolicy(3, 2), np.zeros(6), 0, np.random.default_rng())


# ----------------------------------------------------------------------------- budget


def test_budget_levels(monkeypatch):
    monkeypatch.delenv("PGKIT_BUDGET", raising=False)
    assert budget.budget_level() == "default"
    assert budget.choose(default=1, paper=100, quick=0) == 1
    monkeypatch.setenv("PGKIT_BUDGET", "paper")
    assert budget.choose(default=1, paper=100, quick=0) == 100
    monkeypatch.setenv("PGKIT_BUDGET", "quick")
    assert budget.choose(default=1, paper=100, quick=0) == 0
    assert budget.choose(default=1) == 1
    monkeypatch.setenv("PGKIT_BUDGET", "huge")
    with pytest.raises(ValueError, match="PGKIT_BUDGET must be one of quick, default, paper"):
        budget.budget_level()
