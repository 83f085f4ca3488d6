"""Importance-sampling estimators at long horizons and extreme weights.

Every estimator in pgkit.importance must return the exact answer to within
rounding relative to the sum of the magnitudes of its terms (the accuracy of a
plain floating-point sum, without its overflow), +-inf with the right sign only
when the answer overflows float64, and never NaN, without a floating-point
warning (every test runs under ``np.errstate(all="raise")``). The references here are written like the
equations and computed in 60-digit decimal arithmetic, from the exact values of
the float inputs.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

import numpy as np
import pytest

from pgkit import importance as imp

CTX = decimal.Context(prec=60, Emax=10**6, Emin=-10**6)
FLOAT_MAX = Decimal(np.finfo(np.float64).max)


@pytest.fixture(autouse=True)
def _raise_on_any_floating_point_warning():
    with np.errstate(all="raise"):
        yield


def D(x) -> Decimal:
    return Decimal(float(x))                     # exact: every float is a decimal


def dexp(x: Decimal) -> Decimal:
    return CTX.exp(x)


def check(estimate: float, exact: Decimal, scale: Decimal, rtol: float = 1e-9) -> None:
    """The estimate is the exact value, up to rtol times the sum of |terms| (scale)."""
    estimate = float(estimate)
    assert not np.isnan(estimate)
    if abs(exact) > FLOAT_MAX * Decimal("1.0001"):
        assert np.isinf(estimate) and (estimate > 0) == (exact > 0), (estimate, exact)
        return
    if abs(exact) < FLOAT_MAX * Decimal("0.9999"):
        assert np.isfinite(estimate), (estimate, exact)
    if np.isfinite(estimate):
        error = abs(CTX.subtract(D(estimate), exact))
        assert error <= CTX.multiply(Decimal(rtol), scale) + Decimal("1e-300"), \
            (estimate, exact, error, scale)


# ---------------------------------------------------------------- equation-shaped references

def ref_per_decision_return(rewards, log_rhos, gamma):
    """sum_t gamma^t rho_{0:t} r_t, and sum_t |...| (for the tolerance)."""
    total, scale, log_w = Decimal(0), Decimal(0), Decimal(0)
    for t in range(len(rewards)):
        log_w = CTX.add(log_w, D(log_rhos[t]))
        term = CTX.multiply(CTX.multiply(CTX.power(D(gamma), t), dexp(log_w)), D(rewards[t]))
        total, scale = CTX.add(total, term), CTX.add(scale, abs(term))
    return total, scale


def ref_trajectory_return(rewards, log_rhos, gamma):
    """rho_{0:T-1} sum_t gamma^t r_t."""
    log_w = sum((D(x) for x in log_rhos), Decimal(0))
    ret = sum((CTX.multiply(CTX.power(D(gamma), t), D(r)) for t, r in enumerate(rewards)),
              Decimal(0))
    value = CTX.multiply(dexp(log_w), ret)
    return value, abs(value)


def ref_per_decision_gradient(scores, rewards, log_rhos, gamma):
    """sum_t score_t sum_{t' >= t} gamma^t' rho_{0:t'} r_t', per parameter."""
    T, P = scores.shape
    terms, log_w = [], Decimal(0)
    for t in range(T):
        log_w = CTX.add(log_w, D(log_rhos[t]))
        terms.append(CTX.multiply(CTX.multiply(CTX.power(D(gamma), t), dexp(log_w)),
                                  D(rewards[t])))
    to_go, abs_to_go = [Decimal(0)] * T, [Decimal(0)] * T
    acc, acc_abs = Decimal(0), Decimal(0)
    for t in reversed(range(T)):
        acc, acc_abs = CTX.add(acc, terms[t]), CTX.add(acc_abs, abs(terms[t]))
        to_go[t], abs_to_go[t] = acc, acc_abs
    out = []
    for p in range(P):
        value = sum((CTX.multiply(D(scores[t, p]), to_go[t]) for t in range(T)), Decimal(0))
        scale = sum((CTX.multiply(abs(D(scores[t, p])), abs_to_go[t]) for t in range(T)),
                    Decimal(0))
        out.append((value, scale))
    return out


def ref_trajectory_gradient(scores, rewards, log_rhos, gamma):
    """rho_{0:T-1} (sum_t score_t) (sum_t' gamma^t' r_t'), per parameter."""
    weighted_return, _ = ref_trajectory_return(rewards, log_rhos, gamma)
    out = []
    for p in range(scores.shape[1]):
        score_sum = sum((D(s) for s in scores[:, p]), Decimal(0))
        value = CTX.multiply(score_sum, weighted_return)
        out.append((value, abs(value)))
    return out


def ref_ordinary(values, log_weights):
    """(1/N) sum_i w_i f(x_i), per column of values."""
    values = np.asarray(values, dtype=float).reshape(len(log_weights), -1)
    n = Decimal(len(log_weights))
    out = []
    for p in range(values.shape[1]):
        terms = [CTX.multiply(dexp(D(l)), D(v)) if np.isfinite(l) else Decimal(0)
                 for l, v in zip(log_weights, values[:, p])]
        out.append((CTX.divide(sum(terms, Decimal(0)), n),
                    CTX.divide(sum((abs(x) for x in terms), Decimal(0)), n)))
    return out


# ---------------------------------------------------------------- the cases of the issue

def test_thousand_steps_single_early_reward_is_e_to_the_rho():
    log_rhos = np.full((1000, 1), 0.8)
    rewards = np.zeros((1000, 1))
    rewards[0, 0] = 1.0
    np.testing.assert_allclose(imp.per_decision_is_returns(rewards, log_rhos, 1.0),
                               [np.exp(0.8)], rtol=1e-14)
    np.testing.assert_allclose(
        imp.per_decision_is_policy_gradients(np.ones((1000, 1, 2)), rewards, log_rhos, 1.0),
        [[np.exp(0.8)] * 2], rtol=1e-14)
    # the whole-trajectory weight e^800 is beyond float64: the estimate is +inf, not NaN
    assert imp.trajectory_is_returns(rewards, log_rhos, 1.0)[0] == np.inf
    assert imp.trajectory_is_returns(-rewards, log_rhos, 1.0)[0] == -np.inf
    # ... and exactly 0 when every reward is 0
    assert imp.trajectory_is_returns(np.zeros((1000, 1)), log_rhos, 1.0)[0] == 0.0
    g = imp.trajectory_is_policy_gradients(np.ones((1000, 1, 2)), 0 * rewards, log_rhos, 1.0)
    np.testing.assert_array_equal(g, [[0.0, 0.0]])


def test_ordinary_is_huge_weight_on_zero_value():
    assert imp.ordinary_is_estimate([0.0, 1.0], [800.0, 0.0]) == 0.5


def test_ordinary_is_result_near_the_top_of_float_range():
    estimate = imp.ordinary_is_estimate([1e-5, 1e-5], [710.5, 710.5])
    exact = CTX.multiply(dexp(D(710.5)), D(1e-5))
    check(estimate, exact, exact, rtol=1e-13)
    assert 3.6e303 < estimate < 3.7e303


def test_ordinary_is_not_representable_gives_signed_inf():
    assert imp.ordinary_is_estimate([1.0, 2.0], [800.0, 0.0]) == np.inf
    assert imp.ordinary_is_estimate([-1.0, 2.0], [800.0, 0.0]) == -np.inf
    # two huge terms that cancel exactly
    assert imp.ordinary_is_estimate([-1.0, 1.0], [800.0, 800.0]) == 0.0
    # all weights zero
    np.testing.assert_array_equal(imp.ordinary_is_estimate(np.ones((2, 3)), [-np.inf] * 2),
                                  np.zeros(3))


# ---------------------------------------------------------------- random long horizons

@pytest.mark.parametrize("horizon", [1, 7, 100, 1000])
@pytest.mark.parametrize("gamma", [1.0, 0.99, 0.3])
@pytest.mark.parametrize("drift", [-0.8, 0.0, 0.8])
def test_per_episode_estimators_against_decimal_reference(horizon, gamma, drift):
    rng = np.random.default_rng(horizon * 7 + int(100 * gamma) + int(10 * drift))
    B, P = 3, 2
    log_rhos = drift + rng.normal(0.0, 1.0, size=(horizon, B))
    rewards = rng.normal(size=(horizon, B)) * (rng.random((horizon, B)) < 0.5)  # half are 0
    rewards[:, 1] = np.abs(rewards[:, 1])                       # one all-positive column
    scores = rng.normal(size=(horizon, B, P))
    pd = imp.per_decision_is_returns(rewards, log_rhos, gamma)
    tr = imp.trajectory_is_returns(rewards, log_rhos, gamma)
    pdg = imp.per_decision_is_policy_gradients(scores, rewards, log_rhos, gamma)
    trg = imp.trajectory_is_policy_gradients(scores, rewards, log_rhos, gamma)
    for b in range(B):
        check(pd[b], *ref_per_decision_return(rewards[:, b], log_rhos[:, b], gamma))
        check(tr[b], *ref_trajectory_return(rewards[:, b], log_rhos[:, b], gamma))
        for p, (value, scale) in enumerate(
                ref_per_decision_gradient(scores[:, b], rewards[:, b], log_rhos[:, b], gamma)):
            check(pdg[b, p], value, scale)
        for p, (value, scale) in enumerate(
                ref_trajectory_gradient(scores[:, b], rewards[:, b], log_rhos[:, b], gamma)):
            check(trg[b, p], value, scale)


def test_per_decision_return_whose_partial_weights_overflow_but_answer_is_finite():
    """Weights climb to e^1000 and fall back; rewards only where the weight is moderate."""
    T = 1000
    log_rhos = np.concatenate([np.full(500, 2.0), np.full(500, -2.0)])[:, None]
    rewards = np.zeros((T, 1))
    rewards[[0, 999], 0] = [1.0, -3.0]                          # log rho_{0:999} = 0
    result = imp.per_decision_is_returns(rewards, log_rhos, 1.0)[0]
    check(result, *ref_per_decision_return(rewards[:, 0], log_rhos[:, 0], 1.0), rtol=1e-12)
    assert abs(result - (np.exp(2.0) - 3.0)) < 1e-9


def test_large_terms_of_both_signs_that_cancel_to_a_representable_value():
    log_rhos = np.full((1000, 1), 0.75)                        # weights up to e^750
    rewards = np.zeros((1000, 1))
    rewards[[990, 991], 0] = [1.0, -np.exp(-0.75)]             # nearly cancelling huge terms
    result = imp.per_decision_is_returns(rewards, log_rhos, 1.0)[0]
    check(result, *ref_per_decision_return(rewards[:, 0], log_rhos[:, 0], 1.0))


@pytest.mark.parametrize("spread", [1.0, 300.0, 1000.0])
@pytest.mark.parametrize("vector", [False, True])
def test_ordinary_is_against_decimal_reference(spread, vector):
    rng = np.random.default_rng(int(spread) + vector)
    n = 40
    log_weights = rng.uniform(-spread, spread * 0.7, size=n)
    log_weights[3] = -np.inf
    values = rng.normal(size=(n, 3) if vector else n) * (rng.random((n, 3) if vector else n) < 0.6)
    estimate = np.atleast_1d(imp.ordinary_is_estimate(values, log_weights))
    for p, (value, scale) in enumerate(ref_ordinary(values, log_weights)):
        check(estimate[p], value, scale)


# ---------------------------------------------------------------- the other estimators

def test_self_normalised_ess_and_mixtures_take_extreme_log_weights_quietly():
    log_weights = np.array([1000.0, 0.0, -1000.0, -np.inf, 999.0])
    values = np.array([1.0, 5.0, 7.0, 9.0, 3.0])
    w = np.array([1.0, 0.0, 0.0, 0.0, np.exp(-1.0)])           # relative to e^1000
    np.testing.assert_allclose(imp.normalised_weights(log_weights), w / w.sum(), rtol=1e-14)
    np.testing.assert_allclose(imp.self_normalised_is_estimate(values, log_weights),
                               w @ values / w.sum(), rtol=1e-14)
    np.testing.assert_allclose(imp.effective_sample_size(log_weights),
                               w.sum() ** 2 / (w ** 2).sum(), rtol=1e-14)
    comps = np.array([[0.0, -1000.0], [-1000.0, -np.inf]])
    np.testing.assert_allclose(imp.mixture_log_density(comps, [0.5, 0.5]),
                               [np.log(0.5), np.log(0.5) - 1000.0], rtol=1e-14)
    lw = imp.defensive_log_weights([0.0, -900.0], [-900.0, 0.0], 0.25)
    np.testing.assert_allclose(lw, [np.log(4.0), -900.0 - np.log(0.75)], rtol=1e-14)
    lw = imp.balance_heuristic_log_weights([0.0, 0.0], [[-800.0, 0.0], [0.0, -800.0]], [1, 1])
    np.testing.assert_allclose(lw, [np.log(2.0)] * 2, rtol=1e-14)
