"""Several critics evaluated as one: the member axis of the batched critic trainer.

A *critic stack* scores ``n_members`` critics at once. Its inputs carry a
leading member axis, ``x`` of shape ``(M, B, ...)`` and ``codes`` of shape
``(M, B, n_codes)`` (member ``m`` scores its own rows), and so do its
outputs. Two kinds exist:

- :class:`StackedCritic`: ``M`` MLP critics of one architecture
  (:func:`~skinfomax.networks.build_critic`) as stacked weights, every layer
  one batched matrix product (``torch.baddbmm``): one kernel per layer for
  all members instead of one per member, and one optimiser step for all.
- :class:`SingleCritic`: any one critic module (MLP, convolutional or a
  user's own) behind the same interface, ``M = 1``.

Both expose ``member_tensors()``: every weight (and buffer) with the member
axis first, for :class:`~skinfomax.utils.EarlyStopping`'s snapshots.
"""

import torch
from torch import nn

from .networks import build_critic
from .utils import default_dtype, pair_row_blocks, seeded

__all__ = ["MeanCritic", "SingleCritic", "StackedCritic"]


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
