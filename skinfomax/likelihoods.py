"""Decoder likelihoods p(x | z): modules, since the Gaussian learns its variances.

Each has ``nll(x, decoder_output)`` (per-sample negative log-likelihood,
summed over features) and ``mean(decoder_output)`` (the reconstruction).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from .objectives import bernoulli_nll, gaussian_nll

__all__ = ["BernoulliLikelihood", "GaussianLikelihood", "build_likelihood", "feature_variance"]

# Gaussian variance floor, relative to the data's mean feature variance.
RELATIVE_MIN_VARIANCE = 1e-3
# Rows per block when reducing over X on the host (bounded temporaries).
_HOST_BLOCK = 8192


def feature_variance(X):
    """Per-feature variance in blocks: no temporary of X's size (X may be a memmap).

    Squares are taken in X's float32 and summed in float64, accurate to
    ~1e-9 relative without upcasting every block.
    """
    n = X.shape[0]
    blocks = range(0, n, _HOST_BLOCK)
    mean = sum(X[i : i + _HOST_BLOCK].sum(axis=0, dtype=np.float64) for i in blocks) / n
    mean32, sq = mean.astype(np.float32), np.zeros(X.shape[1:])
    for i in blocks:
        deviation = np.asarray(X[i : i + _HOST_BLOCK], dtype=np.float32) - mean32
        sq += np.square(deviation, out=deviation).sum(axis=0, dtype=np.float64)
    return sq / n


def build_likelihood(kind, X):
    """The ``"gaussian"`` or ``"bernoulli"`` likelihood for data like X.

    The Gaussian starts at X's per-feature variances, floored at
    ``RELATIVE_MIN_VARIANCE`` times their mean.
    """
    if kind == "bernoulli":
        return BernoulliLikelihood()
    variance = feature_variance(X)
    return GaussianLikelihood(variance, RELATIVE_MIN_VARIANCE * float(variance.mean()) + 1e-12)


class GaussianLikelihood(torch.nn.Module):
    """p(x | z) = N(decoder output, diag(sigma^2)), one learned variance per feature.

    A fixed unit variance would tie the balance between reconstruction and KL
    to the data's units (min-max scaled data would drown in the KL term and
    collapse); a learned variance makes the objective a proper likelihood in
    any units. The variance is kept above ``min_variance`` so that constant
    features cannot drive the likelihood to infinity.
    """

    def __init__(self, feature_variance, min_variance):
        super().__init__()
        variance = torch.as_tensor(feature_variance, dtype=torch.float32)
        self.register_buffer("log_min_variance", torch.tensor(math.log(min_variance)))
        # softplus^-1 of the initial gap above the floor: start at the data's variance.
        gap = (torch.log(variance + min_variance) - self.log_min_variance).clamp_min(1e-4)
        self.raw_log_var = torch.nn.Parameter(gap + torch.log(-torch.expm1(-gap)))

    def log_var(self):
        return self.log_min_variance + F.softplus(self.raw_log_var)

    def nll(self, x, output):
        return gaussian_nll(x, output, self.log_var())

    def mean(self, output):
        return output


class BernoulliLikelihood(torch.nn.Module):
    """p(x | z) = Bernoulli(sigmoid(decoder output)); data must lie in [0, 1]."""

    def nll(self, x, output):
        return bernoulli_nll(x, output)

    def mean(self, output):
        return torch.sigmoid(output)
