"""Critics and the MI lower bound they give, one for the engine, ``mi_bounds`` and
:func:`skinfomax.mutual_information`. A critic *stack* scores ``M`` critics at once (a leading
member axis on ``x``, ``codes`` and scores); codes come from a *code source*
``source(x, idx, noise) -> codes`` (``idx``: row indices of any leading shape).
"""

import copy
import math
import warnings
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from ._networks import build_critic
from ._objectives import (CRITIC_BOUND, MI_BOUNDS, all_pairs_influence, bound_influence,
                          codes_from_noise, derangement_shift, infonce_bound, off_diagonal,
                          soft_clip, standard_normal)
from ._utils import (EarlyStopping, batch_slices, deferred_interrupt, default_dtype,
                     generators, named_seed, pair_row_blocks, seeded, spawn_seeds, take_rows)

# Held-out NWJ / DV bounds (pairs="blocks") pair rows within blocks of at least this many:
# 15 pairs per row come near all pairs' standard error at a fraction of the critic passes.
PAIR_BLOCK = 16
# mutual_information's InfoNCE trains and early-stops on score matrices within blocks of this
# many rows (B * INFONCE_BLOCK pairs a step, not B^2); its held-out bound takes whole batches.
INFONCE_BLOCK = 16
# Pairs per member NWJ / DV early stopping aims at (1 to 4 shifted pairings per row).
VALIDATION_PAIRS = 4096
# score's critic after fit: at most this many training rows, epochs and share of the fit's VAE
# steps (a critic step costs about 40% of an InfoMax step: it adds at most ~10% to a fit).
SCORE_CRITIC_ROWS = 65_536
SCORE_CRITIC_EPOCHS = 100
SCORE_CRITIC_STEP_SHARE = 0.25
# The learning rate of every fresh critic (score's, mi_bounds' refitted one), whatever
# critic_learning_rate is: at the paper's 1e-5 a fresh critic stayed near its initialisation
# and scored 0.30 nats for MNIST codes a 1e-3 critic scores at 5 (docs/science.md, section 4).
FRESH_CRITIC_LEARNING_RATE = 1e-3


# -- code sources ----------------------------------------------------------------------
def reparameterise(mean, log_var, c, noise):
    """A posterior sample ``[mean + eps * std, c]`` with ``eps`` drawn from ``noise``."""
    return codes_from_noise(mean, log_var, c, standard_normal(mean.shape, noise, mean.device))


class FixedCodes:
    """Code source for given samples: ``codes = Z[idx]``."""

    def __init__(self, Z):
        self.Z = Z

    def __call__(self, x, idx, noise):
        return take_rows(self.Z, idx)


class CachedPosterior:
    """Code source drawing ``[z, c]`` from a frozen encoder's posterior, computed once for X."""

    def __init__(self, mean, log_var, c):
        self.mean, self.log_var, self.c = mean, log_var, c

    @classmethod
    @torch.no_grad()
    def of(cls, encoder, X, chunk):
        """The posterior parameters of the rows of X, in chunks of ``chunk`` rows."""
        mode = encoder.training
        encoder.eval()
        try:
            parts = [[t.float() for t in encoder(x)] for x in X.split(chunk)]
        finally:
            encoder.train(mode)
        return cls(*(torch.cat(p) for p in zip(*parts)))

    def rows(self, idx):
        """The source of rows ``idx`` alone (their indices become 0, 1, ...)."""
        return CachedPosterior(*(take_rows(t, idx) for t in (self.mean, self.log_var, self.c)))

    def __call__(self, x, idx, noise):
        drawn = self.rows(idx.reshape(-1))
        return reparameterise(drawn.mean, drawn.log_var, drawn.c, noise).view(*idx.shape, -1)


# -- critic stacks -----------------------------------------------------------------------
class StackedCritic(nn.Module):
    """``M`` MLP critics of one architecture as stacked ``(M, in, out)`` weights, one ``baddbmm``
    a layer; member ``m`` computes what its :class:`~skinfomax.Critic` does, to float rounding."""

    def __init__(self, x_weight, x_bias, codes_weight, head_weights, head_biases,
                 requires_grad=True):
        super().__init__()
        param = lambda t: nn.Parameter(t, requires_grad=requires_grad)
        self.x_weight, self.x_bias = param(x_weight), param(x_bias)
        self.codes_weight = param(codes_weight)
        self.head_weights = nn.ParameterList([param(w) for w in head_weights])
        self.head_biases = nn.ParameterList([param(b) for b in head_biases])
        self.n_members = x_weight.shape[0]
        # (n_features, n_codes, joint width, head widths ...), as build_critic takes them.
        self.sizes = (x_weight.shape[1], codes_weight.shape[1], *(w.shape[1] for w in head_weights))
        self._members = None  # the members the forward pass computes (None: all)

    @classmethod
    def from_critics(cls, critics):
        """A stack of copies of the weights of :class:`~skinfomax.Critic` modules (MLP layout)."""
        layers = [c.linear_layers() for c in critics]
        stack = lambda tensors: torch.stack([t.detach() for t in tensors])
        n_head = len(layers[0][2])
        return cls(
            stack([embed_x.weight.T for embed_x, _, _ in layers]),
            stack([embed_x.bias[None] for embed_x, _, _ in layers]),
            stack([embed_codes.weight.T for _, embed_codes, _ in layers]),
            [stack([head[i].weight.T for _, _, head in layers]) for i in range(n_head)],
            [stack([head[i].bias[None] for _, _, head in layers]) for i in range(n_head)])

    @classmethod
    def build(cls, n_features, n_codes, hidden_layer_sizes, seeds):
        """One float32 member per seed, initialised as ``build_critic`` under that seed."""
        critics = []
        for seed in seeds:
            with seeded(seed), default_dtype(torch.float32):
                critics.append(build_critic(n_features, n_codes, hidden_layer_sizes))
        return cls.from_critics(critics)

    def member_tensors(self):
        """Every weight with the member axis first (for early stopping's snapshots)."""
        return list(self.parameters())

    def compute_only(self, members):
        """Compute only ``members`` (indices; None: all) from now on, inputs and outputs then
        having ``len(members)`` members."""
        self._members = None if members is None else torch.as_tensor(
            members, device=self.x_weight.device)

    def _take(self, weight):
        return weight if self._members is None else weight[self._members]

    def select(self, members):
        """A frozen stack of copies of the given members' weights."""
        index = torch.as_tensor(members, device=self.x_weight.device)
        take = lambda t: t.detach()[index]
        return StackedCritic(take(self.x_weight), take(self.x_bias), take(self.codes_weight),
                             [take(w) for w in self.head_weights],
                             [take(b) for b in self.head_biases], requires_grad=False)

    def _embed(self, x, codes):
        """First-layer terms of x and of the codes, each ``(M, B, width)``."""
        return (torch.baddbmm(self._take(self.x_bias), x, self._take(self.x_weight)),
                torch.bmm(codes, self._take(self.codes_weight)))

    def _head(self, h):
        """Scores ``(M, P)`` of pre-activations ``(M, P, width)``; ReLU in place (these are the
        largest tensors, and no op needs its output for backward)."""
        for weight, bias in zip(self.head_weights, self.head_biases):
            h = torch.baddbmm(self._take(bias), h.relu_(), self._take(weight))
        return h.squeeze(-1)

    def joint_and_shifted(self, x, codes, shifts):
        """Joint scores ``(M, B)`` and shifted ones ``(M, K * B)`` for ``K`` roll offsets."""
        hx, hc = self._embed(x, codes)
        partners = [hc, *(hc.roll(-s, dims=1) for s in shifts)]
        m, n_partners = hx.shape[0], len(partners)
        blocks = zip(*(pair_row_blocks(t, m * n_partners, dim=1) for t in (hx, *partners)))
        # Each block's scores as (M, partner, rows): joint first, then each shift.
        scores = torch.cat([
            self._head(torch.cat([hx_rows + p for p in partner_rows], dim=1))
            .view(m, n_partners, hx_rows.shape[1])
            for hx_rows, *partner_rows in blocks
        ], dim=2)
        return scores[:, 0], scores[:, 1:].reshape(m, -1)

    def score_matrix(self, x, codes):
        """All pairs: ``scores[m, i, j] = T_m(x_i, codes_j)``, shape ``(M, B_x, B_codes)``."""
        hx, hc = self._embed(x, codes)
        m, b, w = hx.shape
        blocks = [self._head((block[:, :, None, :] + hc[:, None, :, :]).reshape(m, -1, w))
                  for block in pair_row_blocks(hx, m * hc.shape[1], dim=1)]
        return torch.cat(blocks, dim=1).view(m, b, hc.shape[1])


class SingleCritic:
    """Any critic module with :class:`~skinfomax.Critic`'s methods as a stack of one (a view:
    training the stack trains the module)."""

    n_members = 1

    def __init__(self, critic):
        self.critic = critic

    def parameters(self):
        return self.critic.parameters()

    def train(self, mode=True):
        self.critic.train(mode)

    def compute_only(self, members):
        pass  # one member: the trainer never narrows it to fewer

    def member_tensors(self):
        """Weights and buffers (batch-norm statistics too), member axis first."""
        return [t.unsqueeze(0) for t in self.critic.state_dict().values()]

    def joint_and_shifted(self, x, codes, shifts):
        pairs = [self.critic.joint_and_shifted(x[0], codes[0], s) for s in shifts]
        return pairs[0][0][None], torch.cat([shifted for _, shifted in pairs])[None]

    def score_matrix(self, x, codes):
        # Row blocks of bounded pairs: a module's score matrix holds every pair's activations.
        x, codes = x[0], codes[0]
        blocks = pair_row_blocks(x, codes.shape[0])
        return torch.cat([self.critic.score_matrix(block, codes) for block in blocks])[None]


class MeanCritic:
    """The mean of a stack's members' scores as a stack of one (a valid critic, cancelling much
    of what each member overfits)."""

    n_members = 1

    def __init__(self, stack):
        self.stack = stack

    def _members(self, t):
        return t.expand(self.stack.n_members, *t.shape[1:])

    def train(self, mode=True):
        self.stack.train(mode)

    def joint_and_shifted(self, x, codes, shifts):
        joint, shifted = self.stack.joint_and_shifted(self._members(x), self._members(codes),
                                                      shifts)
        return joint.mean(0, keepdim=True), shifted.mean(0, keepdim=True)

    def score_matrix(self, x, codes):
        codes = self._members(codes)
        blocks = pair_row_blocks(x, codes.shape[1], dim=1)
        return torch.cat([self.stack.score_matrix(self._members(block), codes).mean(0)
                          for block in blocks])[None]


# -- the bound -----------------------------------------------------------------------------
def critic_cap_for(batch_size):
    """``1 + log(batch_size)``, NWJ and DV's cap on critic outputs: one mismatched pair's
    ``exp(T - 1)`` is then at most ``batch_size``, lowering a batch's bound by at most a nat."""
    return 1.0 + math.log(batch_size)


@dataclass(frozen=True)
class Bound:
    """One lower bound on I(x; codes): ``bound(critic, x, codes)`` gives its float32 values
    ``(M,)``, one per member of a stack, row ``i`` of ``x`` and ``codes`` a joint pair.
    ``estimator``: "nwj", "dv" or "infonce". ``cap``: NWJ and DV's soft cap on critic outputs
    (:func:`critic_cap_for`; None: only against float32 overflow). ``pairs``: NWJ and DV's
    draws from p(x) p(z): ``(x_i, codes_{i+s})`` for each roll offset of ``shifts`` ("shift";
    a 0-dim tensor lets a CUDA graph replay new offsets), every pair within blocks of
    :data:`PAIR_BLOCK` rows ("blocks") or every pair ("all"). ``block``: the rows each InfoNCE
    row is normalised over (None: the whole batch)."""

    estimator: str = "nwj"
    cap: float | None = None
    pairs: str = "shift"
    block: int | None = None

    def __call__(self, critic, x, codes, shifts=(1,)):
        return self._values(_outputs(self, critic, x, codes, shifts))

    def _values(self, outputs):
        if self.estimator == "infonce":
            return torch.stack([infonce_bound(scores) for scores in outputs]).mean(0)
        joint, marginal = outputs[:2]
        capped = () if self.cap is None else (self.cap,)
        return MI_BOUNDS[self.estimator](joint, marginal, *capped)


def _outputs(bound, critic, x, codes, shifts):
    """InfoNCE's score matrices (one per block), else joint and mismatched outputs (and, for
    "blocks" / "all", the last block's matrix)."""
    if bound.estimator == "infonce":
        n = x.shape[1]
        parts = batch_slices(n, bound.block or n, device=x.device)
        parts = parts if len(parts) > 1 else [slice(None)]
        return [critic.score_matrix(x[:, s], codes[:, s]).float() for s in parts]
    if bound.pairs == "shift":
        return [t.float() for t in critic.joint_and_shifted(x, codes, shifts)]
    n_blocks = max(1, x.shape[1] // PAIR_BLOCK) if bound.pairs == "blocks" else 1
    joint, marginal = [], []
    for x_block, codes_block in zip(x.tensor_split(n_blocks, dim=1),
                                    codes.tensor_split(n_blocks, dim=1)):
        scores = critic.score_matrix(x_block, codes_block).float()
        joint.append(scores.diagonal(dim1=-2, dim2=-1))
        marginal.append(off_diagonal(scores))
    return torch.cat(joint, dim=-1), torch.cat(marginal, dim=-1), scores


def influence_terms(bound, critic, x, codes, shifts=(1,)):
    """``bound``'s values and per-sample terms ``(B,)`` of a stack of one, whose mean has the
    bound's variance to first order (for paired standard errors); not for ``pairs="blocks"``."""
    outputs = _outputs(bound, critic, x, codes, shifts)
    if bound.estimator == "infonce":
        terms = torch.cat([bound_influence("infonce", scores[0]) for scores in outputs])
    elif bound.pairs == "shift":
        terms = bound_influence(bound.estimator, outputs[0][0], outputs[1][0])
    elif bound.pairs == "all":
        terms = all_pairs_influence(bound.estimator, outputs[2][0])
    else:
        raise ValueError("Influence terms are defined for pairs='shift' or 'all', not 'blocks'.")
    return bound._values(outputs), terms


@torch.no_grad()
def marginal_terms(bound, critic, x, codes):
    """``exp(T(x_i, z_j) - 1)`` of a held-out NWJ bound's pairs (one member, capped), whose
    mean is the marginal term."""
    _, marginal, _ = _outputs(replace(bound, pairs="blocks"), critic, x, codes, ())
    return torch.exp(soft_clip(marginal[0], CRITIC_BOUND if bound.cap is None else bound.cap) - 1.0)


def fixed_batches(X, source, batch_size, seed):
    """``(x, codes)`` of consecutive batches of ``X``, codes drawn from ``source`` with noise
    from ``seed``: the same on every call."""
    _, noise = generators(seed, X.device)
    for idx in batch_slices(X.shape[0], batch_size, device=X.device):
        x = take_rows(X, idx)
        yield x, source(x, idx, noise)


@torch.no_grad()
def batch_bounds(critic, batches, bound):
    """The held-out bound of a stack of one on each ``(x, codes)`` of ``batches``, a tensor."""
    critic.train(False)
    return torch.stack([bound(critic, x[None], codes[None])[0] for x, codes in batches])


# -- the training loop -------------------------------------------------------------------
@dataclass(frozen=True)
class CriticConfig:
    """How to train critics to maximise ``bound``. An epoch is a pass over a member's rows or
    ``epoch_batches`` batches, whichever is shorter (a critic's steps do not grow with the
    sample). ``weight_decay`` is AdamW's (0 is Adam)."""

    bound: Bound = Bound()
    batch_size: int = 128
    max_iter: int = 100
    learning_rate: float = 1e-3
    n_iter_no_change: int = 10
    tol: float = 1e-3
    weight_decay: float = 0.0
    epoch_batches: int | None = 16


class CriticCandidate(NamedTuple):
    """One critic to try: layer sizes (first: the joint layer) and its AdamW settings."""

    sizes: tuple
    learning_rate: float
    weight_decay: float


def validation_shifts(n_valid):
    """Shifted pairings per validation row: ``VALIDATION_PAIRS / n_valid``, 1 to 4."""
    return min(4, max(1, round(VALIDATION_PAIRS / n_valid)))


class _Members:
    """One stack's training state: rows, batch order, early stopping, members still training."""

    def __init__(self, stack, train_rows, valid_rows, seeds, config):
        self.stack, self.train_rows = stack, train_rows
        # Folds' validation parts differ by at most a row: keep the common length.
        n_valid = min(len(r) for r in valid_rows)
        self.valid_rows = torch.stack([r[:n_valid] for r in valid_rows])
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.stopping = EarlyStopping(stack.member_tensors(), config.n_iter_no_change, config.tol)
        self.training, self.diverged = list(range(len(seeds))), []

    def shuffle(self, n_rows):
        """A fresh order of every member's training rows, ``n_rows`` each: ``(M, n_rows)``."""
        device = self.train_rows[0].device
        self.order = torch.stack([
            rows[torch.randperm(len(rows), generator=gen)[:n_rows].to(device)]
            for rows, gen in zip(self.train_rows, self.generators)
        ])

    def update(self, scores, epoch):
        """Early stopping on an epoch's scores (a non-finite one stops its member), one sync."""
        diverged = ~torch.isfinite(scores) & ~self.stopping.stopped
        self.stopping.stop(diverged)
        self.stopping.update(torch.where(diverged, -math.inf, scores))
        stopped, diverged = torch.stack([self.stopping.stopped, diverged]).tolist()
        self.diverged += [(m, epoch) for m, d in enumerate(diverged) if d]
        self.training = [m for m, s in enumerate(stopped) if not s]
        self.stack.compute_only(None if len(self.training) == len(stopped) else self.training)
        if len(self.training) < len(stopped):
            self.stopping.hold_stopped()


def epoch_layout(n_rows, config):
    """The batch size and the epochs (row ranges, near-equal parts) of training on n_rows."""
    batch_size = min(config.batch_size, n_rows)
    return batch_size, batch_slices(n_rows, batch_size * (config.epoch_batches or n_rows))


def epoch_steps(n_rows, config):
    """Optimiser steps in the shortest epoch of :func:`train_critics` on ``n_rows`` rows."""
    batch_size, epochs = epoch_layout(n_rows, config)
    return max(1, min(len(part) for part in epochs) // batch_size)


def train_critics(stacks, X, source, train_rows, valid_rows, config, seed, member_seeds,
                  verbose=0, rates=None):
    """Train critic stacks together to maximise the bound, early-stopped per member: a step
    takes a batch per member from its ``train_rows`` (per stack, per member: indices into
    ``X``) and one AdamW step (``rates``: per stack, learning rate and weight decay); each
    epoch, a member's bound on its ``valid_rows`` drives its early stopping, stopped and
    diverged (warned) members holding their best weights, as all do at the end. Ctrl-C stops
    after the step and is re-raised with a RuntimeWarning. Returns, per stack, each member's
    best epoch (0: never improved)."""
    states = [_Members(*args, config) for args in zip(stacks, train_rows, valid_rows, member_seeds)]
    rates = rates or [(config.learning_rate, config.weight_decay)] * len(stacks)
    groups = [{"params": [p for p in stack.parameters() if p.requires_grad], "lr": lr,
               "weight_decay": decay} for stack, (lr, decay) in zip(stacks, rates, strict=True)]
    optimizer = torch.optim.AdamW(groups, fused=X.device.type in ("cpu", "cuda"))
    train_seed, valid_seed = spawn_seeds(seed, 2)
    cpu_gen, noise_gen = generators(train_seed, X.device)
    n_rows = min(len(r) for rows in train_rows for r in rows)
    n_valid = min(s.valid_rows.shape[1] for s in states)
    batch_size, epochs = epoch_layout(n_rows, config)
    valid_shifts = [derangement_shift(n_valid, cpu_gen) for _ in range(validation_shifts(n_valid))]
    progress = tqdm(total=config.max_iter, desc="critics", unit="epoch", disable=not verbose)
    with deferred_interrupt() as interrupt:
        try:
            for epoch in range(config.max_iter):
                active = [s for s in states if s.training]
                if not active or interrupt.requested:
                    break
                if epoch % len(epochs) == 0:  # a new pass over the training rows
                    for members in states:
                        members.shuffle(n_rows)
                _train_part(active, X, source, epochs[epoch % len(epochs)], batch_size,
                            config, optimizer, cpu_gen, noise_gen, interrupt)
                if interrupt.requested:  # mid-epoch: not validated, as the engine records none
                    break
                _validate(active, X, source, config, valid_seed, valid_shifts, epoch + 1)
                progress.update()
                progress.set_postfix(training=sum(len(s.training) for s in active))
        finally:
            progress.close()
            for members in states:
                members.stopping.restore()
                members.stack.compute_only(None)
                members.stack.train(False)
    _warn_diverged(states)
    if interrupt.requested:
        warnings.warn("Critic training interrupted: every critic keeps its best epoch so far.",
                      RuntimeWarning, stacklevel=2)
        raise KeyboardInterrupt
    return [s.stopping.best_epoch.cpu().numpy() for s in states]


def _train_part(active, X, source, part, batch_size, config, optimizer, cpu_gen, noise_gen,
                interrupt):
    """One epoch's optimiser steps: the batches of ``part`` (columns of each member's order)."""
    for members in active:
        members.stack.train(True)
    for columns in batch_slices(len(part), batch_size):
        if interrupt.requested:
            break
        columns = columns + part[0]
        shift = derangement_shift(len(columns), cpu_gen)
        loss = 0.0
        for members in active:
            idx = members.order[members.training][:, columns]
            x = take_rows(X, idx)
            loss = loss - config.bound(members.stack, x, source(x, idx, noise_gen), [shift]).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for members in active:
            if len(members.training) < members.stack.n_members:
                members.stopping.hold_stopped()
    for members in active:
        members.stack.train(False)


@torch.no_grad()
def _validate(active, X, source, config, seed, shifts, epoch):
    # Stopped members are not scored: their early stopping no longer moves.
    bound = replace(config.bound, block=config.bound.block or config.batch_size)
    _, noise_gen = generators(seed, X.device)
    for members in active:
        idx = members.valid_rows[members.training]
        x = take_rows(X, idx)
        scores = torch.full((members.stack.n_members,), -math.inf, dtype=torch.float32,
                            device=X.device)
        scores[members.training] = bound(members.stack, x, source(x, idx, noise_gen), shifts)
        members.update(scores, epoch)


def _warn_diverged(states):
    diverged = [(k, m, e) for k, s in enumerate(states) for m, e in s.diverged]
    if diverged:
        where = ", ".join(f"stack {k} member {m} in epoch {e}" for k, m, e in diverged[:5])
        warnings.warn(
            f"{len(diverged)} critic(s) diverged ({where}): their bound became NaN or "
            "infinite; each keeps the weights of its best epoch. A lower learning rate or "
            "more weight decay avoids it.", RuntimeWarning, stacklevel=3)


# -- the fresh critic on a frozen encoder ------------------------------------------------
def fresh_critic(critic, X, source, *, bound, batch_size, max_iter, seed, max_steps=None,
                 verbose=0):
    """The fresh-critic protocol of ``score`` after ``fit`` and ``mi_bounds(refit_critic=True)``:
    a re-initialised copy of ``critic`` trained at :data:`FRESH_CRITIC_LEARNING_RATE` on
    ``source``, a :class:`CachedPosterior` of X's rows in random order. The first fifth (2 to
    :data:`VALIDATION_PAIRS`) early-stops, the rest trains (all rows if under 2 are left), for
    at most ``max_iter`` epochs and the whole epochs that fit in ``max_steps`` (at least one).
    Streams "init", "train" and "member" of ``seed``; modules without ``reset_parameters`` keep
    their weights. Returns it and its batch size."""
    fresh = copy.deepcopy(critic)
    with seeded(named_seed(seed, "init")):
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    rows = torch.arange(X.shape[0], device=X.device)
    n_valid = max(2, min(len(rows) // 5, VALIDATION_PAIRS))
    valid_rows, train_rows = rows[:n_valid], rows[n_valid:]
    if len(train_rows) < 2:  # a handful of rows: train on them all
        train_rows = rows
    config = CriticConfig(bound=bound, max_iter=max_iter, learning_rate=FRESH_CRITIC_LEARNING_RATE,
                          batch_size=max(2, min(batch_size, len(train_rows), len(valid_rows))))
    if max_steps is not None:
        whole_epochs = max(1, max_steps // epoch_steps(len(train_rows), config))
        config = replace(config, max_iter=min(max_iter, whole_epochs))
    train_critics([SingleCritic(fresh)], X, source, [[train_rows]], [[valid_rows]], config,
                  named_seed(seed, "train"), [[named_seed(seed, "member")]], verbose)
    return fresh, config.batch_size
