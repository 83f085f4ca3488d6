r"""The linear-quadratic problem, a linear Gaussian policy, exact return and gradient.

State :math:`s \in \mathbb R^n`, action :math:`a \in \mathbb R^m`, deterministic
linear dynamics and a quadratic cost, for a finite horizon H with discount
:math:`\gamma`:

.. math::

    s_0 \sim \mathcal U[-1, 1]^n, \qquad
    s_{t+1} = A s_t + B a_t, \qquad
    r_t = -(s_t^\top Q s_t + a_t^\top R a_t), \qquad
    J = \mathbb E\Big[\sum_{t=0}^{H-1} \gamma^t r_t\Big].

The reward of step t is computed from the state *before* the transition and
the action taken in it. The policy is linear Gaussian,

.. math:: a_t = K s_t + D \varepsilon_t, \qquad \varepsilon_t \sim \mathcal N(0, I_m),
    \qquad D = \operatorname{diag}(\sigma_1, \dots, \sigma_m),

with gain K ``[m, n]`` and standard deviation ``std``: one number (the same
:math:`\sigma` for every action dimension) or one per action dimension ``[m]``.
Nothing is clipped: neither states nor actions.

**Exact return and gradient.**
Every state has mean zero (the start state has, and the map is linear with
zero-mean noise), so its second moment :math:`\Sigma_t = \mathbb E[s_t s_t^\top]`
is its covariance, and with :math:`L = A + BK`

.. math::

    \Sigma_0 = \tfrac13 I, \qquad
    \Sigma_{t+1} = L \Sigma_t L^\top + B D^2 B^\top, \qquad
    J = -\sum_{t=0}^{H-1} \gamma^t \big[\operatorname{tr}\big((Q + K^\top R K)
    \Sigma_t\big) + \operatorname{tr}(R D^2)\big].

The cost-to-go matrices of the policy, :math:`P_H = 0`,
:math:`P_t = Q + K^\top R K + \gamma L^\top P_{t+1} L` (a Lyapunov recursion
backwards in time), give the gradient by the adjoint method. With
:math:`F_t = R + \gamma B^\top P_{t+1} B` and :math:`E_t = \gamma B^\top P_{t+1} A`,

.. math::

    \nabla_K J = -2 \sum_{t=0}^{H-1} \gamma^t (F_t K + E_t)\, \Sigma_t, \qquad
    \frac{\partial J}{\partial \sigma_i}
    = -2 \sigma_i \sum_{t=0}^{H-1} \gamma^t (F_t)_{ii},

and also :math:`J = -\operatorname{tr}(P_0 \Sigma_0)
- \sum_t \gamma^t \operatorname{tr}(F_t D^2)`.
Derivation: perturbing K changes the step-t cost directly
(:math:`\partial_K \operatorname{tr}(K^\top R K \Sigma_t) = 2 R K \Sigma_t`)
and the next second moment through L; the latter's effect on all later costs is
:math:`\gamma^{t+1} \operatorname{tr}(P_{t+1}\, d\Sigma_{t+1})` with
:math:`d\Sigma_{t+1} = dL\, \Sigma_t L^\top + L \Sigma_t\, dL^\top`,
whose gradient is :math:`2 \gamma B^\top P_{t+1} L \Sigma_t`. The noise enters
each step's action cost and, through :math:`B D^2 B^\top`, every later state.

A gain may also be time-varying, ``[H, m, n]`` (one :math:`K_t` per step); the
formulas hold with :math:`K_t` in step t, and the gradient is then per step.

**The optimal gain.**
The best policy for this finite-horizon discounted problem is linear with a
*time-varying* gain (:meth:`LinearQuadratic.time_varying_gains`, the backward
Riccati recursion; the noise does not change it, it only costs) and
deterministic (the noise only costs, so the best std is 0). The learning
problem of the book fixes the std and learns one *stationary* gain; its
optimum, :meth:`LinearQuadratic.optimal_gain`, maximises
:meth:`LinearQuadratic.exact_return`
over K for the given std, and it does depend on the std and on the start
distribution. :meth:`LinearQuadratic.riccati_gain` is the infinite-horizon
discounted Riccati gain, which the time-varying gains approach far from the
horizon; it is where :meth:`LinearQuadratic.optimal_gain` starts its search.

The policy-gradient view of the LQ problem: Fazel, Ge, Kakade & Mesbahi,
"Global convergence of policy gradient methods for the linear quadratic
regulator", arXiv:1801.05039 (infinite horizon). The scalar instance
A = B = Q = R = 1, H = 10, :math:`\gamma = 0.9` is the likely setting of Papini,
Manganini, Metelli & Restelli, "Policy gradient with active importance
sampling", arXiv:2405.05630.

**Trajectories.**
:meth:`LinearQuadratic.rollout` returns :class:`Trajectories`, time-major
``[T, B, ...]``, with the log-probabilities and scores of the policy that drew
them; :func:`linear_gaussian_log_probs` and :func:`linear_gaussian_scores`
evaluate any other linear Gaussian policy on the same trajectories (for
importance weights). The continuous cart-pole of
:mod:`pgkit.envs.continuous_cartpole` uses the same policy and the same
:class:`Trajectories`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from pgkit import _checks

__all__ = ["LinearQuadratic", "Trajectories", "linear_gaussian_log_probs",
           "linear_gaussian_scores"]

_LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------ trajectories

@dataclass(frozen=True)
class Trajectories:
    """B trajectories of H steps, time-major, drawn by linear Gaussian policies.

    - ``states`` [T, B, n]: :math:`s_t`, the state in which step t's action is taken.
    - ``actions`` [T, B, m]: :math:`a_t` (0 at steps after a failure).
    - ``rewards`` [T, B]: :math:`r_t` (0 at steps after a failure).
    - ``alive`` [T, B] bool: whether step t is taken (False after a failure:
      the trajectory is absorbed; always True for the LQ problem).
    - ``log_probs`` [T, B]: :math:`\\log \\pi(a_t \\mid s_t)` of the policy that drew
      each trajectory, 0 where not ``alive``.
    - ``scores`` [T, B, m * n]: :math:`\\nabla_K \\log \\pi(a_t \\mid s_t)` of that
      policy, laid out as ``K.ravel()``, 0 where not ``alive``.
    - ``final_states`` [B, n]: the state after the last step (or where the
      trajectory was absorbed).
    """

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    alive: np.ndarray
    log_probs: np.ndarray
    scores: np.ndarray
    final_states: np.ndarray

    @property
    def n_trajectories(self) -> int:
        """B, the number of trajectories."""
        return self.rewards.shape[1]

    @property
    def horizon(self) -> int:
        """T, the number of steps."""
        return self.rewards.shape[0]

    def discounted_returns(self, gamma: float) -> np.ndarray:
        r""":math:`\sum_t \gamma^t r_t` of each trajectory, shape [B]."""
        gamma = _checks.check_discount(gamma)
        return _discounts(gamma, self.horizon) @ self.rewards


def _discounts(gamma: float, horizon: int) -> np.ndarray:
    """gamma^t for t = 0..horizon-1 (with 0^0 = 1)."""
    return gamma ** np.arange(horizon, dtype=np.float64)


# ------------------------------------------------------------------ the policy

def _check_std(std, action_dim: int, *, allow_zero: bool = False, per_trajectory=None):
    """``std`` as an array [m] (or [B, m] when per_trajectory = B); a scalar repeats.

    Returns ``(stds, is_scalar)``.
    """
    doc = "a number or [action_dim]" + (" or [B, action_dim]" if per_trajectory else "")
    arr = _checks.as_float_array(std, "std")
    scalar = arr.ndim == 0
    if scalar:
        arr = np.full(action_dim, float(arr))
    elif arr.shape == (action_dim,):
        pass
    elif per_trajectory and arr.shape == (per_trajectory, action_dim):
        pass
    else:
        raise ValueError(f"std must be {doc} = ({action_dim},), "
                         f"got {_checks._shape_str(arr.shape)}")
    zero = not allow_zero and (arr == 0).any()
    if not np.isfinite(arr).all() or (arr < 0).any() or zero:
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"std must be {bound} and finite, got {arr.min()}")
    return arr, scalar


def _check_gain(gain, action_dim: int, state_dim: int, *, extra=None, extra_doc=""):
    """``gain`` as [m, n], or [extra, m, n] when ``extra`` (a length) is given."""
    arr = _checks.as_float_array(gain, "gain")
    shape = (action_dim, state_dim)
    if arr.shape == shape or (extra is not None and arr.shape == (extra,) + shape):
        if not np.isfinite(arr).all():
            raise ValueError("gain must be finite, got an infinite value")
        return arr
    more = f" or [{extra_doc}, action_dim, state_dim]" if extra is not None else ""
    raise ValueError(f"gain must have shape [action_dim, state_dim] = "
                     f"{_checks._shape_str(shape)}{more}, "
                     f"got {_checks._shape_str(arr.shape)}")


def _check_trajectories(trajectories) -> Trajectories:
    if not isinstance(trajectories, Trajectories):
        raise ValueError("trajectories must be a pgkit.envs.Trajectories (from an "
                         f"environment's rollout), got {type(trajectories).__name__}")
    return trajectories


def _means(gain: np.ndarray, states: np.ndarray) -> np.ndarray:
    """K s for gains [m, n] or [B, m, n] and states [..., B, n]: [..., B, m]."""
    return (gain @ states[..., None])[..., 0]


def _log_probs(gain, stds, states, actions, alive) -> np.ndarray:
    """Per-step log-probabilities [T, B] (0 where not alive); no checks."""
    # [book:linear-gaussian-log-prob]
    z = (actions - _means(gain, states)) / stds                       # [T, B, m]
    log_probs = np.sum(-0.5 * z ** 2 - np.log(stds) - 0.5 * _LOG_2PI, axis=-1)
    # [/book:linear-gaussian-log-prob]
    return np.where(alive, log_probs, 0.0)


def _scores(gain, stds, states, actions, alive) -> np.ndarray:
    """Per-step scores wrt K [T, B, m * n] (0 where not alive); no checks."""
    # [book:linear-gaussian-score]
    d_mean = (actions - _means(gain, states)) / stds ** 2             # [T, B, m]
    scores = d_mean[..., :, None] * states[..., None, :]              # [T, B, m, n]
    # [/book:linear-gaussian-score]
    scores = scores.reshape(scores.shape[:-2] + (-1,))
    return np.where(alive[..., None], scores, 0.0)


def _check_policy_on(trajectories, gain, std):
    trajectories = _check_trajectories(trajectories)
    n, m = trajectories.states.shape[-1], trajectories.actions.shape[-1]
    gain = _check_gain(gain, m, n)
    stds, _ = _check_std(std, m)
    return trajectories, gain, stds


def linear_gaussian_log_probs(gain, std, trajectories) -> np.ndarray:
    r"""Per-step log-probabilities of a linear Gaussian policy on given trajectories.

    .. math:: \log \pi_{K,\sigma}(a_t \mid s_t) = \sum_{i=1}^m \Big[-\frac{z_i^2}{2}
        - \log \sigma_i - \frac{\log 2\pi}{2}\Big], \qquad
        z = \frac{a_t - K s_t}{\sigma}

    0 at the steps after a failure (``alive`` False): those steps are not taken.
    Summing down a column gives the policy part of :math:`\log p(\tau)`; the
    dynamics are the same for every policy and cancel in every ratio.

    Parameters
    ----------
    gain : array [m, n]
    std : float > 0 or array [m]
    trajectories : Trajectories

    Returns
    -------
    array [T, B]
    """
    trajectories, gain, stds = _check_policy_on(trajectories, gain, std)
    tr = trajectories
    return _log_probs(gain, stds, tr.states, tr.actions, tr.alive)


def linear_gaussian_scores(gain, std, trajectories) -> np.ndarray:
    r"""Per-step scores :math:`\nabla_K \log \pi_{K,\sigma}(a_t \mid s_t)`.

    .. math:: \frac{\partial \log \pi}{\partial K_{ij}}
        = \frac{a_{t,i} - (K s_t)_i}{\sigma_i^2}\, s_{t,j}

    Flattened as ``K.ravel()`` (row-major, P = m n); 0 at the steps after a failure.

    Parameters
    ----------
    gain : array [m, n]
    std : float > 0 or array [m]
    trajectories : Trajectories

    Returns
    -------
    array [T, B, m * n]
    """
    trajectories, gain, stds = _check_policy_on(trajectories, gain, std)
    tr = trajectories
    return _scores(gain, stds, tr.states, tr.actions, tr.alive)


def _check_rollout_args(env, gain, std, n_trajectories, rng):
    n_trajectories = _checks.check_positive_int(n_trajectories, "n_trajectories")
    rng = _checks.check_rng(rng)
    gain = _check_gain(gain, env.action_dim, env.state_dim, extra=n_trajectories,
                       extra_doc="n_trajectories")
    stds, _ = _check_std(std, env.action_dim, per_trajectory=n_trajectories)
    return gain, stds, n_trajectories, rng


def _rollout(env, gain, stds, n: int, rng: np.random.Generator) -> Trajectories:
    """Roll out n trajectories of ``env`` (no checks).

    ``gain`` [m, n] or [B, m, n] and ``stds`` [m] or [B, m]: one policy for all,
    or one per trajectory (for mixtures). ``env`` provides ``_initial_states(n, rng)``
    and ``_step(states, actions) -> (next_states, rewards, failed)``. The
    noise is drawn for every trajectory at every step, absorbed or not, so the
    random stream does not depend on when trajectories fail.
    """
    T, m = env.horizon, env.action_dim
    s = env._initial_states(n, rng)
    states = np.empty((T,) + s.shape)
    actions = np.zeros((T, n, m))
    rewards = np.zeros((T, n))
    alive = np.empty((T, n), dtype=bool)
    living = np.ones(n, dtype=bool)
    for t in range(T):
        states[t], alive[t] = s, living
        a = _means(gain, s) + stds * rng.standard_normal((n, m))
        a = np.where(living[:, None], a, 0.0)
        s_next, r, failed = env._step(s, a)
        actions[t], rewards[t] = a, np.where(living, r, 0.0)
        s = np.where(living[:, None], s_next, s)          # absorbed: the state stays
        living = living & ~failed
    return Trajectories(states=states, actions=actions, rewards=rewards, alive=alive,
                        log_probs=_log_probs(gain, stds, states, actions, alive),
                        scores=_scores(gain, stds, states, actions, alive),
                        final_states=s)


# ------------------------------------------------------------------ the problem

def _as_matrix(x, name: str, shape_doc: str) -> np.ndarray:
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        x = [[x]]
    arr = _checks.as_float_array(x, name, ndim=2, shape_doc=shape_doc)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got an infinite value")
    return arr


def _check_symmetric(M: np.ndarray, name: str, *, definite: bool) -> None:
    if not np.allclose(M, M.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric")
    eigenvalues = np.linalg.eigvalsh(M)
    scale = max(1.0, float(np.abs(eigenvalues).max()))
    if definite and eigenvalues.min() <= 1e-12 * scale:
        raise ValueError(f"{name} must be positive definite, got a smallest "
                         f"eigenvalue of {eigenvalues.min():.3g}")
    if eigenvalues.min() < -1e-12 * scale:
        raise ValueError(f"{name} must be positive semi-definite, got a smallest "
                         f"eigenvalue of {eigenvalues.min():.3g}")


class LinearQuadratic:
    r"""The finite-horizon discounted linear-quadratic problem, vectorised.

    See the module docstring for the model, the policy, and the exact return
    and gradient. Dimensions come from the matrices: n from A, m from B.

    Parameters
    ----------
    A : array [n, n] (or a number for n = 1)
    B : array [n, m] (or a number)
    Q : array [n, n], symmetric positive semi-definite (or a number >= 0)
    R : array [m, m], symmetric positive definite (or a number > 0)
    horizon : int >= 1
        H, the number of steps of every trajectory.
    gamma : float in [0, 1]
        The discount.

    Example: the scalar problem ``LinearQuadratic(1, 1, 1, 1, horizon=10, gamma=0.9)``.
    """

    def __init__(self, A, B, Q, R, horizon: int, gamma: float):
        A = _as_matrix(A, "A", "[n, n]")
        B = _as_matrix(B, "B", "[n, m]")
        Q = _as_matrix(Q, "Q", "[n, n]")
        R = _as_matrix(R, "R", "[m, m]")
        n = A.shape[0]
        if A.shape != (n, n):
            raise ValueError(f"A must be square [n, n], "
                             f"got {_checks._shape_str(A.shape)}")
        if B.shape[0] != n:
            raise ValueError(f"B must have shape [n, m] with n = {n} rows (as A), "
                             f"got {_checks._shape_str(B.shape)}")
        m = B.shape[1]
        if Q.shape != (n, n):
            raise ValueError(f"Q must have shape [n, n] = ({n}, {n}), "
                             f"got {_checks._shape_str(Q.shape)}")
        if R.shape != (m, m):
            raise ValueError(f"R must have shape [m, m] = ({m}, {m}), "
                             f"got {_checks._shape_str(R.shape)}")
        _check_symmetric(Q, "Q", definite=False)
        _check_symmetric(R, "R", definite=True)
        self.A, self.B, self.Q, self.R = (_readonly(x) for x in (A, B, Q, R))
        self.state_dim, self.action_dim = n, m
        self.horizon = _checks.check_positive_int(horizon, "horizon")
        self.gamma = _checks.check_discount(gamma)

    def __repr__(self) -> str:
        return (f"LinearQuadratic(state_dim={self.state_dim}, "
                f"action_dim={self.action_dim}, horizon={self.horizon}, "
                f"gamma={self.gamma})")

    @property
    def n_params(self) -> int:
        """P = m n, the number of entries of a gain."""
        return self.state_dim * self.action_dim

    # -- sampling

    def _initial_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=(n, self.state_dim))

    def _step(self, states, actions):
        rewards = -(np.einsum("bi,ij,bj->b", states, self.Q, states)
                    + np.einsum("bi,ij,bj->b", actions, self.R, actions))
        next_states = states @ self.A.T + actions @ self.B.T
        return next_states, rewards, np.zeros(states.shape[0], dtype=bool)

    def step(self, states, actions):
        r"""One transition, :math:`s' = As + Ba` and :math:`r = -(s'Qs + a'Ra)`.

        Parameters
        ----------
        states : array [B, n]
        actions : array [B, m]

        Returns
        -------
        (next_states [B, n], rewards [B])
        """
        states = _checks.as_float_array(states, "states", ndim=2, shape_doc="[B, n]")
        actions = _checks.as_float_array(actions, "actions", ndim=2, shape_doc="[B, m]")
        if states.shape[1] != self.state_dim:
            raise ValueError(f"states must have shape [B, n] with "
                             f"n = {self.state_dim}, "
                             f"got {_checks._shape_str(states.shape)}")
        if actions.shape != (states.shape[0], self.action_dim):
            raise ValueError(f"actions must have shape [B, m] = ({states.shape[0]}, "
                             f"{self.action_dim}), "
                             f"got {_checks._shape_str(actions.shape)}")
        next_states, rewards, _ = self._step(states, actions)
        return next_states, rewards

    def rollout(self, gain, std, n_trajectories: int,
                rng: np.random.Generator) -> Trajectories:
        r"""Draw trajectories of H steps with :math:`a = K s + \sigma \varepsilon`.

        Parameters
        ----------
        gain : array [m, n], or [n_trajectories, m, n] (one gain per trajectory)
        std : float > 0, array [m], or [n_trajectories, m]
        n_trajectories : int >= 1
        rng : np.random.Generator

        Returns
        -------
        Trajectories, with each trajectory's own policy's log-probabilities and
        scores (``alive`` is all True: the LQ problem has no failure).
        """
        gain, stds, n, rng = _check_rollout_args(self, gain, std, n_trajectories, rng)
        return _rollout(self, gain, stds, n, rng)

    # -- exact results

    def _time_varying(self, gain) -> tuple[np.ndarray, bool]:
        """[H, m, n] gains and whether the given gain was stationary."""
        gain = _check_gain(gain, self.action_dim, self.state_dim, extra=self.horizon,
                           extra_doc="H")
        if gain.ndim == 2:
            return np.broadcast_to(gain, (self.horizon,) + gain.shape), True
        return gain, False

    def _second_moments(self, gains, variances) -> np.ndarray:
        n, H = self.state_dim, self.horizon
        noise = (self.B * variances) @ self.B.T                         # B D^2 B'
        sigmas = np.empty((H, n, n))
        # [book:lq-second-moments]
        sigma = np.eye(n) / 3.0                             # E[s_0 s_0'], uniform s_0
        for t in range(H):
            sigmas[t] = sigma
            L = self.A + self.B @ gains[t]                  # closed loop A + B K
            sigma = L @ sigma @ L.T + noise                 # Sigma_{t+1}
        # [/book:lq-second-moments]
        return sigmas

    def _cost_to_go(self, gains) -> np.ndarray:
        """P_t, t = 0..H (P_H = 0): the policy's cost-to-go matrices [H + 1, n, n]."""
        n, H, g = self.state_dim, self.horizon, self.gamma
        P = np.zeros((H + 1, n, n))
        for t in range(H - 1, -1, -1):
            L = self.A + self.B @ gains[t]
            P[t] = self.Q + gains[t].T @ self.R @ gains[t] + g * L.T @ P[t + 1] @ L
            P[t] = 0.5 * (P[t] + P[t].T)
        return P

    def second_moments(self, gain, std) -> np.ndarray:
        r"""The second moments :math:`\Sigma_t = \mathbb E[s_t s_t^\top]`, t = 0..H-1.

        .. math:: \Sigma_0 = \tfrac13 I, \qquad
            \Sigma_{t+1} = (A + B K) \Sigma_t (A + B K)^\top + B D^2 B^\top

        Parameters
        ----------
        gain : array [m, n] or [H, m, n]
        std : float >= 0 or array [m]

        Returns
        -------
        array [H, n, n]
        """
        gains, _ = self._time_varying(gain)
        stds, _ = _check_std(std, self.action_dim, allow_zero=True)
        return self._second_moments(gains, stds ** 2)

    def _return(self, gains, variances) -> float:
        sigmas = self._second_moments(gains, variances)
        discounts = _discounts(self.gamma, self.horizon)
        # [book:lq-exact-return]
        costs = [np.trace((self.Q + K.T @ self.R @ K) @ S)   # tr((Q + K'RK) Sigma_t)
                 for K, S in zip(gains, sigmas)]
        noise_cost = np.sum(np.diag(self.R) * variances)      # tr(R D^2)
        return -float(discounts @ (np.array(costs) + noise_cost))
        # [/book:lq-exact-return]

    def exact_return(self, gain, std) -> float:
        r"""The expected discounted return J(K, :math:`\sigma`) of the policy.

        .. math:: J = -\sum_{t=0}^{H-1} \gamma^t \big[\operatorname{tr}\big(
            (Q + K^\top R K) \Sigma_t\big) + \operatorname{tr}(R D^2)\big]

        with :math:`\Sigma_t` from :meth:`second_moments`.

        Parameters
        ----------
        gain : array [m, n], or [H, m, n] for a time-varying gain
        std : float >= 0 or array [m]

        Returns
        -------
        float
        """
        gains, _ = self._time_varying(gain)
        stds, _ = _check_std(std, self.action_dim, allow_zero=True)
        return self._return(gains, stds ** 2)

    def _gradients(self, gains, variances):
        """Per-step gradients wrt K_t [H, m, n], and (d J / d sigma_i) / sigma_i [m]."""
        sigmas = self._second_moments(gains, variances)
        P = self._cost_to_go(gains)
        g = self.gamma
        discounts = _discounts(g, self.horizon)
        grads = np.empty_like(gains, dtype=float)
        std_terms = np.zeros(self.action_dim)
        # [book:lq-exact-gradient]
        for t in range(self.horizon):
            G = self.R + g * self.B.T @ P[t + 1] @ self.B   # R + gamma B'P_{t+1}B
            E = g * self.B.T @ P[t + 1] @ self.A            # gamma B'P_{t+1}A
            grads[t] = -2 * discounts[t] * (G @ gains[t] + E) @ sigmas[t]
            std_terms += -2 * discounts[t] * np.diag(G)     # times sigma_i later
        # [/book:lq-exact-gradient]
        return grads, std_terms

    def exact_gradient(self, gain, std) -> np.ndarray:
        r"""The gradient of :meth:`exact_return` with respect to the gain.

        .. math:: \nabla_K J = -2 \sum_{t=0}^{H-1} \gamma^t
            \big((R + \gamma B^\top P_{t+1} B) K + \gamma B^\top P_{t+1} A\big) \Sigma_t

        with the cost-to-go :math:`P_H = 0`,
        :math:`P_t = Q + K^\top R K + \gamma (A + BK)^\top P_{t+1} (A + BK)`.

        Parameters
        ----------
        gain : array [m, n], or [H, m, n] for a time-varying gain
        std : float >= 0 or array [m]

        Returns
        -------
        array of the gain's shape: [m, n] (stationary), or [H, m, n], the
        gradient with respect to each step's gain.
        """
        gains, stationary = self._time_varying(gain)
        stds, _ = _check_std(std, self.action_dim, allow_zero=True)
        grads, _ = self._gradients(gains, stds ** 2)
        return grads.sum(axis=0) if stationary else grads

    def exact_std_gradient(self, gain, std):
        r"""The derivative of :meth:`exact_return` with respect to the std.

        .. math:: \frac{\partial J}{\partial \sigma_i} = -2 \sigma_i \sum_{t=0}^{H-1}
            \gamma^t \big(R + \gamma B^\top P_{t+1} B\big)_{ii}

        Always negative for :math:`\sigma > 0`: the noise only costs.

        Parameters
        ----------
        gain : array [m, n] or [H, m, n]
        std : float >= 0 (one sigma shared by every action dimension) or array [m]

        Returns
        -------
        float (for a scalar std: the derivative along the shared sigma, the sum
        over dimensions) or array [m]
        """
        gains, _ = self._time_varying(gain)
        stds, scalar = _check_std(std, self.action_dim, allow_zero=True)
        _, std_terms = self._gradients(gains, stds ** 2)
        per_dim = std_terms * stds
        return float(per_dim.sum()) if scalar else per_dim

    def time_varying_gains(self) -> np.ndarray:
        r"""The optimal gains :math:`K_t^*` of the finite-horizon problem, [H, m, n].

        Backward Riccati recursion from :math:`P_H = 0`:

        .. math:: K_t^* = -\gamma (R + \gamma B^\top P_{t+1} B)^{-1} B^\top P_{t+1} A,
            \qquad P_t = Q + K_t^{*\top} R K_t^*
            + \gamma (A + B K_t^*)^\top P_{t+1} (A + B K_t^*)

        For every std, :math:`a_t = K_t^* s_t + \sigma \varepsilon` is the best
        linear Gaussian policy with that std (certainty equivalence: the noise
        adds a cost that no gain can change), and the noise-free one
        (:math:`\sigma = 0`) is the best policy of all. Its per-step
        :meth:`exact_gradient` is zero.
        """
        n, m, g = self.state_dim, self.action_dim, self.gamma
        P = np.zeros((n, n))
        gains = np.empty((self.horizon, m, n))
        for t in range(self.horizon - 1, -1, -1):
            K = self._riccati_step(P)
            L = self.A + self.B @ K
            P = self.Q + K.T @ self.R @ K + g * L.T @ P @ L
            P = 0.5 * (P + P.T)
            gains[t] = K
        return gains

    def _riccati_step(self, P):
        """-gamma (R + gamma B'PB)^{-1} B'PA: the best gain before cost-to-go P."""
        g = self.gamma
        return -g * np.linalg.solve(self.R + g * self.B.T @ P @ self.B,
                                    self.B.T @ P @ self.A)

    def riccati_gain(self, *, tol: float = 1e-12,
                     max_iter: int = 100_000) -> np.ndarray:
        r"""The infinite-horizon discounted optimal gain, [m, n].

        The fixed point of the Riccati recursion of :meth:`time_varying_gains`
        (iterated from :math:`P = 0` until P changes by less than ``tol``
        relative to its size). For the scalar problem A = B = Q = R = 1,
        :math:`\gamma = 0.9`: :math:`0.9 P^2 - 0.8 P - 1 = 0`, P = 1.588...,
        K = -0.588... Not the best *stationary* gain over a finite horizon
        (:meth:`optimal_gain`), but close when H is long.

        Raises ValueError when the recursion does not converge (the pair
        :math:`(\sqrt\gamma A, \sqrt\gamma B)` is not stabilisable).
        """
        n, g = self.state_dim, self.gamma
        P = np.zeros((n, n))
        for _ in range(_checks.check_positive_int(max_iter, "max_iter")):
            K = self._riccati_step(P)
            L = self.A + self.B @ K
            P_next = self.Q + K.T @ self.R @ K + g * L.T @ P @ L
            P_next = 0.5 * (P_next + P_next.T)
            if not np.abs(P_next).max() < 1e150:           # diverging, before overflow
                break
            if np.abs(P_next - P).max() <= tol * max(1.0, np.abs(P_next).max()):
                return K
            P = P_next
        raise ValueError("the discounted Riccati recursion did not converge: "
                         "(sqrt(gamma) A, sqrt(gamma) B) is not stabilisable, "
                         "or max_iter is too small")

    def optimal_gain(self, std, *, tol: float = 1e-10,
                     max_iter: int = 200) -> np.ndarray:
        r"""The best stationary gain for a std: :math:`\arg\max_K J(K, \sigma)`, [m, n].

        Found by Newton's method on :meth:`exact_return`, with the Hessian from
        central differences of :meth:`exact_gradient` and a backtracking line
        search (an ascent step along the gradient where the Hessian is not
        negative definite), started from :meth:`riccati_gain` (or from K = 0
        if that does not exist). Stops when
        :math:`\lVert \nabla_K J \rVert \le` ``tol`` :math:`\max(1, |J|)`.
        J is a polynomial in K, not concave in general: this is the local
        maximum reached from the Riccati gain (for the scalar problem the tests
        compare it with a fine grid search).

        Parameters
        ----------
        std : float >= 0 or array [m]
        tol : float > 0
        max_iter : int >= 1

        Returns
        -------
        array [m, n]
        """
        stds, _ = _check_std(std, self.action_dim, allow_zero=True)
        variances = stds ** 2
        max_iter = _checks.check_positive_int(max_iter, "max_iter")
        if not _checks.check_nonnegative(tol, "tol") > 0:
            raise ValueError(f"tol must be positive, got {tol}")
        shape = (self.action_dim, self.state_dim)
        H = self.horizon

        def value(theta):
            gains = np.broadcast_to(theta.reshape(shape), (H,) + shape)
            return self._return(gains, variances)

        def gradient(theta):
            gains = np.broadcast_to(theta.reshape(shape), (H,) + shape)
            return self._gradients(gains, variances)[0].sum(axis=0).ravel()

        try:
            theta = self.riccati_gain().ravel()
        except ValueError:
            theta = np.zeros(self.n_params)
        J = value(theta)
        for _ in range(max_iter):
            grad = gradient(theta)
            if np.linalg.norm(grad) <= tol * max(1.0, abs(J)):
                return theta.reshape(shape)
            h = 1e-5 * max(1.0, np.abs(theta).max())
            hess = np.empty((theta.size, theta.size))
            for i in range(theta.size):
                e = np.zeros_like(theta)
                e[i] = h
                hess[:, i] = (gradient(theta + e) - gradient(theta - e)) / (2 * h)
            hess = 0.5 * (hess + hess.T)
            eigenvalues = np.linalg.eigvalsh(hess)
            if eigenvalues.max() < 0:
                direction = -np.linalg.solve(hess, grad)
            else:
                direction = grad / max(1.0, np.abs(eigenvalues).max())
            step = 1.0
            while step > 1e-12:
                candidate = theta + step * direction
                J_new = value(candidate)
                if J_new >= J + 1e-4 * step * (grad @ direction):
                    break
                step /= 2
            else:
                return theta.reshape(shape)          # no ascent left at rounding level
            theta, J = candidate, J_new
        raise ValueError(f"optimal_gain did not converge in {max_iter} Newton steps")


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a
