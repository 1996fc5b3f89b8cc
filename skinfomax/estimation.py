"""Critic training and held-out evaluation of the mutual-information bounds.

The torch side of :func:`skinfomax.mutual_information` and of the
transformer's "fresh critic on a frozen encoder" protocol. It reuses the
:class:`~skinfomax.networks.Critic` and the bounds of
:mod:`skinfomax.objectives` that the training engine uses, so a number from
here means the same as the transformer's :meth:`score`. (The held-out
bounds of :func:`estimate_mi` take every mismatched pair of a batch as the
marginal sample; ``score`` takes one shifted pairing: the same bound, with
more variance.)

Codes come from a *code source*, a callable ``source(x, idx, noise) -> codes``
given the batch of inputs, their row indices and a noise generator:

- :class:`FixedCodes`: given samples ``Z`` (``codes = Z[idx]``);
- :class:`PosteriorCodes`: fresh reparameterised draws ``[z, c]`` from a
  frozen encoder's posterior q(z | x), a new draw every time.

Standard errors are taken over the per-batch estimates on the evaluation
split (disjoint, fixed batches): ``sd(batch estimates) / sqrt(n_batches)``,
nan when the split holds a single batch.
"""

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from .networks import build_critic
from .objectives import (
    MI_BOUNDS,
    all_pairs_influence,
    bound_influence,
    codes_from_noise,
    derangement_shift,
    infonce_bound,
    off_diagonal,
)
from .training import critic_bound, critic_scores
from .utils import batch_slices, generators, mean_and_se

__all__ = [
    "batch_bounds",
    "choose_critic",
    "CriticConfig",
    "CriticEnsemble",
    "estimate_mi",
    "fit_critic",
    "FixedCodes",
    "one_standard_error_choice",
    "PosteriorCodes",
    "refit_critic_bounds",
    "reparameterise",
    "train_critics",
]


def _critic_outputs(critic, x, codes, estimator, shift):
    return critic_scores(critic, x, codes, estimator, shift)


def _bound(estimator, outputs):
    return infonce_bound(*outputs) if estimator == "infonce" else MI_BOUNDS[estimator](*outputs)


def reparameterise(mean, log_var, c, noise):
    """A posterior sample ``[mean + eps * std, c]`` with ``eps`` drawn from ``noise``."""
    eps = torch.randn(mean.shape, generator=noise, device=mean.device, dtype=mean.dtype)
    return codes_from_noise(mean, log_var, c, eps)


class FixedCodes:
    """Code source for given samples: ``codes = Z[idx]``."""

    def __init__(self, Z):
        self.Z = Z

    def __call__(self, x, idx, noise):
        return self.Z[idx]


class PosteriorCodes:
    """Code source drawing ``[z, c]`` from a frozen encoder's posterior."""

    def __init__(self, encoder):
        self.encoder = encoder

    def __call__(self, x, idx, noise):
        with torch.no_grad():
            return reparameterise(*self.encoder(x), noise)


@dataclass(frozen=True)
class CriticConfig:
    """How to train a critic: bound, batch size, epochs, Adam learning rate, patience.

    ``weight_decay > 0`` switches to AdamW (decoupled decay), which curbs the
    critic's overfitting of the train part in high dimensions.
    """

    estimator: str = "nwj"
    batch_size: int = 128
    max_iter: int = 100
    learning_rate: float = 1e-3
    n_iter_no_change: int = 10
    tol: float = 1e-3
    weight_decay: float = 0.0


def _score_matrix(critic, x, codes, max_pairs=1 << 16):
    # Row blocks keep the pairwise activations to ``max_pairs`` rows of the
    # critic's width, whatever the batch size.
    rows = max(1, max_pairs // codes.shape[0])
    return torch.cat([critic.score_matrix(block, codes) for block in x.split(rows)])


def _all_pairs_outputs(critic, x, codes, estimator, influence):
    # Every mismatched pair of the batch is a marginal draw: the same bound,
    # far less variance than one shifted pairing. InfoNCE uses them anyway.
    scores = _score_matrix(critic, x, codes).float()
    if estimator == "infonce":
        outputs, terms = (scores,), bound_influence
    else:
        outputs, terms = (scores.diagonal(), off_diagonal(scores)), all_pairs_influence
    return outputs, terms(estimator, scores) if influence else None


@torch.no_grad()
def batch_bounds(critic, X, source, estimator, batch_size, seed, influence=False,
                 all_pairs=False):
    """Per-batch bound values on fixed, unshuffled batches of ``X`` (numpy array).

    Every batch has at least ``batch_size`` rows (``floor(n / batch_size)``
    near-equal slices); ``seed`` fixes the shifts and the posterior noise, so
    the values are repeatable. With ``all_pairs=True`` NWJ and DV take every
    mismatched pair of a batch as their marginal sample instead of one
    shifted pairing (``B - 1`` times the critic evaluations). With
    ``influence=True`` the per-sample terms of
    :func:`~skinfomax.objectives.bound_influence` (or
    :func:`~skinfomax.objectives.all_pairs_influence`) come back as well, for
    standard errors of differences between critics on the same pairs.
    """
    critic.eval()
    cpu_gen, noise_gen = generators(seed, X.device)
    values, terms = [], []
    for idx in batch_slices(X.shape[0], batch_size, device=X.device):
        x = X[idx]
        codes = source(x, idx, noise_gen)
        if all_pairs:
            outputs, batch_terms = _all_pairs_outputs(critic, x, codes, estimator, influence)
        else:
            shift = derangement_shift(x.shape[0], cpu_gen)
            outputs = _critic_outputs(critic, x, codes, estimator, shift)
            batch_terms = bound_influence(estimator, *outputs) if influence else None
        values.append(_bound(estimator, outputs))
        terms.append(batch_terms)
    values = torch.stack(values).cpu().numpy().astype(float)
    if influence:
        return values, torch.cat(terms).cpu().numpy().astype(float)
    return values


def fit_critic(critic, X, source, config, seed, X_valid=None, source_valid=None):
    """Train ``critic`` to maximise the bound on ``(X, source)``; returns the history.

    With a validation split, training stops once the validation bound has not
    improved by ``config.tol`` for ``config.n_iter_no_change`` epochs, and the
    critic of the best epoch is restored. Only the critic's parameters move.
    """
    if config.weight_decay:
        optimizer = torch.optim.AdamW(
            critic.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.Adam(critic.parameters(), lr=config.learning_rate)
    cpu_gen, noise_gen = generators(seed, X.device)
    n_batches = max(1, X.shape[0] // config.batch_size)
    best, best_state, stale, history = -math.inf, None, 0, []
    for epoch in range(1, config.max_iter + 1):
        critic.train()
        total = torch.zeros((), device=X.device)
        for idx in batch_slices(X.shape[0], config.batch_size, cpu_gen, X.device):
            x = X[idx]
            shift = derangement_shift(x.shape[0], cpu_gen)
            bound = critic_bound(critic, x, source(x, idx, noise_gen), config.estimator, shift)
            optimizer.zero_grad(set_to_none=True)
            (-bound).backward()
            optimizer.step()
            total += bound.detach()
        record = {"epoch": epoch, "mi": float(total) / n_batches}
        if X_valid is not None:
            valid = batch_bounds(
                critic, X_valid, source_valid, config.estimator, config.batch_size, seed
            )
            record["valid_mi"] = float(valid.mean())
            if record["valid_mi"] > best + config.tol:
                best, best_state, stale = record["valid_mi"], copy.deepcopy(critic.state_dict()), 0
            else:
                stale += 1
        history.append(record)
        if X_valid is not None and stale >= config.n_iter_no_change:
            break
    if best_state is not None:
        critic.load_state_dict(best_state)
    critic.eval()
    return history


class CriticEnsemble(torch.nn.Module):
    """A critic whose scores are the mean of its members' scores.

    Any function of (x, z) gives a valid held-out bound, so the mean of
    independently trained critics does too; averaging cancels much of what
    each member overfits to its training samples (in 25 + 25 dimensions with
    2,800 training samples one critic lost ~30% of the MI, five 5-11%).
    """

    def __init__(self, critics):
        super().__init__()
        self.critics = torch.nn.ModuleList(critics)

    def joint_and_shifted(self, x, codes, shift):
        joint, shifted = zip(*(c.joint_and_shifted(x, codes, shift) for c in self.critics))
        return torch.stack(joint).mean(0), torch.stack(shifted).mean(0)

    def score_matrix(self, x, codes):
        return torch.stack([c.score_matrix(x, codes) for c in self.critics]).mean(0)


def train_critics(splits, critic_sizes, config, seed, n_critics=1):
    """``n_critics`` critics of one architecture, trained and early-stopped.

    ``splits`` starts ``(X_train, Z_train, X_valid, Z_valid)``. Returns the
    critic, a :class:`CriticEnsemble` when ``n_critics > 1``.
    """
    X_train, Z_train, X_valid, Z_valid = splits[:4]
    critics = []
    for k in range(n_critics):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + k)
            critic = build_critic(X_train.shape[1], Z_train.shape[1], critic_sizes)
        critic = critic.to(X_train.device)
        fit_critic(critic, X_train, FixedCodes(Z_train), config, seed + k,
                   X_valid, FixedCodes(Z_valid))
        critics.append(critic)
    return critics[0] if n_critics == 1 else CriticEnsemble(critics).eval()


def one_standard_error_choice(values, terms):
    """The first candidate whose validation bound is within one SE of the best's.

    ``values`` maps candidates, simplest first, to validation bounds and
    ``terms`` to their per-sample influence terms on the same pairs. The
    standard error is that of the paired difference to the best candidate:
    among critics the validation split cannot tell apart, the simplest
    overfits its train part least (the one-standard-error rule).
    """
    best = max(values, key=values.get)
    for candidate in values:
        diff = terms[best] - terms[candidate]
        se = diff.std(ddof=1) / math.sqrt(diff.size) if diff.size > 1 else 0.0
        if values[best] - values[candidate] <= se:
            return candidate
    return best


def choose_critic(splits, candidates, config, seed, n_critics=1):
    """Pick one of several critic architectures on the validation part.

    Each candidate is trained with early stopping on one half of the
    validation rows. Early stopping picks each critic's best epoch on the
    rows it stops on, which flatters the most flexible critics there, so the
    candidates are compared on the other half, on the same fixed batches with
    every mismatched pair as a marginal draw (a paired comparison), by
    :func:`one_standard_error_choice`.

    Returns the chosen architecture and every candidate's bound on the
    comparison half.
    """
    X_train, Z_train, X_valid, Z_valid = splits
    half = X_valid.shape[0] // 2
    stopping = (X_train, Z_train, X_valid[:half], Z_valid[:half])
    values, terms = {}, {}
    for sizes in candidates:
        critic = train_critics(stopping, sizes, config, seed, n_critics)
        batch_values, terms[sizes] = batch_bounds(
            critic, X_valid[half:], FixedCodes(Z_valid[half:]), config.estimator,
            config.batch_size, seed + 2, influence=True, all_pairs=True,
        )
        values[sizes] = float(batch_values.mean())
    return one_standard_error_choice(values, terms), values


def estimate_mi(folds, candidates, config, seed, device, n_critics=1):
    """Train critics on given samples, pick one on validation, bound MI on held-out rows.

    Parameters
    ----------
    folds : sequence of tuple of ndarray
        One ``(X_train, Z_train, X_valid, Z_valid, X_test, Z_test)`` tuple
        (float32) per fold; the test parts of several folds partition the
        samples (cross-fitting), so every sample is scored once by critics
        that never saw it.
    candidates : sequence of tuple of int
        Critic architectures (layer sizes; first one: the joint layer),
        simplest first. With several, :func:`choose_critic` picks one on the
        first fold's validation split; the chosen one is then trained in
        every fold with early stopping on its whole validation split, and the
        test splits give the estimate.
    config : CriticConfig
    seed : int
    device : torch.device
    n_critics : int, default=1
        Critics trained per architecture and fold (fold ``f`` seeds
        ``seed + f * n_critics, ...``); the bound uses the mean of their scores
        (:class:`CriticEnsemble`).

    Returns
    -------
    estimate, se : float
        Mean of the per-batch bounds on the test splits (every mismatched
        pair of a batch is a marginal draw) and its standard error.
    chosen : tuple of int
        The architecture evaluated.
    validation : dict
        Bound of every candidate on the choice half of the first fold's
        validation split, keyed by architecture (empty for one candidate).
    """
    folds = [tuple(torch.as_tensor(a, device=device) for a in fold) for fold in folds]
    if len(candidates) == 1:
        chosen, validation = candidates[0], {}
    else:
        chosen, validation = choose_critic(folds[0][:4], candidates, config, seed, n_critics)
    test = []
    for f, fold in enumerate(folds):
        # The chosen architecture is (re)trained with early stopping on the
        # whole validation part; only the test part stays unseen.
        critic = train_critics(fold[:4], chosen, config, seed + f * n_critics, n_critics)
        X_test, Z_test = fold[4:]
        test.append(batch_bounds(critic, X_test, FixedCodes(Z_test), config.estimator,
                                 config.batch_size, seed + 1, all_pairs=True))
    return (*mean_and_se(np.concatenate(test)), chosen, validation)


def refit_critic_bounds(encoder, critic, X, *, estimator, batch_size, max_iter, seed, verbose=0):
    """A fresh critic on a frozen encoder: per-batch held-out bounds and the rows they used.

    Half of X (a fifth of it for early stopping) trains a re-initialised copy
    of ``critic`` on posterior draws ``[z, c]`` from ``encoder``; the other
    half is evaluated. Returns ``(values, eval_rows)``: the per-batch bounds
    and the indices of the evaluated rows of X.
    """
    device = next(encoder.parameters()).device
    order = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed)).numpy()
    n_eval = X.shape[0] // 2
    n_valid = max(2, (X.shape[0] - n_eval) // 5)
    eval_rows, valid_rows, fit_rows = np.split(order, [n_eval, n_eval + n_valid])
    X_fit, X_valid, X_eval = (
        torch.as_tensor(np.asarray(X[rows], dtype=np.float32), device=device)
        for rows in (fit_rows, valid_rows, eval_rows)
    )
    encoder.eval()
    fresh = copy.deepcopy(critic)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    config = CriticConfig(
        estimator=estimator, max_iter=max_iter,
        batch_size=max(2, min(batch_size, X_fit.shape[0], X_valid.shape[0], X_eval.shape[0])),
    )
    source = PosteriorCodes(encoder)
    fit_critic(fresh, X_fit, source, config, seed, X_valid, source)
    values = batch_bounds(fresh, X_eval, source, estimator, config.batch_size, seed + 1)
    return values, eval_rows
