"""The objective's pieces against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from skinfomax._likelihoods import GaussianLikelihood
from skinfomax._objectives import (
    CRITIC_BOUND,
    all_pairs_influence,
    bernoulli_nll,
    bound_influence,
    derangement_shift,
    dv_bound,
    gaussian_kl,
    gaussian_nll,
    infonce_bound,
    nwj_bound,
    off_diagonal,
    soft_clip,
)


def test_gaussian_kl_hand_computed():
    mean = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    log_var = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])
    # 0.5 * (mu^2 + s^2 - 1 - log s^2) per dimension, summed
    expected = [0.5 * (0 + (1 + 4 - 1 - math.log(4))), 0.5 * (4 + 1)]
    np.testing.assert_allclose(gaussian_kl(mean, log_var), expected, rtol=1e-6)


def test_gaussian_kl_zero_at_prior():
    assert gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)).abs().max() == 0


def test_gaussian_nll_hand_computed():
    x = torch.tensor([[1.0, 2.0]])
    mean = torch.tensor([[0.0, 2.0]])
    log_var = torch.tensor([0.0, math.log(0.25)])
    expected = 0.5 * (1 + 0 + math.log(2 * math.pi)) + 0.5 * (0 + math.log(0.25) + math.log(2 * math.pi))
    np.testing.assert_allclose(gaussian_nll(x, mean, log_var), [expected], rtol=1e-6)


def test_bernoulli_nll_hand_computed():
    x = torch.tensor([[1.0, 0.0, 0.5]])
    logits = torch.tensor([[0.0, math.log(3.0), 0.0]])
    # p = 0.5, 0.75, 0.5 -> -log 0.5 - log 0.25 - (0.5 log 0.5 + 0.5 log 0.5)
    expected = math.log(2) + math.log(4) + math.log(2)
    np.testing.assert_allclose(bernoulli_nll(x, logits), [expected], rtol=1e-6)


def test_nwj_hand_computed():
    t_joint = torch.tensor([1.0, 2.0, 3.0])
    t_marg = torch.tensor([0.0, 1.0, -1.0])
    expected = 2.0 - np.mean(np.exp(np.array([0.0, 1.0, -1.0]) - 1))
    np.testing.assert_allclose(nwj_bound(t_joint, t_marg).item(), expected, rtol=1e-5)


def test_dv_hand_computed():
    t_joint = torch.tensor([1.0, 2.0, 3.0])
    t_marg = torch.tensor([0.0, 1.0, -1.0])
    expected = 2.0 - np.log(np.mean(np.exp([0.0, 1.0, -1.0])))
    np.testing.assert_allclose(dv_bound(t_joint, t_marg).item(), expected, rtol=1e-5)


def test_dv_at_least_nwj_for_same_critic():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        tj, tm = torch.randn(2, 16, generator=gen) * 3
        assert dv_bound(tj, tm) >= nwj_bound(tj, tm) - 1e-6


def test_infonce_hand_computed_and_capped():
    scores = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    row0 = 2.0 - np.log(np.mean(np.exp([2.0, 0.0])))
    row1 = 1.0 - np.log(np.mean(np.exp([1.0, 1.0])))
    np.testing.assert_allclose(infonce_bound(scores).item(), (row0 + row1) / 2, rtol=1e-5)
    # A perfect critic reaches, but never passes, log(batch size).
    perfect = torch.eye(8) * 1000.0
    assert infonce_bound(perfect).item() <= math.log(8) + 1e-6
    assert infonce_bound(perfect).item() == pytest.approx(math.log(8), abs=1e-4)


def test_bounds_stay_finite_for_huge_critic_outputs():
    huge = torch.full((4,), 1e4, requires_grad=True)
    value = nwj_bound(huge, huge)
    assert torch.isfinite(value)
    value.backward()
    assert torch.isfinite(huge.grad).all()
    assert soft_clip(torch.tensor(1e9)).item() <= CRITIC_BOUND


def test_derangement_shift_has_no_fixed_point():
    gen = torch.Generator().manual_seed(0)
    for batch in (2, 3, 64):
        for _ in range(50):
            shift = derangement_shift(batch, gen)
            assert 1 <= shift < batch
            assert not (torch.arange(batch).roll(-shift) == torch.arange(batch)).any()
    with pytest.raises(ValueError, match="at least 2"):
        derangement_shift(1)


def test_gaussian_likelihood_starts_at_data_variance_and_respects_floor():
    lik = GaussianLikelihood(torch.tensor([2.0, 0.0]), min_variance=1e-2)
    var = lik.log_var().exp().detach()
    np.testing.assert_allclose(var, [2.01, 1e-2], rtol=1e-3)
    with torch.no_grad():
        lik.raw_log_var.fill_(-100.0)
    assert lik.log_var().exp().min().item() >= 1e-2 * (1 - 1e-6)


def test_bound_influence_linearises_each_bound():
    torch.manual_seed(0)
    joint = torch.randn(50, requires_grad=True)
    marginal = torch.randn(50, requires_grad=True)
    # NWJ is a mean of per-sample terms: the terms average to the bound.
    nwj_terms = bound_influence("nwj", joint, marginal)
    assert torch.allclose(nwj_terms.mean(), nwj_bound(joint, marginal), atol=1e-6)
    # DV: each sample's term is n times its gradient, i.e. the influence function.
    dv_terms = bound_influence("dv", joint, marginal)
    grad_joint, grad_marginal = torch.autograd.grad(dv_bound(joint, marginal), (joint, marginal))
    assert torch.allclose(50 * grad_joint, torch.ones(50))
    assert torch.allclose(dv_terms - joint, 50 * grad_marginal, atol=1e-5)
    # InfoNCE: per-row terms that average to the bound.
    scores = torch.randn(6, 6)
    rows = bound_influence("infonce", scores)
    assert rows.shape == (6,)
    assert torch.allclose(rows.mean(), infonce_bound(scores))


def test_all_pairs_marginal_and_its_influence_terms():
    torch.manual_seed(0)
    scores = torch.randn(7, 7, dtype=torch.float64)
    off = off_diagonal(scores)
    mismatched = scores[~torch.eye(7, dtype=torch.bool)]
    assert off.shape == (42,) and torch.equal(off.sort().values, mismatched.sort().values)
    # Repeated batches with a fixed critic: the terms' variance / B predicts
    # the sampling variance of the all-pairs bound (first order), and the
    # all-pairs marginal beats one shifted pairing.
    reps, b = 600, 48
    x = torch.randn(reps, b, dtype=torch.float64)
    z = 0.8 * x + 0.6 * torch.randn(reps, b, dtype=torch.float64)
    batches = 1.5 * torch.tanh(x[:, :, None] * z[:, None, :]) + 0.3 * x[:, :, None]
    for name, bound in [("nwj", nwj_bound), ("dv", dv_bound)]:
        terms = [all_pairs_influence(name, s) for s in batches]
        values = torch.stack([bound(s.diagonal(), off_diagonal(s)) for s in batches])
        one_shift = torch.stack([bound(s.diagonal(), s.roll(-1, dims=1).diagonal())
                                 for s in batches])
        if name == "nwj":
            assert torch.allclose(terms[0].mean(), values[0])
        predicted = torch.stack([t.var() / b for t in terms]).mean()
        assert 0.8 < predicted / values.var() < 1.25
        assert values.var() < 0.7 * one_shift.var()
