r"""Proximal policy optimisation: its objectives, their gradients, and its diagnostics.

PPO (Schulman, Wolski, Dhariwal, Radford & Klimov 2017, arXiv:1707.06347)
reuses a batch collected by :math:`\pi_{old}` for several epochs of minibatch
ascent on a surrogate of the policy's improvement, built from the probability
ratio of each sample,

.. math:: r = \frac{\pi_\theta(a \mid s)}{\pi_{old}(a \mid s)} = e^{\log\pi_\theta(a|s) - \log\pi_{old}(a|s)},

kept from straying far from 1 in one of two ways:

* clipping (:func:`clipped_surrogate`):
  :math:`\min\big(r A,\ \operatorname{clip}(r, 1-\epsilon, 1+\epsilon) A\big)`;
* a KL penalty (:func:`kl_penalty_surrogate`): :math:`r A - \beta\,\mathrm{KL}`, with
  :math:`\beta` adapted between updates (:func:`adaptive_kl_coefficient`,
  :func:`dual_kl_coefficient`).

Objectives are *maximised* (the book's optimisers ascend); losses
(:func:`value_loss`) are minimised. Every objective and loss comes with its
gradient with respect to what the network outputs: the log-probabilities of
the taken actions (chain it with a policy's ``grad_log_prob(params, obs,
actions, weights)``), the logits (entropy), the values. Per-sample functions
take arrays of any shape (``[T, B]`` or a flattened minibatch ``[N]``); the
averaging ones average over every entry.

The diagnostics carry CleanRL's names and definitions: :func:`approx_kl`,
:func:`old_approx_kl`, :func:`clip_fraction`, :func:`explained_variance`, and
:func:`ratio_ess` (the effective sample size of the ratios, as a fraction).
The policy's entropy is the policy's own ``entropy(params, obs)``, averaged.

:func:`train_ppo` is the training loop: PPO-clip, PPO with an adaptive or a
dual KL coefficient, and, as the variant that takes one plain gradient step
per batch, vanilla policy gradient with a learned critic. It shares its
signature and its :class:`~pgkit.training.History` with
:func:`pgkit.trust_region.train_trust_region` (NPG, TRPO).
"""

from __future__ import annotations

import numbers

import numpy as np

from pgkit import _checks
from pgkit.importance import effective_sample_size
from pgkit.nn import _backward, _flat, _log_softmax
from pgkit.optim import Adam, _clip_grad_norm
from pgkit.rollout import collect
from pgkit.training import History, _fit_value, _setup_loop, _values_and_advantages

__all__ = [
    "clipped_surrogate",
    "clipped_policy_objective",
    "kl_penalty_surrogate",
    "adaptive_kl_coefficient",
    "dual_kl_coefficient",
    "entropy_bonus",
    "value_loss",
    "normalise_advantages",
    "minibatches",
    "approx_kl",
    "old_approx_kl",
    "clip_fraction",
    "explained_variance",
    "ratio_ess",
    "train_ppo",
]


# ------------------------------------------------------------------ input checks

def _finite(x, name: str, *, ndim=None, shape_doc=None) -> np.ndarray:
    arr = _checks.as_float_array(x, name, ndim=ndim, shape_doc=shape_doc)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got an infinite value")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: it needs at least one sample")
    return arr


def _pair(a, a_name: str, b, b_name: str):
    a, b = _finite(a, a_name), _finite(b, b_name)
    _checks.check_same_shape(a_name, a, b_name, b)
    return a, b


def _ratios(ratio) -> np.ndarray:
    ratio = _finite(ratio, "ratio")
    if (ratio < 0).any():
        raise ValueError(f"ratio must be non-negative (a ratio of probabilities), "
                         f"got a minimum of {ratio.min():.3g}")
    return ratio


def _number(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not np.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    return float(x)


def _clip_eps(clip_eps) -> float:
    clip_eps = _number(clip_eps, "clip_eps")
    if not 0 <= clip_eps < 1:
        raise ValueError(f"clip_eps must be in [0, 1), got {clip_eps}")
    return clip_eps


def _kl_rule_args(beta, kl, kl_target):
    beta = _checks.check_nonnegative(beta, "beta")
    if not np.isfinite(beta):
        raise ValueError(f"beta must be finite, got {beta}")
    kl = _number(kl, "kl")
    kl_target = _number(kl_target, "kl_target")
    if kl_target <= 0:
        raise ValueError(f"kl_target must be positive, got {kl_target}")
    return beta, kl, kl_target


# ------------------------------------------------------------------ objectives

def clipped_surrogate(ratio, advantages, clip_eps: float, *, return_grad: bool = False):
    r"""PPO's clipped surrogate, per sample, and optionally its derivative in the ratio.

    .. math:: L^{CLIP} = \min\big(r A,\ \operatorname{clip}(r, 1-\epsilon, 1+\epsilon)\, A\big)

    Schulman et al. (2017), arXiv:1707.06347, eq. (7).
    The minimum makes it a pessimistic bound on :math:`r A`: where the ratio
    has already moved past the clip in the direction the advantage favours
    (:math:`A > 0,\ r > 1+\epsilon` or :math:`A < 0,\ r < 1-\epsilon`), the
    clipped term is the smaller, constant in r, and the derivative is exactly 0;
    everywhere else (in particular when r moved the *wrong* way) the
    derivative is A. At the kinks :math:`r = 1 \pm \epsilon` it is taken as A.

    Parameters
    ----------
    ratio : non-negative array [*shape]
        :math:`r = \pi_\theta(a|s) / \pi_{old}(a|s)`.
    advantages : array [*shape]
    clip_eps : float in [0, 1)
    return_grad : bool
        Also return :math:`\partial L^{CLIP} / \partial r`.

    Returns
    -------
    surrogate : array [*shape]
        Or ``(surrogate, grad_ratio)``, both ``[*shape]``.
    """
    ratio = _ratios(ratio)
    ratio, advantages = _pair(ratio, "ratio", advantages, "advantages")
    surrogate, grad_ratio = _clipped_surrogate(ratio, advantages, _clip_eps(clip_eps))
    return (surrogate, grad_ratio) if return_grad else surrogate


def _clipped_surrogate(ratio, advantages, clip_eps):
    """:func:`clipped_surrogate` and its ratio derivative, without input checks."""
    # [book:clipped-surrogate]
    unclipped = ratio * advantages
    clipped = np.clip(ratio, 1 - clip_eps, 1 + clip_eps) * advantages
    surrogate = np.minimum(unclipped, clipped)                 # the pessimistic of the two
    # [/book:clipped-surrogate]
    held = ((advantages > 0) & (ratio > 1 + clip_eps)) | ((advantages < 0) & (ratio < 1 - clip_eps))
    grad_ratio = np.where(held, 0.0, advantages)               # d/dr: 0 where the clip holds
    return surrogate, grad_ratio


def clipped_policy_objective(log_probs, old_log_probs, advantages, clip_eps: float):
    r"""The mean clipped surrogate of a minibatch and its gradient w.r.t. the new log-probabilities.

    .. math:: J = \frac1N \sum_i L^{CLIP}_i, \qquad
        \frac{\partial J}{\partial \log\pi_\theta(a_i|s_i)} = \frac{r_i}{N}\,
        \frac{\partial L^{CLIP}_i}{\partial r_i}

    since :math:`\partial r / \partial \log\pi_\theta = r`. Pass the gradient as
    ``weights`` to a policy's ``grad_log_prob`` to get :math:`\nabla_\theta J`.
    CleanRL's ``pg_loss`` is :math:`-J`. Ratios are formed in log space.

    Parameters
    ----------
    log_probs : array [*shape]
        :math:`\log\pi_\theta(a_i|s_i)` under the parameters being updated.
    old_log_probs : array [*shape]
        :math:`\log\pi_{old}(a_i|s_i)`, from the batch.
    advantages : array [*shape]
    clip_eps : float in [0, 1)

    Returns
    -------
    (objective, grad_log_probs) : (float, array [*shape])
    """
    log_probs, old_log_probs = _pair(log_probs, "log_probs", old_log_probs, "old_log_probs")
    _, advantages = _pair(log_probs, "log_probs", advantages, "advantages")
    return _clipped_policy_objective(log_probs, old_log_probs, advantages, _clip_eps(clip_eps))


def _clipped_policy_objective(log_probs, old_log_probs, advantages, clip_eps):
    ratio = np.exp(log_probs - old_log_probs)
    surrogate, grad_ratio = _clipped_surrogate(ratio, advantages, clip_eps)
    return float(surrogate.mean()), ratio * grad_ratio / ratio.size


def kl_penalty_surrogate(ratio, advantages, kl, beta: float, *, return_grad: bool = False):
    r"""PPO's KL-penalised surrogate, per sample: :math:`r A - \beta\, \mathrm{KL}`.

    Schulman et al. (2017), arXiv:1707.06347,
    eq. (8). ``kl`` is the divergence :math:`\mathrm{KL}(\pi_{old}(\cdot|s) \|
    \pi_\theta(\cdot|s))` at each sample's state (a policy's ``kl(params_old,
    params, obs)``; its gradient is the policy's ``grad_kl``). Between updates
    adapt :math:`\beta` by :func:`adaptive_kl_coefficient` or
    :func:`dual_kl_coefficient`.

    Parameters
    ----------
    ratio : non-negative array [*shape]
    advantages : array [*shape]
    kl : non-negative array [*shape]
    beta : float >= 0
    return_grad : bool
        Also return the derivatives with respect to ``ratio`` (A) and ``kl`` (:math:`-\beta`).

    Returns
    -------
    surrogate : array [*shape]
        Or ``(surrogate, grad_ratio, grad_kl)``, all ``[*shape]``.
    """
    ratio = _ratios(ratio)
    ratio, advantages = _pair(ratio, "ratio", advantages, "advantages")
    ratio, kl = _pair(ratio, "ratio", kl, "kl")
    if (kl < 0).any():
        raise ValueError(f"kl must be non-negative, got a minimum of {kl.min():.3g}")
    beta = _checks.check_nonnegative(beta, "beta")
    surrogate = ratio * advantages - beta * kl
    if return_grad:
        return surrogate, advantages.copy(), np.full(kl.shape, -beta)
    return surrogate


def adaptive_kl_coefficient(beta: float, kl: float, kl_target: float) -> float:
    r"""PPO's adaptive KL coefficient: double :math:`\beta` if the KL overshot, halve it if it undershot.

    .. math:: \beta \leftarrow \begin{cases}
        2\beta & d > 1.5\, d_{targ}\\
        \beta / 2 & d < d_{targ} / 1.5\\
        \beta & \text{otherwise}
        \end{cases}

    with d the mean KL of the update just made (e.g. :func:`approx_kl`).
    Schulman et al. (2017), arXiv:1707.06347,
    section 4 (the constants 1.5 and 2 are theirs, "chosen heuristically").
    A :math:`\beta` of 0 stays 0.

    Parameters
    ----------
    beta : float >= 0
    kl : float
    kl_target : float > 0

    Returns
    -------
    float, the next beta
    """
    beta, kl, kl_target = _kl_rule_args(beta, kl, kl_target)
    # [book:adaptive-kl]
    if kl > 1.5 * kl_target:
        beta = 2 * beta              # moved too far: penalise the KL more
    elif kl < kl_target / 1.5:
        beta = beta / 2              # barely moved: penalise it less
    # [/book:adaptive-kl]
    return beta


def dual_kl_coefficient(beta: float, kl: float, kl_target: float, step_size: float) -> float:
    r"""One step of dual gradient ascent on the KL constraint's multiplier.

    .. math:: \beta \leftarrow \max\big(0,\ \beta + \alpha\, (d - d_{targ})\big)

    For the constrained problem :math:`\max_\theta J(\theta)` subject to
    :math:`\mathrm{KL} \le d_{targ}`, the Lagrangian :math:`J - \beta(\mathrm{KL} - d_{targ})`
    is maximised in :math:`\theta` (the policy updates) and minimised in
    :math:`\beta \ge 0`, whose gradient is :math:`-(d - d_{targ})`: the multiplier grows
    while the constraint is violated and shrinks when it is slack. The max with 0
    projects back onto :math:`\beta \ge 0` (a negative multiplier would reward
    moving away; the notes' update omits it). Dual
    gradient descent as in S. Levine, "Advanced policy gradients", notes on
    lecture 10 of CS 285 (2023). :func:`adaptive_kl_coefficient` is its
    multiplicative cousin.

    Parameters
    ----------
    beta : float >= 0
    kl : float
        The mean KL of the update just made.
    kl_target : float > 0
    step_size : float >= 0
        :math:`\alpha`.

    Returns
    -------
    float, the next beta
    """
    beta, kl, kl_target = _kl_rule_args(beta, kl, kl_target)
    step_size = _checks.check_nonnegative(step_size, "step_size")
    return max(0.0, beta + step_size * (kl - kl_target))


def entropy_bonus(logits, coef: float):
    r"""The entropy bonus of a categorical policy and its gradient w.r.t. the logits.

    .. math:: J_H = c\, \frac1N \sum_i H(\pi(\cdot|s_i)), \qquad
        \frac{\partial H}{\partial z_b} = -\pi_b\, (\log\pi_b + H)

    with :math:`\pi = \operatorname{softmax}(z)`. Added to the clipped
    objective it keeps the policy from becoming deterministic too early
    (CleanRL: ``loss = pg_loss - ent_coef * entropy_loss + ...``, c = 0.01).
    Chain the gradient through the network with ``MLP.backward``. For any
    policy, ``coef / N * policy.grad_entropy(params, obs)`` is the same gradient
    in the parameters (it also covers Gaussian policies).

    Parameters
    ----------
    logits : array [*batch, A]
    coef : float >= 0

    Returns
    -------
    (bonus, grad_logits) : (float, array [*batch, A])
    """
    logits = _finite(logits, "logits")
    if logits.ndim == 0:
        raise ValueError("logits must have shape [*batch, A], got ()")
    coef = _checks.check_nonnegative(coef, "coef")
    return _entropy_bonus(_log_softmax(logits), coef)


def _entropy_bonus(log_pi, coef):
    """:func:`entropy_bonus` from log-probabilities ``log_pi`` [*batch, A], without input checks."""
    pi = np.exp(log_pi)
    H = -np.sum(pi * log_pi, axis=-1, keepdims=True)
    n = H.size
    return coef * float(H.mean()), -coef / n * pi * (log_pi + H)


def value_loss(values, returns, old_values=None, clip_range: float | None = None):
    r"""The squared-error value loss, optionally clipped as in CleanRL, and its gradient w.r.t. the values.

    Unclipped (the default):

    .. math:: L^V = \frac1{2N} \sum_i (V_i - R_i)^2, \qquad
        \frac{\partial L^V}{\partial V_i} = \frac{V_i - R_i}{N}.

    Clipped (``old_values`` and ``clip_range`` given; CleanRL's ``clip_vloss``),
    with :math:`V^{clip}_i = V^{old}_i + \operatorname{clip}(V_i - V^{old}_i, -c, c)`:

    .. math:: L^V = \frac1{2N} \sum_i \max\big((V_i - R_i)^2, (V^{clip}_i - R_i)^2\big),

    whose derivative is :math:`(V_i - R_i)/N` where the first term is the
    larger (ties included) and exactly 0 where the clipped term is (then
    :math:`|V_i - V^{old}_i| > c` and :math:`V^{clip}_i` is constant in :math:`V_i`).

    The book uses the unclipped loss by default: value clipping did not help, and
    often hurt, in the ablations of Engstrom et al. (2020, arXiv:2005.12729) and
    Andrychowicz et al. (2021, arXiv:2006.05990); its range c is in units of the
    return (CleanRL reuses the policy's 0.2, tiny next to CartPole's returns of
    hundreds), and it zeroes the gradient of exactly the samples whose value
    is furthest off. The option is here to reproduce CleanRL. Minimise it (an
    ascending optimiser takes ``-grad``).

    Parameters
    ----------
    values : array [*shape]
        :math:`V_\phi(s_i)` under the parameters being updated.
    returns : array [*shape]
        The targets, :math:`\hat A_i + V^{old}_i` for GAE.
    old_values : array [*shape], optional
        :math:`V^{old}_i`, the values when the batch was collected.
    clip_range : float > 0, optional
        c; given together with ``old_values``.

    Returns
    -------
    (loss, grad_values) : (float, array [*shape])
    """
    values, returns = _pair(values, "values", returns, "returns")
    if (old_values is None) != (clip_range is None):
        raise ValueError("give both old_values and clip_range to clip the value loss, or neither")
    error = values - returns
    if old_values is None:
        return 0.5 * float(np.mean(error ** 2)), error / error.size
    _, old_values = _pair(values, "values", old_values, "old_values")
    clip_range = _number(clip_range, "clip_range")
    if clip_range <= 0:
        raise ValueError(f"clip_range must be positive, got {clip_range}")
    clipped_error = old_values + np.clip(values - old_values, -clip_range, clip_range) - returns
    clipped_active = clipped_error ** 2 > error ** 2
    loss = 0.5 * float(np.mean(np.maximum(error ** 2, clipped_error ** 2)))
    return loss, np.where(clipped_active, 0.0, error) / error.size


def normalise_advantages(advantages, eps: float = 1e-8) -> np.ndarray:
    r"""Advantages shifted to mean 0 and scaled to standard deviation 1 (up to ``eps``).

    .. math:: \tilde A_i = \frac{A_i - \bar A}{\operatorname{std}(A) + \epsilon}

    Applied per minibatch, as CleanRL's ``norm_adv`` does. The standard
    deviation is the population one (``ddof=0``), so a minibatch of one sample
    gives 0 rather than NaN; CleanRL's torch ``std`` divides by N - 1, a
    difference of a factor :math:`\sqrt{(N-1)/N}` (0.2% at N = 256).

    Parameters
    ----------
    advantages : array [*shape]
    eps : float >= 0

    Returns
    -------
    array [*shape]
    """
    advantages = _finite(advantages, "advantages")
    eps = _checks.check_nonnegative(eps, "eps")
    return _normalise_advantages(advantages, eps)


def _normalise_advantages(advantages, eps):
    """:func:`normalise_advantages` without input checks."""
    centred = advantages - advantages.mean()
    std = advantages.std()
    if std + eps == 0:
        return centred                                     # all equal and eps = 0: zeros
    return centred / (std + eps)


def minibatches(n: int, n_minibatches: int, rng: np.random.Generator) -> list:
    """One epoch of shuffled minibatches: index arrays that together hold 0..n-1 exactly once.

    Call once per epoch (a fresh shuffle each time). When ``n_minibatches``
    does not divide n, the sizes differ by at most one. Index a flattened batch
    with them (``[T, B]`` arrays reshaped to ``[T * B]``, as CleanRL does).

    Parameters
    ----------
    n : int >= 1
        Samples in the batch.
    n_minibatches : int in [1, n]
    rng : np.random.Generator

    Returns
    -------
    list of ``n_minibatches`` integer arrays
    """
    n = _checks.check_positive_int(n, "n")
    n_minibatches = _checks.check_positive_int(n_minibatches, "n_minibatches")
    if n_minibatches > n:
        raise ValueError(f"n_minibatches must be <= n = {n} (every minibatch needs a sample), "
                         f"got {n_minibatches}")
    rng = _checks.check_rng(rng)
    return np.array_split(rng.permutation(n), n_minibatches)


# ------------------------------------------------------------------ diagnostics

def approx_kl(log_ratio) -> float:
    r"""CleanRL's ``approx_kl``: :math:`\frac1N \sum_i \big((r_i - 1) - \log r_i\big)`.

    With actions drawn from :math:`\pi_{old}` and :math:`\log r = \log\pi_\theta -
    \log\pi_{old}`, each term is an unbiased estimate of
    :math:`\mathrm{KL}(\pi_{old} \| \pi_\theta)` (since :math:`\mathbb E_{old}[r] = 1`
    when :math:`\pi_\theta` puts no mass where :math:`\pi_{old}` puts none),
    and non-negative (:math:`x - 1 \ge \log x`). For nearby policies (as in a
    PPO update) its variance is far below that of :func:`old_approx_kl`, whose
    terms take both signs; for distant ones it can be larger, since r is
    unbounded. Schulman's "k3" estimator: J. Schulman,
    "Approximating KL divergence", blog post (2020). Computed as
    ``expm1(log_ratio) - log_ratio``, accurate for small ratios of change.

    Parameters
    ----------
    log_ratio : array [*shape]

    Returns
    -------
    float >= 0
    """
    log_ratio = _finite(log_ratio, "log_ratio")
    # [book:approx-kl]
    return float(np.mean(np.expm1(log_ratio) - log_ratio))     # mean of (r - 1) - log r
    # [/book:approx-kl]


def old_approx_kl(log_ratio) -> float:
    r"""CleanRL's ``old_approx_kl``: :math:`\frac1N \sum_i -\log r_i`.

    Unbiased for :math:`\mathrm{KL}(\pi_{old} \| \pi_\theta)` under actions from
    :math:`\pi_{old}`, but its terms take both signs, so it can come out
    negative, and for nearby policies its variance is much higher than that of
    :func:`approx_kl`.

    Parameters
    ----------
    log_ratio : array [*shape]

    Returns
    -------
    float
    """
    return float(np.mean(-_finite(log_ratio, "log_ratio")))


def clip_fraction(ratio, clip_eps: float) -> float:
    r"""The fraction of samples whose ratio lies outside the clip range: mean of :math:`|r - 1| > \epsilon`.

    CleanRL's ``clipfrac``. It counts every ratio beyond the range, including
    those (moved against the advantage) whose gradient the clip does not stop.

    Parameters
    ----------
    ratio : non-negative array [*shape]
    clip_eps : float in [0, 1)

    Returns
    -------
    float in [0, 1]
    """
    ratio = _ratios(ratio)
    return float(np.mean(np.abs(ratio - 1) > _clip_eps(clip_eps)))


def explained_variance(values, returns) -> float:
    r"""The fraction of the returns' variance that the values explain.

    .. math:: \mathrm{EV} = 1 - \frac{\operatorname{Var}[R - V]}{\operatorname{Var}[R]}

    CleanRL's ``explained_var`` (over the whole batch). 1 for predictions exact up to a
    constant, 0 for any constant prediction, negative for predictions
    worse than that. When the returns are all equal (:math:`\operatorname{Var}[R] = 0`,
    where CleanRL gives NaN) it is defined, as scikit-learn's
    ``explained_variance_score`` does, as 1 if the residuals :math:`R - V` are all
    equal too and 0 otherwise, so it is never NaN.

    Parameters
    ----------
    values : array [*shape]
    returns : array [*shape]

    Returns
    -------
    float <= 1
    """
    values, returns = _pair(values, "values", returns, "returns")
    residuals = returns - values
    if np.ptp(returns) == 0:
        return 1.0 if np.ptp(residuals) == 0 else 0.0
    return float(1 - np.var(residuals) / np.var(returns))


def ratio_ess(log_ratio) -> float:
    r"""The effective sample size of the ratios as a fraction of the sample size: :math:`\mathrm{ESS} / N`.

    .. math:: \frac{\mathrm{ESS}}{N} = \frac{(\sum_i r_i)^2}{N \sum_i r_i^2} \in (0, 1]

    1 while :math:`\pi_\theta = \pi_{old}`; it falls as a few samples come to
    dominate the reweighted batch. Computed in log space by
    :func:`pgkit.importance.effective_sample_size`.

    Parameters
    ----------
    log_ratio : array [*shape]

    Returns
    -------
    float in (0, 1]
    """
    log_ratio = _finite(log_ratio, "log_ratio").ravel()
    return effective_sample_size(log_ratio) / log_ratio.size


# ------------------------------------------------------------------ the training loop

_VARIANTS = ("clip", "kl", "kl-dual", "vanilla")
_KL_VARIANTS = ("kl", "kl-dual")


def _policy_objective(policy, params, obs, actions, old_log_probs, advantages, variant, clip_eps,
                      ent_coef, beta, old_log_pi):
    r"""The objective :func:`train_ppo` ascends on one minibatch, and its gradient (unchecked).

    .. math:: J(\theta) = \frac1m \sum_i \ell_i(\theta) + c_H \frac1m \sum_i H(\pi_\theta(\cdot|s_i))

    with :math:`\ell_i` the clipped surrogate (``"clip"``), :math:`r_i A_i - \beta\,
    \mathrm{KL}(\pi_{old}(\cdot|s_i) \| \pi_\theta(\cdot|s_i))` (``"kl"``, ``"kl-dual"``), or
    :math:`r_i A_i` (``"vanilla"``; at :math:`\theta = \theta_{old}` its gradient is the
    policy gradient :math:`\frac1m \sum_i A_i \nabla\log\pi(a_i|s_i)`).

    Args: ``params`` [P]; ``obs`` [m, obs_dim]; ``actions``, ``old_log_probs``,
    ``advantages`` [m]; ``old_log_pi`` [m, A], the old policy's log-probabilities of
    every action (used by the KL variants only).

    Returns ``(objective, grad [P])``.
    """
    out, layers, inputs = policy._body(params[None], obs[None])     # one forward pass, kept
    log_pi = _log_softmax(out[0])                                    # [m, A]
    pi = np.exp(log_pi)
    m = actions.size
    log_probs = log_pi[np.arange(m), actions]
    if variant == "clip":
        objective, grad_log_probs = _clipped_policy_objective(log_probs, old_log_probs, advantages, clip_eps)
    else:
        ratio = np.exp(log_probs - old_log_probs)
        objective, grad_log_probs = float(np.mean(ratio * advantages)), ratio * advantages / m
    # d log pi(a|s) / d logits = e_a - pi
    grad_logits = grad_log_probs[:, None] * (np.eye(policy.n_actions)[actions] - pi)
    if variant in _KL_VARIANTS:
        pi_old = np.exp(old_log_pi)
        objective -= beta * float(np.mean(np.sum(pi_old * (old_log_pi - log_pi), axis=-1)))
        grad_logits -= beta / m * (pi - pi_old)                      # d KL / d logits = pi - pi_old
    if ent_coef:
        bonus, grad_entropy = _entropy_bonus(log_pi, ent_coef)
        objective += bonus
        grad_logits += grad_entropy
    return objective, _flat(_backward(layers, inputs, grad_logits[None]))[0]


def train_ppo(env, policy, value_fn, rng: np.random.Generator, *, total_steps: int,
              variant: str = "clip", n_steps: int = 32, gamma: float = 0.98, gae_lambda: float = 0.8,
              lr: float = 1e-3, update_epochs: int | None = None, n_minibatches: int | None = None,
              norm_adv: bool = True, clip_eps: float = 0.2, ent_coef: float = 0.0,
              kl_target: float = 0.01, beta: float = 1.0, beta_step_size: float = 100.0,
              value_lr: float = 1e-3, value_epochs: int | None = None,
              value_minibatches: int | None = None, max_grad_norm: float | None = 0.5,
              optimizer=None, value_optimizer=None, params=None, value_params=None,
              obs_features=None, stop_at: float | None = None, stop_window: int = 20,
              progress=False) -> History:
    r"""Train a categorical policy and a critic by PPO or vanilla policy gradient; returns a History.

    Each iteration

    1. collects ``n_steps`` steps of each of the B = ``env.num_envs`` environments
       with the current policy (:func:`pgkit.rollout.collect`; episodes run on
       across iterations);
    2. computes GAE advantages with the critic (:func:`pgkit.returns.gae`,
       bootstrapping from the true final observation at a truncation) and the
       critic's targets ``returns = advantages + values``;
    3. ascends the policy objective for ``update_epochs`` passes over the batch in
       ``n_minibatches`` shuffled minibatches, one optimiser step each (advantages
       normalised per minibatch, gradients clipped to norm ``max_grad_norm``):

       * ``"clip"``: PPO-clip,
         :math:`\frac1m\sum_i \min(r_i A_i, \operatorname{clip}(r_i, 1-\epsilon, 1+\epsilon) A_i)`
         (:func:`clipped_policy_objective`; Schulman et al. 2017, arXiv:1707.06347, eq. 7);
       * ``"kl"``: PPO with an adaptive KL penalty,
         :math:`\frac1m\sum_i r_i A_i - \beta\,\overline{\mathrm{KL}}` (eq. 8), :math:`\beta` updated after each iteration by :func:`adaptive_kl_coefficient`;
       * ``"kl-dual"``: the same, :math:`\beta` updated by dual gradient ascent
         (:func:`dual_kl_coefficient`, step ``beta_step_size``);
       * ``"vanilla"``: :math:`\frac1m \sum_i r_i A_i`, whose gradient at the
         collecting parameters is the policy gradient; by default one epoch of
         one minibatch, i.e. one policy-gradient step per batch, an advantage
         actor-critic. With more epochs it reuses the batch with no constraint at all.

       plus ``ent_coef`` times the mean entropy (:func:`entropy_bonus`);
    4. regresses the critic on ``returns`` (``value_epochs`` passes of
       ``value_minibatches`` minibatches, :func:`value_loss` unclipped, its own
       Adam).

    The policy and critic are separate networks with separate optimisers.

    Parameters
    ----------
    env : vectorised environment (``CartPoleVecEnv``, ``TabularEnv``); B = ``env.num_envs``
    policy : :class:`~pgkit.nn.CategoricalMLPPolicy`
    value_fn : :class:`~pgkit.nn.ValueMLP` (same ``obs_dim``)
    rng : np.random.Generator
        Draws, in this order, the initial policy parameters (unless ``params``
        is given), the critic's (unless ``value_params`` is given), then for
        each iteration the batch (:func:`~pgkit.rollout.collect`), the policy's
        minibatches and the critic's minibatches. Same rng state, same run.
    total_steps : int
        Budget of environment steps; the run has ``total_steps // (n_steps * B)`` iterations.
    variant : ``"clip"``, ``"kl"``, ``"kl-dual"`` or ``"vanilla"``
    n_steps : int
        T, the steps per environment per iteration (CleanRL's ``num_steps``).
    gamma, gae_lambda : float in [0, 1]
    lr : float > 0
        The policy's Adam step size (ignored when ``optimizer`` is given).
    update_epochs, n_minibatches : int or None
        Passes over each batch and minibatches per pass; None means 10 and 1
        (1 and 1 for ``"vanilla"``).
    norm_adv : bool
        Normalise the advantages of each minibatch (:func:`normalise_advantages`).
    clip_eps : float in [0, 1)
        :math:`\epsilon` of the clip (and of the ``clip_fraction`` diagnostic, for every variant).
    ent_coef : float >= 0
    kl_target : float > 0
        :math:`d_{targ}` of the KL variants.
    beta : float >= 0
        The initial KL coefficient of the KL variants.
    beta_step_size : float >= 0
        The dual ascent step :math:`\alpha` of ``"kl-dual"``.
    value_lr : float > 0
        The critic's Adam step size (ignored when ``value_optimizer`` is given).
    value_epochs, value_minibatches : int or None
        The critic's passes and minibatches per iteration; None means
        ``update_epochs`` and ``n_minibatches`` (10 and 1 for ``"vanilla"``).
    max_grad_norm : float > 0 or None
        Clip each gradient (policy and critic, separately) to this norm (:func:`pgkit.optim.clip_grad_norm`).
    optimizer, value_optimizer : objects with ``step(params, grad) -> params`` that *ascend*, or None
        Default: ``Adam(lr, eps=1e-5)`` and ``Adam(value_lr, eps=1e-5)`` (the
        critic's optimiser is given minus the loss gradient).
    params, value_params : [n_params] arrays or None
        Initial parameters; None draws them with ``policy.init(rng)``, ``value_fn.init(rng)``.
    obs_features : callable or None
        Maps the environment's observations ``[B, ...]`` to the networks' inputs
        ``[B, obs_dim]``; for a ``TabularEnv``,
        ``lambda s: pgkit.gradients.one_hot_features(s, n_states)`` (with
        ``hidden=()``, the policy is then a tabular softmax).
    stop_at : float or None
        Stop after the first iteration at which the mean return of the last
        ``stop_window`` finished episodes is at least this (475 for CartPole-v1).
    stop_window : int
    progress : bool or callable
        False (the default) is quiet; True prints a line every tenth of the run;
        a callable is called after every iteration with a dict (``iteration``,
        ``env_steps``, ``wall_time``, ``mean_return``, ``last_mean_return``,
        ``solved`` and the diagnostics).

    Notes
    -----
    At its defaults, on ``CartPoleVecEnv(4)`` with the default networks (64 x 64),
    PPO-clip reaches a mean return of 475 over the last 20 episodes in about
    30k environment steps (``benchmarks/bench_ppo.py``). The defaults follow the
    CartPole settings of the RL Baselines3 Zoo (A. Raffin,
    github.com/DLR-RM/rl-baselines3-zoo): gamma 0.98, lambda 0.8 and a step size
    of 1e-3 (a short horizon and low-variance advantages suit a task whose
    reward is 1 per step), one minibatch of 32 steps per environment, no
    entropy bonus; but with 10 epochs instead of 20 and a constant step size
    instead of one annealed to 0 over a fixed budget, so that the settings do
    not depend on ``total_steps``. The matrices are small: on a shared machine,
    set ``OPENBLAS_NUM_THREADS=1`` before importing numpy, as a BLAS thread
    waiting for a busy core can stall a run.

    Returns
    -------
    :class:`~pgkit.training.History` with ``theta`` and ``value_params`` the final
    parameters and ``diagnostics`` [n_iterations] arrays, measured on the whole
    batch: ``approx_kl``, ``kl`` (exact mean :math:`\mathrm{KL}(\pi_{old}\|\pi_{new})`
    over the batch's states), ``clip_fraction`` and ``ratio_ess`` of the ratios
    after the iteration's update (CleanRL instead averages ``clipfrac`` over the
    minibatch steps), ``entropy`` (of the collecting policy),
    ``explained_variance`` and ``value_loss`` (of the critic that computed the
    advantages), and ``beta`` (the coefficient used; NaN for ``"clip"`` and ``"vanilla"``).
    """
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, _VARIANTS))}, got {variant!r}")
    vanilla = variant == "vanilla"
    update_epochs = (1 if vanilla else 10) if update_epochs is None else update_epochs
    update_epochs = _checks.check_positive_int(update_epochs, "update_epochs")
    n_minibatches = 1 if n_minibatches is None else n_minibatches
    value_epochs = (10 if vanilla else update_epochs) if value_epochs is None else value_epochs
    value_minibatches = n_minibatches if value_minibatches is None else value_minibatches
    setup = _setup_loop(env, policy, value_fn, rng, total_steps=total_steps, n_steps=n_steps,
                        gamma=gamma, gae_lambda=gae_lambda, value_lr=value_lr,
                        value_epochs=value_epochs,
                        minibatch_counts={"n_minibatches": n_minibatches,
                                          "value_minibatches": value_minibatches},
                        max_grad_norm=max_grad_norm, params=params, value_params=value_params,
                        obs_features=obs_features, stop_at=stop_at, stop_window=stop_window,
                        progress=progress,
                        diagnostics=("approx_kl", "kl", "clip_fraction", "entropy",
                                     "explained_variance", "ratio_ess", "value_loss", "beta"))
    N = setup.batch_size
    if not 0 < _checks.check_nonnegative(lr, "lr") < np.inf:
        raise ValueError(f"lr must be positive and finite, got {lr}")
    if not isinstance(norm_adv, (bool, np.bool_)):
        raise ValueError(f"norm_adv must be True or False, got {norm_adv!r}")
    clip_eps = _clip_eps(clip_eps)
    ent_coef = _checks.check_nonnegative(ent_coef, "ent_coef")
    beta, _, kl_target = _kl_rule_args(beta, 0.0, kl_target)
    beta_step_size = _checks.check_nonnegative(beta_step_size, "beta_step_size")
    for name, opt in (("optimizer", optimizer), ("value_optimizer", value_optimizer)):
        if opt is not None and not callable(getattr(opt, "step", None)):
            raise ValueError(f"{name} must have a step(params, grad) method, or be None")
    optimizer = Adam(lr, eps=1e-5) if optimizer is None else optimizer
    value_optimizer = Adam(value_lr, eps=1e-5) if value_optimizer is None else value_optimizer

    env, params, value_params, recorder = setup.env, setup.params, setup.value_params, setup.recorder
    rows = np.arange(N)
    batch = None
    for _ in range(setup.n_iterations):
        batch = collect(env, policy, params, n_steps, rng, previous=batch)
        values, advantages, returns = _values_and_advantages(value_fn, value_params, batch,
                                                             gamma, gae_lambda)
        obs = batch.observations.reshape(N, -1).astype(float)
        actions = batch.actions.reshape(N)
        advantages = advantages.reshape(N)
        old_log_pi = _log_softmax(policy._body(params[None], obs[None])[0][0])      # [N, A]
        old_log_probs = old_log_pi[rows, actions]        # batch.log_probs, recomputed: r = 1 exactly

        grad_norms = []
        for _ in range(update_epochs):
            for mb in np.array_split(rng.permutation(N), n_minibatches):
                adv = _normalise_advantages(advantages[mb], 1e-8) if norm_adv else advantages[mb]
                _, grad = _policy_objective(policy, params, obs[mb], actions[mb], old_log_probs[mb],
                                            adv, variant, clip_eps, ent_coef, beta, old_log_pi[mb])
                if max_grad_norm is not None:
                    grad, norm = _clip_grad_norm(grad, max_grad_norm)
                else:
                    norm = np.sqrt(grad @ grad)
                grad_norms.append(float(norm))
                params = optimizer.step(params, grad)
        value_params = _fit_value(value_fn, value_params, value_optimizer, obs, returns.reshape(N),
                                  value_epochs, value_minibatches, max_grad_norm, rng)

        new_log_pi = _log_softmax(policy._body(params[None], obs[None])[0][0])
        log_ratio = new_log_pi[rows, actions] - old_log_probs
        pi_old = np.exp(old_log_pi)
        kl = float(np.mean(np.sum(pi_old * (old_log_pi - new_log_pi), axis=-1)))
        diagnostics = {
            "approx_kl": approx_kl(log_ratio), "kl": kl,
            "clip_fraction": float(np.mean(np.abs(np.expm1(log_ratio)) > clip_eps)),
            "entropy": float(-np.mean(np.sum(pi_old * old_log_pi, axis=-1))),
            "explained_variance": explained_variance(values, returns),
            "ratio_ess": ratio_ess(log_ratio),
            "value_loss": 0.5 * float(np.mean((values - returns) ** 2)),
            "beta": beta if variant in _KL_VARIANTS else float("nan"),
        }
        if variant == "kl":
            beta = adaptive_kl_coefficient(beta, kl, kl_target)
        elif variant == "kl-dual":
            beta = dual_kl_coefficient(beta, kl, kl_target, beta_step_size)
        if recorder.record(batch, float(np.mean(grad_norms)), diagnostics):
            break
    return recorder.history(params, value_params)
