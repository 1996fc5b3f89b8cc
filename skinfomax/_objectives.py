"""Negative log-likelihoods, the KL term and the MI lower bounds: pure functions of tensors,
per sample or per batch, in nats (which critic outputs a bound takes: ``_critics.Bound``)."""

import math

import torch
import torch.nn.functional as F

# Critic outputs are softly capped below CRITIC_BOUND (any T gives a valid bound): exp(T - 1)
# stays finite in float32, with a gradient, unlike a clamp; identity below CRITIC_BOUND - 20.
CRITIC_BOUND = 50.0

_LOG_2PI = math.log(2.0 * math.pi)


def soft_clip(t, bound=CRITIC_BOUND):
    """Smooth upper cap: ``bound - softplus(bound - t)``, below ``bound``."""
    return bound - F.softplus(bound - t)


def gaussian_nll(x, mean, log_var):
    """Negative Gaussian log-likelihood ``(n_samples,)``, summed over features."""
    sq = (x - mean).square() * torch.exp(-log_var)
    return 0.5 * (sq + log_var + _LOG_2PI).flatten(1).sum(dim=1)


def bernoulli_nll(x, logits):
    """Negative Bernoulli log-likelihood ``(n_samples,)`` from logits, summed over features
    (``x`` in [0, 1], grey levels too)."""
    nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return nll.flatten(1).sum(dim=1)


def gaussian_kl(mean, log_var, per_dimension=False):
    """KL(N(mean, exp(log_var)) || N(0, I)) per sample, or per dimension unsummed."""
    kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var)
    return kl if per_dimension else kl.sum(dim=1)


def standard_normal(shape, generator, device):
    """float32 N(0, 1) noise: the one way training and evaluation draw ``eps``."""
    return torch.randn(shape, generator=generator, dtype=torch.float32, device=device)


def codes_from_noise(mean, log_var, c, eps):
    """The posterior sample ``[mean + eps * std, c]`` for given standard-normal ``eps``."""
    return torch.cat([mean + eps * torch.exp(0.5 * log_var), c], dim=1)


def derangement_shift(batch_size, generator=None):
    """A roll offset in ``[1, batch_size - 1]``: a derangement, so no pair stays joint (a random
    permutation leaves about one fixed point per batch, biasing the marginal term by ~1/B)."""
    if batch_size < 2:
        raise ValueError(f"MI bounds need at least 2 samples per batch, got {batch_size}.")
    return int(torch.randint(1, batch_size, (1,), generator=generator))


def _log_mean_exp(t):
    return torch.logsumexp(t, dim=-1) - math.log(t.shape[-1])


def nwj_bound(t_joint, t_marginal, cap=CRITIC_BOUND):
    """NWJ bound ``mean T(x, z) - mean exp(T(x, z') - 1)``, unbiased per batch, of critic
    outputs ``(..., B)`` softly capped at ``cap``; one bound per leading index."""
    t_joint, t_marginal = soft_clip(t_joint, cap), soft_clip(t_marginal, cap)
    return t_joint.mean(-1) - torch.exp(_log_mean_exp(t_marginal) - 1.0)


def dv_bound(t_joint, t_marginal, cap=CRITIC_BOUND):
    """DV bound ``mean T(x, z) - log mean exp T(x, z')``: tighter than NWJ, biased per batch."""
    t_joint, t_marginal = soft_clip(t_joint, cap), soft_clip(t_marginal, cap)
    return t_joint.mean(-1) - _log_mean_exp(t_marginal)


def infonce_bound(scores):
    """InfoNCE ``mean_i [T(x_i, z_i) - log mean_j exp T(x_i, z_j)]`` of ``(..., B, B)`` score
    matrices: low variance, but never above ``log B``."""
    scores = soft_clip(scores)
    log_norm = torch.logsumexp(scores, dim=-1) - math.log(scores.shape[-1])
    return (scores.diagonal(dim1=-2, dim2=-1) - log_norm).mean(-1)


# Bounds that need only the joint scores and one shifted set of scores.
MI_BOUNDS = {"nwj": nwj_bound, "dv": dv_bound}


def bound_influence(estimator, *outputs):
    """Per-sample terms whose mean has the bound's sampling variance to first order (DV's log
    linearised), from ``(t_joint, t_marginal)`` or InfoNCE's ``(scores,)``."""
    if estimator == "infonce":
        scores = soft_clip(outputs[0])
        return scores.diagonal() - _log_mean_exp(scores)
    t_joint, t_marginal = (soft_clip(t) for t in outputs)
    if estimator == "nwj":
        return t_joint - torch.exp(t_marginal - 1.0)
    weights = torch.softmax(t_marginal, dim=0) * t_marginal.shape[0]
    return t_joint - weights


def off_diagonal(scores):
    """The ``B(B - 1)`` scores ``T(x_i, z_j)``, ``i != j``, of ``(..., B, B)`` matrices, flat."""
    b, lead = scores.shape[-1], scores.shape[:-2]
    return scores.flatten(-2)[..., 1:].view(*lead, b - 1, b + 1)[..., :-1].flatten(-2)


def all_pairs_influence(estimator, scores):
    """:func:`bound_influence` when every mismatched pair of ``(B, B)`` scores is a marginal
    draw: the U-statistic's first-order deviation, ``r_i + c_i - 2 U`` (row and column means
    of the mismatched terms, ``U`` their mean)."""
    scores = soft_clip(scores)
    b = scores.shape[0]
    off = ~torch.eye(b, dtype=torch.bool, device=scores.device)
    g = torch.where(off, torch.exp(scores - (1.0 if estimator == "nwj" else 0.0)), 0.0)
    rows, cols = g.sum(dim=1) / (b - 1), g.sum(dim=0) / (b - 1)
    mean = g.sum() / (b * (b - 1))
    deviation = rows + cols - 2.0 * mean
    if estimator == "nwj":
        return scores.diagonal() - mean - deviation
    return scores.diagonal() - torch.log(mean) - deviation / mean

