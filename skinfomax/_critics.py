"""The package's critic trainer and the held-out evaluation of the MI bounds.

The torch side of :func:`skinfomax.mutual_information` (:func:`estimate_mi`)
and of the transformer's "fresh critic on a frozen encoder" protocol
(:func:`refit_critic_bounds`). It reuses the
:class:`~skinfomax.networks.Critic` and the bounds of
:mod:`skinfomax.objectives` that the training engine uses, so a number from
here means the same as the transformer's :meth:`score`.

:func:`train_critics` is the one critic training loop: it trains critic
*stacks* (:mod:`skinfomax.ensembles`), every member on its own rows, all
members of all stacks in one batched forward pass and one optimiser step per
batch, with early stopping per member (a stopped member keeps its best
weights and stops moving; the loop ends when every member has stopped).

Codes come from a *code source*, a callable ``source(x, idx, noise) -> codes``
given the inputs, their row indices (any leading shape, e.g. ``(members,
batch)``) and a noise generator:

- :class:`FixedCodes`: given samples ``Z`` (``codes = Z[idx]``);
- :class:`PosteriorCodes`: fresh reparameterised draws ``[z, c]`` from a
  frozen encoder's posterior q(z | x), a new draw every time.

Standard errors are taken over the per-batch estimates on the evaluation
rows (disjoint, fixed batches): ``sd(batch estimates) / sqrt(n_batches)``,
nan when they hold a single batch.
"""

import copy
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from ._objectives import (
    MI_BOUNDS,
    all_pairs_influence,
    bound_influence,
    codes_from_noise,
    derangement_shift,
    estimator_bound,
    infonce_bound,
    off_diagonal,
)
from ._training import critic_scores, held_out_bound, score_matrix
from torch import nn

from ._networks import build_critic
from ._utils import (
    EarlyStopping,
    batch_slices,
    default_dtype,
    generators,
    mean_and_se,
    pair_row_blocks,
    seeded,
)

# An epoch of critic training (the unit of ``max_iter`` and of the patience)
# is one pass over a member's training rows or this many batches, whichever is
# shorter: how many steps a critic needs does not grow with the sample, so
# large samples are validated (and stopped) several times a pass.
EPOCH_BATCHES = 16
# Pairs per member that the early-stopping score of NWJ and DV aims at: the
# nearest whole number of shifted pairings of every validation row to
# this / validation rows, from 1 to 4; a less noisy score than one shift on
# small parts, and less scoring on large ones (docs/performance.md).
VALIDATION_PAIRS = 4096


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

    @torch.no_grad()
    def __call__(self, x, idx, noise):
        lead = idx.shape
        codes = reparameterise(*self.encoder(x.reshape(-1, *x.shape[len(lead):])), noise)
        return codes.view(*lead, -1)


class CriticCandidate(NamedTuple):
    """One critic to try: layer sizes (first: the joint layer) and its AdamW settings."""

    sizes: tuple
    learning_rate: float
    weight_decay: float


@dataclass(frozen=True)
class CriticConfig:
    """How to train critics: bound, batch size, epochs, learning rate, patience, decay.

    ``weight_decay`` is AdamW's decoupled decay (0 is Adam): it curbs the
    critic's overfitting of the train part in high dimensions.
    """

    estimator: str = "nwj"
    batch_size: int = 128
    max_iter: int = 100
    learning_rate: float = 1e-3
    n_iter_no_change: int = 10
    tol: float = 1e-3
    weight_decay: float = 0.0


# -- critic stacks ------------------------------------------------------------
def _linear_layers(critic):
    linears = [m for m in critic.head.modules() if isinstance(m, nn.Linear)]
    return critic.embed_x, critic.embed_codes, linears


class StackedCritic(nn.Module):
    """``M`` MLP critics of one architecture with stacked weights.

    Built from ``M`` :class:`~skinfomax.networks.Critic` modules of the
    :func:`~skinfomax.networks.build_critic` layout (their weights are
    copied); :meth:`member` gives member ``m`` back as such a module. Member
    ``m`` computes exactly what critic ``m`` computes, up to float rounding.
    """

    def __init__(self, critics):
        super().__init__()
        layers = [_linear_layers(c) for c in critics]
        self.n_members = len(critics)
        self.sizes = (layers[0][0].in_features, layers[0][1].in_features,
                      *(lin.in_features for lin in layers[0][2]))
        stack = lambda tensors: nn.Parameter(torch.stack([t.detach() for t in tensors]))
        # Weights stored as (M, in, out) so that a layer is baddbmm(bias, h, weight).
        self.x_weight = stack([l[0].weight.T for l in layers])
        self.x_bias = stack([l[0].bias[None] for l in layers])
        self.codes_weight = stack([l[1].weight.T for l in layers])
        self.head_weights = nn.ParameterList(
            [stack([l[2][i].weight.T for l in layers]) for i in range(len(layers[0][2]))]
        )
        self.head_biases = nn.ParameterList(
            [stack([l[2][i].bias[None] for l in layers]) for i in range(len(layers[0][2]))]
        )

    @classmethod
    def build(cls, n_features, n_codes, hidden_layer_sizes, seeds):
        """One member per seed, each initialised as ``build_critic`` would under that seed.

        Members are float32 whatever the caller's default dtype.
        """
        critics = []
        for seed in seeds:
            with seeded(seed), default_dtype(torch.float32):
                critics.append(build_critic(n_features, n_codes, hidden_layer_sizes))
        return cls(critics)

    # Members the forward pass computes (None: all). The trainer narrows it
    # to the members still training; gradients reach only their weights.
    active = None

    def _take(self, weight):
        return weight if self.active is None else weight[self.active]

    def member_tensors(self):
        return list(self.parameters())

    def select(self, members):
        """A stack of the given members (copies of their weights)."""
        return _Subset(self, torch.as_tensor(members, device=self.x_weight.device))

    def embed(self, x, codes):
        """First-layer terms of x and of the codes, each ``(M, B, width)``."""
        return (torch.baddbmm(self._take(self.x_bias), x, self._take(self.x_weight)),
                torch.bmm(codes, self._take(self.codes_weight)))

    def head(self, h):
        """Scores of pre-activations ``h`` of shape ``(M, P, width)``: ``(M, P)``; overwrites ``h``."""
        # In place: neither the pairs' sum nor baddbmm needs its output for
        # backward, and the pair activations are the step's largest tensors.
        for weight, bias in zip(self.head_weights, self.head_biases):
            h = torch.baddbmm(self._take(bias), h.relu_(), self._take(weight))
        return h.squeeze(-1)

    def member(self, m):
        """Member ``m`` as a :class:`~skinfomax.networks.Critic` (a copy of its weights)."""
        n_features, n_codes, width, *head_sizes = self.sizes
        critic = build_critic(n_features, n_codes, (width, *head_sizes))
        embed_x, embed_codes, linears = _linear_layers(critic)
        with torch.no_grad():
            embed_x.weight.copy_(self.x_weight[m].T)
            embed_x.bias.copy_(self.x_bias[m, 0])
            embed_codes.weight.copy_(self.codes_weight[m].T)
            for lin, weight, bias in zip(linears, self.head_weights, self.head_biases):
                lin.weight.copy_(weight[m].T)
                lin.bias.copy_(bias[m, 0])
        return critic.to(self.x_weight.device)

    def joint_and_shifted(self, x, codes, shifts):
        """Joint scores ``(M, B)`` and shifted ones ``(M, K * B)`` for the ``K`` roll offsets.

        Large ``B`` (validation parts) is scored in row blocks of bounded pairs.
        """
        hx, hc = self.embed(x, codes)
        partners = [hc, *(hc.roll(-s, dims=1) for s in shifts)]
        m, n_partners = hx.shape[0], len(partners)
        blocks = zip(*(pair_row_blocks(t, m * n_partners, dim=1) for t in (hx, *partners)))
        # Each block's scores as (M, partner, rows): joint first, then each shift.
        scores = torch.cat([
            self.head(torch.cat([hx_rows + p for p in partner_rows], dim=1))
            .view(m, n_partners, hx_rows.shape[1])
            for hx_rows, *partner_rows in blocks
        ], dim=2)
        return scores[:, 0], scores[:, 1:].reshape(m, -1)

    def score_matrix(self, x, codes):
        """All pairs: ``scores[m, i, j] = T_m(x_i, codes_j)``, shape ``(M, B_x, B_codes)``."""
        hx, hc = self.embed(x, codes)
        m, b, w = hx.shape
        blocks = [self.head((block[:, :, None, :] + hc[:, None, :, :]).reshape(m, -1, w))
                  for block in pair_row_blocks(hx, m * hc.shape[1], dim=1)]
        return torch.cat(blocks, dim=1).view(m, b, hc.shape[1])


class _Subset(StackedCritic):
    # Members of a stack, for evaluation (no gradients flow back).
    def __init__(self, stack, members):
        nn.Module.__init__(self)
        self.n_members, self.sizes = len(members), stack.sizes
        take = lambda p: nn.Parameter(p.detach()[members], requires_grad=False)
        self.x_weight, self.x_bias = take(stack.x_weight), take(stack.x_bias)
        self.codes_weight = take(stack.codes_weight)
        self.head_weights = nn.ParameterList([take(p) for p in stack.head_weights])
        self.head_biases = nn.ParameterList([take(p) for p in stack.head_biases])


class SingleCritic(nn.Module):
    """One critic module of any architecture as a stack of one member.

    The module must provide ``joint_and_shifted(x, codes, shift)`` and
    ``score_matrix(x, codes)`` (:class:`~skinfomax.networks.Critic` does).
    ``member_tensors()`` covers its whole state (weights and buffers such as
    batch-norm statistics), so early stopping restores all of it.
    """

    def __init__(self, critic):
        super().__init__()
        self.critic, self.n_members = critic, 1

    def member_tensors(self):
        return [t.unsqueeze(0) for t in self.critic.state_dict().values()]

    def joint_and_shifted(self, x, codes, shifts):
        pairs = [self.critic.joint_and_shifted(x[0], codes[0], s) for s in shifts]
        joint = pairs[0][0]
        return joint[None], torch.cat([shifted for _, shifted in pairs])[None]

    def score_matrix(self, x, codes):
        return self.critic.score_matrix(x[0], codes[0])[None]


class MeanCritic(nn.Module):
    """The critic whose scores are the mean of a stack's members' scores, on shared rows.

    Any function of (x, z) gives a valid held-out bound, so the mean of
    independently trained critics does too; averaging cancels much of what
    each member overfits to its training rows. A plain critic module
    (``x`` of shape ``(B, ...)``), for :func:`~skinfomax.estimation.batch_bounds`.
    """

    def __init__(self, stack):
        super().__init__()
        self.stack = stack

    def _members(self, t):
        return t[None].expand(self.stack.n_members, *t.shape)

    def joint_and_shifted(self, x, codes, shift):
        joint, shifted = self.stack.joint_and_shifted(self._members(x), self._members(codes),
                                                      [shift])
        return joint.mean(0), shifted.mean(0)

    def score_matrix(self, x, codes):
        return self.stack.score_matrix(self._members(x), self._members(codes)).mean(0)


# -- the training loop -----------------------------------------------------------
def _member_bounds(stack, x, codes, estimator, shifts, batch_size=None):
    """Each member's bound on its rows ``x[m]``, shape ``(M,)``.

    NWJ and DV pair every row with its joint code and with the codes
    ``shifts`` rows on; InfoNCE takes the score matrix of consecutive
    batches of ``batch_size`` rows (all rows when None).
    """
    if estimator == "infonce":
        n = x.shape[1]
        bounds = [infonce_bound(stack.score_matrix(x[:, s], codes[:, s]).float())
                  for s in batch_slices(n, batch_size or n, device=x.device)]
        return torch.stack(bounds).mean(0)
    joint, shifted = stack.joint_and_shifted(x, codes, shifts)
    return MI_BOUNDS[estimator](joint.float(), shifted.float())


def validation_shifts(n_valid):
    """Shifted pairings per validation row: ``VALIDATION_PAIRS / n_valid`` rounded, 1 to 4."""
    return min(4, max(1, round(VALIDATION_PAIRS / n_valid)))


class _Members:
    """One stack's training state: rows, batch order, early stopping, members still training."""

    def __init__(self, stack, train_rows, valid_rows, seeds, config):
        self.stack = stack
        self.train_rows = train_rows
        # Validation parts differ by at most a row between folds: keep the
        # common length, fixed for the whole run.
        n_valid = min(len(r) for r in valid_rows)
        self.valid_rows = torch.stack([r[:n_valid] for r in valid_rows])
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.stopping = EarlyStopping(stack.member_tensors(), config.n_iter_no_change,
                                      config.tol)
        self.training = list(range(len(seeds)))

    def shuffle(self, n_rows):
        """A fresh order of every member's training rows, ``n_rows`` each: ``(M, n_rows)``."""
        device = self.train_rows[0].device
        self.order = torch.stack([
            rows[torch.randperm(len(rows), generator=gen)[:n_rows].to(device)]
            for rows, gen in zip(self.train_rows, self.generators)
        ])

    def narrow(self):
        """Compute only the members still training (the stopped ones hold still)."""
        stopped = self.stopping.stopped.tolist()
        self.training = [m for m, s in enumerate(stopped) if not s]
        if isinstance(self.stack, StackedCritic):
            self.stack.active = (None if len(self.training) == len(stopped) else
                                 torch.as_tensor(self.training,
                                                 device=self.valid_rows.device))
        if len(self.training) < len(stopped):
            self.stopping.hold_stopped()


def _set_train(states, mode):
    for members in states:
        members.stack.train(mode)


def train_critics(stacks, X, source, train_rows, valid_rows, config, seed, member_seeds,
                  verbose=0, rates=None):
    """Train critic stacks together to maximise the bound; early-stopped per member.

    Every step draws one batch per member from that member's own training
    rows (all members the same number of rows: the parts of different folds
    differ by at most a row, so at most one row a member sits out a pass),
    evaluates every active stack in one batched pass, and takes one
    optimiser step (AdamW, Adam without decay) for all of them. After each
    epoch (a pass over the training rows, or :data:`EPOCH_BATCHES` batches
    of it when that is shorter) every member's bound on its own validation
    rows (fixed shifts, see :data:`VALIDATION_PAIRS`; fixed noise for
    posterior codes)
    updates its early stopping; a member that has not improved by
    ``config.tol`` for ``config.n_iter_no_change`` epochs is put back to its
    best weights and no longer moves, and the loop ends once every member
    has stopped. At the end every member holds its best weights.

    Members are independent: a member's weights depend only on its initial
    weights, rows, seed and the shared ``seed``, not on the other members
    (tested: a member trained in a stack equals it trained alone).

    Parameters
    ----------
    stacks : list of StackedCritic or SingleCritic
    X : torch.Tensor of shape (n_rows, ...)
        Inputs; the rows of all members (e.g. every fold's parts, each
        scaled by its fold's statistics) in one tensor.
    source : callable
        Code source: ``source(x, idx, noise)``.
    train_rows, valid_rows : list of list of torch.Tensor
        Per stack, per member: the row indices into ``X`` it trains on and is
        early-stopped on.
    config : CriticConfig
    seed : int
        Seeds the shifts and the posterior noise.
    member_seeds : list of list of int
        Per stack, per member: seeds of that member's batch order.
    verbose : int, default=0
        Shows a progress bar over epochs when positive.
    rates : list of (float, float), optional
        Per stack, its (learning rate, weight decay); ``config``'s by default.

    Returns
    -------
    best_epochs : list of ndarray
        Per stack, each member's epoch of best validation bound (0: never improved).
    """
    states = [_Members(*args, config)
              for args in zip(stacks, train_rows, valid_rows, member_seeds)]
    rates = rates or [(config.learning_rate, config.weight_decay)] * len(stacks)
    groups = [{"params": [p for p in stack.parameters() if p.requires_grad], "lr": lr,
               "weight_decay": decay} for stack, (lr, decay) in zip(stacks, rates, strict=True)]
    # One fused kernel per step for all members' weights (CPU and CUDA).
    optimizer = torch.optim.AdamW(groups, fused=X.device.type in ("cpu", "cuda"))
    cpu_gen, noise_gen = generators(seed, X.device)
    n_rows = min(len(r) for rows in train_rows for r in rows)
    n_valid = min(s.valid_rows.shape[1] for s in states)
    batch_size = min(config.batch_size, n_rows)
    epochs = batch_slices(n_rows, batch_size * EPOCH_BATCHES)  # the parts of a pass
    valid_shifts = [derangement_shift(n_valid, cpu_gen)
                    for _ in range(validation_shifts(n_valid))]
    progress = tqdm(total=config.max_iter, desc="critics", unit="epoch", disable=not verbose)
    try:
        for epoch in range(config.max_iter):
            active = [s for s in states if s.training]
            if not active:
                break
            if epoch % len(epochs) == 0:  # a new pass over the training rows
                for members in states:
                    members.shuffle(n_rows)
            _set_train(active, True)
            part = epochs[epoch % len(epochs)]
            for columns in batch_slices(len(part), batch_size):
                columns = columns + part[0]
                shift = derangement_shift(len(columns), cpu_gen)
                loss = 0.0
                for members in active:
                    idx = members.order[members.training][:, columns]
                    x = X[idx]
                    bounds = _member_bounds(members.stack, x, source(x, idx, noise_gen),
                                            config.estimator, [shift])
                    loss = loss - bounds.sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for members in active:
                    if len(members.training) < members.stack.n_members:
                        members.stopping.hold_stopped()
            _set_train(active, False)
            _validate(active, X, source, config, seed, valid_shifts)
            progress.update()
            progress.set_postfix(training=sum(len(s.training) for s in active))
    finally:
        progress.close()
    for members in states:
        members.stopping.restore()
        if isinstance(members.stack, StackedCritic):
            members.stack.active = None
    _set_train(states, False)
    return [s.stopping.best_epoch.cpu().numpy() for s in states]


@torch.no_grad()
def _validate(active, X, source, config, seed, shifts):
    # Stopped members are not scored: their early stopping no longer moves.
    _, noise_gen = generators(seed + 1, X.device)
    for members in active:
        idx = members.valid_rows[members.training]
        x = X[idx]
        scores = torch.full((members.stack.n_members,), -math.inf, dtype=torch.float32,
                            device=X.device)
        scores[members.training] = _member_bounds(
            members.stack, x, source(x, idx, noise_gen), config.estimator, shifts,
            config.batch_size)
        members.stopping.update(scores)
        members.narrow()


# -- held-out evaluation -------------------------------------------------------------
def _all_pairs_outputs(critic, x, codes, estimator, influence):
    # Every mismatched pair of the batch is a marginal draw: the same bound,
    # far less variance than one shifted pairing. InfoNCE uses them anyway.
    scores = score_matrix(critic, x, codes)
    if estimator == "infonce":
        outputs, terms = (scores,), bound_influence
    else:
        outputs, terms = (scores.diagonal(), off_diagonal(scores)), all_pairs_influence
    return outputs, terms(estimator, scores) if influence else None


@torch.no_grad()
def batch_bounds(critic, X, source, estimator, batch_size, seed, influence=False,
                 pairs="shift"):
    """Per-batch bound values on fixed, unshuffled batches of ``X`` (a tensor).

    Every batch has at least ``batch_size`` rows (``floor(n / batch_size)``
    near-equal slices); ``seed`` fixes the shifts and the posterior noise, so
    the values are repeatable. ``pairs`` says which mismatched pairs NWJ and
    DV take as their marginal sample: "shift" one shifted pairing, "all"
    every mismatched pair of a batch (``B - 1`` times the critic
    evaluations), "blocks" every mismatched pair within blocks of
    :data:`~skinfomax.training.PAIR_BLOCK` rows (``score``'s held-out bound;
    no influence terms). With
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
        if pairs == "blocks":
            values.append(held_out_bound(critic, x, codes, estimator))
            continue
        if pairs == "all":
            outputs, batch_terms = _all_pairs_outputs(critic, x, codes, estimator, influence)
        else:
            shift = derangement_shift(x.shape[0], cpu_gen)
            outputs = critic_scores(critic, x, codes, estimator, shift)
            batch_terms = bound_influence(estimator, *outputs) if influence else None
        values.append(estimator_bound(estimator, outputs))
        terms.append(batch_terms)
    values = torch.stack(values).cpu().numpy().astype(float)
    if influence:
        return values, torch.cat(terms).cpu().numpy().astype(float)
    return values


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


# -- mutual_information's protocol ------------------------------------------------------
def _split(items, n_groups):
    """``items`` dealt round-robin into at most ``n_groups`` non-empty groups."""
    return [items[k::n_groups] for k in range(min(n_groups, len(items)))]


def _job(stacks, X, Z, train_rows, valid_rows, member_seeds, rates, config, seed, verbose):
    """The keyword arguments of one :func:`train_critics` call on given samples."""
    return dict(stacks=stacks, X=X, source=FixedCodes(Z), train_rows=train_rows,
                valid_rows=valid_rows, config=config, seed=seed, member_seeds=member_seeds,
                verbose=verbose, rates=rates)


def _trained_stacks(job):
    train_critics(**job)
    return job["stacks"]


def _train_jobs(jobs, n_jobs):
    """Every job's stacks, trained by :func:`train_critics`; jobs in parallel processes.

    A critic's training does not depend on the critics trained beside it
    (tested), so splitting a call's critics into jobs changes no critic
    beyond float rounding. Worker processes (joblib's loky) start with
    ``cpu_count // n_jobs`` threads each, so the workers do not oversubscribe.
    """
    if n_jobs == 1 or len(jobs) == 1:
        return [_trained_stacks(job) for job in jobs]
    return Parallel(n_jobs=min(n_jobs, len(jobs)))(delayed(_trained_stacks)(job) for job in jobs)


@dataclass(frozen=True)
class _FoldRows:
    """Row indices of one fold's parts in the stacked tensors of :func:`estimate_mi`."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor


def _stacked_folds(folds, device):
    """Every fold's parts in one X and one Z tensor, and each fold's rows in them."""
    X = torch.cat([torch.as_tensor(np.concatenate(f[0::2]), device=device) for f in folds])
    Z = torch.cat([torch.as_tensor(np.concatenate(f[1::2]), device=device) for f in folds])
    rows, start = [], 0
    for fold in folds:
        n_train, n_valid, n_test = (len(fold[i]) for i in (0, 2, 4))
        r = torch.arange(start, start + n_train + n_valid + n_test, device=device)
        rows.append(_FoldRows(r[:n_train], r[n_train:n_train + n_valid], r[n_train + n_valid:]))
        start += len(r)
    return X, Z, rows


def _mean_critic_bounds(stack, members, X, Z, rows, config, seed, influence):
    """All-pairs batch bounds of the mean critic of ``members`` on ``rows`` (numpy)."""
    critic = MeanCritic(stack.select(members))
    return batch_bounds(critic, X[rows], FixedCodes(Z[rows]), config.estimator,
                        config.batch_size, seed, influence=influence, pairs="all")


def _choose(candidates, X, Z, fold, config, seed, n_members, device, verbose, n_jobs=1):
    """Pick one :class:`CriticCandidate` on one fold's validation part.

    Every candidate (``n_members`` members each, its own learning rate and
    weight decay) trains on the fold's train part, early-stopped on one half
    of its validation part; early stopping flatters the most flexible
    critics on the rows it stops on, so the candidates are compared on the
    other half, on the same fixed batches with every mismatched pair a
    marginal draw (a paired comparison), by :func:`one_standard_error_choice`.
    Returns the choice and every candidate's bound on the comparison half.
    """
    half = len(fold.valid) // 2
    stop, compare = fold.valid[:half], fold.valid[half:]
    seeds = [seed + k for k in range(n_members)]
    # One stack per candidate: padding narrow candidates to the widest (one
    # pass for all) was slower, the widest's arithmetic dominating.
    groups, jobs = _split(candidates, n_jobs), []
    for group in groups:
        jobs.append(_job(
            [StackedCritic.build(X.shape[1], Z.shape[1], c.sizes, seeds).to(device)
             for c in group], X, Z,
            [[fold.train] * n_members] * len(group), [[stop] * n_members] * len(group),
            [seeds] * len(group), [(c.learning_rate, c.weight_decay) for c in group],
            config, seed, verbose))
    stack_of = dict(zip([c for group in groups for c in group],
                        [stack for stacks in _train_jobs(jobs, n_jobs) for stack in stacks]))
    values, terms = {}, {}
    for candidate in candidates:
        batch_values, terms[candidate] = _mean_critic_bounds(
            stack_of[candidate], list(range(n_members)), X, Z, compare, config, seed + 2, True)
        values[candidate] = float(batch_values.mean())
    return one_standard_error_choice(values, terms), values


def estimate_mi(folds, candidates, config, seed, device, n_critics=1, verbose=0, n_jobs=1):
    """Train critics on given samples, pick an architecture on validation rows, bound MI.

    With several candidates, :func:`_choose` picks one on the first fold
    (one member per candidate). The chosen one is then trained in every
    fold, ``n_critics`` members each, all folds' members as one batched
    stack (one per job with ``n_jobs``; :func:`train_critics`), each
    early-stopped on its fold's whole validation part; each fold's test part is scored by
    the mean critic of its members, every mismatched pair of a batch a
    marginal draw.

    Parameters
    ----------
    folds : sequence of tuple of ndarray
        One ``(X_train, Z_train, X_valid, Z_valid, X_test, Z_test)`` tuple
        (float32, scaled by that fold's train part) per fold; the test parts
        of several folds partition the samples (cross-fitting), so every
        sample is scored once by critics that never saw it.
    candidates : sequence of CriticCandidate
        Critics to try, each trained at its own learning rate and weight
        decay (``config``'s are not used), simplest first.
    config : CriticConfig
    seed : int
    device : torch.device
    n_critics : int, default=1
        Members per fold (fold ``f`` seeds ``seed + f * n_critics, ...``); a
        fold's bound uses the mean of its members' scores.
    verbose : int, default=0
        Progress bars over the training epochs when positive.
    n_jobs : int, default=1
        Worker processes: the candidates, and then the folds, are split into
        this many groups, each trained as its own batched stack in its own
        process (:func:`_train_jobs`).

    Returns
    -------
    estimate, se : float
        Mean of the per-batch bounds on the test parts and its standard error.
    chosen : CriticCandidate
        The candidate evaluated.
    validation : dict
        Bound of every candidate on the comparison half of the first fold's
        validation part, keyed by candidate (empty for one candidate).
    """
    X, Z, rows = _stacked_folds(folds, device)
    if len(candidates) == 1:
        chosen, validation = candidates[0], {}
    else:
        # One member per candidate: the choice needs a ranking, not the best
        # estimate; two took 1.1-1.6x as long at equal error (docs/performance.md).
        chosen, validation = _choose(candidates, X, Z, rows[0], config, seed, 1, device,
                                     verbose, n_jobs)
    # Fold f's critics are seeded seed + f * n_critics + k, whichever job trains them.
    groups = _split(list(range(len(rows))), n_jobs)
    jobs = []
    for folds_of_job in groups:
        seeds = [seed + f * n_critics + k for f in folds_of_job for k in range(n_critics)]
        jobs.append(_job(
            [StackedCritic.build(X.shape[1], Z.shape[1], chosen.sizes, seeds).to(device)], X, Z,
            [[rows[f].train for f in folds_of_job for _ in range(n_critics)]],
            [[rows[f].valid for f in folds_of_job for _ in range(n_critics)]],
            [seeds], [(chosen.learning_rate, chosen.weight_decay)], config, seed, verbose))
    test = []
    for folds_of_job, (stack,) in zip(groups, _train_jobs(jobs, n_jobs)):
        for i, f in enumerate(folds_of_job):
            members = list(range(i * n_critics, (i + 1) * n_critics))
            test.append(_mean_critic_bounds(stack, members, X, Z, rows[f].test, config,
                                            seed + 1, False))
    return (*mean_and_se(np.concatenate(test)), chosen, validation)


# -- the fresh critic on a frozen encoder ---------------------------------------------
def refit_critic_bounds(encoder, critic, X, *, estimator, batch_size, max_iter, seed,
                        verbose=0):
    """Train a fresh critic on a frozen encoder's posterior draws; its held-out batch bounds.

    The protocol of ``InfoMaxVAETransformer.mi_bounds(refit_critic=True)``:
    half of the rows (``n // 2``, drawn with ``seed``) is held out for
    evaluation; of the other half a fifth (at least 2 rows) early-stops and
    the rest trains a copy of ``critic`` with re-initialised weights (every
    submodule's ``reset_parameters`` under ``seed``), which sees fresh
    posterior draws ``[z, c]`` at every step (Adam, learning rate 1e-3,
    patience 10 epochs, at most ``max_iter`` epochs), through
    :func:`train_critics`. Neither ``encoder`` nor ``critic`` changes.

    Parameters
    ----------
    encoder : torch.nn.Module
        ``encoder(x) -> (z_mean, z_log_var, c)``.
    critic : torch.nn.Module
        The trained critic, whose architecture is copied.
    X : ndarray of shape (n_samples, ...)
        At least 8 rows; sent to the encoder's device as float32.
    estimator : {"nwj", "dv", "infonce"}
    batch_size : int
        Capped at the size of each part (and at least 2).
    max_iter : int
    seed : int
    verbose : int, default=0
        Progress bar over the fresh critic's epochs when positive.

    Returns
    -------
    values : ndarray
        The fresh critic's bound on each fixed batch of the evaluation rows
        (every mismatched pair within blocks of ``PAIR_BLOCK`` rows a
        marginal draw, as ``score``).
    eval_rows : ndarray of int
        The rows of ``X`` evaluated, in batch order: compute anything that
        must match the lower bound's rows (the encoder's rate) on ``X[eval_rows]``.
    """
    device = next(encoder.parameters()).device
    X = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
    n = X.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    n_eval = n // 2
    n_valid = max(2, (n - n_eval) // 5)
    eval_rows, valid_rows, train_rows = order[:n_eval], order[n_eval:n_eval + n_valid], \
        order[n_eval + n_valid:]
    config = CriticConfig(
        estimator=estimator, max_iter=max_iter,
        batch_size=max(2, min(batch_size, len(train_rows), n_valid, n_eval)),
    )
    fresh = copy.deepcopy(critic)
    with seeded(seed):
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    source = PosteriorCodes(encoder)
    encoder_mode = encoder.training
    encoder.eval()
    try:
        train_critics([SingleCritic(fresh)], X, source, [[train_rows]], [[valid_rows]],
                      config, seed, [[seed]], verbose)
        values = batch_bounds(fresh, X[eval_rows], source, estimator, config.batch_size,
                              seed + 1, pairs="blocks")
    finally:
        encoder.train(encoder_mode)
    return values, eval_rows.cpu().numpy()
