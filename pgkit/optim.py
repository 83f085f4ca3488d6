r"""Gradient-ascent steps: plain and Adam.

Both *ascend*: ``theta_new = step(theta, grad)`` moves along ``+grad``, since the
book maximises returns. Adam (Kingma & Ba 2015, arXiv 1412.6980) keeps running
averages of the gradient and its square:

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
    v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
    \theta \leftarrow \theta + \eta\, \frac{m / (1-\beta_1^k)}{\sqrt{v / (1-\beta_2^k)} + \epsilon}.

Adam works elementwise, so ``theta`` may carry a leading population axis
``[S, n_params]`` (one run per member, as :mod:`pgkit.nn` lays them out); its
step size :math:`\eta` may be changed between steps, e.g. by
:func:`linear_schedule`. :func:`clip_grad_norm` rescales a gradient whose
norm is too large (per member).
"""

from __future__ import annotations

import numpy as np

from pgkit import _checks

__all__ = ["GradientAscent", "Adam", "clip_grad_norm", "linear_schedule"]


class GradientAscent:
    """``theta + step_size * grad``."""

    def __init__(self, step_size: float):
        self.step_size = _checks.check_nonnegative(step_size, "step_size")

    def step(self, theta, grad) -> np.ndarray:
        theta = _checks.as_float_array(theta, "theta", ndim=1, shape_doc="[n_params]")
        grad = _checks.as_float_array(grad, "grad", ndim=1, shape_doc="[n_params]")
        _checks.check_same_shape("grad", grad, "theta", theta)
        return theta + self.step_size * grad


class Adam:
    """Adam, ascending; its state (m, v, k) lives in the object: one per run.

    ``theta`` and ``grad`` are ``[n_params]``, or ``[S, n_params]`` for a
    population of S independent runs (Adam acts elementwise). ``step_size``
    may be reassigned between steps (learning-rate annealing); the moments
    and the step count ``k`` are kept.
    """

    def __init__(self, step_size: float = 0.01, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        self.step_size = _checks.check_nonnegative(step_size, "step_size")
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= beta < 1:
                raise ValueError(f"{name} must be in [0, 1), got {beta}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = _checks.check_nonnegative(eps, "eps")
        self.m = self.v = None
        self.k = 0

    @property
    def step_size(self) -> float:
        return self._step_size

    @step_size.setter
    def step_size(self, value) -> None:
        self._step_size = _checks.check_nonnegative(value, "step_size")

    def step(self, theta, grad) -> np.ndarray:
        shape_doc = "[n_params] or [S, n_params]"
        theta = _checks.as_float_array(theta, "theta", ndim=(1, 2), shape_doc=shape_doc)
        grad = _checks.as_float_array(grad, "grad", ndim=(1, 2), shape_doc=shape_doc)
        _checks.check_same_shape("grad", grad, "theta", theta)
        if self.m is None:
            self.m, self.v = np.zeros_like(theta), np.zeros_like(theta)
        elif self.m.shape != theta.shape:
            raise ValueError(f"theta has shape {theta.shape}, but this Adam was used with "
                             f"{self.m.shape}: use one Adam per run")
        self.k += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad ** 2
        m_hat = self.m / (1 - self.beta1 ** self.k)
        v_hat = self.v / (1 - self.beta2 ** self.k)
        return theta + self.step_size * m_hat / (np.sqrt(v_hat) + self.eps)


def clip_grad_norm(grad, max_norm: float):
    r"""Rescale ``grad`` so that its Euclidean norm is at most ``max_norm``.

    .. math:: g \leftarrow g \cdot \min\!\Big(1, \frac{c}{\lVert g \rVert_2}\Big)

    The whole vector is scaled, so its direction is kept (clipping each entry
    would turn it). As torch's ``clip_grad_norm_`` (which PPO implementations
    use with c = 0.5), but with no 1e-6 added to the norm: a clipped gradient
    has norm exactly c. Pascanu, Mikolov & Bengio (2013), "On the difficulty of
    training recurrent neural networks", arXiv:1211.5063.

    Parameters
    ----------
    grad : [n_params] or [S, n_params]
        With a population axis, each member's row is clipped by its own norm.
    max_norm : float > 0

    Returns
    -------
    (clipped, norm) : ([n_params] or [S, n_params], float or [S])
        The rescaled gradient (a new array) and the norm *before* clipping.
    """
    grad = _checks.as_float_array(grad, "grad", ndim=(1, 2), shape_doc="[n_params] or [S, n_params]")
    if not np.isfinite(grad).all():
        raise ValueError("grad must be finite, got an infinite value")
    max_norm = _checks.check_nonnegative(max_norm, "max_norm")
    if max_norm == 0 or not np.isfinite(max_norm):
        raise ValueError(f"max_norm must be positive and finite, got {max_norm}")
    clipped, norm = _clip_grad_norm(grad, max_norm)
    return clipped, (float(norm) if grad.ndim == 1 else norm)


def _clip_grad_norm(grad: np.ndarray, max_norm: float):
    """:func:`clip_grad_norm` without input checks; ``norm`` is [] or [S]."""
    norm = np.sqrt(np.sum(grad ** 2, axis=-1))
    scale = max_norm / np.maximum(norm, max_norm)          # 1 when norm <= max_norm
    return grad * scale[..., None], norm


class _LinearSchedule:
    """k -> start + (end - start) k / n_steps for k = 0, ..., n_steps (see :func:`linear_schedule`)."""

    def __init__(self, start: float, end: float, n_steps: int):
        self.start, self.end, self.n_steps = start, end, n_steps

    def __repr__(self) -> str:
        return f"linear_schedule(start={self.start}, end={self.end}, n_steps={self.n_steps})"

    def __call__(self, k: int) -> float:
        k = _checks.check_positive_int(k, "k", minimum=0)
        if k > self.n_steps:
            raise ValueError(f"k must be <= n_steps = {self.n_steps}, got {k}")
        return self.start + (self.end - self.start) * k / self.n_steps


def linear_schedule(start: float, end: float, n_steps: int):
    r"""A linearly annealed value: the callable :math:`k \mapsto s + (e - s)\, k / n`, k = 0..n.

    For learning-rate annealing, set ``adam.step_size = schedule(k)`` before the
    updates of iteration k. ``linear_schedule(lr, 0.0, n_iterations)`` at
    k = 0, ..., n_iterations - 1 gives CleanRL's ``anneal_lr`` rate
    :math:`\eta (1 - k / n)` (the last iteration still has :math:`\eta / n`).

    Parameters
    ----------
    start, end : float >= 0
        The values at k = 0 and k = n_steps.
    n_steps : int >= 1

    Returns
    -------
    A callable ``schedule(k) -> float`` for integers 0 <= k <= n_steps.
    """
    start = _checks.check_nonnegative(start, "start")
    end = _checks.check_nonnegative(end, "end")
    if not np.isfinite(start + end):
        raise ValueError(f"start and end must be finite, got {start} and {end}")
    n_steps = _checks.check_positive_int(n_steps, "n_steps")
    return _LinearSchedule(start, end, n_steps)
