"""Gradient-norm clipping, learning-rate schedules, Adam with a changing step size or a population axis."""

import numpy as np
import pytest

from pgkit.optim import Adam, clip_grad_norm, linear_schedule


def reference_adam(grads, step_sizes, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam's update written out, with step size step_sizes[k-1] at step k."""
    theta = np.zeros_like(grads[0])
    m = v = np.zeros_like(theta)
    for k, (g, lr) in enumerate(zip(grads, step_sizes), start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        theta = theta + lr * (m / (1 - beta1 ** k)) / (np.sqrt(v / (1 - beta2 ** k)) + eps)
    return theta


# ----------------------------------------------------------------------------- clip_grad_norm

def test_clip_grad_norm_scales_the_whole_vector():
    g = np.array([3.0, -4.0])                             # norm 5
    clipped, norm = clip_grad_norm(g, 1.0)
    assert norm == 5.0 and isinstance(norm, float)
    np.testing.assert_allclose(clipped, [0.6, -0.8])     # direction kept, norm exactly 1
    np.testing.assert_allclose(np.linalg.norm(clipped), 1.0)
    same, norm = clip_grad_norm(g, 10.0)                  # below the bound: unchanged
    np.testing.assert_array_equal(same, g)
    assert norm == 5.0 and same is not g
    np.testing.assert_array_equal(clip_grad_norm(g, 5.0)[0], g)
    zero, norm = clip_grad_norm(np.zeros(3), 0.5)
    np.testing.assert_array_equal(zero, np.zeros(3))
    assert norm == 0.0


def test_clip_grad_norm_one_norm_per_population_member():
    rng = np.random.default_rng(0)
    G = rng.normal(size=(5, 7)) * np.array([0.01, 0.1, 1.0, 10.0, 100.0])[:, None]
    clipped, norms = clip_grad_norm(G, 0.5)
    assert norms.shape == (5,)
    for s in range(5):
        row, n = clip_grad_norm(G[s], 0.5)
        np.testing.assert_allclose(clipped[s], row)
        np.testing.assert_allclose(norms[s], n)
    np.testing.assert_allclose(np.linalg.norm(clipped, axis=1), np.minimum(norms, 0.5))


@pytest.mark.parametrize("call, message", [
    (lambda: clip_grad_norm(np.zeros((2, 3, 4)), 1.0),
     r"grad must have shape \[n_params\] or \[S, n_params\]"),
    (lambda: clip_grad_norm([1.0, np.inf], 1.0), "grad must be finite"),
    (lambda: clip_grad_norm([1.0, np.nan], 1.0), "grad contains NaN"),
    (lambda: clip_grad_norm([1.0], 0.0), "max_norm must be positive and finite"),
    (lambda: clip_grad_norm([1.0], -1.0), "max_norm must be non-negative"),
    (lambda: clip_grad_norm([1.0], np.inf), "max_norm must be positive and finite"),
])
def test_clip_grad_norm_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- linear_schedule

def test_linear_schedule_endpoints_and_cleanrl_annealing():
    schedule = linear_schedule(2.5e-4, 0.0, 100)
    assert schedule(0) == 2.5e-4 and schedule(100) == 0.0
    assert schedule(50) == pytest.approx(1.25e-4)
    # CleanRL: lr * (1 - (iteration - 1) / num_iterations) for iteration = 1..num_iterations
    for iteration in range(1, 101):
        assert schedule(iteration - 1) == pytest.approx(2.5e-4 * (1 - (iteration - 1) / 100))
    rising = linear_schedule(0.1, 0.3, 4)
    np.testing.assert_allclose([rising(k) for k in range(5)], [0.1, 0.15, 0.2, 0.25, 0.3])
    assert rising(np.int64(2)) == pytest.approx(0.2)
    assert "linear_schedule(start=0.1, end=0.3, n_steps=4)" == repr(rising)


@pytest.mark.parametrize("call, message", [
    (lambda: linear_schedule(-1.0, 0.0, 10), "start must be non-negative"),
    (lambda: linear_schedule(1.0, np.nan, 10), "end must be non-negative"),
    (lambda: linear_schedule(1.0, np.inf, 10), "start and end must be finite"),
    (lambda: linear_schedule(1.0, 0.0, 0), "n_steps must be >= 1"),
    (lambda: linear_schedule(1.0, 0.0, 10)(11), "k must be <= n_steps = 10"),
    (lambda: linear_schedule(1.0, 0.0, 10)(-1), "k must be >= 0"),
    (lambda: linear_schedule(1.0, 0.0, 10)(0.5), "k must be an integer"),
])
def test_linear_schedule_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- Adam

def test_adam_step_size_can_change_between_steps():
    rng = np.random.default_rng(1)
    grads = list(rng.normal(size=(6, 3)))
    schedule = linear_schedule(0.1, 0.0, 6)
    adam, theta = Adam(schedule(0)), np.zeros(3)
    for k, g in enumerate(grads):
        adam.step_size = schedule(k)
        theta = adam.step(theta, g)
    np.testing.assert_allclose(theta, reference_adam(grads, [schedule(k) for k in range(6)]))
    assert adam.k == 6
    with pytest.raises(ValueError, match="step_size must be non-negative"):
        adam.step_size = -0.1
    assert adam.step_size == schedule(5)                 # a rejected value leaves it unchanged


def test_adam_with_a_population_axis_is_independent_runs():
    rng = np.random.default_rng(2)
    grads = rng.normal(size=(5, 4, 3))                   # 5 steps, S = 4 members, 3 params
    adam, theta = Adam(0.05), np.zeros((4, 3))
    for g in grads:
        theta = adam.step(theta, g)
    for s in range(4):
        single, th = Adam(0.05), np.zeros(3)
        for g in grads[:, s]:
            th = single.step(th, g)
        np.testing.assert_allclose(theta[s], th)
        np.testing.assert_allclose(theta[s], reference_adam(list(grads[:, s]), [0.05] * 5))
    with pytest.raises(ValueError, match="use one Adam per run"):
        adam.step(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"theta must have shape \[n_params\] or \[S, n_params\]"):
        Adam().step(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
