r"""Gradient-ascent steps: plain and Adam.

Both *ascend*: ``theta_new = step(theta, grad)`` moves along ``+grad``, since the
book maximises returns. Adam (Kingma & Ba 2015, arXiv 1412.6980) keeps running
averages of the gradient and its square:

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
    v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
    \theta \leftarrow \theta + \eta\, \frac{m / (1-\beta_1^k)}{\sqrt{v / (1-\beta_2^k)} + \epsilon}.
"""

from __future__ import annotations

import numpy as np

from pgkit import _checks

__all__ = ["GradientAscent", "Adam"]


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
    """Adam, ascending; its state (m, v, k) lives in the object: one per run."""

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

    def step(self, theta, grad) -> np.ndarray:
        theta = _checks.as_float_array(theta, "theta", ndim=1, shape_doc="[n_params]")
        grad = _checks.as_float_array(grad, "grad", ndim=1, shape_doc="[n_params]")
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
