r"""Tabular MDPs with exact answers.

A :class:`TabularMDP` holds the transition tensor ``P[s, a, s']``, the reward
``r[s, a]``, the initial distribution ``mu[s]`` and either

* a discount ``gamma < 1`` and no horizon (the *discounted* setting), or
* a ``horizon`` H, with steps ``h = 0, ..., H-1`` and an optional discount
  (the *finite-horizon* setting; ``gamma = 1`` by default).

Everything a chapter needs to check an estimator against the truth is computed
exactly here: the values V, Q and A of a policy, its state-visitation
distribution, its expected return J and its policy gradient through the policy
gradient theorem.

Shapes, with S states, A actions and H steps (the book's notation page):

============================  ======================  =====================
quantity                      discounted              finite horizon
============================  ======================  =====================
policy table ``pi[s, a]``     [S, A]                  [S, A] or [H, S, A]
``values`` V                  [S]                     [H, S]
``q_values`` Q                [S, A]                  [H, S, A]
``advantages`` A = Q - V      [S, A]                  [H, S, A]
state visitation ``d``        [S], sums to one        [H, S], each row sums to one
============================  ======================  =====================

In the discounted setting ``d`` is *normalised*:
:math:`d^\pi(s) = (1-\gamma)\sum_t \gamma^t \Pr(s_t = s)`, so the factor
:math:`1/(1-\gamma)` appears in the formulas, e.g.
:math:`J = \frac{1}{1-\gamma} \sum_s d^\pi(s) \sum_a \pi(a|s) r(s,a)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from pgkit import _checks

__all__ = [
    "TabularMDP",
    "PolicyValues",
    "evaluate_policy",
    "state_visitation",
    "expected_return",
    "policy_table",
    "exact_objective",
    "exact_policy_gradient",
    "finite_difference_gradient",
    "uniform_policy",
    "random_mdp",
    "chain_mdp",
    "combination_lock",
]


@dataclass(frozen=True)
class TabularMDP:
    """A finite MDP, discounted (``horizon=None``, ``gamma < 1``) or finite-horizon.

    Parameters
    ----------
    transitions : array [S, A, S]
        ``transitions[s, a, s2]`` is the probability of moving to ``s2``.
    rewards : array [S, A]
        ``rewards[s, a]`` is the expected reward r(s, a).
    initial_distribution : array [S]
        d_0, the distribution of the first state.
    gamma : float
        Discount factor in [0, 1]; must be < 1 when ``horizon`` is None.
    horizon : int or None
        H, the number of steps ``h = 0, ..., H-1``; None for the discounted setting.
    """

    transitions: np.ndarray
    rewards: np.ndarray
    initial_distribution: np.ndarray
    gamma: float = 1.0
    horizon: int | None = None

    def __post_init__(self):
        P = _checks.as_float_array(self.transitions, "transitions", ndim=3, shape_doc="[S, A, S]")
        S, A, S2 = P.shape
        if S2 != S or S == 0 or A == 0:
            raise ValueError(f"transitions must have shape [S, A, S], got {P.shape}")
        _checks.check_distribution(P, "transitions[s, a, :]")
        r = _checks.as_float_array(self.rewards, "rewards", ndim=2, shape_doc="[S, A]")
        if r.shape != (S, A):
            raise ValueError(f"rewards must have shape [S, A] = ({S}, {A}), got {r.shape}")
        if not np.isfinite(r).all():
            raise ValueError("rewards must be finite")
        mu = _checks.as_float_array(self.initial_distribution, "initial_distribution", ndim=1,
                                    shape_doc="[S]")
        if mu.shape != (S,):
            raise ValueError(f"initial_distribution must have shape [S] = ({S},), got {mu.shape}")
        _checks.check_distribution(mu, "initial_distribution")
        if self.horizon is None:
            gamma = _checks.check_discount(self.gamma, allow_one=False)
        else:
            _checks.check_positive_int(self.horizon, "horizon")
            gamma = _checks.check_discount(self.gamma)
        for name, value in (("transitions", P), ("rewards", r), ("initial_distribution", mu),
                            ("gamma", gamma)):
            object.__setattr__(self, name, value)
        for arr in (P, r, mu):
            arr.setflags(write=False)

    @property
    def n_states(self) -> int:
        return self.transitions.shape[0]

    @property
    def n_actions(self) -> int:
        return self.transitions.shape[1]

    @property
    def discounted(self) -> bool:
        """True in the discounted (infinite-horizon) setting."""
        return self.horizon is None

    def with_setting(self, *, gamma: float | None = None, horizon: int | None = None) -> "TabularMDP":
        """The same dynamics and rewards with another discount or horizon.

        ``horizon=None`` means the discounted setting, not "unchanged": pass the
        horizon again to keep a finite-horizon MDP finite.
        """
        return TabularMDP(self.transitions, self.rewards, self.initial_distribution,
                          self.gamma if gamma is None else gamma, horizon)


class PolicyValues(NamedTuple):
    """V, Q and A of a policy; shapes in the module docstring."""

    values: np.ndarray
    q_values: np.ndarray
    advantages: np.ndarray


PolicyValues.values.__doc__ = "The values of the policy, shape [S] (discounted) or [H, S] (finite horizon)."
PolicyValues.q_values.__doc__ = "The action values, shape [S, A] or [H, S, A]."
PolicyValues.advantages.__doc__ = "The advantages, action values minus values, shape [S, A] or [H, S, A]."


def _check_policy_table(mdp: TabularMDP, pi) -> np.ndarray:
    pi = _checks.as_float_array(pi, "pi", ndim=(2, 3), shape_doc="[S, A] (or [H, S, A])")
    S, A = mdp.n_states, mdp.n_actions
    if pi.ndim == 3 and mdp.discounted:
        raise ValueError("a time-dependent policy [H, S, A] needs a finite-horizon MDP")
    expected = (S, A) if pi.ndim == 2 else (mdp.horizon, S, A)
    if pi.shape != expected:
        raise ValueError(f"pi must have shape {'[S, A]' if pi.ndim == 2 else '[H, S, A]'} = "
                         f"{expected}, got {pi.shape}")
    _checks.check_distribution(pi, "pi[s, :]")
    return pi


def _step_table(pi: np.ndarray, h: int) -> np.ndarray:
    return pi if pi.ndim == 2 else pi[h]


def evaluate_policy(mdp: TabularMDP, pi) -> PolicyValues:
    r"""Exact V, Q and A of the policy table ``pi``.

    Discounted: :math:`V = (I - \gamma P_\pi)^{-1} r_\pi`,
    :math:`Q(s,a) = r(s,a) + \gamma \sum_{s'} P(s'|s,a) V(s')`.
    Finite horizon: backward induction from :math:`V_H = 0`,
    :math:`Q_h = r + \gamma P V_{h+1}`, :math:`V_h(s) = \sum_a \pi_h(a|s) Q_h(s,a)`.
    In both, :math:`A = Q - V`.

    Parameters
    ----------
    mdp : TabularMDP
    pi : array [S, A], or [H, S, A] for a time-dependent finite-horizon policy

    Returns
    -------
    PolicyValues(values, q_values, advantages) with the shapes of the module docstring.
    """
    pi = _check_policy_table(mdp, pi)
    P, r, gamma = mdp.transitions, mdp.rewards, mdp.gamma
    if mdp.discounted:
        P_pi = np.einsum("sa,sat->st", pi, P)
        r_pi = np.sum(pi * r, axis=1)
        V = np.linalg.solve(np.eye(mdp.n_states) - gamma * P_pi, r_pi)
        Q = r + gamma * P @ V
        return PolicyValues(V, Q, Q - V[:, None])
    H = mdp.horizon
    V = np.zeros((H + 1, mdp.n_states))
    Q = np.zeros((H, mdp.n_states, mdp.n_actions))
    for h in reversed(range(H)):
        Q[h] = r + gamma * P @ V[h + 1]
        V[h] = np.sum(_step_table(pi, h) * Q[h], axis=1)
    return PolicyValues(V[:H], Q, Q - V[:H, :, None])


def state_visitation(mdp: TabularMDP, pi) -> np.ndarray:
    r"""The state distribution a policy induces.

    Discounted: the normalised discounted visitation
    :math:`d^\pi(s) = (1-\gamma) \sum_{t\ge0} \gamma^t \Pr(s_t = s)`, shape [S],
    solving :math:`d = (1-\gamma) d_0 + \gamma P_\pi^\top d`.
    Finite horizon: the distribution of :math:`s_h` for each step, shape [H, S],
    :math:`d_0` the initial distribution, :math:`d_{h+1}(s') = \sum_{s,a} d_h(s) \pi_h(a|s) P(s'|s,a)`.
    Every distribution returned sums to one.
    """
    pi = _check_policy_table(mdp, pi)
    P, mu = mdp.transitions, mdp.initial_distribution
    if mdp.discounted:
        P_pi = np.einsum("sa,sat->st", pi, P)
        gamma = mdp.gamma
        return np.linalg.solve(np.eye(mdp.n_states) - gamma * P_pi.T, (1 - gamma) * mu)
    d = np.zeros((mdp.horizon, mdp.n_states))
    d[0] = mu
    for h in range(mdp.horizon - 1):
        d[h + 1] = np.einsum("s,sa,sat->t", d[h], _step_table(pi, h), P)
    return d


def expected_return(mdp: TabularMDP, pi) -> float:
    r"""J(pi): :math:`E_{s_0\sim d_0}[V(s_0)]` (discounted) or :math:`E[V_0(s_0)]` (finite horizon)."""
    V = evaluate_policy(mdp, pi).values
    return float(mdp.initial_distribution @ (V if mdp.discounted else V[0]))


def uniform_policy(mdp: TabularMDP) -> np.ndarray:
    """The uniformly random policy table [S, A]."""
    return np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)


def policy_table(policy, theta, n_states: int) -> np.ndarray:
    """The table ``pi[s, a]`` [S, A] of a discrete policy whose observations are state indices."""
    return policy.probs(theta, np.arange(n_states))


def exact_objective(mdp: TabularMDP, policy, theta) -> float:
    """J(theta): the exact expected return of a parameterised discrete policy."""
    return expected_return(mdp, policy_table(policy, theta, mdp.n_states))


def exact_policy_gradient(mdp: TabularMDP, policy, theta) -> np.ndarray:
    r"""The exact gradient of J(theta) through the policy gradient theorem.

    Discounted (book equation ``pg-theorem-discounted``):

    .. math:: \nabla J = \frac{1}{1-\gamma} \sum_s d^\pi(s) \sum_a \pi(a|s)\, Q^\pi(s,a)\, \nabla_\theta \log \pi(a|s)

    Finite horizon (book equation ``pg-theorem``):

    .. math:: \nabla J = \sum_{h=0}^{H-1} \gamma^h \sum_s d_h(s) \sum_a \pi(a|s)\, Q_h^\pi(s,a)\, \nabla_\theta \log \pi(a|s)

    where :math:`Q_h` is discounted from step h (so :math:`\gamma^h` brings it back to step 0).

    Only the score of the policy appears: the theorem needs no gradient of the
    state distribution.

    Parameters
    ----------
    mdp : TabularMDP
    policy : a discrete pgkit policy whose observations are state indices
    theta : array [n_params]

    Returns
    -------
    array [n_params]
    """
    S, A = mdp.n_states, mdp.n_actions
    pi = policy_table(policy, theta, S)
    states, actions = np.meshgrid(np.arange(S), np.arange(A), indexing="ij")
    scores = policy.score(theta, states, actions)                    # [S, A, n_params]
    Q = evaluate_policy(mdp, pi).q_values
    d = state_visitation(mdp, pi)
    # [book:pg-theorem]
    if mdp.discounted:
        weights = d[:, None] * pi * Q / (1 - mdp.gamma)              # [S, A]
    else:
        discount_h = mdp.gamma ** np.arange(mdp.horizon)             # gamma^h
        weights = np.einsum("h,hs,sa,hsa->sa", discount_h, d, pi, Q)  # sum over steps h
    return np.einsum("sa,sap->p", weights, scores)
    # [/book:pg-theorem]


def finite_difference_gradient(f, x, eps: float = 1e-6) -> np.ndarray:
    r"""Central differences :math:`(f(x + \epsilon e_i) - f(x - \epsilon e_i)) / 2\epsilon` for each i.

    ``f`` maps an array of x's shape (a vector [n], a matrix, any shape) to a
    float; returns an array of x's shape.
    """
    x = _checks.as_float_array(x, "x")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        grad[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


# --------------------------------------------------------------------------- examples


def random_mdp(n_states: int, n_actions: int, rng: np.random.Generator, *,
               gamma: float = 0.9, horizon: int | None = None,
               concentration: float = 1.0) -> TabularMDP:
    """A random MDP: Dirichlet(concentration) rows of P, uniform rewards in [0, 1), a Dirichlet initial distribution d_0.

    ``horizon=None`` gives a discounted MDP (needs ``gamma < 1``); otherwise a
    finite-horizon one.
    """
    _checks.check_positive_int(n_states, "n_states")
    _checks.check_positive_int(n_actions, "n_actions")
    _checks.check_rng(rng)
    if not concentration > 0:
        raise ValueError(f"concentration must be positive, got {concentration}")
    P = rng.dirichlet(np.full(n_states, concentration), size=(n_states, n_actions))
    r = rng.random((n_states, n_actions))
    mu = rng.dirichlet(np.ones(n_states))
    return TabularMDP(P, r, mu, gamma, horizon)


def chain_mdp(n_states: int, *, slip: float = 0.1, small_reward: float = 0.1,
              large_reward: float = 1.0, gamma: float = 0.9,
              horizon: int | None = None) -> TabularMDP:
    """A chain of states 0..n-1 with actions 0 (left) and 1 (right), starting in state 0.

    Each move goes the intended way with probability ``1 - slip`` and the other
    way otherwise (walls at both ends). Staying at the left end pays
    ``small_reward`` (action 0 in state 0); pushing right at the right end pays
    ``large_reward`` (action 1 in state n-1). A myopic policy settles for the
    small reward; the far reward needs a long walk.
    """
    _checks.check_positive_int(n_states, "n_states", minimum=2)
    if not 0 <= slip <= 1:
        raise ValueError(f"slip must be in [0, 1], got {slip}")
    S = n_states
    P = np.zeros((S, 2, S))
    for s in range(S):
        left, right = max(s - 1, 0), min(s + 1, S - 1)
        P[s, 0, left] += 1 - slip
        P[s, 0, right] += slip
        P[s, 1, right] += 1 - slip
        P[s, 1, left] += slip
    r = np.zeros((S, 2))
    r[0, 0] = small_reward
    r[S - 1, 1] = large_reward
    mu = np.zeros(S)
    mu[0] = 1.0
    return TabularMDP(P, r, mu, gamma, horizon)


def combination_lock(n_states: int, *, combination=None, horizon: int | None = "n_states",
                     gamma: float = 1.0) -> TabularMDP:
    r"""A combination lock: a chain 0..n-1 where one of three actions moves forward.

    In state s the action ``combination[s]`` moves to s+1; the other two send the
    agent back to state 0. In the last state, the right action opens the lock:
    reward 1 and back to state 0. The agent starts in state 0. With horizon
    H = n (the default), opening the lock needs the whole combination in a row,
    so the uniformly random policy has :math:`J = 3^{-n}`: the exploration
    example in which on-policy sampling needs about :math:`3^{n}` trajectories
    to see a single reward.

    Parameters
    ----------
    n_states : int
        n, the number of states (the length of the combination).
    combination : array [n] of ints in {0, 1, 2}, optional
        The correct action in each state; default ``s % 3``.
    horizon : int or None
        Defaults to n; None gives the discounted setting (then ``gamma < 1``).
    gamma : float
    """
    n = _checks.check_positive_int(n_states, "n_states")
    if combination is None:
        combination = np.arange(n) % 3
    combination = _checks.as_int_array(combination, "combination", low=0, high=3)
    if combination.shape != (n,):
        raise ValueError(f"combination must have shape [n_states] = ({n},), got {combination.shape}")
    if isinstance(horizon, str):
        horizon = n
    P = np.zeros((n, 3, n))
    P[:, :, 0] = 1.0                                   # wrong actions: back to the start
    r = np.zeros((n, 3))
    for s, a in enumerate(combination):
        P[s, a, :] = 0.0
        P[s, a, (s + 1) % n] = 1.0                     # forward; from the last state, back to 0
    r[n - 1, combination[n - 1]] = 1.0                 # the lock opens
    mu = np.zeros(n)
    mu[0] = 1.0
    return TabularMDP(P, r, mu, gamma, horizon)
