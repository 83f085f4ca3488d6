"""The continuous cart-pole: Gymnasium's dynamics with a clipped force, absorption
after a failure, and the linear Gaussian rollout."""

import gymnasium as gym
import numpy as np
import pytest

from pgkit.envs import ContinuousCartPole, linear_gaussian_log_probs, linear_gaussian_scores

ENV = ContinuousCartPole()


def gym_step(state, force):
    """One step of Gymnasium's CartPole-v1 from ``state`` pushed with ``force``."""
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    env.state = np.array(state, dtype=np.float64)
    env.force_mag = abs(float(force))
    _, reward, terminated, _, _ = env.step(1 if force > 0 else 0)
    return np.array(env.state, dtype=np.float64), reward, terminated


def test_step_is_gymnasiums_with_a_continuous_force():
    """Gymnasium pushes with +-force_mag: set force_mag = |F| and push towards F."""
    rng = np.random.default_rng(0)
    states = rng.uniform(-0.2, 0.2, size=(64, 4)) * [10, 5, 1, 5]
    forces = rng.normal(scale=8.0, size=64)
    nxt, rewards, failed = ENV.step(states, forces[:, None])
    assert nxt.shape == (64, 4) and rewards.shape == failed.shape == (64,)
    for i in range(64):
        ref_state, ref_reward, ref_terminated = gym_step(states[i], np.clip(forces[i], -10, 10))
        np.testing.assert_array_equal(nxt[i], ref_state)       # bit for bit
        assert rewards[i] == ref_reward == 1.0
        assert failed[i] == ref_terminated
    assert failed.any() and not failed.all()          # both cases were exercised


def test_force_is_clipped():
    states = np.zeros((3, 4))
    a = ENV.step(states, [[10.0], [50.0], [-1e6]])[0]
    b = ENV.step(states, [[10.0], [10.0], [-10.0]])[0]
    np.testing.assert_array_equal(a, b)
    narrow = ContinuousCartPole(max_force=2.0)
    np.testing.assert_array_equal(narrow.step(states, [[5.0]] * 3)[0],
                                  narrow.step(states, [[2.0]] * 3)[0])


def test_failure_thresholds():
    # just inside, and just beyond, 2.4 and 12 degrees after one step with no velocity
    limit = 12 * 2 * np.pi / 360
    states = np.array([[2.39, 0, 0, 0], [2.41, 0, 0, 0], [0, 0, limit * 0.99, 0],
                       [0, 0, limit * 1.01, 0]])
    _, _, failed = ENV.step(states, np.zeros((4, 1)))
    np.testing.assert_array_equal(failed, [False, True, False, True])


def test_rollout_absorbs_after_failure():
    tr = ENV.rollout([[0.0, 0.0, 0.0, 0.0]], 5.0, 200, np.random.default_rng(1))
    T = ENV.horizon
    assert tr.states.shape == (T, 200, 4) and tr.actions.shape == (T, 200, 1)
    lengths = tr.alive.sum(axis=0)
    assert (lengths < T).any() and (lengths > 1).all()
    for b in range(200):
        n = lengths[b]
        assert tr.alive[:n, b].all() and not tr.alive[n:, b].any()     # one failure at most
        assert np.all(tr.rewards[:n, b] == 1.0) and np.all(tr.rewards[n:, b] == 0.0)
        assert np.all(tr.actions[n:, b] == 0.0) and np.all(tr.log_probs[n:, b] == 0.0)
        assert np.all(tr.scores[n:, b] == 0.0)
        if n < T:                                      # the state stays where it failed
            np.testing.assert_array_equal(tr.states[n:, b], np.broadcast_to(
                tr.states[n, b], (T - n, 4)))
            fell = (np.abs(tr.states[n, b, 0]) > 2.4) | (np.abs(tr.states[n, b, 2]) > 0.2094)
            assert fell
    g = ENV.gamma
    np.testing.assert_allclose(tr.discounted_returns(g), (1 - g ** lengths) / (1 - g))


def test_rollout_follows_the_dynamics_and_the_policy():
    K = np.array([[0.5, 1.0, 15.0, 2.0]])
    tr = ENV.rollout(K, 0.5, 20, np.random.default_rng(2))
    alive = tr.alive
    for t in range(ENV.horizon - 1):
        nxt, _, _ = ENV.step(tr.states[t], tr.actions[t])
        live = alive[t]
        np.testing.assert_array_equal(tr.states[t + 1][live], nxt[live])
    np.testing.assert_allclose(tr.log_probs, linear_gaussian_log_probs(K, 0.5, tr))
    np.testing.assert_allclose(tr.scores, linear_gaussian_scores(K, 0.5, tr))
    assert tr.alive.sum(axis=0).mean() > 90          # a good gain balances the pole


def test_start_states_and_reproducibility():
    a = ENV.rollout(np.zeros((1, 4)), 1.0, 500, np.random.default_rng(3))
    b = ENV.rollout(np.zeros((1, 4)), 1.0, 500, np.random.default_rng(3))
    np.testing.assert_array_equal(a.states, b.states)
    assert np.all(np.abs(a.states[0]) <= 0.05)


@pytest.mark.parametrize("call, message", [
    (lambda: ContinuousCartPole(horizon=0), "horizon must be >= 1"),
    (lambda: ContinuousCartPole(gamma=2.0), "gamma must be in"),
    (lambda: ContinuousCartPole(max_force=0.0), "max_force must be positive"),
    (lambda: ENV.step(np.zeros((2, 3)), np.zeros((2, 1))), r"states must have shape \[B, 4\]"),
    (lambda: ENV.step(np.zeros((2, 4)), np.zeros((3, 1))), r"actions must have shape \[B, 1\]"),
    (lambda: ENV.rollout(np.zeros((1, 3)), 1.0, 5, np.random.default_rng(0)), "gain must"),
    (lambda: ENV.rollout(np.zeros((1, 4)), -1.0, 5, np.random.default_rng(0)), "std must"),
])
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()
