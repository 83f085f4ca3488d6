"""Policies: parametrised distributions pi_theta(a | s) and their score functions.

A policy object describes *structure only* (how many states, actions,
features...). The parameters are always a flat 1-D float array ``theta`` of
length ``policy.n_params`` passed explicitly to every method, so that finite
differences, KL divergences between two parameter settings, and optimisers
never need to touch the policy object::

    policy = TabularSoftmaxPolicy(n_states=4, n_actions=2)
    theta = policy.init_params()                      # [n_params]
    a = policy.sample(theta, states, rng)             # [*batch]
    g = policy.score(theta, states, a)                # [*batch, n_params]

Every method accepts any leading batch shape (``[]``, ``[B]``, ``[T, B]``,
``[S, A]``...); results keep that batch shape. Randomness comes only from an
explicit ``rng: numpy.random.Generator``.

The three policies:

* :class:`TabularSoftmaxPolicy` -- one logit per (state, action).
* :class:`LinearSoftmaxPolicy` -- logits linear in features phi(s, a).
* :class:`LinearGaussianPolicy` -- a ~ N(W s + b, diag(sigma^2)).
"""

from __future__ import annotations

import numbers

import numpy as np

from pgkit._checks import (
    _shape_str,
    as_float_array,
    as_int_array,
    check_nonnegative,
    check_positive_int,
    check_rng,
)

__all__ = [
    "Policy",
    "SoftmaxPolicy",
    "TabularSoftmaxPolicy",
    "LinearSoftmaxPolicy",
    "LinearGaussianPolicy",
]


# ---------------------------------------------------------------- input checks

def _as_index(x, name: str, n: int) -> np.ndarray:
    """``x`` as an integer array with values in ``[0, n)`` (states, actions)."""
    arr = as_int_array(x, name)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        bad = arr.min() if arr.min() < 0 else arr.max()
        raise ValueError(f"{name} must be integers in [0, {n}), got {bad}")
    return arr


def _as_obs(x, obs_dim: int) -> np.ndarray:
    """``x`` as a float array of observations with shape ``[*batch, obs_dim]``."""
    arr = as_float_array(x, "obs")
    if arr.ndim == 0 or arr.shape[-1] != obs_dim:
        raise ValueError(f"obs must have shape [*batch, obs_dim] = [..., {obs_dim}], "
                         f"got {_shape_str(arr.shape)}")
    return arr


def _check_bool(x, name: str) -> bool:
    if not isinstance(x, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {x!r}")
    return bool(x)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax along the last axis, stable for large logits."""
    # [book:log-softmax]
    shifted = logits - logits.max(axis=-1, keepdims=True)   # largest logit is now 0
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    # [/book:log-softmax]


# ------------------------------------------------------------------ base class

class Policy:
    """A parametrised family of policies pi_theta(a | s).

    Subclasses set ``n_params`` and implement ``sample``, ``log_prob``,
    ``score``, ``entropy`` and ``kl``; all take the flat parameter vector
    ``theta`` (shape ``[n_params]``) as their first argument.
    """

    n_params: int

    def init_params(self, rng: np.random.Generator | None = None,
                    scale: float = 0.0) -> np.ndarray:
        """Initial parameters, shape ``[n_params]``.

        Zeros when ``rng`` is None (``scale`` must then be 0); otherwise
        ``scale * N(0, 1)`` draws from ``rng``.
        """
        scale = check_nonnegative(scale, "scale")
        if rng is None:
            if scale > 0:
                raise ValueError("init_params needs an rng when scale > 0")
            return np.zeros(self.n_params)
        rng = check_rng(rng)
        return scale * rng.standard_normal(self.n_params)

    def check_theta(self, theta, name: str = "theta") -> np.ndarray:
        """``theta`` as a float array, checked to have shape ``[n_params]``."""
        arr = as_float_array(theta, name)
        if arr.shape != (self.n_params,):
            raise ValueError(f"{name} must have shape [n_params] = "
                             f"{_shape_str((self.n_params,))}, got {_shape_str(arr.shape)}")
        return arr

    def sample(self, theta, obs, rng: np.random.Generator) -> np.ndarray:
        """Draw a ~ pi_theta(. | obs); one action per batch element."""
        raise NotImplementedError

    def log_prob(self, theta, obs, actions) -> np.ndarray:
        """log pi_theta(actions | obs), shape ``[*batch]``."""
        raise NotImplementedError

    def score(self, theta, obs, actions) -> np.ndarray:
        """grad_theta log pi_theta(actions | obs), shape ``[*batch, n_params]``."""
        raise NotImplementedError

    def entropy(self, theta, obs) -> np.ndarray:
        """H(pi_theta(. | obs)), shape ``[*batch]``."""
        raise NotImplementedError

    def kl(self, theta_p, theta_q, obs) -> np.ndarray:
        """KL(pi_p(. | obs) || pi_q(. | obs)), exact, shape ``[*batch]``."""
        raise NotImplementedError


# ------------------------------------------------------------ softmax policies

class SoftmaxPolicy(Policy):
    """Base class of discrete policies pi(a | s) = softmax(logits(s))[a].

    Subclasses set ``n_actions`` and ``n_params`` and implement ``logits``
    and ``score``; everything else follows from the logits.
    """

    n_actions: int

    def logits(self, theta, obs) -> np.ndarray:
        """Unnormalised log-probabilities, shape ``[*batch, A]``."""
        raise NotImplementedError

    def log_probs_all(self, theta, obs) -> np.ndarray:
        """log pi(b | s) for every action b (log-softmax), shape ``[*batch, A]``."""
        return _log_softmax(self.logits(theta, obs))

    def probs(self, theta, obs) -> np.ndarray:
        """pi(b | s) for every action b, shape ``[*batch, A]``; rows sum to one."""
        return np.exp(self.log_probs_all(theta, obs))

    def _check_actions(self, actions, batch_shape: tuple) -> np.ndarray:
        actions = _as_index(actions, "actions", self.n_actions)
        if actions.shape != tuple(batch_shape):
            raise ValueError(f"actions must have shape [*batch] = {_shape_str(batch_shape)} "
                             f"(the batch shape of obs), got {_shape_str(actions.shape)}")
        return actions

    def log_prob(self, theta, obs, actions) -> np.ndarray:
        """log pi(a | s) for the given actions.

        Args:
            theta: parameters, ``[n_params]``.
            obs: observations with batch shape ``[*batch]``.
            actions: integers in ``[0, A)``, ``[*batch]``.

        Returns:
            ``[*batch]`` log-probabilities.
        """
        log_pi = self.log_probs_all(theta, obs)
        actions = self._check_actions(actions, log_pi.shape[:-1])
        return np.take_along_axis(log_pi, actions[..., None], axis=-1)[..., 0]

    def sample(self, theta, obs, rng: np.random.Generator) -> np.ndarray:
        """Draw a ~ pi(. | s) by inverting the cumulative distribution.

        With u ~ U[0, 1), the action is the first a with u < sum_{b<=a} pi(b | s).

        Returns:
            ``[*batch]`` integer actions in ``[0, A)``.
        """
        rng = check_rng(rng)
        pi = self.probs(theta, obs)
        u = rng.random(pi.shape[:-1])
        cdf = np.cumsum(pi, axis=-1)
        actions = (cdf <= u[..., None]).sum(axis=-1)
        return np.minimum(actions, self.n_actions - 1)   # guard: cdf[-1] may round below u

    def entropy(self, theta, obs) -> np.ndarray:
        """H(pi(. | s)) = -sum_b pi(b | s) log pi(b | s), shape ``[*batch]``."""
        log_pi = self.log_probs_all(theta, obs)
        return -np.sum(np.exp(log_pi) * log_pi, axis=-1)

    def kl(self, theta_p, theta_q, obs) -> np.ndarray:
        """KL(p || q) = sum_b p(b | s) (log p(b | s) - log q(b | s)), shape ``[*batch]``.

        ``p`` and ``q`` are this policy with parameters ``theta_p`` and ``theta_q``.
        """
        log_p = self.log_probs_all(self.check_theta(theta_p, "theta_p"), obs)
        log_q = self.log_probs_all(self.check_theta(theta_q, "theta_q"), obs)
        return np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)


class TabularSoftmaxPolicy(SoftmaxPolicy):
    """Tabular softmax: pi(a | s) = exp(theta[s, a]) / sum_b exp(theta[s, b]).

    ``theta`` (flat, ``[S * A]``) reshaped to ``[S, A]`` holds the logits;
    observations are integer states in ``[0, S)`` of any batch shape.

    Args:
        n_states: S, the number of states.
        n_actions: A, the number of actions.
    """

    def __init__(self, n_states: int, n_actions: int):
        self.n_states = check_positive_int(n_states, "n_states")
        self.n_actions = check_positive_int(n_actions, "n_actions")
        self.n_params = self.n_states * self.n_actions

    def __repr__(self) -> str:
        return f"TabularSoftmaxPolicy(n_states={self.n_states}, n_actions={self.n_actions})"

    def logits(self, theta, obs) -> np.ndarray:
        """theta[s, :] for each state s in ``obs`` (``[*batch]``); shape ``[*batch, A]``."""
        theta = self.check_theta(theta)
        states = _as_index(obs, "states", self.n_states)
        return theta.reshape(self.n_states, self.n_actions)[states]

    def score(self, theta, obs, actions) -> np.ndarray:
        """grad_theta log pi(a | s) = e_{s,a} - pi(. | s) placed in row s.

        In components: d log pi(a | s) / d theta[s', b] = 1{s' = s} (1{b = a} - pi(b | s)).

        Args:
            theta: parameters, ``[S * A]``.
            obs: integer states, ``[*batch]``.
            actions: integer actions, ``[*batch]``.

        Returns:
            ``[*batch, S * A]``, each row the flattened ``[S, A]`` gradient.
        """
        states = _as_index(obs, "states", self.n_states)
        pi = self.probs(theta, states)
        actions = self._check_actions(actions, states.shape)
        # [book:softmax-score]
        in_row_s = np.eye(self.n_states)[states]            # 1{s' = s}        [*batch, S]
        per_action = np.eye(self.n_actions)[actions] - pi   # 1{b = a} - pi(b|s) [*batch, A]
        score = in_row_s[..., :, None] * per_action[..., None, :]         # [*batch, S, A]
        # [/book:softmax-score]
        return score.reshape(states.shape + (self.n_params,))


class LinearSoftmaxPolicy(SoftmaxPolicy):
    """Linear softmax: pi(a | s) = exp(theta . phi(s, a)) / sum_b exp(theta . phi(s, b)).

    Args:
        n_actions: A, the number of actions.
        features: callable mapping observations with batch shape ``[*batch]``
            to features ``[*batch, A, d]``, phi(s, a) in row a. It should
            validate its input.
        n_features: d, the feature dimension; ``n_params = d``.

    See :meth:`from_state_features` (integer states, a feature table) and
    :meth:`per_action_linear` (vector observations, one weight block per action).
    """

    def __init__(self, n_actions: int, features, n_features: int):
        self.n_actions = check_positive_int(n_actions, "n_actions")
        if not callable(features):
            raise ValueError(f"features must be callable, got {type(features).__name__}")
        self._features = features
        self.n_features = check_positive_int(n_features, "n_features")
        self.n_params = self.n_features

    def __repr__(self) -> str:
        return (f"LinearSoftmaxPolicy(n_actions={self.n_actions}, "
                f"n_features={self.n_features})")

    @classmethod
    def from_state_features(cls, phi) -> "LinearSoftmaxPolicy":
        """Policy over integer states with a feature table: features(s) = phi[s].

        Args:
            phi: ``[S, A, d]`` array, phi[s, a] the features of (s, a). Copied.

        With one-hot features phi[s, a] = e_{s*A + a} this is exactly
        :class:`TabularSoftmaxPolicy` (S, A).
        """
        phi = np.array(as_float_array(phi, "phi", ndim=3, shape_doc="[S, A, d]"))
        n_states, n_actions, n_features = phi.shape

        def features(states):
            return phi[_as_index(states, "states", n_states)]

        policy = cls(n_actions, features, n_features)
        policy.n_states = n_states
        return policy

    @classmethod
    def per_action_linear(cls, obs_dim: int, n_actions: int,
                          bias: bool = True) -> "LinearSoftmaxPolicy":
        """The usual linear policy on vector observations: logit_a = w_a . s + b_a.

        phi(s, a) puts x = [s, 1] (or x = s without bias) in the block of action a
        and zeros elsewhere, so ``theta.reshape(A, obs_dim + bias)`` has row
        a = [w_a, b_a]. Observations are floats, ``[*batch, obs_dim]``;
        ``n_params = A * (obs_dim + bias)``.
        """
        obs_dim = check_positive_int(obs_dim, "obs_dim")
        n_actions = check_positive_int(n_actions, "n_actions")
        bias = _check_bool(bias, "bias")
        k = obs_dim + bias    # block size

        def features(obs):
            obs = _as_obs(obs, obs_dim)
            batch = obs.shape[:-1]
            x = np.concatenate([obs, np.ones(batch + (1,))], axis=-1) if bias else obs
            phi = np.zeros(batch + (n_actions, n_actions * k))
            for a in range(n_actions):
                phi[..., a, a * k:(a + 1) * k] = x
            return phi

        policy = cls(n_actions, features, n_actions * k)
        policy.obs_dim = obs_dim
        return policy

    def features(self, obs) -> np.ndarray:
        """phi(s, b) for every action b, shape ``[*batch, A, d]`` (checked)."""
        phi = as_float_array(self._features(obs), "features(obs)")
        if phi.ndim < 2 or phi.shape[-2:] != (self.n_actions, self.n_features):
            raise ValueError(f"features(obs) must have shape [*batch, A, d] = "
                             f"[..., {self.n_actions}, {self.n_features}], "
                             f"got {_shape_str(phi.shape)}")
        return phi

    def logits(self, theta, obs) -> np.ndarray:
        """theta . phi(s, b) for every action b, shape ``[*batch, A]``."""
        theta = self.check_theta(theta)
        return self.features(obs) @ theta

    def score(self, theta, obs, actions) -> np.ndarray:
        """grad_theta log pi(a | s) = phi(s, a) - sum_b pi(b | s) phi(s, b).

        Args:
            theta: parameters, ``[d]``.
            obs: observations with batch shape ``[*batch]``.
            actions: integer actions, ``[*batch]``.

        Returns:
            ``[*batch, d]``.
        """
        theta = self.check_theta(theta)
        phi = self.features(obs)                          # [*batch, A, d]
        pi = np.exp(_log_softmax(phi @ theta))            # [*batch, A]
        actions = self._check_actions(actions, pi.shape[:-1])
        # [book:linear-softmax-score]
        phi_a = np.take_along_axis(phi, actions[..., None, None], axis=-2)[..., 0, :]
        phi_mean = np.einsum("...b,...bd->...d", pi, phi)   # sum_b pi(b|s) phi(s, b)
        score = phi_a - phi_mean
        # [/book:linear-softmax-score]
        return score


# ------------------------------------------------------------ Gaussian policy

class LinearGaussianPolicy(Policy):
    """Linear Gaussian policy: a ~ N(W s + b, diag(sigma^2)).

    ``theta = concat(W.ravel(), b, log_sigma)`` with W ``[action_dim, obs_dim]``,
    b ``[action_dim]`` (only if ``bias``) and log_sigma ``[action_dim]`` (only
    if ``learn_std``; otherwise sigma is fixed at ``std``). Use :meth:`pack`
    and :meth:`unpack` to go between the two forms.

    Observations are ``[*batch, obs_dim]``; actions are ``[*batch, action_dim]``
    (the trailing axis is kept even when ``action_dim == 1``).

    Args:
        obs_dim: dimension of an observation.
        action_dim: dimension of an action.
        bias: whether the mean has a learned offset b.
        learn_std: whether log sigma is part of theta.
        std: sigma when ``learn_std`` is False; the initial sigma returned
            by :meth:`init_params` when it is True. Must be positive.
    """

    def __init__(self, obs_dim: int, action_dim: int, bias: bool = True,
                 learn_std: bool = True, std: float = 1.0):
        self.obs_dim = check_positive_int(obs_dim, "obs_dim")
        self.action_dim = check_positive_int(action_dim, "action_dim")
        self.bias = _check_bool(bias, "bias")
        self.learn_std = _check_bool(learn_std, "learn_std")
        if (isinstance(std, bool) or not isinstance(std, numbers.Real)
                or not 0 < std < np.inf):
            raise ValueError(f"std must be positive and finite, got {std!r}")
        self.std = float(std)
        self.n_params = self.action_dim * (self.obs_dim + self.bias + self.learn_std)

    def __repr__(self) -> str:
        return (f"LinearGaussianPolicy(obs_dim={self.obs_dim}, action_dim={self.action_dim}, "
                f"bias={self.bias}, learn_std={self.learn_std}, std={self.std})")

    # -- between flat theta and (W, b, log_std)

    def unpack(self, theta):
        """Split ``theta`` into ``(W [action_dim, obs_dim], b [action_dim] or None,
        log_std [action_dim] or None)``; None for the parts not in theta."""
        theta = self.check_theta(theta)
        n_w = self.action_dim * self.obs_dim
        W = theta[:n_w].reshape(self.action_dim, self.obs_dim)
        rest = theta[n_w:]
        b = rest[:self.action_dim] if self.bias else None
        log_std = rest[-self.action_dim:] if self.learn_std else None
        return W, b, log_std

    def pack(self, W, b=None, log_std=None) -> np.ndarray:
        """Flat ``theta`` from W ``[action_dim, obs_dim]``, b and log_std ``[action_dim]``.

        ``b`` is required exactly when ``bias``, ``log_std`` exactly when ``learn_std``.
        """
        D = self.action_dim
        parts = [("W", W, (D, self.obs_dim), True),
                 ("b", b, (D,), self.bias),
                 ("log_std", log_std, (D,), self.learn_std)]
        flat = []
        for name, value, shape, wanted in parts:
            if not wanted:
                if value is not None:
                    raise ValueError(f"{name} must be None for this policy "
                                     f"({'bias' if name == 'b' else 'learn_std'}=False)")
                continue
            if value is None:
                raise ValueError(f"{name} is required for this policy")
            arr = as_float_array(value, name)
            if arr.shape != shape:
                raise ValueError(f"{name} must have shape {_shape_str(shape)}, "
                                 f"got {_shape_str(arr.shape)}")
            flat.append(arr.ravel())
        return np.concatenate(flat)

    def init_params(self, rng: np.random.Generator | None = None,
                    scale: float = 0.0) -> np.ndarray:
        """Like :meth:`Policy.init_params` for W and b; log sigma starts at log(std)."""
        theta = super().init_params(rng, scale)
        if self.learn_std:
            theta[-self.action_dim:] = np.log(self.std)
        return theta

    # -- the distribution

    def log_stds(self, theta) -> np.ndarray:
        """log sigma, shape ``[action_dim]``."""
        _, _, log_std = self.unpack(theta)
        if log_std is None:
            return np.full(self.action_dim, np.log(self.std))
        return log_std

    def stds(self, theta) -> np.ndarray:
        """sigma, shape ``[action_dim]``."""
        return np.exp(self.log_stds(theta))

    def mean(self, theta, obs) -> np.ndarray:
        """W s + b, shape ``[*batch, action_dim]`` for obs ``[*batch, obs_dim]``."""
        W, b, _ = self.unpack(theta)
        mean = _as_obs(obs, self.obs_dim) @ W.T
        return mean + b if self.bias else mean

    def _check_actions(self, actions, batch_shape: tuple) -> np.ndarray:
        actions = as_float_array(actions, "actions")
        shape = tuple(batch_shape) + (self.action_dim,)
        if actions.shape != shape:
            raise ValueError(f"actions must have shape [*batch, action_dim] = "
                             f"{_shape_str(shape)}, got {_shape_str(actions.shape)}")
        return actions

    def sample(self, theta, obs, rng: np.random.Generator) -> np.ndarray:
        """a = W s + b + sigma * eps with eps ~ N(0, I); shape ``[*batch, action_dim]``."""
        rng = check_rng(rng)
        mean = self.mean(theta, obs)
        return mean + self.stds(theta) * rng.standard_normal(mean.shape)

    def log_prob(self, theta, obs, actions) -> np.ndarray:
        """log pi(a | s) = sum_i [-z_i^2 / 2 - log sigma_i - log(2 pi) / 2],
        with z_i = (a_i - m_i(s)) / sigma_i and m(s) = W s + b.

        Args:
            theta: parameters, ``[n_params]``.
            obs: ``[*batch, obs_dim]``.
            actions: ``[*batch, action_dim]``.

        Returns:
            ``[*batch]``.
        """
        mean = self.mean(theta, obs)
        actions = self._check_actions(actions, mean.shape[:-1])
        log_std = self.log_stds(theta)
        # [book:gaussian-log-prob]
        z = (actions - mean) * np.exp(-log_std)
        return np.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)
        # [/book:gaussian-log-prob]

    def score(self, theta, obs, actions) -> np.ndarray:
        """grad_theta log pi(a | s), with z = (a - m(s)) / sigma::

            d/dW[i, j] = z_i / sigma_i * s_j,   d/db_i = z_i / sigma_i,
            d/dlog sigma_i = z_i^2 - 1.

        Args:
            theta: parameters, ``[n_params]``.
            obs: ``[*batch, obs_dim]``.
            actions: ``[*batch, action_dim]``.

        Returns:
            ``[*batch, n_params]`` laid out like ``theta`` (W, then b, then log sigma).
        """
        obs = _as_obs(obs, self.obs_dim)
        mean = self.mean(theta, obs)
        actions = self._check_actions(actions, mean.shape[:-1])
        sigma = self.stds(theta)
        # [book:gaussian-score]
        z = (actions - mean) / sigma
        d_mean = z / sigma                                  # d log pi / d mean   [*batch, D]
        d_W = d_mean[..., :, None] * obs[..., None, :]      # [*batch, D, obs_dim]
        d_log_std = z**2 - 1                                # [*batch, D]
        # [/book:gaussian-score]
        parts = [d_W.reshape(mean.shape[:-1] + (-1,))]
        if self.bias:
            parts.append(d_mean)
        if self.learn_std:
            parts.append(d_log_std)
        return np.concatenate(parts, axis=-1)

    def entropy(self, theta, obs) -> np.ndarray:
        """H = sum_i [log sigma_i + log(2 pi e) / 2] (the same for every state); ``[*batch]``."""
        batch = _as_obs(obs, self.obs_dim).shape[:-1]
        h = np.sum(self.log_stds(theta) + 0.5 * np.log(2 * np.pi * np.e))
        return np.full(batch, h)

    def kl(self, theta_p, theta_q, obs) -> np.ndarray:
        """KL(p || q) = sum_i [log(sigma_q,i / sigma_p,i)
        + (sigma_p,i^2 + (mu_p,i - mu_q,i)^2) / (2 sigma_q,i^2) - 1/2]; ``[*batch]``."""
        theta_p = self.check_theta(theta_p, "theta_p")
        theta_q = self.check_theta(theta_q, "theta_q")
        mu_p, mu_q = self.mean(theta_p, obs), self.mean(theta_q, obs)
        log_std_p, log_std_q = self.log_stds(theta_p), self.log_stds(theta_q)
        var_ratio = np.exp(2 * (log_std_p - log_std_q))          # sigma_p^2 / sigma_q^2
        mean_term = ((mu_p - mu_q) * np.exp(-log_std_q)) ** 2    # (mu_p - mu_q)^2 / sigma_q^2
        return np.sum(log_std_q - log_std_p + 0.5 * (var_ratio + mean_term) - 0.5, axis=-1)
