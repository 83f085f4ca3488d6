"""V-trace against the paper's explicit sum, its special cases, and its operator on tabular MDPs.

The targets: a slow loop written like the explicit sum of Espeholt et al. (2018),
several shapes with and without clipping and lambda; on-policy they are the
bootstrapped n-step return (and GAE's lambda-return); a zero discount splits a
sequence; the IMPALA code's and rlax's conventions as this project understands
them; ratios clipped in log space; bad input. The operator: an enumeration of
every trajectory of n steps, its fixed point against the exact value of
pi_rho_bar, its limits in rho_bar, and its contraction modulus. No sampling.
"""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgkit import vtrace
from pgkit.mdp import TabularMDP, evaluate_policy, random_mdp
from pgkit.returns import gae, reward_to_go


# ----------------------------------------------------------------------------- references

def _clip(x, threshold):
    return x if threshold is None else min(threshold, x)


def slow_vtrace(log_rhos, discounts, rewards, values, bootstrap_value, rho_bar=1.0,
                pg_rho_bar=1.0, c_bar=1.0, lam=1.0):
    """v_s = V(x_s) + sum_{t>=s} (prod_{i=s}^{t-1} gamma_i c_i) delta_t, one column at a time."""
    T = log_rhos.shape[0]
    lam = np.broadcast_to(lam, log_rhos.shape)
    vs, pg = np.empty(log_rhos.shape), np.empty(log_rhos.shape)
    for idx in np.ndindex(log_rhos.shape[1:]):
        def col(a):
            return a[(slice(None),) + idx]
        rho = np.exp(col(log_rhos))
        gam, r, lm = col(discounts), col(rewards), col(lam)
        V = np.append(col(values), bootstrap_value[idx])                  # V[T] = bootstrap
        for s in range(T):
            total = V[s]
            for t in range(s, T):
                trace = 1.0
                for i in range(s, t):
                    trace *= gam[i] * lm[i] * _clip(rho[i], c_bar)
                delta = _clip(rho[t], rho_bar) * (r[t] + gam[t] * V[t + 1] - V[t])
                total += trace * delta
            vs[(s,) + idx] = total
        for s in range(T):
            v_next = vs[(s + 1,) + idx] if s + 1 < T else V[T]
            pg[(s,) + idx] = _clip(rho[s], pg_rho_bar) * (r[s] + gam[s] * v_next - V[s])
    return vs, pg


def rlax_like(v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_, clip_rho_threshold,
              clip_pg_rho_threshold):
    """One trajectory [T], in rlax's conventions as understood here (written from the
    description, not the code): c = lambda min(1, rho), TD errors weighted by the clipped
    rho, a backward scan of the errors; the policy-gradient advantage bootstraps from
    lambda v_{t+1} + (1 - lambda) V(x_{t+1}) (the two agree when lambda = 1)."""
    T = len(r_t)
    c = lambda_ * np.minimum(1.0, rho_tm1)
    td = np.minimum(clip_rho_threshold, rho_tm1) * (r_t + discount_t * v_t - v_tm1)
    err, errors = 0.0, np.zeros(T)
    for i in reversed(range(T)):
        err = td[i] + discount_t[i] * c[i] * err
        errors[i] = err
    targets = errors + v_tm1
    q_boot = np.append(lambda_ * targets[1:] + (1 - lambda_) * v_tm1[1:], v_t[-1])
    pg = np.minimum(clip_pg_rho_threshold, rho_tm1) * (r_t + discount_t * q_boot - v_tm1)
    return targets, pg


def random_batch(rng, shape, *, spread=1.0, p_end=0.15):
    log_rhos = spread * rng.normal(size=shape)
    discounts = 0.9 * (rng.random(shape) > p_end)
    rewards = rng.normal(size=shape)
    values = rng.normal(size=shape)
    bootstrap = rng.normal(size=shape[1:])
    return log_rhos, discounts, rewards, values, bootstrap


# ----------------------------------------------------------------------------- the targets

SHAPES = [(1, 1), (6, 3), (5, 2, 3), (4, 1, 2, 2)]
CLIPS = [(1.0, 1.0, 1.0), (None, None, None), (0.7, 1.3, 0.4), (2.5, None, 1.8), (1.0, 0.0, 0.0)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("clips", CLIPS)
@pytest.mark.parametrize("lam", ["one", "scalar", "array", "broadcast"])
def test_from_importance_weights_matches_the_explicit_sum(shape, clips, lam):
    rng = np.random.default_rng(sum(shape) + 7 * CLIPS.index(clips))
    batch = random_batch(rng, shape)
    lam = {"one": 1.0, "scalar": 0.8, "array": rng.uniform(0, 1, size=shape),
           "broadcast": rng.uniform(0, 1, size=shape[1:])}[lam]
    rho_bar, pg_rho_bar, c_bar = clips
    out = vtrace.from_importance_weights(*batch, clip_rho_threshold=rho_bar,
                                         clip_pg_rho_threshold=pg_rho_bar,
                                         clip_c_threshold=c_bar, lambda_=lam)
    assert isinstance(out, vtrace.VTraceReturns) and out._fields == ("vs", "pg_advantages")
    vs, pg = slow_vtrace(*batch, rho_bar, pg_rho_bar, c_bar, lam)
    assert out.vs.shape == shape and out.pg_advantages.shape == shape
    np.testing.assert_allclose(out.vs, vs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.pg_advantages, pg, rtol=1e-12, atol=1e-12)


def test_an_infinite_threshold_is_no_clipping():
    batch = random_batch(np.random.default_rng(9), (5, 3))
    none = vtrace.from_importance_weights(*batch, None, None, None)
    inf = vtrace.from_importance_weights(*batch, np.inf, np.inf, np.inf)
    np.testing.assert_array_equal(none.vs, inf.vs)
    np.testing.assert_array_equal(none.pg_advantages, inf.pg_advantages)


def test_the_defaults_are_one_for_every_threshold_and_lambda():
    batch = random_batch(np.random.default_rng(0), (6, 4))
    default = vtrace.from_importance_weights(*batch)
    np.testing.assert_allclose(default.vs, slow_vtrace(*batch)[0], rtol=1e-12)
    explicit = vtrace.from_importance_weights(*batch, clip_rho_threshold=1.0,
                                              clip_pg_rho_threshold=1.0, clip_c_threshold=1.0,
                                              lambda_=1.0)
    np.testing.assert_array_equal(default.vs, explicit.vs)
    np.testing.assert_array_equal(default.pg_advantages, explicit.pg_advantages)


@pytest.mark.parametrize("thresholds", [(1.0, 1.0, 1.0), (None, None, None), (3.0, 2.0, 5.0)])
def test_on_policy_vs_is_the_bootstrapped_n_step_return(thresholds):
    rng = np.random.default_rng(1)
    T, B, gamma = 7, 5, 0.95
    terminated = rng.random((T, B)) < 0.2
    rewards, values, bootstrap = rng.normal(size=(T, B)), rng.normal(size=(T, B)), rng.normal(size=B)
    rho_bar, pg_rho_bar, c_bar = thresholds
    out = vtrace.from_importance_weights(np.zeros((T, B)), gamma * ~terminated, rewards, values,
                                         bootstrap, rho_bar, pg_rho_bar, c_bar)
    # written out: sum_{t>=s} (prod of discounts) r_t + (prod of all discounts) V(x_T)
    n_step = np.empty((T, B))
    for s, b in itertools.product(range(T), range(B)):
        total, discount = 0.0, 1.0
        for t in range(s, T):
            total += discount * rewards[t, b]
            discount *= gamma * (not terminated[t, b])
        n_step[s, b] = total + discount * bootstrap[b]
    np.testing.assert_allclose(out.vs, n_step, rtol=1e-12)
    # the same by pgkit.returns: bootstrap where the batch cuts the episode
    next_values = np.zeros((T, B))
    next_values[-1] = bootstrap
    np.testing.assert_allclose(out.vs, reward_to_go(rewards, terminated, np.zeros((T, B), bool),
                                                    gamma, next_values), rtol=1e-12)
    # on-policy with lambda = 1, v_s = r_s + gamma_s v_{s+1}: the advantage is v_s - V(x_s)
    np.testing.assert_allclose(out.pg_advantages, out.vs - values, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9, 1.0])
def test_on_policy_vs_minus_values_is_gae(lam):
    rng = np.random.default_rng(2)
    T, B, gamma = 9, 4, 0.97
    terminated = rng.random((T, B)) < 0.15
    rewards, values, bootstrap = rng.normal(size=(T, B)), rng.normal(size=(T, B)), rng.normal(size=B)
    out = vtrace.from_importance_weights(np.zeros((T, B)), gamma * ~terminated, rewards, values,
                                         bootstrap, lambda_=lam)
    next_values = np.concatenate([values[1:], bootstrap[None]])
    advantages = gae(rewards, values, next_values, terminated, np.zeros((T, B), bool), gamma, lam)
    np.testing.assert_allclose(out.vs - values, advantages, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 3), (8, 2, 2)])
def test_a_zero_discount_splits_the_sequence_into_independent_episodes(shape):
    rng = np.random.default_rng(3)
    log_rhos, discounts, rewards, values, bootstrap = random_batch(rng, shape, p_end=0.0)
    k = 4
    discounts[k] = 0.0                                    # the episode ends after step k
    kw = dict(clip_rho_threshold=1.5, clip_c_threshold=0.9, lambda_=0.95)
    whole = vtrace.from_importance_weights(log_rhos, discounts, rewards, values, bootstrap, **kw)
    first = vtrace.from_importance_weights(log_rhos[:k + 1], discounts[:k + 1], rewards[:k + 1],
                                           values[:k + 1], rng.normal(size=shape[1:]) * 1e3, **kw)
    second = vtrace.from_importance_weights(log_rhos[k + 1:], discounts[k + 1:], rewards[k + 1:],
                                            values[k + 1:], bootstrap, **kw)
    for name in ("vs", "pg_advantages"):
        joined = np.concatenate([getattr(first, name), getattr(second, name)])
        np.testing.assert_allclose(getattr(whole, name), joined, rtol=1e-13, atol=1e-13)
    # and the split matters: with the discount restored, the first part changes
    discounts[k] = 0.9
    joined = vtrace.from_importance_weights(log_rhos, discounts, rewards, values, bootstrap, **kw)
    assert not np.allclose(joined.vs[:k + 1], whole.vs[:k + 1])


@pytest.mark.parametrize("lam", [1.0, 0.6])
def test_agrees_with_the_rlax_and_impala_conventions(lam):
    rng = np.random.default_rng(4)
    T, B = 10, 3
    log_rhos, discounts, rewards, values, bootstrap = random_batch(rng, (T, B))
    out = vtrace.from_importance_weights(log_rhos, discounts, rewards, values, bootstrap,
                                         clip_rho_threshold=1.2, clip_pg_rho_threshold=0.9,
                                         clip_c_threshold=1.0, lambda_=lam)
    for b in range(B):
        v_t = np.append(values[1:, b], bootstrap[b])
        targets, pg = rlax_like(values[:, b], v_t, rewards[:, b], discounts[:, b],
                                np.exp(log_rhos[:, b]), lam, 1.2, 0.9)
        np.testing.assert_allclose(out.vs[:, b], targets, rtol=1e-12)
        if lam == 1.0:                 # IMPALA's convention; rlax mixes in V for lambda < 1
            np.testing.assert_allclose(out.pg_advantages[:, b], pg, rtol=1e-12)
        else:
            assert not np.allclose(out.pg_advantages[:, b], pg)


def test_ratios_are_clipped_in_log_space():
    rng = np.random.default_rng(5)
    log_rhos, discounts, rewards, values, bootstrap = random_batch(rng, (6, 3))
    log_rhos[2, 1] = 1e4                                  # exp would overflow
    log_rhos[4, 0] = -np.inf                              # an action pi never takes: rho = 0
    kw = dict(clip_rho_threshold=2.0, clip_pg_rho_threshold=1.5, clip_c_threshold=1.0)
    out = vtrace.from_importance_weights(log_rhos, discounts, rewards, values, bootstrap, **kw)
    assert np.isfinite(out.vs).all() and np.isfinite(out.pg_advantages).all()
    moderate = log_rhos.copy()
    moderate[2, 1] = 50.0                                 # clips to the same weights
    moderate[4, 0] = -800.0                               # exp underflows to exactly 0
    again = vtrace.from_importance_weights(moderate, discounts, rewards, values, bootstrap, **kw)
    np.testing.assert_array_equal(out.vs, again.vs)
    np.testing.assert_array_equal(out.pg_advantages, again.pg_advantages)
    assert out.pg_advantages[4, 0] == 0.0


def test_zero_thresholds_and_minus_infinite_log_rhos_leave_the_values():
    rng = np.random.default_rng(6)
    log_rhos, discounts, rewards, values, bootstrap = random_batch(rng, (5, 4))
    out = vtrace.from_importance_weights(log_rhos, discounts, rewards, values, bootstrap,
                                         clip_rho_threshold=0.0, clip_pg_rho_threshold=0.0)
    np.testing.assert_array_equal(out.vs, values)
    np.testing.assert_array_equal(out.pg_advantages, np.zeros((5, 4)))
    never = vtrace.from_importance_weights(np.full((5, 4), -np.inf), discounts, rewards, values,
                                           bootstrap, None, None, None)
    np.testing.assert_array_equal(never.vs, values)


def test_unclipped_overflow_is_an_error_not_inf_or_nan():
    log_rhos, discounts, rewards, values, bootstrap = random_batch(np.random.default_rng(7), (4, 2))
    log_rhos[1, 0] = 800.0
    with pytest.raises(ValueError, match="overflowed: with unclipped importance weights"):
        vtrace.from_importance_weights(log_rhos, discounts, rewards, values, bootstrap,
                                       None, 1.0, 1.0)
    # a large but finite c_bar: products of 60 weights of e^15 exceed float64
    T = 60
    big = vtrace.from_importance_weights
    with pytest.raises(ValueError, match="overflowed"):
        big(np.full((T, 1), 15.0), np.ones((T, 1)), np.ones((T, 1)), np.zeros((T, 1)), np.ones(1),
            1.0, 1.0, 1e300)
    # clipped, the same inputs are fine
    out = big(np.full((T, 1), 15.0), np.ones((T, 1)), np.ones((T, 1)), np.zeros((T, 1)), np.ones(1))
    np.testing.assert_allclose(out.vs[:, 0], np.arange(T, 0, -1) + 1.0)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 8), B=st.integers(1, 3),
       scale=st.floats(0.01, 100.0), start=st.integers(0, 7),
       rho_bar=st.sampled_from([None, 0.5, 1.0, 3.0]), lam=st.floats(0.0, 1.0))
def test_properties_homogeneity_and_suffixes(seed, T, B, scale, start, rho_bar, lam):
    log_rhos, discounts, rewards, values, bootstrap = random_batch(np.random.default_rng(seed), (T, B))
    kw = dict(clip_rho_threshold=rho_bar, clip_pg_rho_threshold=rho_bar, lambda_=lam)
    out = vtrace.from_importance_weights(log_rhos, discounts, rewards, values, bootstrap, **kw)
    # rewards, values and bootstrap scaled together scale the outputs (they are linear in them)
    scaled = vtrace.from_importance_weights(log_rhos, discounts, scale * rewards, scale * values,
                                            scale * bootstrap, **kw)
    np.testing.assert_allclose(scaled.vs, scale * out.vs, rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(scaled.pg_advantages, scale * out.pg_advantages, rtol=1e-9,
                               atol=1e-9 * scale)
    # the recursion runs backwards: a suffix of the batch has the suffix of the targets
    s = min(start, T - 1)
    tail = vtrace.from_importance_weights(log_rhos[s:], discounts[s:], rewards[s:], values[s:],
                                          bootstrap, **kw)
    np.testing.assert_allclose(tail.vs, out.vs[s:], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tail.pg_advantages, out.pg_advantages[s:], rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 8))
def test_property_no_trace_is_the_one_step_target(seed, T):
    log_rhos, discounts, rewards, values, bootstrap = random_batch(np.random.default_rng(seed), (T, 2))
    out = vtrace.from_importance_weights(log_rhos, discounts, rewards, values, bootstrap,
                                         lambda_=0.0)
    next_values = np.concatenate([values[1:], bootstrap[None]])
    td = rewards + discounts * next_values - values
    np.testing.assert_allclose(out.vs, values + np.minimum(1.0, np.exp(log_rhos)) * td, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda b: vtrace.from_importance_weights(np.zeros(5), *b[1:]),
     r"log_rhos must have shape \[T, B, \.\.\.\] with T >= 1, got \(5,\)"),
    (lambda b: vtrace.from_importance_weights(np.zeros((0, 3)), *b[1:]), "with T >= 1"),
    (lambda b: vtrace.from_importance_weights(b[0], b[1][:-1], *b[2:]),
     r"discounts must have shape \[T, B, \.\.\.\] = \(5, 3\), got \(4, 3\)"),
    (lambda b: vtrace.from_importance_weights(*b[:2], b[2].T, *b[3:]),
     r"rewards must have shape \[T, B, \.\.\.\] = \(5, 3\), got \(3, 5\)"),
    (lambda b: vtrace.from_importance_weights(*b[:3], b[3][..., None], b[4]),
     r"values must have shape"),
    (lambda b: vtrace.from_importance_weights(*b[:4], np.zeros(4)),
     r"bootstrap_value must have shape \[B, \.\.\.\] = \(3,\), got \(4,\)"),
    (lambda b: vtrace.from_importance_weights(np.where(b[0] > 0, np.nan, 0.0), *b[1:]),
     "log_rhos contains NaN"),
    (lambda b: vtrace.from_importance_weights(np.full((5, 3), np.inf), *b[1:]),
     r"log_rhos must be below \+inf"),
    (lambda b: vtrace.from_importance_weights(b[0], b[1], b[2] * np.nan, *b[3:]),
     "rewards contains NaN"),
    (lambda b: vtrace.from_importance_weights(*b[:3], b[3] + np.inf, b[4]), "values must be finite"),
    (lambda b: vtrace.from_importance_weights(*b[:4], np.full(3, np.nan)),
     "bootstrap_value contains NaN"),
    (lambda b: vtrace.from_importance_weights(b[0], b[1] + 0.5, *b[2:]),
     r"discounts must be in \[0, 1\], got 1.4"),
    (lambda b: vtrace.from_importance_weights(b[0], -b[1] - 0.1, *b[2:]),
     r"discounts must be in \[0, 1\]"),
    (lambda b: vtrace.from_importance_weights(*b, clip_rho_threshold=-1.0),
     r"clip_rho_threshold must be non-negative \(or None for no clipping\), got -1.0"),
    (lambda b: vtrace.from_importance_weights(*b, clip_pg_rho_threshold=-0.5),
     "clip_pg_rho_threshold must be non-negative"),
    (lambda b: vtrace.from_importance_weights(*b, clip_c_threshold="1"),
     "clip_c_threshold must be a non-negative number or None"),
    (lambda b: vtrace.from_importance_weights(*b, clip_c_threshold=float("nan")),
     "clip_c_threshold must be a non-negative number or None"),
    (lambda b: vtrace.from_importance_weights(*b, lambda_=1.5), r"lambda_ must be in \[0, 1\], got 1.5"),
    (lambda b: vtrace.from_importance_weights(*b, lambda_=float("nan")), r"lambda_ must be in \[0, 1\]"),
    (lambda b: vtrace.from_importance_weights(*b, lambda_=np.full((5, 3), -0.1)),
     r"lambda_ must be in \[0, 1\], got -0.1"),
    (lambda b: vtrace.from_importance_weights(*b, lambda_=np.ones((2, 3))),
     r"lambda_ must be a number or an array broadcastable to \[T, B, \.\.\.\] = \(5, 3\), got shape \(2, 3\)"),
    (lambda b: vtrace.from_importance_weights(*b, lambda_=np.ones((1, 5, 3))),
     "lambda_ must be a number or an array broadcastable"),
])
def test_from_importance_weights_rejects_bad_input(call, message):
    batch = random_batch(np.random.default_rng(8), (5, 3), p_end=0.0)
    with pytest.raises(ValueError, match=message):
        call(batch)


# ----------------------------------------------------------------------------- the tabular operator

def example(seed=0, S=4, A=3, gamma=0.9, pi_support="full"):
    """A random MDP, a target pi and a behaviour mu with full support."""
    rng = np.random.default_rng(seed)
    mdp = random_mdp(S, A, rng, gamma=gamma)
    pi = rng.dirichlet(np.full(A, 0.7), size=S)
    if pi_support == "partial":                         # pi never takes action 0 in state 0
        pi[0] = np.append(0.0, rng.dirichlet(np.ones(A - 1)))
    mu = rng.dirichlet(np.full(A, 2.0), size=S)
    return mdp, pi, mu


def enumerated_paths(mdp, mu, x0, n):
    """Every (a_0, x_1, ..., a_{n-1}, x_n) from x0 with its probability under mu, as
    (probability, actions, states) with states = (x_0, ..., x_n)."""
    S, A = mu.shape
    for path in itertools.product(range(A), range(S), repeat=n):
        actions, states = path[0::2], (x0,) + path[1::2]
        prob = math.prod(mu[states[t], actions[t]] * mdp.transitions[states[t], actions[t], states[t + 1]]
                         for t in range(n))
        if prob > 0:
            yield prob, actions, states


def enumerated_operator(mdp, pi, mu, V, rho_bar, c_bar, lam, n):
    """V(x) + E_mu[sum_{t<n} gamma^t c_0..c_{t-1} rho_t (r_t + gamma V(x_{t+1}) - V(x_t))]."""
    out = np.empty(len(V))
    for x0 in range(len(V)):
        total = 0.0
        for prob, actions, states in enumerated_paths(mdp, mu, x0, n):
            trace, g = 1.0, 0.0
            for t, (a, x, y) in enumerate(zip(actions, states, states[1:])):
                ratio = pi[x, a] / mu[x, a]
                g += mdp.gamma ** t * trace * _clip(ratio, rho_bar) * (
                    mdp.rewards[x, a] + mdp.gamma * V[y] - V[x])
                trace *= lam * _clip(ratio, c_bar)
            total += prob * g
        out[x0] = V[x0] + total
    return out


def enumerated_expectation(mdp, pi, mu, rho_bar, c_bar, lam, n):
    """E_mu[sum_{t<n} gamma^t c_0..c_{t-1} rho_t | x_0 = x] for every x."""
    out = np.zeros(mdp.n_states)
    for x0 in range(mdp.n_states):
        for prob, actions, states in enumerated_paths(mdp, mu, x0, n):
            trace = 1.0
            for t, (a, x) in enumerate(zip(actions, states)):
                ratio = pi[x, a] / mu[x, a]
                out[x0] += prob * mdp.gamma ** t * trace * _clip(ratio, rho_bar)
                trace *= lam * _clip(ratio, c_bar)
    return out


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("rho_bar, c_bar, lam", [(1.0, 1.0, 1.0), (0.6, 0.4, 0.9), (None, None, 1.0),
                                                 (2.0, 1.5, 0.5)])
def test_operator_matches_an_enumeration_of_every_trajectory(n, rho_bar, c_bar, lam):
    mdp, pi, mu = example(1, S=3, A=2)
    V = np.random.default_rng(2).normal(size=3)
    exact = vtrace.vtrace_operator(mdp, pi, mu, V, clip_rho_threshold=rho_bar,
                                   clip_c_threshold=c_bar, lambda_=lam, n_steps=n)
    np.testing.assert_allclose(exact, enumerated_operator(mdp, pi, mu, V, rho_bar, c_bar, lam, n),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rho_bar, c_bar", [(None, None), (np.inf, 1.0), (1.5, 0.8)])
def test_actions_mu_never_takes_have_no_weight(rho_bar, c_bar):
    mdp, pi, mu = example(13, S=3, A=2)
    mu[1] = [1.0, 0.0]                                   # mu never takes action 1 in state 1
    pi[1] = [0.3, 0.7]                                   # which pi prefers
    V = np.random.default_rng(14).normal(size=3)
    for n in (1, 2):
        exact = vtrace.vtrace_operator(mdp, pi, mu, V, clip_rho_threshold=rho_bar,
                                       clip_c_threshold=c_bar, n_steps=n)
        np.testing.assert_allclose(exact, enumerated_operator(mdp, pi, mu, V, rho_bar, c_bar,
                                                              1.0, n), rtol=1e-12, atol=1e-12)
    pi_rho = vtrace.vtrace_policy(pi, mu, rho_bar)
    if rho_bar is None or rho_bar == np.inf:             # pi restricted to mu's actions
        np.testing.assert_allclose(pi_rho[1], [1.0, 0.0])
    np.testing.assert_allclose(vtrace.vtrace_fixed_point(mdp, pi, mu, clip_rho_threshold=rho_bar),
                               evaluate_policy(mdp, pi_rho).values, rtol=1e-10)


def test_infinite_operator_is_the_limit_of_n_steps():
    mdp, pi, mu = example(3)
    V = np.random.default_rng(4).normal(size=4)
    kw = dict(clip_rho_threshold=1.2, clip_c_threshold=0.8, lambda_=0.95)
    limit = vtrace.vtrace_operator(mdp, pi, mu, V, **kw)
    np.testing.assert_allclose(vtrace.vtrace_operator(mdp, pi, mu, V, n_steps=400, **kw), limit,
                               rtol=1e-12, atol=1e-12)
    assert not np.allclose(vtrace.vtrace_operator(mdp, pi, mu, V, n_steps=2, **kw), limit)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rho_bar", [0.3, 0.8, 1.0, 1.7])
def test_fixed_point_is_the_value_of_pi_rho_bar_not_of_pi(seed, rho_bar):
    mdp, pi, mu = example(seed)
    fixed = vtrace.vtrace_fixed_point(mdp, pi, mu, clip_rho_threshold=rho_bar)
    pi_rho = vtrace.vtrace_policy(pi, mu, rho_bar)
    np.testing.assert_allclose(pi_rho, np.minimum(rho_bar * mu, pi)
                               / np.minimum(rho_bar * mu, pi).sum(1, keepdims=True))
    np.testing.assert_allclose(fixed, evaluate_policy(mdp, pi_rho).values, rtol=1e-10)
    if rho_bar < np.max(pi / mu):                         # clipping active: not V^pi
        assert np.max(np.abs(fixed - evaluate_policy(mdp, pi).values)) > 1e-3
    # a fixed point of the operator for any c_bar, lambda and n
    for c_bar, lam, n in ((1.0, 1.0, None), (0.5, 0.7, None), (rho_bar, 1.0, 3)):
        np.testing.assert_allclose(vtrace.vtrace_operator(mdp, pi, mu, fixed, clip_rho_threshold=rho_bar,
                                                          clip_c_threshold=c_bar, lambda_=lam,
                                                          n_steps=n), fixed, rtol=1e-10)
    # and where iterating the operator goes, from anywhere
    kw = dict(clip_rho_threshold=rho_bar, clip_c_threshold=min(rho_bar, 1.0))
    eta = vtrace.vtrace_contraction_modulus(mdp, pi, mu, **kw)
    V = np.random.default_rng(seed).normal(size=4) * 10
    errors = [np.max(np.abs(V - fixed))]
    for _ in range(100):
        V = vtrace.vtrace_operator(mdp, pi, mu, V, **kw)
        errors.append(np.max(np.abs(V - fixed)))
        assert errors[-1] <= eta * errors[-2] + 1e-12
    assert errors[-1] < 0.1 * errors[0] and errors[-1] <= eta ** 100 * errors[0] + 1e-11


def test_fixed_point_is_v_pi_once_rho_bar_exceeds_every_ratio():
    mdp, pi, mu = example(5)
    v_pi = evaluate_policy(mdp, pi).values
    top = np.max(pi / mu)
    for rho_bar in (top, 2 * top, None, np.inf):
        np.testing.assert_allclose(vtrace.vtrace_fixed_point(mdp, pi, mu, clip_rho_threshold=rho_bar),
                                   v_pi, rtol=1e-10)
    below = vtrace.vtrace_fixed_point(mdp, pi, mu, clip_rho_threshold=0.95 * top)
    assert not np.allclose(below, v_pi, rtol=1e-6)


def test_fixed_point_is_v_mu_below_every_ratio_when_pi_takes_every_action():
    mdp, pi, mu = example(6)
    bottom = np.min(pi / mu)
    v_mu = evaluate_policy(mdp, mu).values
    for rho_bar in (bottom, 0.5 * bottom, 1e-9):
        np.testing.assert_allclose(vtrace.vtrace_policy(pi, mu, rho_bar), mu, rtol=1e-12)
        np.testing.assert_allclose(vtrace.vtrace_fixed_point(mdp, pi, mu, clip_rho_threshold=rho_bar),
                                   v_mu, rtol=1e-10)
    assert not np.allclose(vtrace.vtrace_fixed_point(mdp, pi, mu, clip_rho_threshold=1.05 * bottom),
                           v_mu, rtol=1e-6)


def test_small_rho_bar_gives_mu_restricted_to_the_actions_pi_takes():
    mdp, pi, mu = example(7, pi_support="partial")
    restricted = mu * (pi > 0)
    restricted /= restricted.sum(axis=1, keepdims=True)
    small = 0.5 * np.min((pi / mu)[pi > 0])
    np.testing.assert_allclose(vtrace.vtrace_policy(pi, mu, small), restricted, rtol=1e-12)
    fixed = vtrace.vtrace_fixed_point(mdp, pi, mu, clip_rho_threshold=small)
    np.testing.assert_allclose(fixed, evaluate_policy(mdp, restricted).values, rtol=1e-10)
    assert not np.allclose(fixed, evaluate_policy(mdp, mu).values, rtol=1e-4)   # not V^mu


def _linear_part(mdp, pi, mu, **kw):
    """L of R V = L V + b, column by column: L e_j = R(e_j) - R(0) (R is affine)."""
    S = mdp.n_states
    base = vtrace.vtrace_operator(mdp, pi, mu, np.zeros(S), **kw)
    return np.stack([vtrace.vtrace_operator(mdp, pi, mu, np.eye(S)[j], **kw) - base
                     for j in range(S)], axis=1)


@pytest.mark.parametrize("rho_bar, c_bar, lam, n", [(1.0, 1.0, 1.0, None), (1.5, 0.7, 0.9, None),
                                                    (0.5, 0.5, 1.0, None), (1.0, 1.0, 1.0, 2),
                                                    (None, 1.0, 0.8, 3)])
def test_contraction_modulus_is_the_papers_eta(rho_bar, c_bar, lam, n):
    mdp, pi, mu = example(8, S=3, A=2, gamma=0.8)
    kw = dict(clip_rho_threshold=rho_bar, clip_c_threshold=c_bar, lambda_=lam, n_steps=n)
    eta = vtrace.vtrace_contraction_modulus(mdp, pi, mu, **kw)
    L = _linear_part(mdp, pi, mu, **kw)
    assert (L >= -1e-12).all()                            # c_bar <= rho_bar: no negative entry
    # eta = 1 - (1 - gamma) min_x E_mu[sum_t gamma^t c_0..c_{t-1} rho_t]
    if n is not None:
        expectation = enumerated_expectation(mdp, pi, mu, rho_bar, c_bar, lam, n)
    else:
        # the infinite sum, step by step: the trace's distribution over states, times rho
        w_rho = np.minimum(rho_bar * mu, pi) if rho_bar is not None else pi
        w_c = lam * np.minimum(c_bar * mu, pi)
        C = np.einsum("sa,sat->st", w_c, mdp.transitions)
        expectation, mass = np.zeros(3), np.eye(3)
        for t in range(3000):
            expectation += mdp.gamma ** t * mass @ w_rho.sum(axis=1)
            mass = mass @ C
    np.testing.assert_allclose(eta, 1 - (1 - mdp.gamma) * expectation.min(), rtol=1e-10)
    np.testing.assert_allclose(eta, np.max(np.abs(L).sum(axis=1)), rtol=1e-10)
    beta = np.min(np.sum(np.minimum(rho_bar * mu, pi) if rho_bar is not None else pi, axis=1))
    assert eta <= 1 - (1 - mdp.gamma) * beta + 1e-12 < 1
    # attained by a constant shift, and never exceeded by random pairs
    V = np.random.default_rng(9).normal(size=3)
    shift = vtrace.vtrace_operator(mdp, pi, mu, V + 1.0, **kw) - vtrace.vtrace_operator(mdp, pi, mu, V, **kw)
    np.testing.assert_allclose(np.max(np.abs(shift)), eta, rtol=1e-10)
    rng = np.random.default_rng(10)
    for _ in range(50):
        V1, V2 = rng.normal(size=3) * 5, rng.normal(size=3) * 5
        gap = vtrace.vtrace_operator(mdp, pi, mu, V1, **kw) - vtrace.vtrace_operator(mdp, pi, mu, V2, **kw)
        assert np.max(np.abs(gap)) <= eta * np.max(np.abs(V1 - V2)) + 1e-12


def test_contraction_modulus_without_c_bar_below_rho_bar_is_still_the_lipschitz_constant():
    mdp, pi, mu = example(11, S=3, A=2, gamma=0.95)
    kw = dict(clip_rho_threshold=0.2, clip_c_threshold=None, lambda_=1.0)
    L = _linear_part(mdp, pi, mu, **kw)
    eta = vtrace.vtrace_contraction_modulus(mdp, pi, mu, **kw)
    np.testing.assert_allclose(eta, np.max(np.abs(L).sum(axis=1)), rtol=1e-10)
    # the worst direction attains it: the signs of the worst row
    x = np.argmax(np.abs(L).sum(axis=1))
    direction = np.sign(L[x])
    gap = vtrace.vtrace_operator(mdp, pi, mu, direction, **kw) - vtrace.vtrace_operator(
        mdp, pi, mu, np.zeros(3), **kw)
    np.testing.assert_allclose(np.max(np.abs(gap)), eta, rtol=1e-10)


def test_c_bar_above_rho_bar_can_give_negative_entries():
    # with c_bar > rho_bar the paper's non-negativity argument fails: find a case where it does
    found = False
    for seed in range(20):
        mdp, pi, mu = example(seed, S=3, A=2, gamma=0.95)
        L = _linear_part(mdp, pi, mu, clip_rho_threshold=0.2, clip_c_threshold=None)
        found |= bool((L < -1e-9).any())
    assert found


@pytest.mark.parametrize("call, message", [
    (lambda m, p, q: vtrace.vtrace_operator(m.with_setting(gamma=1.0, horizon=3), p, q, np.zeros(4)),
     "defined here for discounted MDPs"),
    (lambda m, p, q: vtrace.vtrace_operator("mdp", p, q, np.zeros(4)), "mdp must be a TabularMDP"),
    (lambda m, p, q: vtrace.vtrace_operator(m, p, q[:, :2], np.zeros(4)),
     r"mu must have shape \[S, A\] = \(4, 3\), got \(4, 2\)"),
    (lambda m, p, q: vtrace.vtrace_operator(m, p, q * 2, np.zeros(4)), r"mu\[s, :\] must sum to one"),
    (lambda m, p, q: vtrace.vtrace_operator(m, p * 2, q, np.zeros(4)), r"pi\[s, :\] must sum to one"),
    (lambda m, p, q: vtrace.vtrace_operator(m, p, q, np.zeros(3)), r"V must be a finite array of shape \[S\]"),
    (lambda m, p, q: vtrace.vtrace_operator(m, p, q, np.full(4, np.nan)), "V contains NaN"),
    (lambda m, p, q: vtrace.vtrace_operator(m, p, q, np.zeros(4), clip_rho_threshold=-1.0),
     "clip_rho_threshold must be non-negative"),
    (lambda m, p, q: vtrace.vtrace_operator(m, p, q, np.zeros(4), clip_c_threshold=-1.0),
     "clip_c_threshold must be non-negative"),
    (lambda m, p, q: vtrace.vtrace_operator(m, p, q, np.zeros(4), lambda_=1.2),
     r"lambda_ must be a number in \[0, 1\]"),
    (lambda m, p, q: vtrace.vtrace_operator(m, p, q, np.zeros(4), n_steps=0), "n_steps must be >= 1"),
    (lambda m, p, q: vtrace.vtrace_contraction_modulus(m, p, q, n_steps=1.5), "n_steps must be an integer"),
    (lambda m, p, q: vtrace.vtrace_fixed_point(m, p, q, clip_rho_threshold=0.0),
     "min\\(rho_bar mu, pi\\) is zero for every action in states \\[0, 1, 2, 3\\]"),
    (lambda m, p, q: vtrace.vtrace_policy(p, q, clip_rho_threshold=0.0), "pi_rho_bar is undefined there"),
    (lambda m, p, q: vtrace.vtrace_policy(p, q[:2]), r"mu must have shape \[S, A\] = \(4, 3\)"),
    (lambda m, p, q: vtrace.vtrace_policy(p - 0.5, q), r"pi\[s, :\] must be non-negative"),
])
def test_tabular_functions_reject_bad_input(call, message):
    mdp, pi, mu = example(12)
    with pytest.raises(ValueError, match=message):
        call(mdp, pi, mu)


def test_disjoint_supports_have_no_unique_fixed_point():
    mdp = TabularMDP(np.full((2, 2, 2), 0.5), np.ones((2, 2)), np.array([1.0, 0.0]), gamma=0.9)
    pi = np.array([[1.0, 0.0], [0.5, 0.5]])
    mu = np.array([[0.0, 1.0], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"in states \[0\]: the fixed point is not unique"):
        vtrace.vtrace_fixed_point(mdp, pi, mu)
    # and indeed, the operator leaves V(0) wherever it is
    for v0 in (0.0, 7.0):
        V = np.array([v0, 10.0])
        assert vtrace.vtrace_operator(mdp, pi, mu, V)[0] == v0
    assert math.isfinite(vtrace.vtrace_contraction_modulus(mdp, pi, mu))
