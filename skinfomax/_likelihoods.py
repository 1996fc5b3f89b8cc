"""Decoder likelihoods p(x | z), each with ``nll(x, decoder_output)`` (per sample) and
``mean(decoder_output)``; modules, as the Gaussian learns its variances."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._objectives import bernoulli_nll, gaussian_nll

# Gaussian variance floor, relative to the mean feature variance (in standard units).
RELATIVE_MIN_VARIANCE = 1e-3


def build_likelihood(kind, feature_variance=None):
    """The ``"gaussian"`` (from ``feature_variance``, floored: a constant feature gets the
    floor, not zero) or ``"bernoulli"`` likelihood."""
    if kind == "bernoulli":
        return BernoulliLikelihood()
    variance = np.asarray(feature_variance, dtype=np.float64)
    return GaussianLikelihood(variance, RELATIVE_MIN_VARIANCE * float(variance.mean()) + 1e-12)


class GaussianLikelihood(torch.nn.Module):
    """N(decoder output, diag(sigma^2)) with learned variances, floored at ``min_variance``:
    a proper likelihood, so the balance of reconstruction and KL does not hang on the scale."""

    def __init__(self, feature_variance, min_variance):
        super().__init__()
        variance = torch.as_tensor(feature_variance, dtype=torch.float32)
        self.register_buffer("log_min_variance",
                             torch.tensor(math.log(min_variance), dtype=torch.float32))
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
