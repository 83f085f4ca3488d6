r"""Fisher information, conjugate gradient, natural steps and the NPG / TRPO update.

**Fisher information** of a policy under a state distribution d:

.. math:: F(\theta) = \mathbb E_{s\sim d,\, a\sim\pi_\theta(\cdot|s)}\big[\nabla\log\pi_\theta(a|s)\, \nabla\log\pi_\theta(a|s)^\top\big].

It is the Hessian at :math:`\theta' = \theta` of the mean
:math:`\mathbb E_{s\sim d}[\mathrm{KL}(\pi_\theta(\cdot|s) \| \pi_{\theta'}(\cdot|s))]`, so
:math:`\tfrac12 s^\top F s` is the KL of a small step s to second order.
For a softmax policy with features :math:`\phi(s,a)` (tabular: one-hot) it is, state by state,

.. math:: F = \sum_s d(s) \Big[\sum_a \pi(a|s)\, \phi(s,a)\phi(s,a)^\top - \bar\phi(s)\bar\phi(s)^\top\Big],
          \qquad \bar\phi(s) = \sum_a \pi(a|s)\phi(s,a)

(:func:`fisher_matrix`). For a network with logits :math:`z_i = f_\theta(s_i)` and
Jacobian :math:`J_i = \partial z_i / \partial\theta` it is
:math:`\frac1N \sum_i J_i^\top (\mathrm{diag}(p_i) - p_i p_i^\top) J_i`, which
:func:`fisher_vector_product` applies to a vector with one forward-mode and one
reverse-mode pass, never forming the matrix (Martens, arXiv:1412.1193, sec. 9;
Schulman et al., arXiv:1502.05477, appendix C).

**Natural step** (Kakade, "A natural policy gradient", NeurIPS 2001). The
direction :math:`x = F^{-1} g` comes from conjugate gradient on :math:`Fx = g`;
the step :math:`s = \beta x` with :math:`\beta = \sqrt{2\delta / x^\top F x}` puts
the quadratic KL model :math:`\tfrac12 s^\top F s` exactly on the trust-region
boundary :math:`\delta` (``max_kl``). NPG takes this step; TRPO (Schulman et al.
2015, arXiv:1502.05477) shrinks it by backtracking until the surrogate improves
and the exact mean KL is at most :math:`\delta`.

**Tabular identity.** For the tabular softmax, with the exact gradient of
:math:`J` (discounted, :func:`pgkit.mdp.exact_policy_gradient`) and the Fisher
weighted by the *normalised* discounted visitation :math:`d^\pi`
(:func:`pgkit.mdp.state_visitation`, summing to one), the natural gradient is

.. math:: F^{+} \nabla J = \frac{A^\pi(s,a)}{1-\gamma} - c(s), \qquad c(s) = \frac1{|A|}\sum_b \frac{A^\pi(s,b)}{1-\gamma}

(Kakade 2001; Agarwal et al., arXiv:1908.00261, Lemma 5.1): the gradient's
:math:`d^\pi(s)\pi(a|s)A(s,a)/(1-\gamma)` divided by the Fisher's
:math:`d^\pi(s)(\mathrm{diag}\,\pi - \pi\pi^\top)`. :math:`F` is singular (adding a
constant to a state's logits changes nothing); the minimum-norm solution, which
CG started at zero returns up to rounding, is centred per state, hence :math:`-c(s)`;
any solution differs from it by a constant per state, which leaves the policy
unchanged. Only the
normalisation matters: with the unnormalised visitation :math:`d^\pi/(1-\gamma)` as
weights, the natural gradient is :math:`A^\pi` itself. States with
:math:`d^\pi(s) = 0` get a zero direction. An NPG step is thus the soft
policy-iteration update :math:`\pi'(a|s) \propto \pi(a|s)\exp(\eta A^\pi(s,a)/(1-\gamma))`.

**Training loop.** :func:`train_trust_region` runs NPG (``line_search=False``)
or TRPO on a vectorised environment with a :class:`~pgkit.nn.CategoricalMLPPolicy`
and a :class:`~pgkit.nn.ValueMLP` critic; it shares its signature and its
:class:`~pgkit.training.History` with :func:`pgkit.ppo.train_ppo`.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple

import numpy as np

from pgkit._checks import _shape_str, as_float_array, check_nonnegative, check_positive_int
from pgkit.nn import (
    CategoricalMLPPolicy,
    GaussianMLPPolicy,
    _backward,
    _flat,
    _jvp,
    _layers,
    _log_softmax,
)
from pgkit.optim import Adam
from pgkit.policies import LinearSoftmaxPolicy, TabularSoftmaxPolicy
from pgkit.ppo import _normalise_advantages, approx_kl, explained_variance, ratio_ess
from pgkit.rollout import collect
from pgkit.training import History, _fit_value, _setup_loop, _values_and_advantages

__all__ = [
    "fisher_matrix",
    "empirical_fisher",
    "fisher_vector_product",
    "CGResult",
    "conjugate_gradient",
    "conjugate_gradient_history",
    "NaturalStep",
    "natural_step",
    "TrustRegionStep",
    "trust_region_update",
    "train_trust_region",
]


# ---------------------------------------------------------------- input checks

def _vector(x, name: str) -> np.ndarray:
    arr = as_float_array(x, name, ndim=1, shape_doc="[n]")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got inf")
    return arr


def _positive(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not 0 < x < np.inf:
        raise ValueError(f"{name} must be a positive finite number, got {x!r}")
    return float(x)


def _callable(f, name: str):
    if not callable(f):
        raise ValueError(f"{name} must be callable, got {type(f).__name__}")
    return f


def _scalar(value, name: str) -> float:
    arr = np.asarray(value, dtype=float)
    if arr.size != 1:
        raise ValueError(f"{name} must return a single number, got shape {_shape_str(arr.shape)}")
    return float(arr.reshape(()))


# ------------------------------------------------------------ exact Fisher

def fisher_matrix(policy, theta, state_weights) -> np.ndarray:
    r"""The exact Fisher information of a softmax policy over integer states.

    .. math:: F = \sum_s w(s) \Big[\sum_a \pi(a|s)\,\phi(s,a)\phi(s,a)^\top - \bar\phi(s)\bar\phi(s)^\top\Big]

    with :math:`\bar\phi(s) = \sum_a \pi(a|s)\phi(s,a)`; for
    :class:`~pgkit.policies.TabularSoftmaxPolicy`, :math:`\phi(s,a) = e_{(s,a)}`
    and each state contributes the block :math:`w(s)(\mathrm{diag}\,\pi_s - \pi_s\pi_s^\top)`.
    This equals :math:`\sum_s w(s)\,\mathbb E_{a\sim\pi}[\nabla\log\pi\,\nabla\log\pi^\top]`.

    Args:
        policy: a :class:`~pgkit.policies.TabularSoftmaxPolicy`, or a
            :class:`~pgkit.policies.LinearSoftmaxPolicy` made by ``from_state_features``.
        theta: parameters ``[n_params]``.
        state_weights: ``[S]`` non-negative weights, e.g. a state distribution
            such as :func:`pgkit.mdp.state_visitation` (sum to one for an expectation).

    Returns:
        ``[n_params, n_params]``, symmetric positive semi-definite.
    """
    if isinstance(policy, TabularSoftmaxPolicy):
        S, A = policy.n_states, policy.n_actions
        phi = np.eye(S * A).reshape(S, A, S * A)                   # one-hot features
    elif isinstance(policy, LinearSoftmaxPolicy) and hasattr(policy, "n_states"):
        S = policy.n_states
        phi = policy.features(np.arange(S))                        # [S, A, d]
    else:
        raise ValueError("policy must be a TabularSoftmaxPolicy or a LinearSoftmaxPolicy over "
                         f"integer states (from_state_features), got {type(policy).__name__}")
    theta = policy.check_theta(theta)
    w = as_float_array(state_weights, "state_weights", ndim=1, shape_doc=f"[S] = ({S},)")
    if w.shape != (S,):
        raise ValueError(f"state_weights must have shape [S] = ({S},), got {_shape_str(w.shape)}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("state_weights must be non-negative and finite")
    pi = policy.probs(theta, np.arange(S))                         # [S, A]
    # [book:exact-fisher]
    phi_bar = np.einsum("sa,sai->si", pi, phi)                     # E_a[phi(s, a)]
    second_moment = np.einsum("s,sa,sai,saj->ij", w, pi, phi, phi)
    return second_moment - np.einsum("s,si,sj->ij", w, phi_bar, phi_bar)
    # [/book:exact-fisher]


def empirical_fisher(scores) -> np.ndarray:
    r"""The sample Fisher :math:`\hat F = \frac1N \sum_i g_i g_i^\top` from score vectors.

    Args:
        scores: ``[N, P]``, rows :math:`g_i = \nabla\log\pi(a_i|s_i)` with
            :math:`s_i \sim d`, :math:`a_i \sim \pi(\cdot|s_i)`.

    Returns:
        ``[P, P]``, an unbiased estimate of F.
    """
    g = as_float_array(scores, "scores", ndim=2, shape_doc="[N, P]")
    if g.shape[0] == 0 or not np.isfinite(g).all():
        raise ValueError(f"scores must be a non-empty finite [N, P] array, got shape {_shape_str(g.shape)}")
    return g.T @ g / g.shape[0]


# ---------------------------------------------- Fisher-vector products (MLP)

def _fisher_vector_product(policy, params2: np.ndarray, obs3: np.ndarray, v2: np.ndarray) -> np.ndarray:
    """Unchecked F v: params2 and v2 [S, P], obs3 [S, M, obs_dim] -> [S, P]."""
    out, layers, inputs = policy._body(params2, obs3)
    return _fisher_vector_product_at(policy, params2, out, layers, inputs, v2)


def _fisher_vector_product_at(policy, params2, out, layers, inputs, v2) -> np.ndarray:
    """Unchecked F v from a forward pass already made, ``out, layers, inputs = policy._body(params2, obs3)``.

    A loop that applies F to many vectors at the same parameters (conjugate
    gradient) makes the forward pass once.
    """
    n_body, M = policy.mlp.n_params, inputs[0].shape[1]
    v_body = _layers(v2[:, :n_body], policy.mlp.shapes)
    if isinstance(policy, CategoricalMLPPolicy):
        p = np.exp(_log_softmax(out))                                  # [S, M, A]
        # [book:fisher-vector-product]
        Jv = _jvp(layers, inputs, v_body)                              # J_i v
        HJv = p * Jv - p * np.sum(p * Jv, axis=-1, keepdims=True)      # (diag p_i - p_i p_i^T) J_i v
        return _flat(_backward(layers, inputs, HJv / M))               # (1/N) sum_i J_i^T (...)
        # [/book:fisher-vector-product]
    D = policy.action_dim
    inv_var = np.exp(-2 * params2[:, None, -D:])                       # 1 / sigma^2  [S, 1, D]
    # [book:gaussian-fisher-vector-product]
    Jv = _jvp(layers, inputs, v_body)                                  # J_i v (the mean moves)
    F_mean_v = _flat(_backward(layers, inputs, inv_var * Jv / M))      # (1/N) sum_i J_i^T J_i v / sigma^2
    F_log_std_v = 2 * v2[:, -D:]                                       # Fisher of log sigma: 2 I
    # [/book:gaussian-fisher-vector-product]
    return np.concatenate([F_mean_v, F_log_std_v], axis=1)


def fisher_vector_product(policy, params, obs, v) -> np.ndarray:
    r"""F v for an MLP policy, with F the Fisher averaged over the N observations.

    Categorical (logits :math:`z_i`, probabilities :math:`p_i`, Jacobian :math:`J_i`):

    .. math:: F v = \frac1N \sum_i J_i^\top (\mathrm{diag}(p_i) - p_i p_i^\top) J_i v.

    Gaussian (mean Jacobian :math:`J_i`, state-independent :math:`\log\sigma`):
    :math:`F v = \big(\frac1N \sum_i J_i^\top \mathrm{diag}(\sigma^{-2}) J_i v_\mu,\; 2 v_{\log\sigma}\big)`
    (mean and log sigma are Fisher-orthogonal; each log sigma_j has information 2).

    :math:`J_i v` comes from :meth:`pgkit.nn.MLP.jvp`'s forward mode and
    :math:`J_i^\top(\cdot)` from :meth:`pgkit.nn.MLP.backward`: cost about three
    forward passes, no ``[P, P]`` matrix. This F is the Hessian of the mean
    KL(pi_params || pi_theta) at theta = params.

    Args:
        policy: a :class:`~pgkit.nn.CategoricalMLPPolicy` or :class:`~pgkit.nn.GaussianMLPPolicy`.
        params: ``[n_params]`` or ``[S, n_params]`` (one F per population member).
        obs: ``[S?, *batch, obs_dim]``; N = the number of observations per member.
        v: the shape of ``params``.

    Returns:
        F v, the shape of ``params``.
    """
    if not isinstance(policy, (CategoricalMLPPolicy, GaussianMLPPolicy)):
        raise ValueError("policy must be a CategoricalMLPPolicy or GaussianMLPPolicy, "
                         f"got {type(policy).__name__}")
    params2, obs3, layout = policy._prepare(params, obs)
    v = as_float_array(v, "v")
    if v.shape != np.shape(params) or not np.isfinite(v).all():
        raise ValueError(f"v must be finite with the shape of params, {_shape_str(np.shape(params))}, "
                         f"got {_shape_str(v.shape)}")
    return layout.per_member(_fisher_vector_product(policy, params2, obs3, v.reshape(params2.shape)))


# ------------------------------------------------------- conjugate gradient

class CGResult(NamedTuple):
    """What :func:`conjugate_gradient_history` found."""

    x: np.ndarray
    n_iters: int
    residual_norms: np.ndarray


CGResult.x.__doc__ = "The approximate solution of A x = b, [n]."
CGResult.n_iters.__doc__ = "The number of matrix-vector products used."
CGResult.residual_norms.__doc__ = "||b - A x_k|| for k = 0..n_iters, [n_iters + 1]."


def _checked(matvec, shape: tuple):
    """``matvec`` with its output checked: the right shape, finite, and v^T A v > 0 for v != 0."""
    def checked(v):
        Av = np.asarray(matvec(v), dtype=float)
        if Av.shape != shape or not np.isfinite(Av).all():
            raise ValueError(f"matvec must return a finite array of shape {_shape_str(shape)}, "
                             f"got {_shape_str(Av.shape)}" + ("" if Av.shape != shape else " with inf/NaN"))
        if np.any(v) and not v @ Av > 0:
            raise ValueError(f"matvec is not positive definite: v^T A v = {v @ Av:.3g} <= 0 (for a "
                             "singular positive semi-definite A, use residual_tol > 0 or damping)")
        return Av
    return checked


def _conjugate_gradient(matvec, b: np.ndarray, n_iters: int, residual_tol: float) -> CGResult:
    """Unchecked conjugate gradient from x = 0."""
    x = np.zeros_like(b)
    r = b.copy()                      # residual b - A x
    p = r.copy()                      # search direction
    rr = r @ r
    norms = [math.sqrt(rr)]
    for _ in range(n_iters):
        if rr <= residual_tol:
            break
        # [book:conjugate-gradient]
        Ap = matvec(p)
        alpha = rr / (p @ Ap)         # exact line minimisation along p
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p     # next direction, A-conjugate to the previous ones
        rr = rr_new
        # [/book:conjugate-gradient]
        norms.append(math.sqrt(rr))
    return CGResult(x, len(norms) - 1, np.array(norms))


def conjugate_gradient_history(matvec: Callable, b, *, n_iters: int = 10,
                               residual_tol: float = 1e-10) -> CGResult:
    r"""Solve :math:`A x = b` for a symmetric positive definite A given only :math:`v \mapsto A v`.

    Conjugate gradient from :math:`x_0 = 0` (Hestenes and Stiefel 1952; Nocedal and
    Wright, *Numerical Optimization*, Algorithm 5.2): with :math:`r = b - Ax`,

    .. math:: \alpha = \frac{r^\top r}{p^\top A p},\quad x \leftarrow x + \alpha p,\quad
              r \leftarrow r - \alpha A p,\quad p \leftarrow r + \frac{r_{new}^\top r_{new}}{r^\top r} p.

    In exact arithmetic it is exact after n iterations for an n x n system, and
    after rank(A) iterations for a singular PSD A with b in its range, giving the
    minimum-norm solution. It stops early once :math:`r^\top r \le` ``residual_tol``
    (an absolute, squared norm, as in TRPO's reference code). For a singular A,
    keep ``residual_tol > 0``: iterating past convergence lets rounding errors grow
    in A's null space (harmless for a softmax policy, where they are constants
    per state, but no longer the minimum-norm solution).

    Args:
        matvec: callable ``[n] -> [n]``, :math:`v \mapsto Av`; its output is checked
            (shape, finite, :math:`v^\top A v > 0`).
        b: ``[n]``, finite.
        n_iters: the most iterations (matrix-vector products), >= 1.
        residual_tol: non-negative threshold on :math:`r^\top r`.

    Returns:
        :class:`CGResult` ``(x [n], n_iters, residual_norms [n_iters + 1])``.
    """
    matvec = _callable(matvec, "matvec")
    b = _vector(b, "b")
    n_iters = check_positive_int(n_iters, "n_iters")
    residual_tol = check_nonnegative(residual_tol, "residual_tol")
    return _conjugate_gradient(_checked(matvec, b.shape), b, n_iters, residual_tol)


def conjugate_gradient(matvec: Callable, b, *, n_iters: int = 10,
                       residual_tol: float = 1e-10) -> np.ndarray:
    """The solution ``x [n]`` of :func:`conjugate_gradient_history` (same arguments)."""
    return conjugate_gradient_history(matvec, b, n_iters=n_iters, residual_tol=residual_tol).x


# ------------------------------------------------------------- natural step

class NaturalStep(NamedTuple):
    """A natural-gradient step scaled onto the trust-region boundary."""

    step: np.ndarray
    direction: np.ndarray
    step_size: float
    quadratic_kl: float


NaturalStep.step.__doc__ = "s = step_size * direction, [n]; 1/2 s^T F s = max_kl."
NaturalStep.direction.__doc__ = "x ~= F^{-1} g from conjugate gradient, [n]."
NaturalStep.step_size.__doc__ = "beta = sqrt(2 max_kl / x^T F x) (0 when the gradient is 0)."
NaturalStep.quadratic_kl.__doc__ = "1/2 s^T F s, the KL of the step to second order."


def natural_step(grad, fvp: Callable, max_kl: float, *, cg_iters: int = 10,
                 damping: float = 0.01, cg_residual_tol: float = 1e-10) -> NaturalStep:
    r"""The natural gradient step onto the boundary of the KL trust region.

    .. math:: x \approx (F + \lambda I)^{-1} g \text{ (CG)},\qquad
              \beta = \sqrt{\frac{2\delta}{x^\top (F + \lambda I) x}},\qquad s = \beta x,

    so that :math:`\tfrac12 s^\top (F + \lambda I) s = \delta` exactly (the damped
    matrix in both places, as in TRPO's reference code; Schulman et al.,
    arXiv:1502.05477, appendix C; Kakade 2001).

    Args:
        grad: g, ``[n]``, the gradient of the objective to *increase*.
        fvp: callable ``[n] -> [n]``, :math:`v \mapsto Fv` (e.g. :func:`fisher_vector_product`
            or ``lambda v: F @ v``).
        max_kl: :math:`\delta > 0`.
        cg_iters: conjugate-gradient iterations.
        damping: :math:`\lambda \ge 0` added to F (0 for an exact solve).
        cg_residual_tol: CG stops once :math:`r^\top r` is at most this (see
            :func:`conjugate_gradient_history`).

    Returns:
        :class:`NaturalStep` ``(step, direction, step_size, quadratic_kl)``.
    """
    grad = _vector(grad, "grad")
    fvp = _callable(fvp, "fvp")
    max_kl = _positive(max_kl, "max_kl")
    cg_iters = check_positive_int(cg_iters, "cg_iters")
    damping = check_nonnegative(damping, "damping")
    cg_residual_tol = check_nonnegative(cg_residual_tol, "cg_residual_tol")
    return _natural_step(grad, _checked(fvp, grad.shape), max_kl, cg_iters, damping, cg_residual_tol)


def _natural_step(grad, fvp, max_kl, cg_iters, damping, residual_tol) -> NaturalStep:
    def damped_fvp(v):
        return np.asarray(fvp(v), dtype=float) + damping * v

    x = _conjugate_gradient(damped_fvp, grad, cg_iters, residual_tol).x
    if not np.any(x):
        return NaturalStep(np.zeros_like(grad), x, 0.0, 0.0)
    # [book:natural-step-size]
    xFx = x @ damped_fvp(x)
    step_size = math.sqrt(2 * max_kl / xFx)          # 1/2 (beta x)^T F (beta x) = max_kl
    # [/book:natural-step-size]
    return NaturalStep(step_size * x, x, step_size, 0.5 * step_size**2 * xFx)


# --------------------------------------------------------- NPG / TRPO update

class TrustRegionStep(NamedTuple):
    """What one :func:`trust_region_update` did."""

    params: np.ndarray
    step_fraction: float
    kl: float
    improvement: float
    expected_improvement: float
    accepted: bool


TrustRegionStep.params.__doc__ = "The new parameters (the old ones when not accepted), [n]."
TrustRegionStep.step_fraction.__doc__ = "The fraction of the natural step taken (0 when rejected)."
TrustRegionStep.kl.__doc__ = "kl(new params), the mean KL from the old policy."
TrustRegionStep.improvement.__doc__ = "surrogate(new) - surrogate(old)."
TrustRegionStep.expected_improvement.__doc__ = "grad . (step_fraction * step), its linear prediction."
TrustRegionStep.accepted.__doc__ = "Whether the parameters moved."


def trust_region_update(params, grad, fvp: Callable, surrogate: Callable, kl: Callable,
                        max_kl: float, *, line_search: bool = True, backtrack_ratio: float = 0.5,
                        max_backtracks: int = 10, cg_iters: int = 10, damping: float = 0.01,
                        cg_residual_tol: float = 1e-10) -> TrustRegionStep:
    r"""One natural policy gradient (NPG) or TRPO update.

    The natural step s (:func:`natural_step`) is taken in full when
    ``line_search=False`` (NPG, Kakade 2001). With ``line_search=True`` (TRPO,
    Schulman et al. 2015, arXiv:1502.05477, appendix C) the fractions
    :math:`\rho^k`, k = 0, 1, ..., ``max_backtracks``, are tried in turn and the
    first :math:`\theta + \rho^k s` with

    .. math:: L(\theta + \rho^k s) > L(\theta) \quad\text{and}\quad \overline{\mathrm{KL}}(\theta + \rho^k s) \le \delta

    is accepted; if none is, the old parameters are returned (``accepted=False``).

    Args:
        params: :math:`\theta` (the old policy's parameters), ``[n]``.
        grad: :math:`\nabla L(\theta)`, ``[n]``.
        fvp: callable ``[n] -> [n]``, :math:`v \mapsto Fv` at :math:`\theta`.
        surrogate: callable ``[n] -> float``, the surrogate :math:`L(\theta')` to increase.
        kl: callable ``[n] -> float``, the mean :math:`\mathrm{KL}(\pi_\theta \| \pi_{\theta'})`.
        max_kl: :math:`\delta > 0`.
        line_search: False for NPG, True for TRPO.
        backtrack_ratio: :math:`\rho \in (0, 1)`.
        max_backtracks: the most halvings (``max_backtracks + 1`` candidates), >= 0.
        cg_iters, damping, cg_residual_tol: passed to :func:`natural_step`.

    Returns:
        :class:`TrustRegionStep` ``(params, step_fraction, kl, improvement,
        expected_improvement, accepted)``.
    """
    params = _vector(params, "params")
    grad = _vector(grad, "grad")
    if grad.shape != params.shape:
        raise ValueError(f"grad must have the shape of params, {_shape_str(params.shape)}, "
                         f"got {_shape_str(grad.shape)}")
    for name, f in (("fvp", fvp), ("surrogate", surrogate), ("kl", kl)):
        _callable(f, name)
    max_kl = _positive(max_kl, "max_kl")
    if not isinstance(line_search, (bool, np.bool_)):
        raise ValueError(f"line_search must be True or False, got {line_search!r}")
    if isinstance(backtrack_ratio, bool) or not isinstance(backtrack_ratio, numbers.Real) \
            or not 0 < backtrack_ratio < 1:
        raise ValueError(f"backtrack_ratio must be in (0, 1), got {backtrack_ratio!r}")
    max_backtracks = check_positive_int(max_backtracks, "max_backtracks", minimum=0)
    cg_iters = check_positive_int(cg_iters, "cg_iters")
    damping = check_nonnegative(damping, "damping")
    cg_residual_tol = check_nonnegative(cg_residual_tol, "cg_residual_tol")
    return _trust_region_update(params, grad, _checked(fvp, grad.shape), surrogate, kl, max_kl,
                                line_search, backtrack_ratio, max_backtracks, cg_iters, damping,
                                cg_residual_tol)


def _trust_region_update(params, grad, fvp, surrogate, kl, max_kl, line_search, backtrack_ratio,
                         max_backtracks, cg_iters, damping, cg_residual_tol) -> TrustRegionStep:
    """:func:`trust_region_update` without input checks (``fvp``'s output is not checked either)."""
    natural = _natural_step(grad, fvp, max_kl, cg_iters, damping, cg_residual_tol)
    L_old = _scalar(surrogate(params), "surrogate")
    if not math.isfinite(L_old):
        raise ValueError(f"surrogate(params) must be finite, got {L_old}")
    fractions = [backtrack_ratio**k for k in range(max_backtracks + 1)] if line_search else [1.0]
    for fraction in fractions:
        # [book:line-search]
        candidate = params + fraction * natural.step
        kl_new = _scalar(kl(candidate), "kl")
        improvement = _scalar(surrogate(candidate), "surrogate") - L_old
        if not line_search or (improvement > 0 and kl_new <= max_kl):
            expected = float(grad @ (fraction * natural.step))
            return TrustRegionStep(candidate, fraction, kl_new, improvement, expected, True)
        # [/book:line-search]
    return TrustRegionStep(params.copy(), 0.0, 0.0, 0.0, 0.0, False)


# --------------------------------------------------------- the training loop

def train_trust_region(env, policy, value_fn, rng: np.random.Generator, *, total_steps: int,
                       line_search: bool = True, n_steps: int = 256, gamma: float = 0.98,
                       gae_lambda: float = 0.8, max_kl: float = 0.01, cg_iters: int = 10,
                       damping: float = 0.1, backtrack_ratio: float = 0.8, max_backtracks: int = 10,
                       norm_adv: bool = True, value_lr: float = 1e-3, value_epochs: int = 10,
                       value_minibatches: int = 4, max_grad_norm: float | None = 0.5,
                       value_optimizer=None, params=None, value_params=None, obs_features=None,
                       stop_at: float | None = None, stop_window: int = 20,
                       progress=False) -> History:
    r"""Train a categorical policy and a critic by TRPO, or by NPG with ``line_search=False``.

    Each iteration

    1. collects ``n_steps`` steps of each of the B = ``env.num_envs`` environments
       (:func:`pgkit.rollout.collect`) and computes GAE advantages and the
       critic's targets, as :func:`pgkit.ppo.train_ppo` does;
    2. forms the gradient :math:`g = \frac1N \sum_i A_i \nabla\log\pi_\theta(a_i|s_i)` of the
       surrogate :math:`L(\theta') = \frac1N \sum_i \frac{\pi_{\theta'}(a_i|s_i)}{\pi_\theta(a_i|s_i)} A_i`
       (advantages normalised over the batch when ``norm_adv``);
    3. takes the natural step :math:`s = \sqrt{2\delta / x^\top F x}\; x`, :math:`x \approx F^{-1} g`
       by ``cg_iters`` conjugate-gradient iterations on the damped Fisher of the
       batch's states (:func:`fisher_vector_product`, one forward pass reused for
       every product); NPG (Kakade 2001) takes it whole; TRPO (Schulman et al.
       2015, arXiv:1502.05477) backtracks by ``backtrack_ratio`` until the
       surrogate improves and the exact mean KL over the batch's states is at
       most :math:`\delta` = ``max_kl`` (:func:`trust_region_update`);
    4. regresses the critic on the targets, as in :func:`pgkit.ppo.train_ppo`.

    Parameters
    ----------
    env, policy, value_fn, rng, total_steps, n_steps, gamma, gae_lambda
        As :func:`pgkit.ppo.train_ppo` (rng draws the initial parameters, then per
        iteration the batch and the critic's minibatches).
    line_search : bool
        True for TRPO, False for NPG.
    max_kl : float > 0
        :math:`\delta`.
    cg_iters, damping : int >= 1, float >= 0
        Conjugate-gradient iterations and the damping :math:`\lambda` added to F.
    backtrack_ratio, max_backtracks : float in (0, 1), int >= 0
        TRPO's line search.
    norm_adv : bool
    value_lr, value_epochs, value_minibatches, max_grad_norm, value_optimizer
        The critic's regression, as in :func:`pgkit.ppo.train_ppo` (``max_grad_norm``
        clips only the critic's gradients here: the policy's step is set by ``max_kl``).
    params, value_params, obs_features, stop_at, stop_window, progress
        As :func:`pgkit.ppo.train_ppo`.

    Notes
    -----
    The defaults: :math:`\delta` = 0.01, 10 CG iterations and damping 0.1 as in
    TRPO implementations (Spinning Up's backtracking ratio 0.8); 256 steps per
    environment, so that on ``CartPoleVecEnv(4)`` each step's Fisher and
    gradient average over 1024 samples; and the same gamma, lambda and critic
    step size as :func:`pgkit.ppo.train_ppo`, so that the two loops estimate
    advantages alike and differ in the policy update only. At these defaults
    TRPO and NPG reach a mean return of 475 over the last 20 episodes of
    CartPole in about 40k environment steps (``benchmarks/bench_ppo.py``).

    Returns
    -------
    :class:`~pgkit.training.History`; ``grad_norms`` holds :math:`\|g\|`, and
    ``diagnostics``: ``kl`` (exact mean :math:`\mathrm{KL}(\pi_{old}\|\pi_{new})` over the
    batch's states, at most ``max_kl`` whenever TRPO accepts a step), ``step_fraction``
    (the fraction of the natural step taken; 0 when the line search rejected every
    candidate), ``approx_kl``, ``ratio_ess``, ``entropy``, ``explained_variance``
    and ``value_loss`` as in :func:`pgkit.ppo.train_ppo`.
    """
    setup = _setup_loop(env, policy, value_fn, rng, total_steps=total_steps, n_steps=n_steps,
                        gamma=gamma, gae_lambda=gae_lambda, value_lr=value_lr,
                        value_epochs=value_epochs,
                        minibatch_counts={"value_minibatches": value_minibatches},
                        max_grad_norm=max_grad_norm, params=params, value_params=value_params,
                        obs_features=obs_features, stop_at=stop_at, stop_window=stop_window,
                        progress=progress,
                        diagnostics=("kl", "step_fraction", "approx_kl", "ratio_ess", "entropy",
                                     "explained_variance", "value_loss"))
    if not isinstance(line_search, (bool, np.bool_)):
        raise ValueError(f"line_search must be True (TRPO) or False (NPG), got {line_search!r}")
    max_kl = _positive(max_kl, "max_kl")
    cg_iters = check_positive_int(cg_iters, "cg_iters")
    damping = check_nonnegative(damping, "damping")
    if isinstance(backtrack_ratio, bool) or not isinstance(backtrack_ratio, numbers.Real) \
            or not 0 < backtrack_ratio < 1:
        raise ValueError(f"backtrack_ratio must be in (0, 1), got {backtrack_ratio!r}")
    max_backtracks = check_positive_int(max_backtracks, "max_backtracks", minimum=0)
    if not isinstance(norm_adv, (bool, np.bool_)):
        raise ValueError(f"norm_adv must be True or False, got {norm_adv!r}")
    if value_optimizer is not None and not callable(getattr(value_optimizer, "step", None)):
        raise ValueError("value_optimizer must have a step(params, grad) method, or be None")
    value_optimizer = Adam(value_lr, eps=1e-5) if value_optimizer is None else value_optimizer

    env, params, value_params, recorder = setup.env, setup.params, setup.value_params, setup.recorder
    N = setup.batch_size
    rows = np.arange(N)
    batch = None
    for _ in range(setup.n_iterations):
        batch = collect(env, policy, params, n_steps, rng, previous=batch)
        values, advantages, returns = _values_and_advantages(value_fn, value_params, batch,
                                                             gamma, gae_lambda)
        obs = batch.observations.reshape(1, N, -1).astype(float)
        actions = batch.actions.reshape(N)
        adv = advantages.reshape(N)
        adv = _normalise_advantages(adv, 1e-8) if norm_adv else adv

        params2 = params[None]
        out, layers, inputs = policy._body(params2, obs)                 # kept for every F v
        old_log_pi = _log_softmax(out[0])                                 # [N, A]
        pi_old = np.exp(old_log_pi)
        old_log_probs = old_log_pi[rows, actions]
        grad_logits = (adv / N)[:, None] * (np.eye(policy.n_actions)[actions] - pi_old)
        grad = _flat(_backward(layers, inputs, grad_logits[None]))[0]     # g = (1/N) sum A grad log pi

        last = {}

        def log_pi_at(theta):
            if last.get("theta") is not theta:                           # surrogate and kl share it
                last.update(theta=theta, log_pi=_log_softmax(policy._body(theta[None], obs)[0][0]))
            return last["log_pi"]

        def surrogate(theta):
            return float(np.mean(np.exp(log_pi_at(theta)[rows, actions] - old_log_probs) * adv))

        def mean_kl(theta):
            return float(np.mean(np.sum(pi_old * (old_log_pi - log_pi_at(theta)), axis=-1)))

        def fvp(v):
            return _fisher_vector_product_at(policy, params2, out, layers, inputs, v[None])[0]

        step = _trust_region_update(params, grad, fvp, surrogate, mean_kl, max_kl, bool(line_search),
                                    backtrack_ratio, max_backtracks, cg_iters, damping, 1e-10)
        params = step.params
        value_params = _fit_value(value_fn, value_params, value_optimizer, obs[0], returns.reshape(N),
                                  value_epochs, value_minibatches, max_grad_norm, rng)

        log_ratio = log_pi_at(params)[rows, actions] - old_log_probs
        diagnostics = {
            "kl": mean_kl(params), "step_fraction": step.step_fraction,
            "approx_kl": approx_kl(log_ratio), "ratio_ess": ratio_ess(log_ratio),
            "entropy": float(-np.mean(np.sum(pi_old * old_log_pi, axis=-1))),
            "explained_variance": explained_variance(values, returns),
            "value_loss": 0.5 * float(np.mean((values - returns) ** 2)),
        }
        if recorder.record(batch, float(np.sqrt(grad @ grad)), diagnostics):
            break
    return recorder.history(params, value_params)
