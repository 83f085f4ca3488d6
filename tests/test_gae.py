"""Generalised advantage estimation against its definition, episode by episode."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgkit.returns import gae, reward_to_go


def slow_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Per column: split into episodes; A_t = sum_k (gamma lam)^k delta_{t+k} inside the episode."""
    T, B = rewards.shape
    adv = np.zeros((T, B))
    for b in range(B):
        start = 0
        for t in range(T):
            if terminated[t, b] or truncated[t, b] or t == T - 1:
                seg = range(start, t + 1)                    # one episode (or its part in the batch)
                delta = {u: rewards[u, b] + gamma * (0.0 if terminated[u, b] else next_values[u, b])
                         - values[u, b] for u in seg}
                for u in seg:
                    adv[u, b] = sum((gamma * lam) ** (k - u) * delta[k] for k in range(u, t + 1))
                start = t + 1
    return adv


def random_batch(rng, T, B, p_end=0.2, consistent=False):
    rewards = rng.normal(size=(T, B))
    values = rng.normal(size=(T, B))
    next_values = rng.normal(size=(T, B))
    terminated = rng.random((T, B)) < p_end
    truncated = (rng.random((T, B)) < p_end) & ~terminated
    if consistent:      # next_values[t] = values[t+1] inside an episode, as in a real batch
        inside = ~(terminated | truncated)[:-1]
        next_values[:-1] = np.where(inside, values[1:], next_values[:-1])
    return rewards, values, next_values, terminated, truncated


@settings(max_examples=80, deadline=None)
@given(T=st.integers(1, 10), B=st.integers(1, 4), gamma=st.sampled_from([0.0, 0.5, 0.99, 1.0]),
       lam=st.sampled_from([0.0, 0.3, 0.95, 1.0]), seed=st.integers(0, 10_000))
def test_gae_matches_per_episode_definition(T, B, gamma, lam, seed):
    batch = random_batch(np.random.default_rng(seed), T, B)
    np.testing.assert_allclose(gae(*batch, gamma, lam), slow_gae(*batch, gamma, lam), atol=1e-12)


@pytest.mark.parametrize("T, B", [(1, 1), (1, 5), (7, 1), (20, 3), (64, 8)])
def test_gae_several_shapes(T, B):
    batch = random_batch(np.random.default_rng(T * 100 + B), T, B)
    out = gae(*batch, 0.99, 0.95)
    assert out.shape == (T, B)
    np.testing.assert_allclose(out, slow_gae(*batch, 0.99, 0.95), atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.9, 1.0])
def test_lambda_one_is_bootstrapped_return_minus_value(gamma):
    rewards, values, next_values, terminated, truncated = random_batch(
        np.random.default_rng(1), 30, 4, consistent=True)
    adv = gae(rewards, values, next_values, terminated, truncated, gamma, 1.0)
    returns = reward_to_go(rewards, terminated, truncated, gamma, next_values)
    np.testing.assert_allclose(adv, returns - values, atol=1e-12)


def test_lambda_zero_is_the_td_error():
    rewards, values, next_values, terminated, truncated = random_batch(np.random.default_rng(2), 12, 3)
    td = rewards + 0.9 * np.where(terminated, 0.0, next_values) - values
    np.testing.assert_allclose(gae(rewards, values, next_values, terminated, truncated, 0.9, 0.0), td)


def test_termination_and_truncation_differ_by_the_bootstrap_term():
    gamma, lam, t_end = 0.9, 0.8, 5
    rewards, values, next_values, _, _ = random_batch(np.random.default_rng(3), 9, 1)
    ended = np.zeros((9, 1), bool)
    ended[t_end] = True
    as_truncated = gae(rewards, values, next_values, np.zeros_like(ended), ended, gamma, lam)
    as_terminated = gae(rewards, values, next_values, ended, np.zeros_like(ended), gamma, lam)
    expected = np.zeros((9, 1))
    for u in range(t_end + 1):                         # the steps of the episode that ended
        expected[u] = (gamma * lam) ** (t_end - u) * gamma * next_values[t_end]
    np.testing.assert_allclose(as_truncated - as_terminated, expected, atol=1e-12)


def test_recursion_stops_at_episode_ends_and_at_the_batch_end():
    rewards = np.array([[1.0], [2.0], [3.0]])
    values = np.zeros((3, 1))
    next_values = np.full((3, 1), 10.0)
    none = np.zeros((3, 1), bool)
    trunc = np.array([[False], [True], [False]])
    adv = gae(rewards, values, next_values, none, trunc, 0.5, 1.0)
    # step 2 is the batch end: bootstrap through next_values, carry nothing
    np.testing.assert_allclose(adv[2], 3 + 0.5 * 10)
    # step 1 truncated: its own bootstrap, nothing from step 2
    np.testing.assert_allclose(adv[1], 2 + 0.5 * 10)
    # step 0: delta_0 = 1 + 0.5 * 10, plus 0.5 * A_1
    np.testing.assert_allclose(adv[0], 1 + 0.5 * 10 + 0.5 * (2 + 0.5 * 10))


def test_gae_accepts_zero_one_flags_and_does_not_change_its_inputs():
    batch = random_batch(np.random.default_rng(4), 6, 2)
    copies = [x.copy() for x in batch]
    ints = batch[:3] + (batch[3].astype(int), batch[4].astype(float))
    np.testing.assert_array_equal(gae(*ints, 0.9, 0.9), gae(*batch, 0.9, 0.9))
    for x, c in zip(batch, copies):
        np.testing.assert_array_equal(x, c)


@pytest.mark.parametrize("bad, message", [
    (dict(rewards=np.zeros(5)), r"rewards must have shape \[T, B\], got \(5,\)"),
    (dict(values=np.zeros((3, 1))), r"values must have shape \[T, B\] = \(3, 2\), got \(3, 1\)"),
    (dict(next_values=np.zeros((2, 2))), r"next_values must have shape \[T, B\] = \(3, 2\)"),
    (dict(terminated=np.zeros((2, 2), bool)), r"terminated must have shape \[T, B\] = \(3, 2\)"),
    (dict(truncated=np.full((3, 2), 2)), r"truncated must be booleans"),
    (dict(gamma=1.5), r"gamma must be in \[0, 1\]"),
    (dict(lam=-0.1), r"lam must be in \[0, 1\]"),
    (dict(lam="0.9"), r"lam must be a number"),
    (dict(rewards=np.full((3, 2), np.nan)), r"rewards contains NaN"),
    (dict(values=np.full((3, 2), np.inf)), r"values must be finite"),
    (dict(next_values=np.full((3, 2), -np.inf)), r"next_values must be finite"),
])
def test_gae_rejects_bad_input(bad, message):
    kwargs = dict(rewards=np.zeros((3, 2)), values=np.zeros((3, 2)), next_values=np.zeros((3, 2)),
                  terminated=np.zeros((3, 2), bool), truncated=np.zeros((3, 2), bool),
                  gamma=0.9, lam=0.95)
    kwargs.update(bad)
    with pytest.raises(ValueError, match=message):
        gae(**kwargs)
