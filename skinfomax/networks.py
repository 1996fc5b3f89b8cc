"""Encoder, decoder and critic modules, and builders for the MLP layout.

The modules fix the interfaces the training engine relies on:

- ``Encoder(x) -> (z_mean, z_log_var, c)``: Gaussian posterior over the
  KL-regularised codes z plus deterministic "info" codes c (the Keras design).
- ``decoder(codes) -> x parameters`` with ``codes = [z, c]``, flat output.
- ``Critic``: T(x, codes) = head(relu(embed_x(x) + embed_codes(codes))).
  Splitting the first layer into an x part and a code part is the same
  function class as an MLP over the concatenation ``[x, codes]``, but the x
  part is computed once per batch and reused for every pairing of x with
  codes (joint, shifted, or all B x B pairs for InfoNCE).
"""

import copy
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Critic",
    "Encoder",
    "NetworkSpec",
    "build_critic",
    "build_mlp",
    "build_mlp_networks",
    "build_networks",
    "check_networks",
    "custom_module",
]

# Bounds on the encoder's log-variance: exp() of it stays finite in float32
# and the posterior cannot shrink to a point mass.
_LOG_VAR_MIN, _LOG_VAR_MAX = -20.0, 20.0


def build_mlp(sizes, activate_last=False):
    """A ReLU MLP through ``sizes`` (input size first, output size last)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if activate_last or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Posterior network: a feature body followed by one linear head.

    Parameters
    ----------
    body : nn.Module
        Maps a batch of flat inputs to ``(B, n_body_out)`` features.
    n_body_out : int
        Width of the body's output.
    n_components, n_info_components : int
        Sizes of z (Gaussian, in the KL term) and c (deterministic).
    """

    def __init__(self, body, n_body_out, n_components, n_info_components):
        super().__init__()
        self.body = body
        self.head = nn.Linear(n_body_out, 2 * n_components + n_info_components)
        self.split_sizes = (n_components, n_components, n_info_components)

    def forward(self, x):
        mean, log_var, c = self.head(self.body(x)).split(self.split_sizes, dim=1)
        return mean, log_var.clamp(_LOG_VAR_MIN, _LOG_VAR_MAX), c


def _rolled(t, shift):
    """``t.roll(-shift, dims=0)``; ``shift`` may be a 0-dim integer tensor.

    A tensor shift lets a captured CUDA graph take a new shift each replay
    (``roll`` bakes a Python int into the graph).
    """
    if isinstance(shift, torch.Tensor):
        n = t.shape[0]
        return t.index_select(0, (torch.arange(n, device=t.device) + shift) % n)
    return t.roll(-shift, dims=0)


class Critic(nn.Module):
    """Critic T(x, codes) for the mutual-information bounds.

    Parameters
    ----------
    embed_x : nn.Module
        Maps flat inputs to ``(B, width)``; includes the first layer's bias.
    n_codes : int
        Size of ``[z, c]``.
    head_sizes : sequence of int
        Widths after the first (joint) layer, ending before the scalar output.
    width : int
        Width of the first joint layer.
    """

    def __init__(self, embed_x, n_codes, width, head_sizes=()):
        super().__init__()
        self.embed_x = embed_x
        self.embed_codes = nn.Linear(n_codes, width, bias=False)
        self.head = nn.Sequential(nn.ReLU(), build_mlp([width, *head_sizes, 1]))

    def forward(self, x, codes):
        """Scores of the aligned pairs ``(x_i, codes_i)``, shape ``(B,)``."""
        return self.head(self.embed_x(x) + self.embed_codes(codes)).squeeze(-1)

    def joint_and_shifted(self, x, codes, shift):
        """Scores of ``(x_i, codes_i)`` and of ``(x_i, codes_{i+shift})``.

        One pass of the head over both sets of pairs, with x embedded once.
        """
        hx, hc = self.embed_x(x), self.embed_codes(codes)
        pairs = torch.cat([hx + hc, hx + _rolled(hc, shift)])
        return self.head(pairs).squeeze(-1).chunk(2)

    def score_matrix(self, x, codes):
        """All pairs: ``scores[i, j] = T(x_i, codes_j)``, shape ``(B, B)``."""
        hx, hc = self.embed_x(x), self.embed_codes(codes)
        return self.head(hx[:, None, :] + hc[None, :, :]).squeeze(-1)


def build_critic(n_features, n_codes, critic_hidden_layer_sizes):
    """A critic for flat inputs: the first size is its joint (x, codes) layer, the rest its head."""
    width, *head_sizes = critic_hidden_layer_sizes
    return Critic(nn.Linear(n_features, width), n_codes, width, head_sizes)


def build_mlp_networks(
    n_features, n_components, n_info_components, hidden_layer_sizes, critic_hidden_layer_sizes
):
    """Encoder, decoder and critic for flat (tabular) data.

    The decoder mirrors the encoder's hidden layers. The critic's first size
    is its joint (x, codes) layer; the remaining sizes form its head.
    """
    hidden = list(hidden_layer_sizes)
    n_codes = n_components + n_info_components
    body = build_mlp([n_features, *hidden], activate_last=True)
    encoder = Encoder(body, hidden[-1] if hidden else n_features, n_components, n_info_components)
    decoder = build_mlp([n_codes, *reversed(hidden), n_features])
    critic = build_critic(n_features, n_codes, critic_hidden_layer_sizes)
    return encoder, decoder, critic


@dataclass(frozen=True)
class NetworkSpec:
    """What fixes the networks' shapes; warm starts and ``partial_fit`` must keep it."""

    n_features: int
    n_components: int
    n_info_components: int
    hidden_layer_sizes: tuple
    critic_hidden_layer_sizes: tuple
    likelihood: str
    architecture: str
    image_shape: tuple | None
    conv_channels: tuple

    @property
    def n_codes(self):
        """Width of the codes ``[z, c]``."""
        return self.n_components + self.n_info_components


def build_networks(spec, encoder=None, decoder=None, critic=None):
    """Encoder, decoder and critic for ``spec``, each replaced by the user's when given.

    ``encoder``, ``decoder`` and ``critic`` are None (built-in), a module or
    a factory, as :func:`custom_module` takes them. Weights are drawn from
    torch's global generator: seed it (``utils.seeded``) for repeatability.
    """
    if spec.architecture == "conv":
        from .conv import build_conv_networks  # conv builds on this module's classes

        built = build_conv_networks(
            spec.image_shape, spec.n_components, spec.n_info_components, spec.conv_channels,
            spec.critic_hidden_layer_sizes,
        )
    else:
        built = build_mlp_networks(
            spec.n_features, spec.n_components, spec.n_info_components,
            spec.hidden_layer_sizes, spec.critic_hidden_layer_sizes,
        )
    input_shape = spec.image_shape or (spec.n_features,)
    return tuple(
        module if custom is None
        else custom_module(custom, name, input_shape, spec.n_components, spec.n_info_components)
        for name, custom, module in zip(
            ("encoder", "decoder", "critic"), (encoder, decoder, critic), built
        )
    )


def custom_module(spec, name, input_shape, n_components, n_info_components):
    """A private copy of a user's module, or the module a user's factory builds.

    ``spec`` is a ``torch.nn.Module`` (deep-copied: fitting never changes the
    caller's module) or a callable
    ``spec(input_shape, n_components, n_info_components) -> nn.Module``.
    Raises TypeError, naming the parameter, for anything else.
    """
    if isinstance(spec, nn.Module):
        return copy.deepcopy(spec)
    module = spec(tuple(input_shape), n_components, n_info_components)
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"{name}= must be a torch.nn.Module or a factory returning one; the factory "
            f"returned {type(module).__name__}."
        )
    return module


def _shape_error(name, what, expected, got):
    return ValueError(
        f"The {name} must return {what} of shape {expected}; on 2 samples it returned "
        f"{got}. Check the module against the data shape and n_components / "
        "n_info_components."
    )


def _shape_of(out):
    return tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__


@torch.no_grad()
def check_networks(encoder, decoder, critic, x, n_components, n_info_components):
    """One dry forward pass on the rows ``x`` (2 of them); ValueError on a shape misfit.

    Runs in eval mode (BatchNorm statistics are left untouched) and restores
    each module's mode. Catches custom modules that do not fit the data or
    the latent sizes before any training time is spent.
    """
    for method in ("joint_and_shifted", "score_matrix"):
        if not callable(getattr(critic, method, None)):
            raise TypeError(
                f"The critic must provide forward, joint_and_shifted and score_matrix; "
                f"{type(critic).__name__} has no {method}. Wrap your x feature extractor "
                "in skinfomax.networks.Critic(embed_x, n_codes, width)."
            )
    modes = [(m, m.training) for m in (encoder, decoder, critic)]
    for module, _ in modes:
        module.train(False)
    try:
        n, n_features = x.shape
        n_codes = n_components + n_info_components
        try:
            out = encoder(x)
        except RuntimeError as exc:
            raise ValueError(
                f"The encoder fails on inputs of shape {tuple(x.shape)}: {exc}"
            ) from None
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            raise ValueError(
                "The encoder must return a tuple (z_mean, z_log_var, c); it returned "
                f"{type(out).__name__}."
            )
        for what, tensor, size in zip(
            ("z_mean", "z_log_var", "c"), out, (n_components, n_components, n_info_components)
        ):
            if _shape_of(tensor) != (n, size):
                raise _shape_error("encoder", what, (n, size), _shape_of(tensor))
        codes = torch.cat([out[0], out[2]], dim=1)
        try:
            x_hat = decoder(codes)
        except RuntimeError as exc:
            raise ValueError(f"The decoder fails on codes of shape {(n, n_codes)}: {exc}") from None
        if _shape_of(x_hat) != (n, n_features):
            raise _shape_error("decoder", "flat output", (n, n_features), _shape_of(x_hat))
        try:
            scores = critic(x, codes)
            pair = critic.joint_and_shifted(x, codes, 1)
            matrix = critic.score_matrix(x, codes)
        except RuntimeError as exc:
            raise ValueError(
                f"The critic fails on x of shape {tuple(x.shape)} and codes of shape "
                f"{(n, n_codes)}: {exc}"
            ) from None
        if _shape_of(scores) != (n,):
            raise _shape_error("critic", "scores", (n,), _shape_of(scores))
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError("The critic's joint_and_shifted must return two score tensors.")
        for part in pair:
            if _shape_of(part) != (n,):
                raise _shape_error("critic's joint_and_shifted", "scores", (n,), _shape_of(part))
        if _shape_of(matrix) != (n, n):
            raise _shape_error("critic's score_matrix", "scores", (n, n), _shape_of(matrix))
    finally:
        for module, mode in modes:
            module.train(mode)
