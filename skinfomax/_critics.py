"""Critics and the mutual-information lower bound they give, in one place.

Everything that turns critic outputs into a bound on I(x; z) lives here, for
every caller: the training engine (one batch per step, and ``score``), the
fresh-critic protocol of ``mi_bounds(refit_critic=True)`` and
:func:`skinfomax.mutual_information`. So a number from any of them means the
same thing.

- **Critic stacks** score ``M`` critics at once. Inputs carry a leading
  member axis, ``x`` of shape ``(M, B, ...)`` and ``codes`` of shape
  ``(M, B, n_codes)`` (member ``m`` scores its own rows), and so do the
  outputs. :class:`StackedCritic` holds ``M`` MLP critics as stacked weights
  (one ``baddbmm`` per layer for all members, one optimiser step for all);
  :class:`SingleCritic` puts any one critic module behind the same interface;
  :class:`MeanCritic` scores with the mean of a stack's members.
- :func:`bound` is the one bound function over critic outputs, with
  ``pairs="shift" | "blocks" | "all"`` saying which mismatched pairs stand for
  draws from p(x) p(z). The formulas themselves are in ``_objectives``.
- :func:`train_critics` is the one critic training loop: all members of all
  stacks in one batched pass and one optimiser step per batch, each member
  early-stopped on its own validation rows.
- :func:`refit_critic_bounds` is the fresh critic on a frozen encoder.

Codes come from a *code source*, ``source(x, idx, noise) -> codes``, given
the inputs, their row indices (any leading shape, e.g. ``(members, batch)``)
and a noise generator: :class:`FixedCodes` (given samples ``Z``) or
:class:`PosteriorCodes` (fresh draws from a frozen encoder's posterior).
"""

import copy
import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._networks import build_critic
from ._objectives import (
    CRITIC_BOUND,
    MI_BOUNDS,
    all_pairs_influence,
    bound_influence,
    codes_from_noise,
    derangement_shift,
    infonce_bound,
    off_diagonal,
    soft_clip,
)
from ._utils import (
    EarlyStopping,
    batch_slices,
    deferred_interrupt,
    default_dtype,
    generators,
    pair_row_blocks,
    seeded,
    spawn_seeds,
)

# Held-out NWJ / DV bounds (``pairs="blocks"``) take every mismatched pair
# within blocks of at least this many rows as the marginal sample: 15 pairs
# per row instead of one shifted pairing, close to the standard error of all
# B - 1 pairs at a fraction of their critic passes, which grow with B
# (the performance page of the docs).
PAIR_BLOCK = 16

# Pairs per member that the critic trainer's early-stopping score of NWJ and
# DV aims at: the nearest whole number of shifted pairings of every
# validation row to this / validation rows, from 1 to 4 (less noise than one
# shift on small parts, less scoring on large ones).
VALIDATION_PAIRS = 4096


# -- code sources ----------------------------------------------------------------------
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


# -- critic stacks -----------------------------------------------------------------------
class StackedCritic(nn.Module):
    """``M`` MLP critics of one architecture with stacked weights.

    Member ``m`` computes exactly what the :class:`~skinfomax.Critic` it was
    built from computes, up to float rounding; :meth:`member` gives it back
    as such a module. Weights are stored as ``(M, in, out)`` so that a layer
    is ``baddbmm(bias, h, weight)``.
    """

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
        self.sizes = (x_weight.shape[1], codes_weight.shape[1],
                      *(w.shape[1] for w in head_weights))
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
            [stack([head[i].bias[None] for _, _, head in layers]) for i in range(n_head)],
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
        return cls.from_critics(critics)

    def member_tensors(self):
        """Every weight with the member axis first (for early stopping's snapshots)."""
        return list(self.parameters())

    def compute_only(self, members):
        """Compute only ``members`` (a list of indices; None: all) from now on.

        Inputs and outputs then carry ``len(members)`` on their member axis,
        and gradients reach only those members' weights: the critic trainer
        narrows a stack to the members still training.
        """
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

    def member(self, m):
        """Member ``m`` as a :class:`~skinfomax.Critic` (a copy of its weights)."""
        n_features, n_codes, *sizes = self.sizes
        critic = build_critic(n_features, n_codes, sizes)
        embed_x, embed_codes, head = critic.linear_layers()
        with torch.no_grad():
            embed_x.weight.copy_(self.x_weight[m].T)
            embed_x.bias.copy_(self.x_bias[m, 0])
            embed_codes.weight.copy_(self.codes_weight[m].T)
            for linear, weight, bias in zip(head, self.head_weights, self.head_biases):
                linear.weight.copy_(weight[m].T)
                linear.bias.copy_(bias[m, 0])
        return critic.to(self.x_weight.device)

    def _embed(self, x, codes):
        """First-layer terms of x and of the codes, each ``(M, B, width)``."""
        return (torch.baddbmm(self._take(self.x_bias), x, self._take(self.x_weight)),
                torch.bmm(codes, self._take(self.codes_weight)))

    def _head(self, h):
        """Scores of pre-activations ``h`` of shape ``(M, P, width)``: ``(M, P)``; overwrites ``h``."""
        # In place: neither the pairs' sum nor baddbmm needs its output for
        # backward, and the pair activations are the step's largest tensors.
        for weight, bias in zip(self.head_weights, self.head_biases):
            h = torch.baddbmm(self._take(bias), h.relu_(), self._take(weight))
        return h.squeeze(-1)

    def joint_and_shifted(self, x, codes, shifts):
        """Joint scores ``(M, B)`` and shifted ones ``(M, K * B)`` for the ``K`` roll offsets.

        Large ``B`` (validation parts) is scored in row blocks of bounded pairs.
        """
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
    """Any one critic module (MLP, convolutional or a user's own) as a stack of one member.

    The module provides ``joint_and_shifted(x, codes, shift)`` and
    ``score_matrix(x, codes)`` as :class:`~skinfomax.Critic` does. A view,
    not a copy: training the stack trains the module.
    """

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
        """Its whole state (weights and buffers such as batch-norm statistics), member axis first."""
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
    """The critic whose score is the mean of a stack's members' scores, as a stack of one.

    Any function of (x, z) gives a valid held-out bound, so the mean of
    independently trained critics does too; averaging cancels much of what
    each member overfits to its training rows.
    """

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
    """The cap on critic outputs for NWJ and DV bounds of a model trained on batches of this size.

    ``1 + log(batch_size)``: one mismatched pair's ``exp(T - 1)`` is then at
    most ``batch_size``, so it lowers a training batch's bound by at most one
    nat, and a held-out batch's (which takes many more pairs) by less. An
    uncapped critic can score a rare mismatched pair tens of nats above the
    rest (near-duplicate inputs, codes it never saw), and that one pair then
    wrecks the bound of its batch in training (spikes) and held out.
    """
    return 1.0 + math.log(batch_size)


def bound(critic, x, codes, estimator, pairs="shift", *, shifts=(1,), batch=None,
          influence=False, cap=None):
    """The ``estimator``'s lower bound on I(x; codes), one value per member of a critic stack.

    Parameters
    ----------
    critic : StackedCritic, SingleCritic or MeanCritic
    x, codes : torch.Tensor of shape (M, B, ...) and (M, B, n_codes)
        Row ``i`` of ``x`` goes with row ``i`` of ``codes``: the joint pairs.
    estimator : {"nwj", "dv", "infonce"}
    pairs : {"shift", "blocks", "all"}, default="shift"
        Which mismatched pairs NWJ and DV take as draws from p(x) p(z):
        ``(x_i, codes_{i+s})`` for each roll offset ``s`` in ``shifts``
        (one critic pass per offset; training), every mismatched pair within
        consecutive blocks of at least :data:`PAIR_BLOCK` rows (held-out
        scores), or every mismatched pair of the ``B`` rows. More pairs give
        the same bound with less variance.
    shifts : sequence of int, default=(1,)
        Roll offsets in ``[1, B - 1]`` for ``pairs="shift"`` (a 0-dim tensor
        works too: a CUDA graph then takes a new offset each replay).
    batch : int or None, default=None
        InfoNCE normalises each row over every code of its batch, consecutive
        batches of ``batch`` rows (None: all ``B``), whatever ``pairs`` says;
        the bound is the mean over batches (it never exceeds ``log(batch)``).
    influence : bool, default=False
        Also return per-sample terms (one member) whose mean's sampling
        variance is the bound's to first order: differences of them between
        two critics on the same pairs give the standard error of the
        difference of their bounds. Not with ``pairs="blocks"``.
    cap : float or None, default=None
        NWJ and DV take the critic's outputs softly capped at ``cap``
        (``cap - softplus(cap - T)``, see :func:`critic_cap_for`): the bound of
        that capped critic, a valid bound like any other. None caps only far
        above any useful value, against float32 overflow. Not with
        ``influence``; InfoNCE is capped at ``log(batch)`` by construction.

    Returns
    -------
    values : torch.Tensor of shape (M,)
        float32 (the critic's outputs are exponentiated in float32).
    terms : torch.Tensor of shape (B,)
        With ``influence=True`` only.
    """
    if estimator == "infonce":
        n = x.shape[1]
        parts = batch_slices(n, batch or n, device=x.device)
        parts = parts if len(parts) > 1 else [slice(None)]
        scores = [critic.score_matrix(x[:, s], codes[:, s]).float() for s in parts]
        values = torch.stack([infonce_bound(s) for s in scores]).mean(0)
        if influence:
            return values, torch.cat([bound_influence(estimator, s[0]) for s in scores])
        return values
    if influence and pairs == "blocks":
        raise ValueError("Influence terms are defined for pairs='shift' or 'all', not 'blocks'.")
    if pairs == "shift":
        joint, marginal = (t.float() for t in critic.joint_and_shifted(x, codes, shifts))
        terms = bound_influence(estimator, joint[0], marginal[0]) if influence else None
    else:
        joint, marginal, scores = _pair_outputs(critic, x, codes, pairs)
        terms = all_pairs_influence(estimator, scores[0]) if influence else None
    values = MI_BOUNDS[estimator](joint, marginal, *(() if cap is None else (cap,)))
    return (values, terms) if influence else values


def _pair_outputs(critic, x, codes, pairs):
    """Joint and mismatched outputs for ``pairs="blocks" | "all"``, and the last block's matrix."""
    n_blocks = max(1, x.shape[1] // PAIR_BLOCK) if pairs == "blocks" else 1
    joint, marginal = [], []
    for x_block, codes_block in zip(x.tensor_split(n_blocks, dim=1),
                                    codes.tensor_split(n_blocks, dim=1)):
        scores = critic.score_matrix(x_block, codes_block).float()
        joint.append(scores.diagonal(dim1=-2, dim2=-1))
        marginal.append(off_diagonal(scores))
    return torch.cat(joint, dim=-1), torch.cat(marginal, dim=-1), scores


@torch.no_grad()
def marginal_terms(critic, x, codes, cap=None):
    """``exp(T(x_i, z_j) - 1)`` of every mismatched pair a held-out NWJ bound takes (one member).

    The pairs of ``pairs="blocks"``, the critic capped as in :func:`bound`:
    their mean is the bound's marginal term, so they say which pairs make it.
    """
    _, marginal, _ = _pair_outputs(critic, x, codes, "blocks")
    return torch.exp(soft_clip(marginal[0], CRITIC_BOUND if cap is None else cap) - 1.0)


@torch.no_grad()
def batch_bounds(critic, X, source, estimator, batch_size, seed, pairs="shift",
                 influence=False, cap=None):
    """Per-batch bounds (numpy) on fixed, unshuffled batches of ``X`` (a tensor).

    Every batch has at least ``batch_size`` rows (``floor(n / batch_size)``
    near-equal slices). ``seed`` fixes the shifts and the posterior noise, so
    the values are repeatable. ``critic`` is a stack of one member (a
    :class:`SingleCritic` or a :class:`MeanCritic`); ``pairs``, ``influence``
    and ``cap`` as in :func:`bound`, whose per-sample terms then come back
    too, concatenated over batches.
    """
    critic.train(False)
    cpu_gen, noise_gen = generators(seed, X.device)
    values, terms = [], []
    for idx in batch_slices(X.shape[0], batch_size, device=X.device):
        x = X[idx]
        codes = source(x, idx, noise_gen)
        shifts = [derangement_shift(x.shape[0], cpu_gen)] if pairs == "shift" else ()
        result = bound(critic, x[None], codes[None], estimator, pairs, shifts=shifts,
                       influence=influence, cap=cap)
        values.append(result[0][0] if influence else result[0])
        if influence:
            terms.append(result[1])
    values = torch.stack(values).cpu().numpy().astype(float)
    if influence:
        return values, torch.cat(terms).cpu().numpy().astype(float)
    return values


# -- the training loop -------------------------------------------------------------------
@dataclass(frozen=True)
class CriticConfig:
    """How to train critics; the names mean what they mean for the VAE engine's ``TrainingConfig``.

    ``estimator`` is the bound maximised. An epoch (the unit of ``max_iter``
    and of the patience) is one pass over a member's training rows, or
    ``epoch_batches`` batches of it when that is shorter: how many steps a
    critic needs does not grow with the sample, so large samples are
    validated (and stopped) several times a pass (the VAE engine's epoch is
    always a full pass). A member stops once its validation bound has not
    improved by ``tol`` nats for ``n_iter_no_change`` epochs.
    ``weight_decay`` is AdamW's decoupled decay (0 is Adam): it curbs the
    critic's overfitting of the train part in high dimensions. ``cap``
    caps the critics' outputs in NWJ and DV bounds (see :func:`bound`).
    """

    estimator: str = "nwj"
    batch_size: int = 128
    max_iter: int = 100
    learning_rate: float = 1e-3
    n_iter_no_change: int = 10
    tol: float = 1e-3
    weight_decay: float = 0.0
    epoch_batches: int | None = 16
    cap: float | None = None


class CriticCandidate(NamedTuple):
    """One critic to try: layer sizes (first: the joint layer) and its AdamW settings."""

    sizes: tuple
    learning_rate: float
    weight_decay: float


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
        self.diverged = []

    def shuffle(self, n_rows):
        """A fresh order of every member's training rows, ``n_rows`` each: ``(M, n_rows)``."""
        device = self.train_rows[0].device
        self.order = torch.stack([
            rows[torch.randperm(len(rows), generator=gen)[:n_rows].to(device)]
            for rows, gen in zip(self.train_rows, self.generators)
        ])

    def update(self, scores, epoch):
        """Early stopping on this epoch's scores; a member whose score is not finite diverged.

        A diverged member stops at once and goes back to its best weights,
        as a member out of patience does.
        """
        values = scores.tolist()
        diverged = [m for m in self.training if not math.isfinite(values[m])]
        if diverged:
            self.diverged += [(m, epoch) for m in diverged]
            scores = scores.clone()
            scores[diverged] = -math.inf
            self.stopping.stop(diverged)
        self.stopping.update(scores)
        stopped = self.stopping.stopped.tolist()
        self.training = [m for m, s in enumerate(stopped) if not s]
        self.stack.compute_only(None if len(self.training) == len(stopped) else self.training)
        if len(self.training) < len(stopped):
            self.stopping.hold_stopped()


def train_critics(stacks, X, source, train_rows, valid_rows, config, seed, member_seeds,
                  verbose=0, rates=None):
    """Train critic stacks together to maximise the bound; early-stopped per member.

    Every step draws one batch per member from that member's own training
    rows (all members the same number of rows: the parts of different folds
    differ by at most a row, so at most one row a member sits out a pass),
    evaluates every active stack in one batched pass, and takes one
    optimiser step (AdamW, Adam without decay) for all of them. After each
    epoch every member's bound on its own validation rows (fixed shifts, see
    :data:`VALIDATION_PAIRS`; fixed noise for posterior codes) updates its
    early stopping; a member that has not improved by ``config.tol`` for
    ``config.n_iter_no_change`` epochs is put back to its best weights and no
    longer moves, and the loop ends once every member has stopped. At the
    end every member holds its best weights.

    As in the VAE engine: a member whose validation bound is NaN or infinite
    has diverged; it goes back to its best weights at once (its initial ones
    if it never improved) and a RuntimeWarning names it. Ctrl-C stops at the
    end of the current step; every member is put back to its best weights,
    a RuntimeWarning says so, and the KeyboardInterrupt is re-raised.

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
        Seeds the shifts and the posterior noise (two streams spawned from it).
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
    train_seed, valid_seed = spawn_seeds(seed, 2)
    cpu_gen, noise_gen = generators(train_seed, X.device)
    n_rows = min(len(r) for rows in train_rows for r in rows)
    n_valid = min(s.valid_rows.shape[1] for s in states)
    batch_size = min(config.batch_size, n_rows)
    epochs = batch_slices(n_rows, batch_size * (config.epoch_batches or n_rows))
    valid_shifts = [derangement_shift(n_valid, cpu_gen)
                    for _ in range(validation_shifts(n_valid))]
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
            x = X[idx]
            loss = loss - bound(members.stack, x, source(x, idx, noise_gen), config.estimator,
                                shifts=[shift], cap=config.cap).sum()
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
    _, noise_gen = generators(seed, X.device)
    for members in active:
        idx = members.valid_rows[members.training]
        x = X[idx]
        scores = torch.full((members.stack.n_members,), -math.inf, dtype=torch.float32,
                            device=X.device)
        scores[members.training] = bound(members.stack, x, source(x, idx, noise_gen),
                                         config.estimator, shifts=shifts,
                                         batch=config.batch_size, cap=config.cap)
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
def refit_critic_bounds(encoder, critic, X, *, estimator, batch_size, max_iter, seed,
                        cap=None, verbose=0):
    """Train a fresh critic on a frozen encoder's posterior draws; its held-out batch bounds.

    The protocol of ``InfoMaxVAETransformer.mi_bounds(refit_critic=True)``:
    half of the rows (``n // 2``, drawn at random) is held out for
    evaluation; of the other half a fifth (at least 2 rows) early-stops and
    the rest trains a copy of ``critic`` with re-initialised weights (every
    submodule's ``reset_parameters``), which sees fresh posterior draws
    ``[z, c]`` at every step (Adam, learning rate 1e-3, patience 10 epochs,
    at most ``max_iter`` epochs), through :func:`train_critics`. Neither
    ``encoder`` nor ``critic`` changes. The split, the initial weights, the
    training streams and the evaluation noise come from seeds spawned from
    ``seed``.

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
    cap : float or None, default=None
        The cap on the fresh critic's outputs (:func:`bound`): the trained
        critic's, so that both bounds are of critics of one kind.
    verbose : int, default=0
        Progress bar over the fresh critic's epochs when positive.

    Returns
    -------
    values : ndarray
        The fresh critic's bound on each fixed batch of the evaluation rows
        (``pairs="blocks"``, as ``score``).
    eval_rows : ndarray of int
        The rows of ``X`` evaluated, in batch order: compute anything that
        must match the lower bound's rows (the encoder's rate) on ``X[eval_rows]``.
    """
    split_seed, init_seed, train_seed, member_seed, eval_seed = spawn_seeds(seed, 5)
    device = next(encoder.parameters()).device
    X = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
    n = X.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed)).to(device)
    n_eval = n // 2
    n_valid = max(2, (n - n_eval) // 5)
    eval_rows, valid_rows, train_rows = order[:n_eval], order[n_eval:n_eval + n_valid], \
        order[n_eval + n_valid:]
    config = CriticConfig(
        estimator=estimator, max_iter=max_iter, cap=cap,
        batch_size=max(2, min(batch_size, len(train_rows), n_valid, n_eval)),
    )
    fresh = copy.deepcopy(critic)
    with seeded(init_seed):
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    source = PosteriorCodes(encoder)
    encoder_mode = encoder.training
    encoder.eval()
    try:
        train_critics([SingleCritic(fresh)], X, source, [[train_rows]], [[valid_rows]],
                      config, train_seed, [[member_seed]], verbose)
        values = batch_bounds(SingleCritic(fresh), X[eval_rows], source, estimator,
                              config.batch_size, eval_seed, pairs="blocks", cap=cap)
    finally:
        encoder.train(encoder_mode)
    return values, eval_rows.cpu().numpy()
