"""CartPoleVecEnv against Gymnasium's CartPole-v1, step for step and bit for bit."""

import gymnasium as gym
import numpy as np
import pytest

from pgkit.envs import CartPoleVecEnv


class GymReference:
    """B separate ``gym.make("CartPole-v1")`` seeded seed+i, reset by hand at episode ends."""

    def __init__(self, num_envs, seed, max_episode_steps=500):
        self.envs = [gym.make("CartPole-v1", max_episode_steps=max_episode_steps)
                     for _ in range(num_envs)]
        self.obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(self.envs)])

    def reset(self):
        self.obs = np.stack([env.reset()[0] for env in self.envs])
        return self.obs

    @property
    def state(self):
        """The float64 states, whose last bits the float32 observations may hide."""
        return np.stack([env.unwrapped.state for env in self.envs])

    def step(self, actions):
        obs, final_obs, rewards, terminated, truncated = [], [], [], [], []
        for env, a in zip(self.envs, actions):
            o, r, term, trunc, _ = env.step(int(a))
            final_obs.append(o)
            if term or trunc:
                o, _ = env.reset()
            obs.append(o)
            rewards.append(r)
            terminated.append(term)
            truncated.append(trunc)
        self.obs = np.stack(obs)
        return (self.obs, np.array(rewards), np.array(terminated), np.array(truncated),
                np.stack(final_obs))


def controller(obs):
    """Balances the pole for the full 500 steps."""
    x, x_dot, theta, theta_dot = obs.T
    return (theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0).astype(np.int64)


def run_against_gym(num_envs, seed, n_steps, eps, max_episode_steps=500):
    """Step both with the same actions, asserting equal outputs; returns the flag counts.

    Each action is the controller's or, with probability ``eps``, uniformly random.
    """
    env = CartPoleVecEnv(num_envs, max_episode_steps=max_episode_steps)
    ref = GymReference(num_envs, seed, max_episode_steps)
    obs, info = env.reset(seed=seed)
    assert info == {}
    assert obs.dtype == np.float32 and obs.shape == (num_envs, 4)
    np.testing.assert_array_equal(obs, ref.obs)
    np.testing.assert_array_equal(env.state, ref.state)
    rng = np.random.default_rng(1000 + seed)
    n_terminated = n_truncated = 0
    for _ in range(n_steps):
        actions = np.where(rng.random(num_envs) < eps, rng.integers(0, 2, num_envs), controller(obs))
        obs, rewards, terminated, truncated, info = env.step(actions)
        ref_obs, ref_rewards, ref_terminated, ref_truncated, ref_final = ref.step(actions)
        np.testing.assert_array_equal(obs, ref_obs)
        np.testing.assert_array_equal(info["final_obs"], ref_final)
        np.testing.assert_array_equal(rewards, ref_rewards)
        np.testing.assert_array_equal(terminated, ref_terminated)
        np.testing.assert_array_equal(truncated, ref_truncated)
        np.testing.assert_array_equal(env.state, ref.state)
        assert obs.dtype == info["final_obs"].dtype == np.float32
        assert rewards.dtype == np.float64
        assert terminated.dtype == truncated.dtype == np.bool_
        assert terminated.shape == truncated.shape == rewards.shape == (num_envs,)
        n_terminated += terminated.sum()
        n_truncated += truncated.sum()
    return n_terminated, n_truncated


@pytest.mark.parametrize("num_envs, seed", [(1, 0), (3, 7), (16, 123)])
def test_random_actions_match_gymnasium(num_envs, seed):
    # ~90 episodes per environment: the pre-drawn start states (64 per batch) run out.
    n_terminated, n_truncated = run_against_gym(num_envs, seed, 2000, eps=1.0)
    assert n_terminated >= 80 * num_envs
    assert n_truncated == 0


@pytest.mark.parametrize("num_envs, seed", [(1, 1), (3, 42), (16, 5)])
def test_controller_matches_gymnasium_through_truncations(num_envs, seed):
    # A noisy controller: some episodes last the 500 steps, some fall over.
    n_terminated, n_truncated = run_against_gym(num_envs, seed, 1500, eps=0.4)
    assert n_terminated > 0
    assert n_truncated > 0


def test_pure_controller_is_truncated_every_500_steps():
    env = CartPoleVecEnv(4)
    obs, _ = env.reset(seed=3)
    for t in range(1, 1001):
        obs, rewards, terminated, truncated, info = env.step(controller(obs))
        assert not terminated.any()
        np.testing.assert_array_equal(truncated, t % 500 == 0)
        assert (rewards == 1.0).all()
        if t == 500:
            assert not np.array_equal(obs, info["final_obs"])


def test_short_time_limit_matches_gymnasium():
    n_terminated, n_truncated = run_against_gym(5, 11, 400, eps=0.5, max_episode_steps=30)
    assert n_terminated > 0 and n_truncated > 0


@pytest.mark.parametrize("num_envs", [1, 2])
def test_termination_at_the_time_limit_sets_both_flags(num_envs):
    # Find an episode that terminates at step L, then rerun it with max_episode_steps = L.
    actions = np.random.default_rng(0).integers(0, 2, size=(100, num_envs))
    env = CartPoleVecEnv(num_envs)
    env.reset(seed=9)
    for L, a in enumerate(actions, start=1):
        if env.step(a)[2][0]:
            break
    env = CartPoleVecEnv(num_envs, max_episode_steps=L)
    ref = GymReference(num_envs, 9, max_episode_steps=L)
    env.reset(seed=9)
    for a in actions[:L]:
        obs, rewards, terminated, truncated, info = env.step(a)
        ref_obs, _, ref_terminated, ref_truncated, ref_final = ref.step(a)
        np.testing.assert_array_equal(obs, ref_obs)
        np.testing.assert_array_equal(info["final_obs"], ref_final)
        np.testing.assert_array_equal(terminated, ref_terminated)
        np.testing.assert_array_equal(truncated, ref_truncated)
    assert terminated[0] and truncated[0]


@pytest.mark.parametrize("seed", [0, 1, 2**31 + 5])
def test_seeded_reset_draws_gymnasiums_start_state(seed):
    obs, _ = CartPoleVecEnv(3).reset(seed=seed)
    for i in range(3):
        expected = np.random.default_rng(seed + i).uniform(-0.05, 0.05, size=(4,))
        np.testing.assert_array_equal(obs[i], expected.astype(np.float32))
        np.testing.assert_array_equal(obs[i], gym.make("CartPole-v1").reset(seed=seed + i)[0])


@pytest.mark.parametrize("num_envs", [1, 4])
def test_unseeded_resets_continue_each_stream(num_envs):
    env = CartPoleVecEnv(num_envs)
    ref = GymReference(num_envs, 17)
    env.reset(seed=17)
    for _ in range(70):  # past the 64 pre-drawn start states
        np.testing.assert_array_equal(env.reset()[0], ref.reset())
    for a in np.random.default_rng(0).integers(0, 2, size=(300, num_envs)):
        obs, *_ = env.step(a)
        np.testing.assert_array_equal(obs, ref.step(a)[0])
    np.testing.assert_array_equal(env.reset()[0], ref.reset())
    # Reseeding starts over.
    np.testing.assert_array_equal(env.reset(seed=17)[0], GymReference(num_envs, 17).obs)


def test_first_reset_without_seed_is_random():
    obs_a, _ = CartPoleVecEnv(2).reset()
    obs_b, _ = CartPoleVecEnv(2).reset()
    assert obs_a.shape == (2, 4) and np.all(np.abs(obs_a) <= 0.05)
    assert not np.array_equal(obs_a, obs_b)


@pytest.mark.parametrize("num_envs", [1, 3])
def test_outputs_are_separate_arrays(num_envs):
    env = CartPoleVecEnv(num_envs)
    env.reset(seed=0)
    obs, rewards, terminated, truncated, info = env.step(np.ones(num_envs, dtype=np.int64))
    np.testing.assert_array_equal(obs, info["final_obs"])
    obs[:] = 99.0
    assert not (info["final_obs"] == 99.0).any()
    for flags in (rewards, terminated, truncated):
        assert not flags.flags.writeable


def test_accepts_other_integer_dtypes_and_lists():
    results = []
    for actions in ([1, 0, 1], np.array([1, 0, 1], dtype=np.uint8),
                    np.array([True, False, True]), np.array([1.0, 0.0, 1.0])):
        env = CartPoleVecEnv(3)
        env.reset(seed=4)
        results.append(env.step(actions)[0])
    for obs in results[1:]:
        np.testing.assert_array_equal(obs, results[0])
    env = CartPoleVecEnv(1)
    env.reset(seed=4)
    np.testing.assert_array_equal(env.step([1])[0], results[0][:1])


def test_class_attributes():
    env = CartPoleVecEnv(5)
    assert env.num_envs == 5 and env.n_actions == 2 and env.observation_shape == (4,)
    assert env.max_episode_steps == 500


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("num_envs, match", [
    (0, r"num_envs must be >= 1, got 0"),
    (-2, r"num_envs must be >= 1, got -2"),
    (2.0, r"num_envs must be an integer, got float"),
    (True, r"num_envs must be an integer, got bool"),
    ("4", r"num_envs must be an integer, got str"),
])
def test_bad_num_envs(num_envs, match):
    with pytest.raises(ValueError, match=match):
        CartPoleVecEnv(num_envs)


@pytest.mark.parametrize("steps, match", [
    (0, r"max_episode_steps must be >= 1, got 0"),
    (500.0, r"max_episode_steps must be an integer, got float"),
])
def test_bad_max_episode_steps(steps, match):
    with pytest.raises(ValueError, match=match):
        CartPoleVecEnv(2, max_episode_steps=steps)


@pytest.mark.parametrize("num_envs", [1, 3])
def test_step_before_reset(num_envs):
    with pytest.raises(RuntimeError, match=r"call reset\(\) first"):
        CartPoleVecEnv(num_envs).step(np.zeros(num_envs, dtype=np.int64))


@pytest.mark.parametrize("seed, match", [
    (-1, r"seed must be >= 0, got -1"),
    (1.5, r"seed must be an integer, got float"),
])
def test_bad_seed(seed, match):
    with pytest.raises(ValueError, match=match):
        CartPoleVecEnv(2).reset(seed=seed)


@pytest.mark.parametrize("num_envs, actions, match", [
    (3, [0, 1], r"actions must have shape \[B\] = \(3,\), got \(2,\)"),
    (3, np.zeros((3, 1), dtype=np.int64), r"actions must have shape \[B\] = \(3,\), got \(3, 1\)"),
    (3, 1, r"actions must have shape \[B\] = \(3,\), got \(\)"),
    (1, [0, 1], r"actions must have shape \[B\] = \(1,\), got \(2,\)"),
    (1, 1, r"actions must have shape \[B\] = \(1,\), got \(\)"),
    (1, np.array([[1]]), r"actions must have shape \[B\] = \(1,\), got \(1, 1\)"),
    (3, [0, 2, 1], r"actions must be < 2, got 2"),
    (3, [0, -1, 1], r"actions must be >= 0, got -1"),
    (3, np.array([0, 3, 1], dtype=np.uint8), r"actions must be < 2, got 3"),
    (1, [2], r"actions must be < 2, got 2"),
    (1, np.array([-1]), r"actions must be >= 0, got -1"),
    (3, [0.5, 1.0, 0.0], r"actions must be integers, got non-integer values"),
    (1, np.array([0.5]), r"actions must be integers, got non-integer values"),
    (3, [0, np.nan, 1], r"actions contains NaN"),
    (3, ["a", "b", "c"], r"actions must be integers, got dtype <U1"),
])
def test_bad_actions(num_envs, actions, match):
    env = CartPoleVecEnv(num_envs)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(actions)
