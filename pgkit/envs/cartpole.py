"""CartPole-v1 in numpy, vectorised over ``B`` environments.

The dynamics are Gymnasium's ``CartPole-v1`` (Barto, Sutton & Anderson,
1983) to the last bit.  The state is ``(x, x_dot, theta, theta_dot)``: cart
position and velocity, pole angle from upright and its angular velocity.
Action 1 pushes the cart right with force ``F = +10``, action 0 left with
``F = -10``.  With ``g = 9.8``, cart mass 1.0, pole mass ``m = 0.1``, total
mass ``M = 1.1``, pole half-length ``l = 0.5`` and ``tau = 0.02``::

    temp      = (F + m l theta_dot^2 sin(theta)) / M
    theta_acc = (g sin(theta) - cos(theta) temp) / (l (4/3 - m cos(theta)^2 / M))
    x_acc     = temp - m l theta_acc cos(theta) / M

followed by one explicit Euler step of length ``tau`` for all four variables
(positions move with the *old* velocities).  The episode terminates when
``|x| > 2.4`` or ``|theta| > 12`` degrees; every step, the terminating one
included, is rewarded 1.0; the ``max_episode_steps``-th step of an episode
(500 for CartPole-v1) is truncated.  Episodes start from a state drawn
uniformly from ``[-0.05, 0.05)^4``.

Environment ``i`` behaves exactly like ``gym.make("CartPole-v1")`` reset with
seed ``seed + i``, and reset without a seed whenever its episode ends.  Equal
floating-point results need every operation done in Gymnasium's order, so
the formulas in ``_accelerations`` must not be "simplified" (folding
``m l / M`` into one constant, say, changes the last bits).
"""

from __future__ import annotations

import math

import numpy as np

from pgkit._checks import _shape_str, as_int_array, check_positive_int

__all__ = ["CartPoleVecEnv"]

GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360  # 12 degrees, computed as Gymnasium does
RESET_LOW, RESET_HIGH = -0.05, 0.05

_FORCES = np.array([-FORCE_MAG, FORCE_MAG])  # indexed by the action
_THRESHOLDS = np.array([[X_THRESHOLD], [THETA_THRESHOLD]])
_BUFFER = 64  # start states drawn at a time per environment (2 KiB each)


def _accelerations(theta_dot, force, cos, sin):
    """``(x_acc, theta_acc)``, elementwise on Python floats or numpy arrays.

    The body is arithmetic only, in Gymnasium's order of operations, so it
    gives the same bits on floats (with ``math.cos``/``math.sin``) as on
    arrays.  ``theta_dot * theta_dot`` is exactly ``np.square(theta_dot)``.
    """
    temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (
        LENGTH * (4.0 / 3.0 - MASSPOLE * (cos * cos) / TOTAL_MASS))
    x_acc = temp - POLEMASS_LENGTH * theta_acc * cos / TOTAL_MASS
    return x_acc, theta_acc


def _start_states(rng: np.random.Generator):
    """Endless start states (lists of 4 floats) of one environment."""
    while True:
        yield from rng.uniform(RESET_LOW, RESET_HIGH, size=(_BUFFER, 4)).tolist()


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _check_actions(actions, B: int) -> np.ndarray:
    a = np.asarray(actions)
    # Fast test for signed integers in {0, 1} (x & -2 keeps all bits but the
    # lowest); anything else gets the full check and its error message.
    if a.dtype.kind != "i" or np.count_nonzero(a & -2):
        a = as_int_array(a, "actions", low=0, high=2)
    if a.shape != (B,):
        raise ValueError(f"actions must have shape [B] = {_shape_str((B,))}, "
                         f"got {_shape_str(a.shape)}")
    return a


class CartPoleVecEnv:
    """``num_envs`` independent CartPole-v1 environments, stepped together.

    ``reset(seed)`` returns observations ``[B, 4]`` (float32) and ``{}``;
    environment ``i`` is seeded with ``seed + i``, as in Gymnasium's vector
    environments.  ``step(actions)`` takes actions ``[B]`` in ``{0, 1}`` and
    returns ``(obs, rewards, terminated, truncated, info)``: ``obs [B, 4]``
    float32, ``rewards [B]`` float64 (all 1.0), ``terminated [B]`` and
    ``truncated [B]`` bool.  Rewards and flags are read-only arrays (copy
    them to modify them in place); observations may be in Fortran order, as
    Gymnasium's are.

    Episode ends, same-step autoreset: an environment whose episode ends at a
    step (``terminated | truncated``) is reset within that step, so its row of
    ``obs`` is the *first* observation of its next episode.  The observation
    the step actually reached is ``info["final_obs"] [B, 4]``, equal to
    ``obs`` in the rows whose episode did not end; bootstrap from it after a
    truncation.  A step that terminates at the time limit has both flags True.

    The state is float64, held as Python floats when ``B == 1`` (much faster
    for one environment, and the same numbers).
    """

    n_actions = 2
    observation_shape = (4,)

    def __init__(self, num_envs: int, max_episode_steps: int = 500):
        self.num_envs = check_positive_int(num_envs, "num_envs")
        self.max_episode_steps = check_positive_int(max_episode_steps, "max_episode_steps")
        self._rngs: list[np.random.Generator] | None = None
        self._state = None  # [4, B] float64, or a list of 4 floats when B == 1
        self._steps = np.zeros(self.num_envs, dtype=np.int64)  # steps into each episode
        self._rewards = _readonly(np.ones(self.num_envs))
        self._flags = (_readonly(np.zeros(1, bool)), _readonly(np.ones(1, bool)))  # B == 1

    @property
    def state(self) -> np.ndarray:
        """A copy of the current float64 state ``[B, 4]`` (observations are it in float32)."""
        if self._state is None:
            raise RuntimeError("the environments have no state yet: call reset() first")
        return np.array([self._state]) if self.num_envs == 1 else self._state.T.copy()

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        """Start a new episode in every environment; returns ``(obs [B, 4], {})``.

        With ``seed``, environment ``i``'s generator is re-created from
        ``seed + i``; without, every generator continues its stream (the very
        first reset picks a random seed).
        """
        B = self.num_envs
        if seed is not None or self._rngs is None:
            if seed is None:
                seed = int(np.random.SeedSequence().generate_state(1)[0])
            seed = check_positive_int(seed, "seed", minimum=0)
            self._rngs = [np.random.default_rng(seed + i) for i in range(B)]
            # Drawing [K, 4] consumes a generator's stream exactly as K draws
            # of [4] do, so start states can be drawn K at a time.  For B > 1
            # they wait in a buffer, which makes resets a vectorised gather.
            if B == 1:
                self._starts = _start_states(self._rngs[0])
            else:
                self._buffer = np.stack([r.uniform(RESET_LOW, RESET_HIGH, size=(_BUFFER, 4))
                                         for r in self._rngs])  # [B, K, 4]
                self._next = np.zeros(B, dtype=np.int64)  # next unused row of each buffer
        self._steps[:] = 0
        if B == 1:
            self._state = next(self._starts)
            self._steps1 = 0  # steps into the episode, as a Python int
            return np.array([self._state], dtype=np.float32), {}
        self._state = np.ascontiguousarray(self._draw_starts(np.arange(B)).T)
        return self._state.T.astype(np.float32), {}

    def _draw_starts(self, envs: np.ndarray) -> np.ndarray:
        """Next start state ``[len(envs), 4]`` of each environment in ``envs``."""
        rows = self._next[envs]
        starts = self._buffer[envs, rows]
        self._next[envs] = rows + 1
        for i in envs[rows + 1 == _BUFFER]:  # buffers just used up: refill
            self._buffer[i] = self._rngs[i].uniform(RESET_LOW, RESET_HIGH, size=(_BUFFER, 4))
            self._next[i] = 0
        return starts

    def step(self, actions):
        """Advance every environment one step; see the class docstring."""
        if self._state is None:
            raise RuntimeError("step() called before reset(): call reset() first")
        if self.num_envs == 1:
            return self._step_one(actions)
        actions = _check_actions(actions, self.num_envs)
        state = self._state  # [4, B]: rows x, x_dot, theta, theta_dot
        theta = state[2]
        x_acc, theta_acc = _accelerations(state[3], _FORCES[actions], np.cos(theta), np.sin(theta))
        # Euler: every variable moves along its derivative at the start of the step.
        state += TAU * np.stack((state[1], x_acc, state[3], theta_acc))
        out = np.abs(state[::2]) > _THRESHOLDS  # [2, B]: |x|, |theta| beyond their limits
        terminated = out[0] | out[1]
        self._steps += 1
        truncated = self._steps >= self.max_episode_steps
        # [B, 4] in Fortran order, as in Gymnasium: a C-order copy would cost more.
        final_obs = state.T.astype(np.float32)
        obs = final_obs.copy(order="K")
        ended = np.flatnonzero(terminated | truncated)
        if ended.size:
            starts = self._draw_starts(ended)
            state[:, ended] = starts.T
            obs[ended] = starts
            self._steps[ended] = 0
        return (obs, self._rewards, _readonly(terminated), _readonly(truncated),
                {"final_obs": final_obs})

    def _step_one(self, actions):
        # B == 1: the same computation on Python floats, as numpy's overhead per
        # call would dominate.  math.cos/sin give the bits Gymnasium's np.cos/
        # np.sin give (the tests compare with Gymnasium).
        a = actions.item() if type(actions) is np.ndarray and actions.shape == (1,) else None
        if type(a) is not int or not 0 <= a <= 1:  # not an integer array: full check
            a = _check_actions(actions, 1).item()
        x, x_dot, theta, theta_dot = self._state
        x_acc, theta_acc = _accelerations(theta_dot, FORCE_MAG if a else -FORCE_MAG,
                                          math.cos(theta), math.sin(theta))
        self._state = state = (x + TAU * x_dot, x_dot + TAU * x_acc,
                               theta + TAU * theta_dot, theta_dot + TAU * theta_acc)
        terminated = abs(state[0]) > X_THRESHOLD or abs(state[2]) > THETA_THRESHOLD
        self._steps1 += 1
        truncated = self._steps1 >= self.max_episode_steps
        final_obs = np.array(state, np.float32, ndmin=2)
        if terminated or truncated:
            self._state = next(self._starts)
            self._steps1 = 0
            obs = np.array(self._state, np.float32, ndmin=2)
        else:
            obs = final_obs.copy()
        return (obs, self._rewards, self._flags[terminated], self._flags[truncated],
                {"final_obs": final_obs})
