"""What the training engine must keep through any restructuring.

Expected values are derived here, from the fitted networks' raw outputs and
closed-form formulas (Gaussian NLL, Gaussian KL, the NWJ / DV / InfoNCE bounds
on a score matrix built from explicit (x, code) pairs), never by calling the
package's own objective functions. The engine is reached only through
``_step_loss(x, eps, shift, estimator, alpha, beta) -> (objective, sums)``.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from skinfomax import InfoMaxVAETransformer

from .conftest import TINY

N_Z, N_C = 3, 1
ESTIMATORS = ["nwj", "dv", "infonce"]
# The package caps critic outputs softly at 50; below 30 the cap is the
# identity to float32 precision, so the bounds below need no cap as long as
# every score stays under it (asserted).
CAP_IS_IDENTITY_BELOW = 30.0


# -- independent formulas --------------------------------------------------------
def gaussian_nll_by_hand(x, mean, log_var):
    """-log N(x; mean, exp(log_var)) summed over features, per sample."""
    return 0.5 * ((x - mean).square() / log_var.exp() + log_var + math.log(2 * math.pi)).sum(1)


def gaussian_kl_by_hand(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) summed over dimensions, per sample."""
    return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(1)


def pair_scores(critic, x, codes):
    """``S[i, j] = T(x_i, codes_j)``, every pair sent through the critic as its own row."""
    b = x.shape[0]
    return critic(x.repeat_interleave(b, dim=0), codes.repeat(b, 1)).view(b, b)


def bound_by_hand(estimator, scores, shift, batch_size):
    """The batch bound from the score matrix; NWJ and DV pair x_i with codes_(i + shift) mod B.

    NWJ and DV take the critic capped as documented: ``c - log(1 + exp(c - T))``
    with ``c = 1 + log(batch size of the fit)``.
    """
    assert scores.max() < CAP_IS_IDENTITY_BELOW
    b = scores.shape[0]
    if estimator == "infonce":
        joint = scores.diagonal()
        return (joint - torch.logsumexp(scores, dim=1) + math.log(b)).mean()
    cap = 1.0 + math.log(batch_size)
    scores = cap - torch.log1p(torch.exp(cap - scores))
    joint = scores.diagonal()
    shifted = scores[torch.arange(b), (torch.arange(b) + shift) % b]
    if estimator == "nwj":
        return joint.mean() - torch.exp(shifted - 1.0).mean()
    return joint.mean() - torch.log(torch.exp(shifted).mean())


def terms_by_hand(est, x, eps, shift, estimator):
    """Per-sample reconstruction NLL and KL of z, and the batch bound, from the networks."""
    mean, log_var, c = est.encoder_(x)
    codes = torch.cat([mean + eps * torch.exp(0.5 * log_var), c], dim=1)
    recon = gaussian_nll_by_hand(x, est.decoder_(codes), est.likelihood_.log_var())
    kl = gaussian_kl_by_hand(mean, log_var)
    return recon, kl, bound_by_hand(estimator, pair_scores(est.critic_, x, codes), shift,
                                     est.batch_size_)


def vae_parameters(est):
    return [p for m in (est.encoder_, est.decoder_, est.likelihood_) for p in m.parameters()]


# -- fixtures ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(digits):
    """A briefly trained model with one info code c (the networks are only read)."""
    X, _ = digits
    # float32: the step's terms are checked against float32 arithmetic by hand.
    return InfoMaxVAETransformer(n_components=N_Z, n_info_components=N_C, n_threads=1,
                                 precision="float32", **TINY).fit(X)


@pytest.fixture(scope="module")
def batch(model, digits):
    X, _ = digits
    x = torch.as_tensor(X[:24], dtype=torch.float32, device=model.device_)
    eps = torch.randn(24, N_Z, generator=torch.Generator().manual_seed(3)).to(model.device_)
    return x, eps, 5


# -- 1. the step loss ---------------------------------------------------------------
def bound_of(model, estimator):
    """The model's training bound (its cap) with ``estimator``."""
    return dataclasses.replace(model._engine.config.bound, estimator=estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_step_sums_are_recon_kl_of_z_and_the_bound(model, batch, estimator):
    x, eps, shift = batch
    _, sums = model._engine._step_loss(x, eps, shift, bound_of(model, estimator), 2.5, 0.3)
    with torch.no_grad():
        recon, kl, mi = terms_by_hand(model, x, eps, shift, estimator)
    expected = torch.stack([recon.sum(), kl.sum(), mi * x.shape[0]])
    torch.testing.assert_close(sums, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_step_objective_moves_with_beta_by_the_mean_kl(model, batch, estimator):
    x, eps, shift = batch
    low, _ = model._engine._step_loss(x, eps, shift, bound_of(model, estimator), 2.5, 0.3)
    high, _ = model._engine._step_loss(x, eps, shift, bound_of(model, estimator), 2.5, 4.3)
    with torch.no_grad():
        _, kl, _ = terms_by_hand(model, x, eps, shift, estimator)
    # Differences of two float32 values near 5e3 (the reconstruction NLL): ~1e-3 apart at best.
    assert (high - low).item() == pytest.approx(4.0 * kl.mean().item(), abs=2e-3)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_step_objective_value_is_the_vae_loss(model, batch, estimator):
    x, eps, shift = batch
    objective, _ = model._engine._step_loss(x, eps, shift, bound_of(model, estimator), 2.5, 0.3)
    more_alpha, _ = model._engine._step_loss(x, eps, shift, bound_of(model, estimator), 102.5, 0.3)
    with torch.no_grad():
        recon, kl, mi = terms_by_hand(model, x, eps, shift, estimator)
    assert abs(100.0 * mi.item()) > 0.1  # the alpha term is resolvable next to recon
    assert (more_alpha - objective).item() == pytest.approx(-100.0 * mi.item(), abs=2e-3)
    expected = recon.mean() + 0.3 * kl.mean() - 2.5 * mi
    assert objective.item() == pytest.approx(expected.item(), abs=2e-3)


@pytest.mark.parametrize("alpha, beta", [(2.5, 0.3), (0.0, 0.3), (2.5, 1.0), (1.0, 4.0)])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_step_gradients_are_each_players_loss(model, batch, estimator, alpha, beta):
    """VAE parameters follow recon + beta KL - alpha I; the critic follows -I (alpha, beta apart)."""
    x, eps, shift = batch
    vae, critic = vae_parameters(model), list(model.critic_.parameters())
    objective, _ = model._engine._step_loss(x, eps, shift, bound_of(model, estimator), alpha, beta)
    got = torch.autograd.grad(objective, vae + critic, allow_unused=True)

    recon, kl, mi = terms_by_hand(model, x, eps, shift, estimator)
    want_vae = torch.autograd.grad(recon.mean() + beta * kl.mean() - alpha * mi, vae,
                                   retain_graph=True, allow_unused=True)
    want_critic = torch.autograd.grad(-mi, critic)
    for g, w in zip(got, [*want_vae, *want_critic]):
        g = torch.zeros_like(w) if g is None else g
        w = torch.zeros_like(g) if w is None else w
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


# -- 3. the info codes c stay out of the KL --------------------------------------------
def test_info_code_rows_get_no_kl_gradient(model, batch):
    """The encoder head rows producing c get gradient from recon and MI only: beta does not reach them."""
    x, eps, shift = batch
    head = model.encoder_.head.weight  # rows: z mean, z log-variance, c

    def c_rows_grad(alpha, beta):
        objective, _ = model._engine._step_loss(x, eps, shift, bound_of(model, "nwj"), alpha, beta)
        return torch.autograd.grad(objective, head)[0][2 * N_Z:]

    recon, _, mi = terms_by_hand(model, x, eps, shift, "nwj")
    want = torch.autograd.grad(recon.mean() - 2.5 * mi, head)[0][2 * N_Z:]
    assert want.abs().sum() > 0
    for beta in (0.0, 0.3, 10.0):
        torch.testing.assert_close(c_rows_grad(2.5, beta), want, rtol=1e-4, atol=1e-6)


# -- 2. history_ holds the engine's epoch terms ----------------------------------------
@pytest.fixture
def near_deterministic(digits):
    """A fitted model whose posterior noise is negligible, set up to train one full batch per epoch.

    With the z log-variance pinned at -20 (std 5e-5) the codes are the
    posterior means, so one epoch's terms can be evaluated independently of
    the engine's noise draws; with one batch holding every row, InfoNCE
    does not depend on the batch order either.
    """
    X, _ = digits
    X = X[:80]
    est = InfoMaxVAETransformer(
        n_components=N_Z, n_info_components=2, mi_estimator="infonce", alpha=2.5, beta=0.3,
        batch_size=8, critic_learning_rate=1e-2, warm_start=True, n_threads=1, precision="float32",
        **{**TINY, "max_iter": 5},
    ).fit(X)
    est.set_params(max_iter=1, batch_size=len(X))
    with torch.no_grad():
        head = est.encoder_.head  # rows: z mean, z log-variance, c
        head.weight[N_Z:2 * N_Z] = 0.0
        head.bias[N_Z:2 * N_Z] = -20.0
        head.weight[:N_Z] *= 10.0  # spread the codes: an MI term well above rounding
        head.weight[2 * N_Z:] *= 10.0
    return est, X


def test_history_records_the_engines_terms_of_the_epoch(near_deterministic):
    est, X = near_deterministic
    # The networks see X in the model's standard units; the history reports the
    # reconstruction NLL in X's units: plus the log-Jacobian sum(log scale).
    x = est._engine.rows(X).tensor
    with torch.no_grad():
        eps = torch.zeros(len(X), N_Z, device=est.device_)
        recon, kl, mi = terms_by_hand(est, x, eps, 1, "infonce")
        _, _, c = est.encoder_(x)
    log_jacobian = float(np.log(est._engine.units.scale).sum())
    recon, kl, mi = recon.mean().item() + log_jacobian, kl.mean().item(), mi.item()
    # The record is taken on the step's forward pass, before its update.
    record = est.fit(X).history_[-1]
    assert est.n_iter_ == 6 and record["epoch"] == 6
    assert record["reconstruction"] == pytest.approx(recon, rel=1e-5)
    assert record["kl"] == pytest.approx(kl, rel=1e-5, abs=1e-4)
    assert record["mi"] == pytest.approx(mi, abs=1e-4)
    assert record["loss"] == pytest.approx(recon + 0.3 * kl - 2.5 * mi, rel=1e-5)
    # alpha and beta weigh the recorded terms (apart from the reconstruction, which dwarfs them).
    assert abs(1.5 * record["mi"]) > 1e-3  # what alpha = 1 instead of 2.5 would change
    weighted = record["loss"] - record["reconstruction"]
    assert weighted == pytest.approx(0.3 * record["kl"] - 2.5 * record["mi"], abs=1e-6)
    # KL of z alone: counting c as a unit-variance Gaussian would add 0.5 c^2.
    assert 0.5 * c.square().sum(1).mean().item() > 100 * abs(record["kl"] - kl) + 1e-3


# -- 4. early stopping keeps the best epoch ----------------------------------------------
def test_early_stopping_restores_the_best_epochs_weights(tiny_vae, digits):
    """After a stop, the model is the one of the best validation epoch, critic included.

    60 rows, a large learning rate and a patience of 3: the validation loss
    bottoms out at epoch 15 and training stops at 18 (measured).
    """
    X, _ = digits
    X = X[:60]
    kw = dict(early_stopping=True, validation_fraction=0.3, tol=0.0, learning_rate=5e-2,
              batch_size=8, n_threads=1)
    stopped = tiny_vae(max_iter=40, n_iter_no_change=3, **kw).fit(X)
    best = int(np.argmin([r["valid_loss"] for r in stopped.history_])) + 1
    assert best < stopped.n_iter_ == best + 3  # it stopped, later than its best epoch
    to_best = tiny_vae(max_iter=best, n_iter_no_change=1000, **kw).fit(X)
    assert to_best.history_ == stopped.history_[:best]
    Z = stopped.transform(X)
    np.testing.assert_array_equal(Z, to_best.transform(X))
    np.testing.assert_array_equal(stopped.inverse_transform(Z), to_best.inverse_transform(Z))
    for p, q in zip(stopped.critic_.parameters(), to_best.critic_.parameters()):
        assert torch.equal(p, q)  # the critic trained alongside is restored too


# -- 5. warm starts and partial_fit continue training --------------------------------
def test_warm_start_continues_the_weights_and_the_optimiser_state(tiny_vae, digits):
    """A fresh Adam's first step moves every weight by lr exactly; a continued one does not.

    Adam's first update is lr * g / (|g| + 1e-8), so a reset optimiser would
    move (almost) every weight with a gradient by the learning rate.
    """
    X, _ = digits
    lr = 1e-3
    vae = tiny_vae(max_iter=3, learning_rate=lr, critic_learning_rate=lr, warm_start=True).fit(X)
    modules = (vae.encoder_, vae.decoder_, vae.critic_)
    before = [[p.detach().clone() for p in m.parameters()] for m in modules]
    vae.set_params(max_iter=1, batch_size=len(X)).fit(X)  # exactly one step
    for module, old in zip(modules, before):
        steps = torch.cat([(p.detach() - q).abs().flatten() for p, q in zip(module.parameters(), old)])
        assert steps.max() < 10 * lr  # continued from the trained weights
        moved = steps[steps > 0]
        assert (torch.isclose(moved, torch.tensor(lr), rtol=1e-3).float().mean() < 0.5), module


def test_warm_start_fits_add_up_to_one_fit(tiny_vae, digits):
    X, _ = digits
    split = tiny_vae(max_iter=2).fit(X)
    split.set_params(max_iter=3, warm_start=True).fit(X)
    whole = tiny_vae(max_iter=5).fit(X)
    assert split.history_ == whole.history_
    np.testing.assert_array_equal(split.transform(X), whole.transform(X))


# -- 6. the MI term does what it is for -------------------------------------------------
def test_alpha_raises_held_out_mi_where_the_vae_collapses():
    """Wine at beta=4 collapses as a plain VAE; alpha=10 keeps information in the codes.

    Measured with these settings for random_state 0-4 (docs/science.md, section 4,
    has the full-size benchmark): held-out lower bound -0.018..0.014 nats at
    alpha=0 against 0.156..0.275 at alpha=10; rate 0.023..0.032 against
    0.371..0.493; active units 0 against 5..7.
    """
    X, y = load_wine(return_X_y=True)
    X_train, X_test = train_test_split(X, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    kw = dict(n_components=10, beta=4.0, hidden_layer_sizes=(64,), critic_hidden_layer_sizes=(64,),
              batch_size=16, max_iter=40, random_state=0, n_threads=1)
    plain = InfoMaxVAETransformer(alpha=0.0, **kw).fit(X_train)
    infomax = InfoMaxVAETransformer(alpha=10.0, **kw).fit(X_train)
    plain_mi, infomax_mi = plain.mi_bounds(X_test), infomax.mi_bounds(X_test)
    assert infomax_mi.lower > plain_mi.lower + 0.08
    assert infomax_mi.upper > plain_mi.upper + 0.15
    active = [int((m.transform(X_test).var(axis=0) >= 0.05).sum()) for m in (plain, infomax)]
    assert active[0] <= 1 and active[1] >= active[0] + 3


# -- 8. InfoNCE is capped by the batch actually evaluated ----------------------------
class ProjectionEncoder(nn.Module):
    """Posterior N(x @ w, e^-20): the code is a fixed projection of x, its noise negligible."""

    def __init__(self, w):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x):
        mean = x @ self.w
        return mean, torch.full_like(mean, -20.0), x.new_zeros(x.shape[0], 0)


class DistanceCritic(nn.Module):
    """T(x, code) = -k |x @ w - code|: 0 for the code of x itself, far below for any other."""

    def __init__(self, w, k):
        super().__init__()
        self.register_buffer("w", w)
        self.k = k
        self.scale = nn.Parameter(torch.ones(()))  # an optimiser needs a parameter

    def score_matrix(self, x, codes):
        return -self.k * self.scale * (x @ self.w - codes.T).abs()

    def forward(self, x, codes):
        return -self.k * self.scale * (x @ self.w - codes).abs().squeeze(1)

    def joint_and_shifted(self, x, codes, shift):
        return self(x, codes), self(x, codes.roll(-int(shift), dims=0))


def test_infonce_score_is_capped_by_the_evaluated_batch_size(digits):
    """Held-out rows are split into floor(n / batch_size_) batches, so the cap is log of their size.

    A near-perfect critic on one held-out batch of 7 rows (batch_size=4:
    7 // 4 = 1 batch) passes log 4 and reaches the value computed from its
    known score matrix, under log 7 (1.83 nats against log 4 = 1.39 and log 7 = 1.95).
    After partial_fit, score reads the critic trained alongside, here frozen by its
    learning rate (fit's fresh critic trains at its own).
    """
    X, _ = digits
    w = torch.as_tensor(np.random.RandomState(0).randn(64, 1), dtype=torch.float32)
    k = 2.0
    vae = InfoMaxVAETransformer(
        n_components=1, mi_estimator="infonce", batch_size=4, max_iter=1,
        encoder=ProjectionEncoder(w), critic=DistanceCritic(w, k), hidden_layer_sizes=(8,),
        learning_rate=1e-12, critic_learning_rate=1e-12, random_state=0, n_threads=1,
        likelihood="bernoulli",  # X as it is: the encoder projects the raw pixels
    ).partial_fit(X[:40])
    held_out = X[200:207]
    u = held_out @ w.numpy()[:, 0].astype(np.float64)
    scores = -k * np.abs(u[:, None] - u[None, :])
    expected = np.mean(-np.log(np.mean(np.exp(scores), axis=1)))
    assert math.log(4) + 0.2 < expected < math.log(7)
    assert vae.score(held_out) == pytest.approx(expected, abs=1e-3)


# -- 9. one wild pair cannot wreck a training batch -------------------------------------
def test_one_wild_shifted_pair_lowers_the_step_bound_by_at_most_batch_size_over_rows(
        model, batch, monkeypatch):
    x, eps, shift = batch
    engine = model._engine
    _, sums = engine._step_loss(x, eps, shift, bound_of(model, "nwj"), 1.0, 1.0)
    original = engine.critic.joint_and_shifted

    def one_wild_pair(x, codes, s):
        joint, shifted = original(x, codes, s)
        return joint, shifted + 80.0 * (torch.arange(len(shifted)) == 3)

    monkeypatch.setattr(engine.critic, "joint_and_shifted", one_wild_pair)
    objective, wild = engine._step_loss(x, eps, shift, bound_of(model, "nwj"), 1.0, 1.0)
    # Capped at c = 1 + log B, the pair's exp(T - 1) is at most B: the batch
    # bound (sums[2] / n) falls by at most B / n nats, and by more than half of it.
    drop = float(sums[2] - wild[2]) / x.shape[0]
    assert 0.5 * model.batch_size_ / x.shape[0] < drop <= model.batch_size_ / x.shape[0] + 1e-4
    objective.backward()  # and the gradients it sends stay finite and moderate
    grads = [p.grad.abs().max() for p in engine.critic.parameters() if p.grad is not None]
    assert torch.isfinite(torch.stack(grads)).all() and max(grads) < 1e3
    engine.vae_optimizer.zero_grad(set_to_none=True)
    engine.critic_optimizer.zero_grad(set_to_none=True)


def test_a_fit_that_spiked_before_the_cap_trains_without_spikes():
    """Seed 1 of this fit fell to -310 nats of training MI in epoch 76 without the cap."""
    X = load_digits().data[:600] / 16.0
    vae = InfoMaxVAETransformer(
        n_components=10, hidden_layer_sizes=(64,), critic_hidden_layer_sizes=(64, 64),
        batch_size=64, max_iter=80, random_state=1, n_threads=1,
    ).fit(X)
    mi = np.array([h["mi"] for h in vae.history_])
    # A spike: an epoch more than max(5 robust SDs, 1 nat) below the median of the 10 before.
    for t in range(10, len(mi)):
        previous = mi[t - 10:t]
        median = np.median(previous)
        robust_sd = 1.4826 * np.median(np.abs(previous - median))
        assert mi[t] >= median - max(5 * robust_sd, 1.0), f"spike in epoch {t + 1}"
    assert mi.min() > -1.0


# -- 10. a plain VAE pays for no critic; score's critic is trained one way --------------
def test_a_plain_vae_fit_trains_no_critic_in_its_steps(tiny_vae, digits):
    """At alpha = 0 the VAE epochs leave the critic as built: no gradient, no Adam state."""
    X, _ = digits
    vae = tiny_vae(alpha=0.0, max_iter=1).fit(X)
    engine = vae._engine
    built = [p.detach().clone() for p in engine.critic.parameters()]
    engine.train(X, 2)
    for p, q in zip(engine.critic.parameters(), built):
        assert p.grad is None
        assert torch.equal(p.detach(), q)
    assert not engine.critic_optimizer.state  # Adam never stepped it
    record = engine.history[-1]
    assert math.isnan(record["mi"])  # not estimated, so not reported as a number
    assert record["loss"] == pytest.approx(record["reconstruction"] + record["kl"], rel=1e-12)


def test_partial_fit_trains_the_critic_alongside_at_alpha_zero(tiny_vae, digits):
    """A stream has no later pass for a critic of its own: it trains in every step."""
    X, _ = digits
    vae = tiny_vae(alpha=0.0).partial_fit(X)
    built = [p.detach().clone() for p in vae.critic_.parameters()]
    vae.partial_fit(X)
    assert any(not torch.equal(p.detach(), q) for p, q in zip(vae.critic_.parameters(), built))
    assert math.isfinite(vae.history_[-1]["mi"])


def test_score_critic_depends_on_the_encoder_alone_not_on_alpha(tiny_vae, digits):
    """The critic score uses is trained afresh the same way at every alpha: on one encoder,
    models of alpha 0 and 3 with different critics end with bit-identical critics and scores.
    """
    import copy

    X, _ = digits
    plain = tiny_vae(alpha=0.0, max_iter=2).fit(X)
    infomax = copy.deepcopy(plain)
    infomax.set_params(alpha=3.0)
    infomax._engine.config = infomax._training_config(plain.batch_size_, False,
                                                      plain._engine.config.bound.cap)
    with torch.no_grad():  # a critic trained elsewhere: its weights must not matter
        for p in infomax.critic_.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    for vae in (plain, infomax):
        vae._engine.train_score_critic(X, 2)
    scorers = [vae._engine.score_critic for vae in (plain, infomax)]
    for p, q in zip(*(scorer.parameters() for scorer in scorers)):
        assert torch.equal(p, q)
    assert not torch.equal(plain.critic_.embed_codes.weight, infomax.critic_.embed_codes.weight)
    assert plain.score(X[:100]) == infomax.score(X[:100])
    # ... and the fit's own score critic is this one: fit trained it on the same rows.
    refit = tiny_vae(alpha=0.0, max_iter=2).fit(X)
    assert refit.score(X[:100]) == plain.score(X[:100])
