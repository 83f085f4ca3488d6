"""Tests of pgkit.trust_region.

Fisher matrices against slow loops over states and actions, against the Hessian
of the mean KL (finite differences) and against empirical Fishers from sampled
scores (5 standard errors, fixed seed); conjugate gradient against
``np.linalg.solve``; the natural step against its defining equation; NPG on the
tabular softmax against the soft policy-iteration update, exactly; TRPO's line
search with the exact surrogate and KL of pgkit.surrogate.
"""

import math

import numpy as np
import pytest

from pgkit import mdp as mdp_lib
from pgkit.mdp import evaluate_policy, exact_policy_gradient, policy_table, random_mdp, state_visitation
from pgkit.nn import CategoricalMLPPolicy, GaussianMLPPolicy
from pgkit.policies import LinearSoftmaxPolicy, TabularSoftmaxPolicy
from pgkit.surrogate import expected_policy_kl, surrogate_objective
from pgkit.trust_region import (
    conjugate_gradient,
    conjugate_gradient_history,
    empirical_fisher,
    fisher_matrix,
    fisher_vector_product,
    natural_step,
    trust_region_update,
)


def random_spd(n, rng, low=1.0, high=10.0):
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return Q @ np.diag(np.linspace(low, high, n)) @ Q.T


def softmax_cases():
    rng = np.random.default_rng(100)
    return [TabularSoftmaxPolicy(4, 3),
            LinearSoftmaxPolicy.from_state_features(rng.normal(size=(5, 3, 4)))]


SOFTMAX = softmax_cases()
SOFTMAX_IDS = ["tabular", "state_features"]


# --------------------------------------------------------------- exact Fisher

@pytest.mark.parametrize("policy", SOFTMAX, ids=SOFTMAX_IDS)
def test_fisher_matrix_matches_slow_expectation_of_score_outer_products(policy):
    rng = np.random.default_rng(0)
    theta = rng.normal(size=policy.n_params)
    S = policy.n_states
    weights = rng.random(S)
    F = fisher_matrix(policy, theta, weights)
    slow = np.zeros((policy.n_params, policy.n_params))
    for s in range(S):
        pi = policy.probs(theta, s)
        for a in range(policy.n_actions):
            g = policy.score(theta, s, a)
            slow += weights[s] * pi[a] * np.outer(g, g)
    np.testing.assert_allclose(F, slow, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(F, F.T, atol=1e-15)
    assert np.linalg.eigvalsh(F).min() > -1e-12


def test_tabular_fisher_is_one_hot_linear_fisher_and_block_diagonal():
    rng = np.random.default_rng(1)
    S, A = 3, 4
    tabular = TabularSoftmaxPolicy(S, A)
    linear = LinearSoftmaxPolicy.from_state_features(np.eye(S * A).reshape(S, A, S * A))
    theta, d = rng.normal(size=S * A), rng.dirichlet(np.ones(S))
    F = fisher_matrix(tabular, theta, d)
    np.testing.assert_allclose(F, fisher_matrix(linear, theta, d), atol=1e-15)
    pi = tabular.probs(theta, np.arange(S))
    for s in range(S):
        block = F[s * A:(s + 1) * A, s * A:(s + 1) * A]
        np.testing.assert_allclose(block, d[s] * (np.diag(pi[s]) - np.outer(pi[s], pi[s])), atol=1e-15)
        np.testing.assert_allclose(block @ np.ones(A), 0.0, atol=1e-15)   # constant logits: no change
    off = F.reshape(S, A, S, A).copy()
    off[np.arange(S), :, np.arange(S), :] = 0
    assert np.all(off == 0)


def second_differences(f, x, h=1e-4):
    """The Hessian of the scalar f at x by central second differences."""
    n = x.size
    H = np.zeros((n, n))
    E = np.eye(n) * h
    for j in range(n):
        for k in range(n):
            H[j, k] = (f(x + E[j] + E[k]) - f(x + E[j] - E[k]) - f(x - E[j] + E[k])
                       + f(x - E[j] - E[k])) / (4 * h * h)
    return H


@pytest.mark.parametrize("policy", SOFTMAX, ids=SOFTMAX_IDS)
def test_fisher_is_the_hessian_of_the_expected_kl(policy):
    """F with weights d^old = Hessian of sum_s d^old(s) KL(pi_old(.|s) || pi_theta(.|s)) at theta_old."""
    rng = np.random.default_rng(2)
    mdp = random_mdp(policy.n_states, policy.n_actions, rng)
    theta = rng.normal(size=policy.n_params)
    pi_old = policy_table(policy, theta, mdp.n_states)
    d = state_visitation(mdp, pi_old)
    H = second_differences(lambda t: expected_policy_kl(mdp, pi_old, policy_table(policy, t, mdp.n_states)),
                           theta)
    np.testing.assert_allclose(fisher_matrix(policy, theta, d), H, atol=2e-7)


@pytest.mark.parametrize("policy", SOFTMAX, ids=SOFTMAX_IDS)
def test_empirical_fisher_from_sampled_scores_matches_the_exact_fisher(policy):
    rng = np.random.default_rng(3)
    theta = rng.normal(size=policy.n_params)
    d = rng.dirichlet(np.ones(policy.n_states))
    n = 20_000
    states = rng.choice(policy.n_states, size=n, p=d)
    actions = policy.sample(theta, states, rng)
    scores = policy.score(theta, states, actions)                   # [n, P]
    outer = scores[:, :, None] * scores[:, None, :]
    se = outer.std(axis=0) / math.sqrt(n)
    F_hat = empirical_fisher(scores)
    np.testing.assert_allclose(F_hat, outer.mean(axis=0), rtol=1e-12, atol=1e-15)
    assert np.all(np.abs(F_hat - fisher_matrix(policy, theta, d)) <= 5 * se + 1e-12)


def test_empirical_fisher_matches_a_loop():
    scores = np.random.default_rng(4).normal(size=(7, 3))
    slow = sum(np.outer(g, g) for g in scores) / 7
    np.testing.assert_allclose(empirical_fisher(scores), slow, rtol=1e-12)


# ------------------------------------------------- Fisher-vector products (MLP)

MLP_POLICIES = [CategoricalMLPPolicy(3, 4, hidden=(5,)), CategoricalMLPPolicy(2, 3, hidden=(3, 4)),
                GaussianMLPPolicy(3, 2, hidden=(5,)), GaussianMLPPolicy(2, 1, hidden=(3, 4))]
MLP_IDS = [repr(p) for p in MLP_POLICIES]


def random_params(policy, rng, population=None):
    shape = (policy.n_params,) if population is None else (population, policy.n_params)
    return 0.7 * rng.standard_normal(shape)


def fvp_matrix(policy, params, obs):
    """F built column by column from F e_k."""
    return np.stack([fisher_vector_product(policy, params, obs, e) for e in np.eye(policy.n_params)],
                    axis=1)


def finite_difference_jacobian(f, params, eps=1e-6):
    """d f / d params by central differences: [*out_shape, P]."""
    cols = [(f(params + eps * e) - f(params - eps * e)) / (2 * eps) for e in np.eye(params.size)]
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("policy", MLP_POLICIES, ids=MLP_IDS)
def test_fvp_equals_the_explicit_fisher(policy):
    """(a) J^T (diag p - p p^T) J (categorical) or J^T J / sigma^2 and 2 I (Gaussian), J by differences."""
    rng = np.random.default_rng(5)
    params = random_params(policy, rng)
    obs = rng.normal(size=(6, policy.obs_dim))
    P = policy.n_params
    explicit = np.zeros((P, P))
    if isinstance(policy, CategoricalMLPPolicy):
        J = finite_difference_jacobian(lambda p: policy.logits(p, obs), params)    # [N, A, P]
        probs = np.exp(policy.log_probs_all(params, obs))
        for i in range(len(obs)):
            H = np.diag(probs[i]) - np.outer(probs[i], probs[i])
            explicit += J[i].T @ H @ J[i] / len(obs)
    else:
        J = finite_difference_jacobian(lambda p: policy.mean(p, obs), params)      # [N, D, P]
        inv_var = np.exp(-2 * policy.log_std(params))
        for i in range(len(obs)):
            explicit += J[i].T @ np.diag(inv_var) @ J[i] / len(obs)
        D = policy.action_dim
        explicit[-D:, -D:] = 2 * np.eye(D)
    F = fvp_matrix(policy, params, obs)
    np.testing.assert_allclose(F, explicit, atol=1e-8)
    np.testing.assert_allclose(F, F.T, atol=1e-12)
    assert np.linalg.eigvalsh(F).min() > -1e-10


@pytest.mark.parametrize("policy", MLP_POLICIES, ids=MLP_IDS)
def test_fvp_equals_the_hessian_of_the_mean_kl(policy):
    """(b) F = d^2/dtheta^2 mean_i KL(pi_old || pi_theta) at theta = old, by differences of grad_kl."""
    rng = np.random.default_rng(6)
    params = random_params(policy, rng)
    obs = rng.normal(size=(2, 3, policy.obs_dim))
    n = 6
    H = finite_difference_jacobian(lambda p: policy.grad_kl(params, p, obs) / n, params)
    np.testing.assert_allclose(fvp_matrix(policy, params, obs), H, atol=1e-7)


@pytest.mark.parametrize("policy", MLP_POLICIES, ids=MLP_IDS)
def test_fvp_equals_the_empirical_fisher_of_sampled_scores(policy):
    """(c) the mean of g g^T over a ~ pi, within 5 standard errors per entry.

    One score per sample: the parameters repeated along the population axis,
    one observation per member, so grad_log_prob returns [n, P] per-sample scores.
    """
    rng = np.random.default_rng(7)
    params = random_params(policy, rng)
    obs = rng.normal(size=(4, policy.obs_dim))
    n = 20_000
    obs_rep = np.repeat(obs, n // 4, axis=0)[:, None, :]           # [n, 1, obs_dim]
    params_rep = np.broadcast_to(params, (n, policy.n_params))
    actions = policy.sample(params_rep, obs_rep, rng)
    lead = actions.shape[:2]
    scores = policy.grad_log_prob(params_rep, obs_rep, actions, np.ones(lead))   # [n, P]
    outer = scores[:, :, None] * scores[:, None, :]
    se = outer.std(axis=0) / math.sqrt(n)
    err = np.abs(empirical_fisher(scores) - fvp_matrix(policy, params, obs))
    assert np.all(err <= 5 * se + 1e-10), (err / (se + 1e-300)).max()


@pytest.mark.parametrize("policy", MLP_POLICIES, ids=MLP_IDS)
def test_fvp_population_equals_loop(policy):
    rng = np.random.default_rng(8)
    S = 3
    params = random_params(policy, rng, S)
    obs = rng.normal(size=(S, 5, policy.obs_dim))
    v = rng.normal(size=params.shape)
    together = fisher_vector_product(policy, params, obs, v)
    assert together.shape == params.shape
    for k in range(S):
        np.testing.assert_allclose(together[k], fisher_vector_product(policy, params[k], obs[k], v[k]),
                                   rtol=1e-12, atol=1e-14)


# -------------------------------------------------------- conjugate gradient

@pytest.mark.parametrize("n", [1, 5, 20])
def test_cg_solves_random_spd_systems(n):
    rng = np.random.default_rng(9)
    for _ in range(5):
        A, b = random_spd(n, rng), rng.normal(size=n)
        result = conjugate_gradient_history(lambda v: A @ v, b, n_iters=n, residual_tol=0.0)
        np.testing.assert_allclose(result.x, np.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(result.residual_norms[-1], np.linalg.norm(b - A @ result.x),
                                   rtol=1e-5, atol=1e-12)
        assert result.residual_norms[0] == pytest.approx(np.linalg.norm(b))
        np.testing.assert_array_equal(conjugate_gradient(lambda v: A @ v, b, n_iters=n, residual_tol=0.0),
                                      result.x)


def test_cg_is_exact_in_n_steps_and_not_before():
    """Eigenvalues spread from 1 to 100: n - 1 steps leave a residual, n steps solve it."""
    rng = np.random.default_rng(10)
    n = 8
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = Q @ np.diag(np.logspace(0, 2, n)) @ Q.T
    b = rng.normal(size=n)
    exact = np.linalg.solve(A, b)
    before = conjugate_gradient(lambda v: A @ v, b, n_iters=n - 1, residual_tol=0.0)
    after = conjugate_gradient_history(lambda v: A @ v, b, n_iters=n, residual_tol=0.0)
    assert np.linalg.norm(b - A @ before) > 1e-2 * np.linalg.norm(b)
    np.testing.assert_allclose(after.x, exact, rtol=1e-9, atol=1e-11)
    assert after.n_iters == n


def test_cg_error_decreases_in_the_a_norm():
    """CG minimises ||x_k - x*||_A over a growing Krylov space: the A-norm error never grows."""
    rng = np.random.default_rng(11)
    n = 12
    A, b = random_spd(n, rng, 1.0, 100.0), rng.normal(size=n)
    exact = np.linalg.solve(A, b)
    errors = []
    for k in range(1, n + 1):
        e = conjugate_gradient(lambda v: A @ v, b, n_iters=k, residual_tol=0.0) - exact
        errors.append(math.sqrt(e @ A @ e))
    assert all(later <= earlier * (1 + 1e-9) for earlier, later in zip(errors, errors[1:]))


def test_cg_stops_early_and_handles_zero_and_singular_systems():
    rng = np.random.default_rng(12)
    A = random_spd(6, rng)
    result = conjugate_gradient_history(lambda v: A @ v, A[:, 0] * 0 + 1.0, n_iters=50)
    assert result.n_iters <= 6 and result.residual_norms[-1] ** 2 <= 1e-10
    zero = conjugate_gradient_history(lambda v: A @ v, np.zeros(6))
    assert zero.n_iters == 0 and np.all(zero.x == 0)
    # singular PSD with b in its range: CG from 0 gives the minimum-norm solution pinv(A) b
    B = rng.normal(size=(6, 3))
    A_sing = B @ B.T
    b = A_sing @ rng.normal(size=6)
    x = conjugate_gradient(lambda v: A_sing @ v, b, n_iters=3, residual_tol=0.0)
    np.testing.assert_allclose(x, np.linalg.pinv(A_sing) @ b, rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------- natural step

@pytest.mark.parametrize("damping", [0.0, 0.1])
@pytest.mark.parametrize("max_kl", [1e-3, 0.05])
def test_natural_step_lands_on_the_trust_region_boundary(max_kl, damping):
    rng = np.random.default_rng(13)
    n = 7
    F, g = random_spd(n, rng, 0.1, 5.0), rng.normal(size=n)
    step = natural_step(g, lambda v: F @ v, max_kl, cg_iters=n, damping=damping)
    F_damped = F + damping * np.eye(n)
    np.testing.assert_allclose(step.direction, np.linalg.solve(F_damped, g), rtol=1e-8)
    assert 0.5 * step.step @ F_damped @ step.step == pytest.approx(max_kl, rel=1e-12)
    assert step.quadratic_kl == pytest.approx(max_kl, rel=1e-12)
    np.testing.assert_allclose(step.step, step.step_size * step.direction, rtol=1e-15)
    assert step.step @ g > 0                                         # an ascent direction


def test_natural_step_is_invariant_to_a_linear_reparametrisation():
    """theta = B phi: grad_phi = B^T g, F_phi = B^T F B, and B s_phi = s_theta."""
    rng = np.random.default_rng(14)
    n = 5
    F, g, B = random_spd(n, rng), rng.normal(size=n), rng.normal(size=(n, n)) + 3 * np.eye(n)
    s_theta = natural_step(g, lambda v: F @ v, 0.01, cg_iters=n, damping=0.0).step
    F_phi = B.T @ F @ B
    s_phi = natural_step(B.T @ g, lambda v: F_phi @ v, 0.01, cg_iters=3 * n, damping=0.0).step
    np.testing.assert_allclose(B @ s_phi, s_theta, rtol=1e-7, atol=1e-10)


def test_natural_step_of_a_zero_gradient_is_zero():
    step = natural_step(np.zeros(3), lambda v: 2 * v, 0.01)
    assert step.step_size == 0.0 and np.all(step.step == 0)


# ----------------------------------------------------- NPG on a tabular MDP

def centred(x):
    """x [S, A] minus its mean over actions in each state."""
    return x - x.mean(axis=1, keepdims=True)


def npg_setup(seed, n_states=5, n_actions=3, gamma=0.9):
    rng = np.random.default_rng(seed)
    mdp = random_mdp(n_states, n_actions, rng, gamma=gamma)
    policy = TabularSoftmaxPolicy(n_states, n_actions)
    theta = rng.normal(size=policy.n_params)
    pi = policy_table(policy, theta, n_states)
    return mdp, policy, theta, pi


def exact_cg(policy):
    """CG settings that solve the tabular system to rounding: rank(F) = S (A - 1) iterations."""
    return dict(cg_iters=policy.n_states * (policy.n_actions - 1), damping=0.0, cg_residual_tol=1e-24)


@pytest.mark.parametrize("seed, n_states, n_actions, gamma",
                         [(0, 5, 3, 0.9), (1, 3, 2, 0.5), (2, 6, 4, 0.95)])
def test_tabular_natural_gradient_is_the_advantage_over_one_minus_gamma(seed, n_states, n_actions, gamma):
    """F(d^pi)^+ grad J = A^pi / (1 - gamma) up to a constant per state (compared centred)."""
    mdp, policy, theta, pi = npg_setup(seed, n_states, n_actions, gamma)
    d = state_visitation(mdp, pi)                                    # normalised: sums to one
    F = fisher_matrix(policy, theta, d)
    grad = exact_policy_gradient(mdp, policy, theta)
    step = natural_step(grad, lambda v: F @ v, 0.01, **exact_cg(policy))
    x = step.direction.reshape(n_states, n_actions)
    target = evaluate_policy(mdp, pi).advantages / (1 - gamma)
    np.testing.assert_allclose(centred(x), centred(target), atol=1e-9)
    np.testing.assert_allclose(x.mean(axis=1), 0.0, atol=1e-9)      # CG from 0: the minimum-norm one
    np.testing.assert_allclose(F @ step.direction, grad, atol=1e-12)
    # with the unnormalised visitation d / (1 - gamma) the natural gradient is A^pi itself
    F_unnormalised = fisher_matrix(policy, theta, d / (1 - gamma))
    x2 = natural_step(grad, lambda v: F_unnormalised @ v, 0.01, **exact_cg(policy)).direction
    np.testing.assert_allclose(centred(x2.reshape(n_states, n_actions)), centred(target * (1 - gamma)),
                               atol=1e-9)


def test_npg_update_is_soft_policy_iteration():
    """One NPG step gives pi'(a|s) proportional to pi(a|s) exp(eta A(s,a) / (1 - gamma))."""
    mdp, policy, _, pi = npg_setup(3)
    theta, grad, fvp, surrogate, kl = tabular_problem(3)
    result = trust_region_update(theta, grad, fvp, surrogate, kl, 0.02, line_search=False,
                                 **exact_cg(policy))
    eta = natural_step(grad, fvp, 0.02, **exact_cg(policy)).step_size
    A = evaluate_policy(mdp, pi).advantages
    soft = pi * np.exp(eta * A / (1 - mdp.gamma))
    soft /= soft.sum(axis=1, keepdims=True)
    assert result.accepted and result.step_fraction == 1.0
    np.testing.assert_allclose(policy_table(policy, result.params, mdp.n_states), soft, rtol=1e-9)
    logit_gap = (result.params - theta).reshape(pi.shape) - eta * A / (1 - mdp.gamma)
    np.testing.assert_allclose(centred(logit_gap), 0.0, atol=1e-10)    # a constant per state


# ---------------------------------------------------- TRPO on a tabular MDP

def tabular_problem(seed):
    mdp, policy, theta, pi = npg_setup(seed)
    d = state_visitation(mdp, pi)
    F = fisher_matrix(policy, theta, d)
    grad = exact_policy_gradient(mdp, policy, theta)

    def surrogate(t):
        return surrogate_objective(mdp, pi, policy_table(policy, t, mdp.n_states))

    def kl(t):
        return expected_policy_kl(mdp, pi, policy_table(policy, t, mdp.n_states))
    return theta, grad, (lambda v: F @ v), surrogate, kl


@pytest.mark.parametrize("max_kl", [1e-3, 1e-2, 0.1, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trpo_accepted_step_is_within_the_trust_region_and_improves(seed, max_kl):
    theta, grad, fvp, surrogate, kl = tabular_problem(seed)
    result = trust_region_update(theta, grad, fvp, surrogate, kl, max_kl, damping=0.0, cg_iters=15)
    assert result.accepted
    assert result.kl <= max_kl and result.improvement > 0
    assert result.kl == pytest.approx(kl(result.params), rel=1e-12)
    assert result.improvement == pytest.approx(surrogate(result.params) - surrogate(theta), rel=1e-12)


def test_trpo_small_steps_match_the_quadratic_and_linear_models():
    theta, grad, fvp, surrogate, kl = tabular_problem(4)
    result = trust_region_update(theta, grad, fvp, surrogate, kl, 1e-5, damping=0.0, cg_iters=15)
    assert result.step_fraction == 1.0
    assert result.kl == pytest.approx(1e-5, rel=0.02)
    assert result.improvement == pytest.approx(result.expected_improvement, rel=0.02)


def test_trpo_backtracks_to_the_first_fraction_inside_the_trust_region():
    theta, grad, fvp, surrogate, kl = tabular_problem(5)
    strict_kl = lambda t: 50 * kl(t)                                 # noqa: E731 (a KL 50x too large)
    max_kl = 0.01
    result = trust_region_update(theta, grad, fvp, surrogate, strict_kl, max_kl, damping=0.0,
                                 cg_iters=15, backtrack_ratio=0.5)
    step = natural_step(grad, fvp, max_kl, cg_iters=15, damping=0.0).step
    k = round(math.log(result.step_fraction, 0.5))
    assert result.accepted and k >= 1 and result.step_fraction == 0.5**k
    assert strict_kl(theta + 0.5**k * step) <= max_kl < strict_kl(theta + 0.5 ** (k - 1) * step)
    np.testing.assert_allclose(result.params, theta + 0.5**k * step, rtol=1e-12)


def test_trpo_rejects_a_candidate_just_outside_the_trust_region():
    """A KL scaled so that the half step has KL 1.01 max_kl: the quarter step is taken."""
    theta, grad, fvp, surrogate, kl = tabular_problem(8)
    max_kl = 0.01
    step = natural_step(grad, fvp, max_kl, cg_iters=15, damping=0.0).step
    scale = 1.01 * max_kl / kl(theta + 0.5 * step)
    result = trust_region_update(theta, grad, fvp, surrogate, lambda t: scale * kl(t), max_kl,
                                 damping=0.0, cg_iters=15)
    assert result.step_fraction == 0.25 and result.kl <= max_kl


def test_trpo_returns_the_old_params_when_no_step_improves():
    theta, grad, fvp, surrogate, kl = tabular_problem(6)
    calls = []

    def worse(t):
        calls.append(1)
        return -surrogate(t)
    result = trust_region_update(theta, grad, fvp, worse, kl, 0.01, max_backtracks=4, damping=0.0)
    assert not result.accepted and result.step_fraction == 0.0
    np.testing.assert_array_equal(result.params, theta)
    assert len(calls) == 1 + 5                                       # the old params, 5 candidates
    # NPG takes the full step anyway
    npg = trust_region_update(theta, grad, fvp, worse, kl, 0.01, line_search=False, damping=0.0)
    assert npg.accepted and npg.step_fraction == 1.0 and npg.improvement < 0


def test_trpo_iterations_never_decrease_the_return():
    rng = np.random.default_rng(7)
    mdp = random_mdp(6, 3, rng, gamma=0.9)
    policy = TabularSoftmaxPolicy(6, 3)
    theta = policy.init_params()
    returns = [mdp_lib.exact_objective(mdp, policy, theta)]
    for _ in range(12):
        pi = policy_table(policy, theta, 6)
        F = fisher_matrix(policy, theta, state_visitation(mdp, pi))
        result = trust_region_update(
            theta, exact_policy_gradient(mdp, policy, theta), lambda v: F @ v,
            lambda t: surrogate_objective(mdp, pi, policy_table(policy, t, 6)),
            lambda t: expected_policy_kl(mdp, pi, policy_table(policy, t, 6)),
            0.05, damping=0.0, cg_iters=18)
        theta = result.params
        returns.append(mdp_lib.exact_objective(mdp, policy, theta))
    assert all(b >= a - 1e-12 for a, b in zip(returns, returns[1:]))
    assert returns[-1] > returns[0] + 1.0


# ------------------------------------------------------------------ bad input

SPD = np.eye(3) * 2.0
CAT = CategoricalMLPPolicy(2, 3, hidden=(3,))
ok_fvp = lambda v: SPD @ v                                           # noqa: E731
ok_f = lambda t: 0.0                                                 # noqa: E731

BAD = [
    (lambda: fisher_matrix(LinearSoftmaxPolicy.per_action_linear(2, 3), np.zeros(9), np.ones(2)),
     "policy must be a TabularSoftmaxPolicy or a LinearSoftmaxPolicy over integer states"),
    (lambda: fisher_matrix(TabularSoftmaxPolicy(2, 2), np.zeros(4), np.ones(3)),
     r"state_weights must have shape \[S\] = \(2,\)"),
    (lambda: fisher_matrix(TabularSoftmaxPolicy(2, 2), np.zeros(4), [1.0, -1.0]),
     "state_weights must be non-negative"),
    (lambda: fisher_matrix(TabularSoftmaxPolicy(2, 2), np.zeros(3), np.ones(2)), r"theta must have shape"),
    (lambda: empirical_fisher(np.zeros(3)), r"scores must have shape \[N, P\]"),
    (lambda: empirical_fisher(np.zeros((0, 3))), "scores must be a non-empty finite"),
    (lambda: empirical_fisher([[np.inf]]), "scores must be a non-empty finite"),
    (lambda: fisher_vector_product(TabularSoftmaxPolicy(2, 2), np.zeros(4), np.zeros(2), np.zeros(4)),
     "policy must be a CategoricalMLPPolicy or GaussianMLPPolicy"),
    (lambda: fisher_vector_product(CAT, np.zeros(CAT.n_params), np.zeros((4, 2)), np.zeros(3)),
     "v must be finite with the shape of params"),
    (lambda: fisher_vector_product(CAT, np.zeros(CAT.n_params), np.zeros((4, 3)), np.zeros(CAT.n_params)),
     r"obs must have shape \[\*batch, 2\]"),
    (lambda: conjugate_gradient(ok_fvp, np.array([1.0, np.inf, 0.0])), "b must be finite"),
    (lambda: conjugate_gradient(ok_fvp, np.array([1.0, np.nan, 0.0])), "b contains NaN"),
    (lambda: conjugate_gradient(SPD, np.ones(3)), "matvec must be callable, got ndarray"),
    (lambda: conjugate_gradient(ok_fvp, np.ones((3, 1))), r"b must have shape \[n\]"),
    (lambda: conjugate_gradient(lambda v: v[:2], np.ones(3)), r"matvec must return a finite array of shape \(3,\)"),
    (lambda: conjugate_gradient(lambda v: v * np.nan, np.ones(3)), "with inf/NaN"),
    (lambda: conjugate_gradient(lambda v: -v, np.ones(3)), "matvec is not positive definite"),
    (lambda: conjugate_gradient(ok_fvp, np.ones(3), n_iters=0), "n_iters must be >= 1"),
    (lambda: conjugate_gradient(ok_fvp, np.ones(3), residual_tol=-1.0), "residual_tol must be non-negative"),
    (lambda: natural_step(np.ones(3), ok_fvp, 0.0), "max_kl must be a positive finite number"),
    (lambda: natural_step(np.ones(3), ok_fvp, 0.01, damping=-1.0), "damping must be non-negative"),
    (lambda: natural_step(np.ones(3), "F", 0.01), "fvp must be callable"),
    (lambda: trust_region_update(np.zeros(3), np.ones(2), ok_fvp, ok_f, ok_f, 0.01),
     r"grad must have the shape of params, \(3,\)"),
    (lambda: trust_region_update(np.zeros(3), np.ones(3), ok_fvp, 1.0, ok_f, 0.01), "surrogate must be callable"),
    (lambda: trust_region_update(np.zeros(3), np.ones(3), ok_fvp, ok_f, ok_f, 0.01, backtrack_ratio=1.0),
     r"backtrack_ratio must be in \(0, 1\)"),
    (lambda: trust_region_update(np.zeros(3), np.ones(3), ok_fvp, ok_f, ok_f, 0.01, max_backtracks=-1),
     "max_backtracks must be >= 0"),
    (lambda: trust_region_update(np.zeros(3), np.ones(3), ok_fvp, ok_f, ok_f, 0.01, line_search="yes"),
     "line_search must be True or False"),
    (lambda: trust_region_update(np.zeros(3), np.ones(3), ok_fvp, lambda t: np.ones(2), ok_f, 0.01),
     "surrogate must return a single number"),
    (lambda: trust_region_update(np.zeros(3), np.ones(3), ok_fvp, lambda t: np.nan, ok_f, 0.01),
     "surrogate.params. must be finite"),
]


@pytest.mark.parametrize("call, match", BAD, ids=[m for _, m in BAD])
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
