r"""A continuous-action cart-pole with a fixed horizon, vectorised over trajectories.

The cart-pole of Barto, Sutton & Anderson (1983) with Gymnasium's
``CartPole-v1`` dynamics (the same formulas, the same constants, one explicit
Euler step of 0.02 s; see :mod:`pgkit.envs.cartpole`), except that the force
on the cart is the action itself, clipped:

.. math:: F_t = \operatorname{clip}(a_t, -F_{\max}, F_{\max}), \qquad F_{\max} = 10

(Gymnasium's two actions push with exactly :math:`\pm 10`). The policy is
linear Gaussian on the four state variables,
:math:`a_t = K s_t + \sigma \varepsilon_t`, K ``[1, 4]``; its density is that of
the unclipped action (the clipping belongs to the environment).

Every step taken from a live state earns +1, including the step that fails,
as in Gymnasium. A trajectory fails when :math:`|x| > 2.4` or the pole is more
than 12 degrees from upright; from then on it is *absorbed*: the state stays,
no action is taken (``alive`` is False, actions, rewards, log-probabilities and
scores are 0). Every trajectory therefore has the same length, the horizon
(100 by default), and its return is :math:`\sum_{t < \text{failure}} \gamma^t`
with :math:`\gamma = 0.99` by default: a fixed-length array with an ``alive``
mask, which is all trajectory-level importance sampling needs. Start states
are uniform on :math:`[-0.05, 0.05]^4`.

This is the setting the notes on Papini et al., arXiv:2405.05630, find most
likely for the paper's cart-pole (the paper's own constants could not be
consulted): the maximum force, the reward on the failing step and the
horizon are choices stated here.
"""

from __future__ import annotations

import numpy as np

from pgkit import _checks
from pgkit.envs.cartpole import TAU, THETA_THRESHOLD, X_THRESHOLD, _accelerations
from pgkit.envs.lq import Trajectories, _check_rollout_args, _rollout

__all__ = ["ContinuousCartPole"]

RESET_LOW, RESET_HIGH = -0.05, 0.05


class ContinuousCartPole:
    """The continuous-action cart-pole; see the module docstring.

    Parameters
    ----------
    horizon : int >= 1
        Steps of every trajectory (absorbed ones included). Default 100.
    gamma : float in [0, 1]
        Discount. Default 0.99.
    max_force : float > 0
        :math:`F_{\\max}`, the largest force the cart takes. Default 10.
    """

    state_dim = 4
    action_dim = 1

    def __init__(self, horizon: int = 100, gamma: float = 0.99,
                 max_force: float = 10.0):
        self.horizon = _checks.check_positive_int(horizon, "horizon")
        self.gamma = _checks.check_discount(gamma)
        max_force = _checks.check_nonnegative(max_force, "max_force")
        if not 0 < max_force < np.inf:
            raise ValueError(f"max_force must be positive and finite, got {max_force}")
        self.max_force = max_force

    def __repr__(self) -> str:
        return (f"ContinuousCartPole(horizon={self.horizon}, gamma={self.gamma}, "
                f"max_force={self.max_force})")

    @property
    def n_params(self) -> int:
        """P = 4, the number of entries of a gain [1, 4]."""
        return self.state_dim * self.action_dim

    def _initial_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(RESET_LOW, RESET_HIGH, size=(n, 4))

    def _step(self, states, actions):
        x, x_dot, theta, theta_dot = states.T
        force = np.clip(actions[:, 0], -self.max_force, self.max_force)
        # [book:continuous-cartpole-step]
        x_acc, theta_acc = _accelerations(theta_dot, force,             # Gymnasium's
                                          np.cos(theta), np.sin(theta))
        next_states = np.stack((x + TAU * x_dot, x_dot + TAU * x_acc,   # Euler step
                                theta + TAU * theta_dot, theta_dot + TAU * theta_acc),
                               axis=1)
        failed = (np.abs(next_states[:, 0]) > X_THRESHOLD) | \
            (np.abs(next_states[:, 2]) > THETA_THRESHOLD)
        # [/book:continuous-cartpole-step]
        return next_states, np.ones(states.shape[0]), failed

    def step(self, states, actions):
        """One transition of B live states.

        Parameters
        ----------
        states : array [B, 4]
            ``(x, x_dot, theta, theta_dot)``.
        actions : array [B, 1]
            The force before clipping.

        Returns
        -------
        (next_states [B, 4], rewards [B] (all 1), failed [B] bool)
        """
        states = _checks.as_float_array(states, "states", ndim=2, shape_doc="[B, 4]")
        actions = _checks.as_float_array(actions, "actions", ndim=2, shape_doc="[B, 1]")
        if states.shape[1] != 4:
            raise ValueError(f"states must have shape [B, 4], "
                             f"got {_checks._shape_str(states.shape)}")
        if actions.shape != (states.shape[0], 1):
            raise ValueError(f"actions must have shape [B, 1] = "
                             f"({states.shape[0]}, 1), "
                             f"got {_checks._shape_str(actions.shape)}")
        return self._step(states, actions)

    def rollout(self, gain, std, n_trajectories: int,
                rng: np.random.Generator) -> Trajectories:
        r"""Draw trajectories of ``horizon`` steps, :math:`a = K s + \sigma \varepsilon`.

        Parameters
        ----------
        gain : array [1, 4], or [n_trajectories, 1, 4] (one gain per trajectory)
        std : float > 0, array [1], or [n_trajectories, 1]
        n_trajectories : int >= 1
        rng : np.random.Generator

        Returns
        -------
        Trajectories, with ``alive`` False after each trajectory's failure.
        """
        gain, stds, n, rng = _check_rollout_args(self, gain, std, n_trajectories, rng)
        return _rollout(self, gain, stds, n, rng)
