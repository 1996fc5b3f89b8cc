"""What a trained engine computes without training: codes, decoder means, held-out losses and
MI bounds; numpy out, every value checked finite (ValueError rather than NaN).
"""

import math
from dataclasses import replace

import numpy as np
import torch

from ._critics import (SCORE_CRITIC_EPOCHS, SCORE_CRITIC_ROWS, SCORE_CRITIC_STEP_SHARE,
                       CachedPosterior, SingleCritic, batch_bounds, fixed_batches, fresh_critic,
                       marginal_terms, reparameterise)
from ._objectives import gaussian_kl
from ._units import Rows
from ._utils import EVAL_CHUNK, batch_slices, generators, named_seed, split_rows


def _check_finite(values, what):
    if not all(np.isfinite(v).all() for v in values):
        raise ValueError(f"The trained networks give NaN or infinite values for {what} of this "
                         "input: it lies too far outside the data they were trained on.")


def per_sample(engine, sums, n_samples, with_mi=True):
    """An epoch's record: per-sample ``loss``, ``reconstruction``, ``kl`` and ``mi`` (NaN
    without ``with_mi``) from their sums over ``n_samples`` rows."""
    recon, kl, mi = (s / n_samples for s in sums)
    if engine.units is not None:  # NLL in the data's units: the Jacobian of standardising
        recon += engine.units.log_scale_sum
    config = engine.config
    loss = recon + config.beta * kl - (config.alpha * mi if with_mi else 0.0)
    return {"loss": loss, "reconstruction": recon, "kl": kl, "mi": mi if with_mi else math.nan}


def _posterior_batches(engine, rows):
    """Fixed batches of ``rows``, posterior means, log-variances and codes drawn from the
    engine's seed: the same on every call."""
    engine.set_train(False)
    _, noise = generators(engine.seed, engine.device)
    for x in rows.batches(engine.config.batch_size):
        with engine.autocast():
            mean, log_var, c = (t.float() for t in engine.encoder(x))
        yield x, mean, log_var, reparameterise(mean, log_var, c, noise)


def _batch_sizes(engine, rows):
    return np.asarray([len(i) for i in batch_slices(rows.n_rows, engine.config.batch_size)])


def _batch_mi(engine, pairs, critic):
    """The held-out bound (``pairs="blocks"``) of ``critic`` on each ``(x, codes)``, a tensor."""
    with engine.autocast():
        return batch_bounds(SingleCritic(critic), pairs, replace(engine.config.bound,
                                                                 pairs="blocks"))


@torch.no_grad()
def summary(engine, rows, critic=None):
    """An epoch's validation record on ``rows``, with the MI bound of ``critic`` (None: NaN)."""
    recons, kls, pairs = [], [], []
    for x, mean, log_var, codes in _posterior_batches(engine, rows):
        with engine.autocast():
            recons.append(engine.likelihood.nll(x, engine.decoder(codes).float()))
        kls.append(gaussian_kl(mean, log_var))
        if critic is not None:  # the same draws score the bound: one encoder pass
            pairs.append((x, codes))
    recon, kl = (torch.cat(t).sum().item() for t in (recons, kls))
    mi_sum = 0.0
    if critic is not None:
        sizes = torch.as_tensor([len(x) for x, _ in pairs], dtype=torch.float64)
        mi_sum = float(_batch_mi(engine, pairs, critic).cpu().double() @ sizes)
    return per_sample(engine, [recon, kl, mi_sum], rows.n_rows, critic is not None)


def elbo_terms(engine, X, stream=False):
    """Per-sample means of the reconstruction NLL (data units) and of the KL on X."""
    terms = summary(engine, engine.rows(X, stream))
    _check_finite([terms["reconstruction"], terms["kl"]], "the losses")
    return terms


def held_out_mi(engine, X, stream=False):
    """The score critic's bound on X, the batches' mean weighted by size, and on each batch."""
    rows = engine.rows(X, stream)
    pairs = ((x, codes) for x, _, _, codes in _posterior_batches(engine, rows))
    mi = _batch_mi(engine, pairs, engine.score_critic).cpu().numpy().astype(float)
    _check_finite(mi, "the MI bounds")
    sizes = _batch_sizes(engine, rows)
    return float(np.dot(mi, sizes) / sizes.sum()), mi


@torch.no_grad()
def marginal_tail(engine, X):
    """For warnings: the held-out NWJ / DV bound's pairs on X, how many make half of its
    marginal term, and the largest critic output."""
    critic = SingleCritic(engine.score_critic)
    terms = []
    for x, _, _, codes in _posterior_batches(engine, engine.rows(X)):
        with engine.autocast():
            terms.append(marginal_terms(engine.config.bound, critic, x[None], codes[None])
                         .double().cpu())
    terms = torch.cat(terms).sort(descending=True).values
    half = int(torch.searchsorted(terms.cumsum(0), 0.5 * terms.sum())) + 1
    return {"n_pairs": terms.numel(), "n_half": half, "max_output": 1.0 + float(terms[0].log())}


def _posterior(engine, X):
    """The frozen encoder's posterior for the rows of X (a tensor), at the engine's precision,
    as held-out bounds compute it."""
    with engine.autocast():
        return CachedPosterior.of(engine.encoder, X, EVAL_CHUNK)


def fresh_score_critic(engine, X, n_epochs):
    """``score``'s critic after a fit of ``n_epochs`` epochs over X: the fresh-critic protocol
    on at most ``SCORE_CRITIC_ROWS`` random rows, within ``SCORE_CRITIC_EPOCHS`` and a
    ``SCORE_CRITIC_STEP_SHARE`` of the fit's steps; the same at every alpha."""
    seed = named_seed(engine.seed, "score critic")
    (chosen, _) = split_rows(X.shape[0], [min(X.shape[0], SCORE_CRITIC_ROWS)],
                             named_seed(seed, "rows"))
    vae_steps = n_epochs * max(1, X.shape[0] // engine.config.batch_size)
    engine.set_train(False)
    X = engine.rows(X[chosen]).tensor
    return fresh_critic(
        engine.critic, X, _posterior(engine, X), bound=engine.config.bound,
        batch_size=engine.config.batch_size, max_iter=SCORE_CRITIC_EPOCHS,
        max_steps=int(SCORE_CRITIC_STEP_SHARE * vae_steps), seed=seed,
        verbose=engine.config.verbose)[0]


def refitted_mi(engine, X, max_iter, verbose=0):
    """``mi_bounds(refit_critic=True)``: the fresh-critic protocol on a random half of X, its
    bound on each fixed batch of the other half (as score's) and that half's rows."""
    seed = named_seed(engine.seed, "refitted critic")
    held_out, rest = split_rows(X.shape[0], [X.shape[0] // 2], named_seed(seed, "rows"))
    engine.set_train(False)
    X_rest, X_held_out = (engine.rows(X[rows]).tensor for rows in (rest, held_out))
    critic, batch_size = fresh_critic(
        engine.critic, X_rest, _posterior(engine, X_rest),
        bound=engine.config.bound, batch_size=min(engine.config.batch_size, len(held_out)),
        max_iter=max_iter, seed=seed, verbose=verbose)
    values = batch_bounds(SingleCritic(critic), fixed_batches(
        X_held_out, _posterior(engine, X_held_out), batch_size, named_seed(seed, "held out")),
        replace(engine.config.bound, pairs="blocks"))
    return values.cpu().numpy().astype(float), held_out


@torch.no_grad()
def _chunked(engine, function, rows, what):
    """Apply ``function`` in fixed-shape chunks of ``rows``; a tuple of finite numpy arrays."""
    engine.set_train(False)
    with engine.autocast():
        parts = [[t.float() for t in function(chunk)] for chunk in rows.chunks(EVAL_CHUNK)]
    outputs = tuple(torch.cat(p)[: rows.n_rows].cpu().numpy() for p in zip(*parts))
    _check_finite(outputs, what)
    return outputs


def encode(engine, X, stream=False):
    """Posterior means, log-variances and info codes (numpy)."""
    return _chunked(engine, engine.encoder, engine.rows(X, stream), "the codes")


def kl_per_dimension(engine, X, stream=False):
    """KL(q(z|x) || N(0, I)) per sample and z dimension, shape ``(n, n_components)``."""
    return _chunked(engine, lambda x: (gaussian_kl(*engine.encoder(x)[:2], per_dimension=True),),
                    engine.rows(X, stream), "the KL terms")[0]


def decode(engine, codes, stream=False):
    """Decoder means of codes ``[z, c]`` in the data's units."""
    (out,) = _chunked(engine, lambda c: (engine.likelihood.mean(engine.decoder(c)),),
                      Rows(codes, engine.device, stream, what="the codes"), "the decoder's means")
    return out if engine.units is None else engine.units.restore(out)
