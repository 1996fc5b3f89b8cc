"""Negative log-likelihoods, the KL term and the mutual-information lower bounds.

Pure functions of tensors: no modules, no optimisers, no sklearn (the
likelihood modules that hold learned variances are in ``_likelihoods``).
Every function returns a per-sample or per-batch quantity in nats; which
critic outputs a bound takes is decided by ``_critics.bound``.
"""

import math

import torch
import torch.nn.functional as F


# Critic outputs are softly capped below CRITIC_BOUND. Any function T(x, z)
# gives a valid lower bound, so the cap costs no validity, but it keeps
# exp(T - 1) finite in float32 (overflow starts near T = 89) and, unlike a hard
# clamp, keeps a gradient above the cap. Below CRITIC_BOUND - 20 it is exactly
# the identity (softplus is linear there in float32).
CRITIC_BOUND = 50.0

_LOG_2PI = math.log(2.0 * math.pi)


def soft_clip(t, bound=CRITIC_BOUND):
    """Smooth upper cap: ``bound - softplus(bound - t)``, below ``bound``."""
    return bound - F.softplus(bound - t)


def gaussian_nll(x, mean, log_var):
    """Negative Gaussian log-likelihood, summed over features.

    ``log_var`` broadcasts against ``x`` (one variance per feature).
    Returns a tensor of shape ``(n_samples,)``.
    """
    sq = (x - mean).square() * torch.exp(-log_var)
    return 0.5 * (sq + log_var + _LOG_2PI).flatten(1).sum(dim=1)


def bernoulli_nll(x, logits):
    """Negative Bernoulli log-likelihood from logits, summed over features.

    ``x`` may hold probabilities in [0, 1] (the continuous relaxation used for
    grey-level images). Returns a tensor of shape ``(n_samples,)``.
    """
    nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return nll.flatten(1).sum(dim=1)


def gaussian_kl(mean, log_var, per_dimension=False):
    """KL(N(mean, exp(log_var)) || N(0, I)) per sample, summed over dimensions.

    With ``per_dimension=True`` the ``(n_samples, n_dims)`` terms are returned
    unsummed (the KL of a diagonal Gaussian is a sum over dimensions).
    """
    kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var)
    return kl if per_dimension else kl.sum(dim=1)


def codes_from_noise(mean, log_var, c, eps):
    """The posterior sample ``[mean + eps * std, c]`` for given standard-normal ``eps``."""
    return torch.cat([mean + eps * torch.exp(0.5 * log_var), c], dim=1)


def derangement_shift(batch_size, generator=None):
    """A roll offset in ``[1, batch_size - 1]``.

    Rolling the latent codes by this offset pairs every x with another
    sample's z: a derangement, so no pair stays joint. A uniform random
    permutation would leave about one fixed point per batch, biasing the
    marginal term by ~1/B.
    """
    if batch_size < 2:
        raise ValueError(f"MI bounds need at least 2 samples per batch, got {batch_size}.")
    return int(torch.randint(1, batch_size, (1,), generator=generator))


def _log_mean_exp(t):
    return torch.logsumexp(t, dim=-1) - math.log(t.shape[-1])


def nwj_bound(t_joint, t_marginal, cap=CRITIC_BOUND):
    """Nguyen-Wainwright-Jordan (f-divergence) bound.

    ``mean T(x, z) - mean exp(T(x, z') - 1)``; unbiased per batch, so batch
    averages of it are unbiased too. Inputs are critic outputs, shape ``(B,)``
    (or ``(..., B)``: one bound per leading index, e.g. per stacked critic),
    softly capped at ``cap`` first (:func:`soft_clip`): the bound is that of
    the capped critic.
    """
    t_joint, t_marginal = soft_clip(t_joint, cap), soft_clip(t_marginal, cap)
    return t_joint.mean(-1) - torch.exp(_log_mean_exp(t_marginal) - 1.0)


def dv_bound(t_joint, t_marginal, cap=CRITIC_BOUND):
    """Donsker-Varadhan bound: ``mean T(x, z) - log mean exp T(x, z')``.

    Tighter than NWJ for the same critic but biased for finite batches.
    Shapes and ``cap`` as for :func:`nwj_bound`.
    """
    t_joint, t_marginal = soft_clip(t_joint, cap), soft_clip(t_marginal, cap)
    return t_joint.mean(-1) - _log_mean_exp(t_marginal)


def infonce_bound(scores):
    """InfoNCE bound from the ``(B, B)`` score matrix ``scores[i, j] = T(x_i, z_j)``.

    ``mean_i [T(x_i, z_i) - log mean_j exp T(x_i, z_j)]``. It never exceeds
    ``log B``: low variance, but saturates once the true MI nears log B.
    A ``(..., B, B)`` stack gives one bound per leading index.
    """
    scores = soft_clip(scores)
    log_norm = torch.logsumexp(scores, dim=-1) - math.log(scores.shape[-1])
    return (scores.diagonal(dim1=-2, dim2=-1) - log_norm).mean(-1)


# Bounds that need only the joint scores and one shifted set of scores.
MI_BOUNDS = {"nwj": nwj_bound, "dv": dv_bound}


def bound_influence(estimator, *outputs):
    """Per-sample terms whose mean's sampling variance is the bound's, to first order.

    ``outputs`` are the critic outputs the bound takes: ``(t_joint,
    t_marginal)`` for NWJ and DV, ``(scores,)`` for InfoNCE. NWJ and InfoNCE
    are means of per-sample (per-row) terms already; DV's log of a mean is
    linearised (its influence function). Differences of these terms between
    two critics on the same pairs give the standard error of the difference
    of their bounds.
    """
    if estimator == "infonce":
        scores = soft_clip(outputs[0])
        return scores.diagonal() - _log_mean_exp(scores)
    t_joint, t_marginal = (soft_clip(t) for t in outputs)
    if estimator == "nwj":
        return t_joint - torch.exp(t_marginal - 1.0)
    weights = torch.softmax(t_marginal, dim=0) * t_marginal.shape[0]
    return t_joint - weights


def off_diagonal(scores):
    """The ``B(B - 1)`` scores ``T(x_i, z_j)``, ``i != j``, of a ``(..., B, B)`` matrix, flattened.

    Every mismatched pair in a batch is a draw from p(x) p(z), so all of them
    can serve as the marginal sample of NWJ or DV: the same bound, estimated
    with far less variance than from one shifted pairing.
    """
    b = scores.shape[-1]
    lead = scores.shape[:-2]
    return scores.flatten(-2)[..., 1:].view(*lead, b - 1, b + 1)[..., :-1].flatten(-2)


def all_pairs_influence(estimator, scores):
    """Per-sample influence terms of NWJ or DV when every mismatched pair is a marginal draw.

    ``scores`` is the ``(B, B)`` matrix ``T(x_i, z_j)``. The marginal term is
    then a U-statistic over pairs ``i != j``; to first order its deviation is
    the mean over samples of ``r_i + c_i - 2 U``, with ``r_i`` (``c_i``) the
    mean of row (column) ``i`` of the mismatched scores' transform and ``U``
    their overall mean. The terms average to the bound for NWJ; for DV the
    log is linearised, as in :func:`bound_influence`.
    """
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

