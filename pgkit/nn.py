r"""A small multilayer perceptron in numpy, with its backward pass written out.

The network is :math:`f_\theta(x) = W_L^\top h_{L-1} + b_L` with
:math:`h_0 = x` and :math:`h_l = \tanh(W_l^\top h_{l-1} + b_l)` (tanh hidden
layers, a linear output). All its parameters live in **one flat float64
vector** ``params`` of length ``n_params`` (layer by layer: ``W_l`` row-major
with shape ``[n_in, n_out]``, then ``b_l``), so that natural-gradient and
trust-region code can treat them as a vector; :meth:`MLP.unflatten` gives the
per-layer ``(W, b)`` views.

**Population axis.** Every method also accepts ``params`` of shape
``[S, n_params]``: one network per member (a seed, say), with inputs
``[S, *batch, n_in]``, computed with batched matrix products (no loop over S).
Results then carry the leading ``S``. Without it, inputs are ``[*batch, n_in]``.

Three derivatives, each a loop over the layers:

* :meth:`MLP.backward` (reverse mode): given :math:`\bar y = \partial \ell / \partial y`,
  the gradient :math:`\sum_{\text{batch}} J^\top \bar y` w.r.t. ``params``;
* :meth:`MLP.jvp` (forward mode): the directional derivative :math:`J v`
  of the outputs along a parameter direction ``v``;

and the heads' ``grad_*`` methods, which chain a closed-form derivative of a
loss w.r.t. the network's output into :meth:`MLP.backward`.

Initialisation is orthogonal (Saxe et al. 2014, arXiv:1312.6120), gain
:math:`\sqrt2` for hidden layers and ``output_gain`` for the last (0.01 for a
policy head, 1 for a value head), biases zero, as in PPO implementations
(Huang et al., "The 37 implementation details of PPO", ICLR blog track 2022).

Heads: :class:`CategoricalMLPPolicy`, :class:`GaussianMLPPolicy`, :class:`ValueMLP`.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from pgkit._checks import _shape_str, as_float_array, as_int_array, check_positive_int, check_rng

__all__ = ["MLP", "MLPCache", "CategoricalMLPPolicy", "GaussianMLPPolicy", "ValueMLP"]


# ---------------------------------------------------------------- input checks

class _Layout(NamedTuple):
    """Where the batch went: arrays are computed as [S, M, ...] (M = prod(batch))."""

    population: bool
    n_members: int
    batch_shape: tuple

    def lead(self) -> tuple:
        return ((self.n_members,) if self.population else ()) + self.batch_shape

    def restore(self, arr: np.ndarray) -> np.ndarray:
        """[S, M, *rest] -> [S, *batch, *rest] (population) or [*batch, *rest]."""
        return arr.reshape(self.lead() + arr.shape[2:])

    def per_member(self, arr: np.ndarray):
        """[S, ...] -> itself (population) or arr[0] (a float for a scalar)."""
        if self.population:
            return arr
        return float(arr[0]) if arr.ndim == 1 else arr[0]

    def rows(self, x, name: str, trailing: tuple = (), *, kind: str = "float",
                n: int | None = None) -> np.ndarray:
        """Check that ``x`` has shape [S?, *batch, *trailing]; return it as [S, M, *trailing]."""
        if kind == "int":
            arr = as_int_array(x, name)
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                bad = arr.min() if arr.min() < 0 else arr.max()
                raise ValueError(f"{name} must be integers in [0, {n}), got {bad}")
        else:
            arr = _finite(x, name)
        shape = self.lead() + tuple(trailing)
        if arr.shape != shape:
            where = "[S, *batch" if self.population else "[*batch"
            dims = "".join(f", {t}" for t in trailing)
            raise ValueError(f"{name} must have shape {where}{dims}] = {_shape_str(shape)}, "
                             f"got {_shape_str(arr.shape)}")
        return arr.reshape((self.n_members, -1) + tuple(trailing))


def _finite(x, name: str) -> np.ndarray:
    arr = as_float_array(x, name)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got inf")
    return arr


def _check_params(params, n_params: int, name: str = "params") -> np.ndarray:
    arr = _finite(params, name)
    if arr.ndim not in (1, 2) or arr.shape[-1] != n_params:
        raise ValueError(f"{name} must have shape [n_params] = ({n_params},) or "
                         f"[S, n_params] = (S, {n_params}), got {_shape_str(arr.shape)}")
    return arr


def _prepare(params, x, n_params: int, n_in: int, x_name: str = "x"):
    """Check params and inputs; return params [S, P], inputs [S, M, n_in] and the layout."""
    params = _check_params(params, n_params)
    x = _finite(x, x_name)
    population = params.ndim == 2
    S = params.shape[0] if population else 1
    if population and (x.ndim < 2 or x.shape[0] != S or x.shape[-1] != n_in):
        raise ValueError(f"{x_name} must have shape [S, *batch, {n_in}] with S = {S} "
                         f"(params has a population axis), got {_shape_str(x.shape)}")
    if not population and (x.ndim < 1 or x.shape[-1] != n_in):
        raise ValueError(f"{x_name} must have shape [*batch, {n_in}], got {_shape_str(x.shape)}")
    batch = tuple(x.shape[1:-1] if population else x.shape[:-1])
    if 0 in batch:
        raise ValueError(f"{x_name} must hold at least one input, got shape {_shape_str(x.shape)}")
    layout = _Layout(population, S, batch)
    return params.reshape(S, n_params), x.reshape(S, math.prod(batch), n_in), layout


def _check_hidden(hidden) -> tuple:
    if isinstance(hidden, numbers.Integral) or not hasattr(hidden, "__iter__"):
        raise ValueError(f"hidden must be a sequence of layer widths such as (64, 64), got {hidden!r}")
    return tuple(check_positive_int(h, "hidden layer width") for h in hidden)


def _check_population(population):
    if population is None:
        return None
    return check_positive_int(population, "population")


# ---------------------------------------------------------------- the network

class MLPCache(NamedTuple):
    """What :meth:`MLP.forward` keeps for :meth:`MLP.backward`.

    ``inputs[l]`` is the input of layer l, ``[S, M, n_in_l]`` (``inputs[0]`` the
    network's input, the others tanh activations); ``population`` and
    ``batch_shape`` record how the batch was flattened to M rows.
    """

    inputs: list
    population: bool
    batch_shape: tuple


def _orthogonal(rng, S: int, n_in: int, n_out: int, gain: float) -> np.ndarray:
    """S orthogonal [n_in, n_out] matrices times gain (QR of a Gaussian matrix, signs fixed)."""
    big, small = max(n_in, n_out), min(n_in, n_out)
    q, r = np.linalg.qr(rng.standard_normal((S, big, small)))    # q: [S, big, small]
    signs = np.sign(np.diagonal(r, axis1=-2, axis2=-1))
    q = q * np.where(signs == 0, 1.0, signs)[:, None, :]          # uniform (Haar) draw
    w = q if n_in >= n_out else np.swapaxes(q, 1, 2)
    return gain * w


def _layers(params2: np.ndarray, shapes) -> list:
    """Views (W [S, n_in, n_out], b [S, n_out]) into params [S, P]."""
    layers, start = [], 0
    S = params2.shape[0]
    for n_in, n_out in shapes:
        W = params2[:, start:start + n_in * n_out].reshape(S, n_in, n_out)
        start += n_in * n_out
        layers.append((W, params2[:, start:start + n_out]))
        start += n_out
    return layers


def _flat(grads) -> np.ndarray:
    """[(dW [S, i, o], db [S, o]), ...] -> [S, P]."""
    S = grads[0][1].shape[0]
    return np.concatenate([part.reshape(S, -1) for pair in grads for part in pair], axis=1)


def _forward(layers, x):
    """Unchecked forward pass: x [S, M, n_in] -> (outputs [S, M, n_out], layer inputs)."""
    inputs = [x]
    for W, b in layers[:-1]:
        x = np.tanh(x @ W + b[:, None, :])
        inputs.append(x)
    W, b = layers[-1]
    return x @ W + b[:, None, :], inputs


def _backward(layers, inputs, grad_out) -> list:
    """Unchecked reverse mode: grad_out [S, M, n_out] -> [(dW, db)] summed over M."""
    grads = [None] * len(layers)
    g = grad_out                                           # d loss / d (layer output)
    for l in reversed(range(len(layers))):
        W, _ = layers[l]
        h = inputs[l]
        # [book:mlp-backward]
        grads[l] = (np.swapaxes(h, 1, 2) @ g, g.sum(axis=1))   # dW = h^T g, db = sum g
        if l > 0:
            g = (g @ np.swapaxes(W, 1, 2)) * (1 - h**2)        # through W, then tanh' = 1 - h^2
        # [/book:mlp-backward]
    return grads


def _jvp(layers, inputs, tangents) -> np.ndarray:
    """Unchecked forward mode: the change of the outputs [S, M, n_out] along tangents [(dW, db)]."""
    dh = None
    for l, ((W, _), (dW, db)) in enumerate(zip(layers, tangents)):
        # [book:mlp-jvp]
        dz = inputs[l] @ dW + db[:, None, :]                   # the weights move
        if dh is not None:
            dz = dz + dh @ W                                   # the input moves
        if l + 1 < len(layers):
            dh = (1 - inputs[l + 1]**2) * dz                   # tanh' = 1 - h^2
        # [/book:mlp-jvp]
    return dz


class MLP:
    """A tanh multilayer perceptron with a linear output and flat parameters.

    Args:
        sizes: layer widths ``(n_in, hidden..., n_out)``, at least two positive integers.
        output_gain: gain of the orthogonal initialisation of the last layer
            (hidden layers use sqrt(2)); non-negative.

    ``n_params = sum_l (n_in_l + 1) n_out_l``.
    """

    def __init__(self, sizes, *, output_gain: float = 1.0):
        if isinstance(sizes, numbers.Integral) or not hasattr(sizes, "__iter__"):
            raise ValueError(f"sizes must be a sequence of layer widths, got {sizes!r}")
        sizes = tuple(check_positive_int(n, "every layer size") for n in sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output size, got {sizes}")
        if (isinstance(output_gain, bool) or not isinstance(output_gain, numbers.Real)
                or not 0 <= output_gain < np.inf):
            raise ValueError(f"output_gain must be a non-negative finite number, got {output_gain!r}")
        self.sizes = sizes
        self.output_gain = float(output_gain)
        self.shapes = list(zip(sizes[:-1], sizes[1:]))
        self.n_params = sum((n_in + 1) * n_out for n_in, n_out in self.shapes)

    def __repr__(self) -> str:
        return f"MLP(sizes={self.sizes}, output_gain={self.output_gain})"

    def init(self, rng: np.random.Generator, population: int | None = None) -> np.ndarray:
        """Orthogonal weights (gain sqrt(2) hidden, ``output_gain`` last), zero biases.

        For a layer with ``W [n_in, n_out]``: ``W^T W = gain^2 I`` if n_in >= n_out,
        else ``W W^T = gain^2 I``. ``init(rng)`` equals ``init(rng, 1)[0]`` for the same seed.

        Returns:
            ``[n_params]``, or ``[population, n_params]``.
        """
        rng = check_rng(rng)
        population = _check_population(population)
        S = 1 if population is None else population
        parts = []
        for l, (n_in, n_out) in enumerate(self.shapes):
            gain = self.output_gain if l == len(self.shapes) - 1 else math.sqrt(2)
            parts.append((_orthogonal(rng, S, n_in, n_out, gain), np.zeros((S, n_out))))
        params = _flat(parts)
        return params[0] if population is None else params

    def unflatten(self, params) -> list:
        """Per-layer views ``(W [S?, n_in, n_out], b [S?, n_out])`` of ``params``."""
        params = _check_params(params, self.n_params)
        layers = _layers(params.reshape(-1, self.n_params), self.shapes)
        if params.ndim == 1:
            return [(W[0], b[0]) for W, b in layers]
        return layers

    def flatten(self, layers) -> np.ndarray:
        """The inverse of :meth:`unflatten`: a list of (W, b) to ``[S?, n_params]``."""
        if len(layers) != len(self.shapes):
            raise ValueError(f"layers must hold {len(self.shapes)} (W, b) pairs, got {len(layers)}")
        parts, lead = [], None
        for l, ((W, b), (n_in, n_out)) in enumerate(zip(layers, self.shapes)):
            W, b = _finite(W, f"W[{l}]"), _finite(b, f"b[{l}]")
            lead = W.shape[:-2] if lead is None else lead
            if W.shape != lead + (n_in, n_out) or b.shape != lead + (n_out,) or len(lead) > 1:
                raise ValueError(f"layer {l} must have W {_shape_str(lead + (n_in, n_out))} and "
                                 f"b {_shape_str(lead + (n_out,))}, got {_shape_str(W.shape)} "
                                 f"and {_shape_str(b.shape)}")
            parts.append((W.reshape((-1, n_in, n_out)), b.reshape(-1, n_out)))
        params = _flat(parts)
        return params if lead else params[0]

    def forward(self, params, x):
        """Outputs f(x) and a cache for :meth:`backward`.

        Args:
            params: ``[n_params]`` or ``[S, n_params]``.
            x: ``[*batch, n_in]``, or ``[S, *batch, n_in]`` with population params.

        Returns:
            ``(outputs, cache)``: outputs ``[S?, *batch, n_out]``; an :class:`MLPCache`.
        """
        params2, x3, layout = _prepare(params, x, self.n_params, self.sizes[0])
        out, inputs = _forward(_layers(params2, self.shapes), x3)
        return layout.restore(out), MLPCache(inputs, layout.population, layout.batch_shape)

    def backward(self, params, cache: MLPCache, grad_out) -> np.ndarray:
        r"""Gradient of :math:`\sum_{\text{batch}} \bar y \cdot f_\theta(x)` w.r.t. params.

        That is :math:`\sum_i J_i^\top \bar y_i` with :math:`J_i = \partial f(x_i) / \partial\theta`:
        chain any loss's output gradient ``grad_out`` = :math:`\bar y` through the net.

        Args:
            params: the parameters passed to :meth:`forward`.
            cache: the :class:`MLPCache` :meth:`forward` returned.
            grad_out: ``[S?, *batch, n_out]``, the shape of the outputs.

        Returns:
            ``[n_params]`` or ``[S, n_params]`` (the shape of ``params``).
        """
        if not isinstance(cache, MLPCache):
            raise ValueError(f"cache must be the MLPCache returned by forward, got {type(cache).__name__}")
        params = _check_params(params, self.n_params)
        S = cache.inputs[0].shape[0]
        if (params.ndim == 2) != cache.population or params.reshape(-1, self.n_params).shape[0] != S:
            raise ValueError(f"params has shape {_shape_str(params.shape)}, but cache comes from "
                             "a forward pass with another population size")
        layout = _Layout(cache.population, S, cache.batch_shape)
        g = layout.rows(grad_out, "grad_out", (self.sizes[-1],))
        grads = _backward(_layers(params.reshape(S, -1), self.shapes), cache.inputs, g)
        return layout.per_member(_flat(grads))

    def jvp(self, params, x, v) -> np.ndarray:
        r"""Forward-mode directional derivative :math:`J v = \frac{d}{d\epsilon} f_{\theta + \epsilon v}(x)|_{\epsilon=0}`.

        Args:
            params: ``[n_params]`` or ``[S, n_params]``.
            x: ``[*batch, n_in]``, or ``[S, *batch, n_in]``.
            v: a parameter direction, the shape of ``params``.

        Returns:
            ``[S?, *batch, n_out]``, the shape of the outputs.
        """
        params2, x3, layout = _prepare(params, x, self.n_params, self.sizes[0])
        v = _finite(v, "v")
        if v.shape != np.shape(params):
            raise ValueError(f"v must have the shape of params, {_shape_str(np.shape(params))}, "
                             f"got {_shape_str(v.shape)}")
        layers = _layers(params2, self.shapes)
        _, inputs = _forward(layers, x3)
        tangent = _jvp(layers, inputs, _layers(v.reshape(params2.shape), self.shapes))
        return layout.restore(tangent)


# ------------------------------------------------------------------ the heads

def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)     # largest logit is now 0
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class _Head:
    """Shared plumbing: an MLP body, flat params ``[S?, n_params]``, observations ``[S?, *batch, obs_dim]``."""

    mlp: MLP
    n_params: int
    obs_dim: int

    def init(self, rng: np.random.Generator, population: int | None = None) -> np.ndarray:
        """Initial parameters ``[n_params]`` or ``[population, n_params]`` (see :meth:`MLP.init`)."""
        return self.mlp.init(rng, population)

    def _prepare(self, params, obs):
        """Checked params [S, P], observations [S, M, obs_dim] and the layout."""
        return _prepare(params, obs, self.n_params, self.obs_dim, "obs")

    def _body(self, params2, obs3):
        """Network outputs [S, M, out], layers and layer inputs (unchecked)."""
        layers = _layers(params2[:, :self.mlp.n_params], self.mlp.shapes)
        out, inputs = _forward(layers, obs3)
        return out, layers, inputs

    def _check_pair(self, params_old, params_new, obs):
        p_old, obs3, layout = self._prepare(params_old, obs)
        p_new = _check_params(params_new, self.n_params, "params_new")
        if p_new.shape != np.shape(params_old):
            raise ValueError(f"params_old and params_new must have the same shape, got "
                             f"{_shape_str(np.shape(params_old))} and {_shape_str(p_new.shape)}")
        return p_old, p_new.reshape(p_old.shape), obs3, layout


class CategoricalMLPPolicy(_Head):
    """pi(a | s) = softmax(f_theta(s))[a]: an MLP's outputs are the logits.

    Args:
        obs_dim: dimension of an observation.
        n_actions: A, the number of actions.
        hidden: widths of the tanh hidden layers; ``()`` gives a linear policy.

    The last layer is initialised with gain 0.01, so the initial policy is
    nearly uniform. Actions are integers, shape ``[S?, *batch]``.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden=(64, 64)):
        self.obs_dim = check_positive_int(obs_dim, "obs_dim")
        self.n_actions = check_positive_int(n_actions, "n_actions")
        self.hidden = _check_hidden(hidden)
        self.mlp = MLP((self.obs_dim,) + self.hidden + (self.n_actions,), output_gain=0.01)
        self.n_params = self.mlp.n_params

    def __repr__(self) -> str:
        return (f"CategoricalMLPPolicy(obs_dim={self.obs_dim}, n_actions={self.n_actions}, "
                f"hidden={self.hidden})")

    def logits(self, params, obs) -> np.ndarray:
        """f_theta(s), shape ``[S?, *batch, A]``."""
        params2, obs3, layout = self._prepare(params, obs)
        return layout.restore(self._body(params2, obs3)[0])

    def log_probs_all(self, params, obs) -> np.ndarray:
        """log pi(b | s) for every action b (stable log-softmax), ``[S?, *batch, A]``."""
        return _log_softmax(self.logits(params, obs))

    def log_prob(self, params, obs, actions) -> np.ndarray:
        """log pi(a | s) = z_a - max z - log sum_b exp(z_b - max z), ``[S?, *batch]``."""
        params2, obs3, layout = self._prepare(params, obs)
        a = layout.rows(actions, "actions", kind="int", n=self.n_actions)
        log_pi = _log_softmax(self._body(params2, obs3)[0])
        return layout.restore(np.take_along_axis(log_pi, a[..., None], axis=-1)[..., 0])

    def sample(self, params, obs, rng: np.random.Generator) -> np.ndarray:
        """a ~ pi(. | s) by inverting the CDF with u ~ U[0, 1); ``[S?, *batch]`` integers."""
        rng = check_rng(rng)
        params2, obs3, layout = self._prepare(params, obs)
        pi = np.exp(_log_softmax(self._body(params2, obs3)[0]))
        u = rng.random(pi.shape[:-1])
        actions = (np.cumsum(pi, axis=-1) <= u[..., None]).sum(axis=-1)
        return layout.restore(np.minimum(actions, self.n_actions - 1))

    def entropy(self, params, obs) -> np.ndarray:
        """H(pi(. | s)) = -sum_b pi(b | s) log pi(b | s), ``[S?, *batch]``."""
        log_pi = self.log_probs_all(params, obs)
        return -np.sum(np.exp(log_pi) * log_pi, axis=-1)

    def kl(self, params_old, params_new, obs) -> np.ndarray:
        """Per-sample KL(pi_old(. | s) || pi_new(. | s)), ``[S?, *batch]`` (average it yourself)."""
        p_old, p_new, obs3, layout = self._check_pair(params_old, params_new, obs)
        log_p = _log_softmax(self._body(p_old, obs3)[0])
        log_q = _log_softmax(self._body(p_new, obs3)[0])
        return layout.restore(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1))

    def grad_log_prob(self, params, obs, actions, weights) -> np.ndarray:
        r"""Gradient of :math:`\sum_i w_i \log\pi_\theta(a_i|s_i)`, the policy-gradient line.

        :math:`\partial \log\pi(a|s) / \partial z_b = 1\{b = a\} - \pi(b|s)`, chained
        through :meth:`MLP.backward`. With ``weights`` the advantages divided by
        N, this is the REINFORCE / actor-critic gradient estimate.

        Args:
            params: ``[n_params]`` or ``[S, n_params]``.
            obs: ``[S?, *batch, obs_dim]``.
            actions: integers ``[S?, *batch]``.
            weights: ``[S?, *batch]``.

        Returns:
            the shape of ``params``.
        """
        params2, obs3, layout = self._prepare(params, obs)
        a = layout.rows(actions, "actions", kind="int", n=self.n_actions)
        w = layout.rows(weights, "weights")
        logits, layers, inputs = self._body(params2, obs3)
        pi = np.exp(_log_softmax(logits))
        # [book:categorical-grad-log-prob]
        grad_logits = w[..., None] * (np.eye(self.n_actions)[a] - pi)   # w_i (e_{a_i} - pi_i)
        grad = _flat(_backward(layers, inputs, grad_logits))            # sum_i J_i^T (...)
        # [/book:categorical-grad-log-prob]
        return layout.per_member(grad)

    def grad_entropy(self, params, obs) -> np.ndarray:
        r"""Gradient of :math:`\sum_i H(\pi(\cdot|s_i))`; :math:`\partial H/\partial z_b = -\pi_b(\log\pi_b + H)`.

        Returns the shape of ``params``.
        """
        params2, obs3, layout = self._prepare(params, obs)
        logits, layers, inputs = self._body(params2, obs3)
        log_pi = _log_softmax(logits)
        pi = np.exp(log_pi)
        H = -np.sum(pi * log_pi, axis=-1, keepdims=True)
        return layout.per_member(_flat(_backward(layers, inputs, -pi * (log_pi + H))))

    def grad_kl(self, params_old, params_new, obs) -> np.ndarray:
        r"""Gradient w.r.t. ``params_new`` of :math:`\sum_i \mathrm{KL}(\pi_{old}(\cdot|s_i) \| \pi_{new}(\cdot|s_i))`.

        :math:`\partial\,\mathrm{KL} / \partial z^{new}_b = \pi_{new}(b|s) - \pi_{old}(b|s)`.
        Returns the shape of ``params_new``.
        """
        p_old, p_new, obs3, layout = self._check_pair(params_old, params_new, obs)
        pi_old = np.exp(_log_softmax(self._body(p_old, obs3)[0]))
        logits, layers, inputs = self._body(p_new, obs3)
        grad_logits = np.exp(_log_softmax(logits)) - pi_old
        return layout.per_member(_flat(_backward(layers, inputs, grad_logits)))


class GaussianMLPPolicy(_Head):
    """a ~ N(mu_theta(s), diag(sigma^2)): an MLP mean, a state-independent log sigma.

    ``params = concat(MLP params, log_std)``: the ``action_dim`` log standard
    deviations are the last entries. Actions are ``[S?, *batch, action_dim]``.

    Args:
        obs_dim: dimension of an observation.
        action_dim: dimension of an action.
        hidden: widths of the tanh hidden layers.
        init_std: sigma at initialisation (positive).
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden=(64, 64), *, init_std: float = 1.0):
        self.obs_dim = check_positive_int(obs_dim, "obs_dim")
        self.action_dim = check_positive_int(action_dim, "action_dim")
        self.hidden = _check_hidden(hidden)
        if (isinstance(init_std, bool) or not isinstance(init_std, numbers.Real)
                or not 0 < init_std < np.inf):
            raise ValueError(f"init_std must be positive and finite, got {init_std!r}")
        self.init_std = float(init_std)
        self.mlp = MLP((self.obs_dim,) + self.hidden + (self.action_dim,), output_gain=0.01)
        self.n_params = self.mlp.n_params + self.action_dim

    def __repr__(self) -> str:
        return (f"GaussianMLPPolicy(obs_dim={self.obs_dim}, action_dim={self.action_dim}, "
                f"hidden={self.hidden}, init_std={self.init_std})")

    def init(self, rng: np.random.Generator, population: int | None = None) -> np.ndarray:
        """MLP init (output gain 0.01) followed by log sigma = log(init_std)."""
        body = self.mlp.init(rng, population)
        log_std = np.full(body.shape[:-1] + (self.action_dim,), math.log(self.init_std))
        return np.concatenate([body, log_std], axis=-1)

    def _mean_std(self, params2, obs3):
        mu, layers, inputs = self._body(params2, obs3)
        return mu, params2[:, None, -self.action_dim:], layers, inputs   # log_std [S, 1, D]

    def mean(self, params, obs) -> np.ndarray:
        """mu_theta(s), ``[S?, *batch, action_dim]``."""
        params2, obs3, layout = self._prepare(params, obs)
        return layout.restore(self._body(params2, obs3)[0])

    def log_std(self, params) -> np.ndarray:
        """log sigma, ``[action_dim]`` or ``[S, action_dim]``."""
        return _check_params(params, self.n_params)[..., -self.action_dim:]

    def log_prob(self, params, obs, actions) -> np.ndarray:
        """log pi(a | s) = sum_j [-z_j^2 / 2 - log sigma_j - log(2 pi) / 2], z = (a - mu) / sigma."""
        params2, obs3, layout = self._prepare(params, obs)
        a = layout.rows(actions, "actions", (self.action_dim,))
        mu, log_std, _, _ = self._mean_std(params2, obs3)
        z = (a - mu) * np.exp(-log_std)
        return layout.restore(np.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1))

    def sample(self, params, obs, rng: np.random.Generator) -> np.ndarray:
        """a = mu(s) + sigma * eps, eps ~ N(0, I); ``[S?, *batch, action_dim]``."""
        rng = check_rng(rng)
        params2, obs3, layout = self._prepare(params, obs)
        mu, log_std, _, _ = self._mean_std(params2, obs3)
        return layout.restore(mu + np.exp(log_std) * rng.standard_normal(mu.shape))

    def entropy(self, params, obs) -> np.ndarray:
        """H = sum_j [log sigma_j + log(2 pi e) / 2], the same in every state; ``[S?, *batch]``."""
        params2, obs3, layout = self._prepare(params, obs)
        h = np.sum(params2[:, -self.action_dim:] + 0.5 * math.log(2 * math.pi * math.e), axis=-1)
        return layout.restore(np.broadcast_to(h[:, None], obs3.shape[:2]).copy())

    def kl(self, params_old, params_new, obs) -> np.ndarray:
        """Per-sample KL(old || new) = sum_j [log(sigma_new / sigma_old)
        + (sigma_old^2 + (mu_old - mu_new)^2) / (2 sigma_new^2) - 1/2], ``[S?, *batch]``."""
        p_old, p_new, obs3, layout = self._check_pair(params_old, params_new, obs)
        mu_p, ls_p, _, _ = self._mean_std(p_old, obs3)
        mu_q, ls_q, _, _ = self._mean_std(p_new, obs3)
        ratio = np.exp(2 * (ls_p - ls_q)) + ((mu_p - mu_q) * np.exp(-ls_q))**2
        return layout.restore(np.sum(ls_q - ls_p + 0.5 * ratio - 0.5, axis=-1))

    def _grad(self, layers, inputs, grad_mean, grad_log_std):
        """Chain d/dmu [S, M, D] through the MLP; append d/dlog sigma [S, D]."""
        return np.concatenate([_flat(_backward(layers, inputs, grad_mean)), grad_log_std], axis=1)

    def grad_log_prob(self, params, obs, actions, weights) -> np.ndarray:
        r"""Gradient of :math:`\sum_i w_i \log\pi_\theta(a_i|s_i)`.

        With :math:`z = (a - \mu)/\sigma`: :math:`\partial/\partial\mu = z/\sigma` (chained
        through the MLP) and :math:`\partial/\partial\log\sigma = z^2 - 1`.
        Shapes as :meth:`CategoricalMLPPolicy.grad_log_prob`, actions ``[S?, *batch, D]``.
        """
        params2, obs3, layout = self._prepare(params, obs)
        a = layout.rows(actions, "actions", (self.action_dim,))
        w = layout.rows(weights, "weights")[..., None]
        mu, log_std, layers, inputs = self._mean_std(params2, obs3)
        z = (a - mu) * np.exp(-log_std)
        grad = self._grad(layers, inputs, w * z * np.exp(-log_std), np.sum(w * (z**2 - 1), axis=1))
        return layout.per_member(grad)

    def grad_entropy(self, params, obs) -> np.ndarray:
        """Gradient of sum_i H: zero for the mean, M (the number of samples) for each log sigma_j."""
        params2, obs3, layout = self._prepare(params, obs)
        S, M = obs3.shape[:2]
        grad = np.zeros((S, self.n_params))
        grad[:, -self.action_dim:] = M
        return layout.per_member(grad)

    def grad_kl(self, params_old, params_new, obs) -> np.ndarray:
        r"""Gradient w.r.t. ``params_new`` of :math:`\sum_i \mathrm{KL}(\pi_{old} \| \pi_{new})`.

        :math:`\partial/\partial\mu_{new} = (\mu_{new} - \mu_{old})/\sigma_{new}^2`,
        :math:`\partial/\partial\log\sigma_{new} = 1 - (\sigma_{old}^2 + (\mu_{old} - \mu_{new})^2)/\sigma_{new}^2`.
        """
        p_old, p_new, obs3, layout = self._check_pair(params_old, params_new, obs)
        mu_p, ls_p, _, _ = self._mean_std(p_old, obs3)
        mu_q, ls_q, layers, inputs = self._mean_std(p_new, obs3)
        inv_var = np.exp(-2 * ls_q)
        grad_log_std = 1 - (np.exp(2 * ls_p) + (mu_p - mu_q)**2) * inv_var
        grad = self._grad(layers, inputs, (mu_q - mu_p) * inv_var, grad_log_std.sum(axis=1))
        return layout.per_member(grad)


class ValueMLP(_Head):
    """A state-value network V_phi(s) = f_phi(s) (one output, output gain 1).

    Args:
        obs_dim: dimension of an observation.
        hidden: widths of the tanh hidden layers.
    """

    def __init__(self, obs_dim: int, hidden=(64, 64)):
        self.obs_dim = check_positive_int(obs_dim, "obs_dim")
        self.hidden = _check_hidden(hidden)
        self.mlp = MLP((self.obs_dim,) + self.hidden + (1,), output_gain=1.0)
        self.n_params = self.mlp.n_params

    def __repr__(self) -> str:
        return f"ValueMLP(obs_dim={self.obs_dim}, hidden={self.hidden})"

    def value(self, params, obs) -> np.ndarray:
        """V(s), ``[S?, *batch]``."""
        params2, obs3, layout = self._prepare(params, obs)
        return layout.restore(self._body(params2, obs3)[0][..., 0])

    def value_loss(self, params, obs, returns):
        """(1/2) mean_i (V(s_i) - R_i)^2 over the batch: a float, or ``[S]`` per member."""
        params2, obs3, layout = self._prepare(params, obs)
        targets = layout.rows(returns, "returns")
        error = self._body(params2, obs3)[0][..., 0] - targets
        return layout.per_member(0.5 * np.mean(error**2, axis=1))

    def grad_value_loss(self, params, obs, returns) -> np.ndarray:
        """Gradient of :meth:`value_loss`: (1/M) sum_i (V(s_i) - R_i) grad V(s_i); shape of params."""
        params2, obs3, layout = self._prepare(params, obs)
        targets = layout.rows(returns, "returns")
        values, layers, inputs = self._body(params2, obs3)
        grad_out = (values - targets[..., None]) / targets.shape[1]
        return layout.per_member(_flat(_backward(layers, inputs, grad_out)))
