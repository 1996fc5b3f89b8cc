"""Encoder, decoder and critic modules and their builders, MLP (tables) and conv (images, on
flat rows). The critic is T(x, codes) = head(relu(embed_x(x) + embed_codes(codes))), an MLP over
``[x, codes]`` whose x is embedded once per batch and reused for every pairing.
"""

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

# The encoder's log-variance bounds: exp() stays finite in float32, no point-mass posterior.
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
        """``(z_mean, z_log_var, c)`` of flat inputs; the log-variance is clamped to [-20, 20]."""
        mean, log_var, c = self.head(self.body(x)).split(self.split_sizes, dim=1)
        return mean, log_var.clamp(_LOG_VAR_MIN, _LOG_VAR_MAX), c


def _rolled(t, shift):
    """``t.roll(-shift, dims=0)``, also for a 0-dim tensor ``shift``, which a CUDA graph can
    take anew each replay (``roll`` bakes a Python int into the graph)."""
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

    def linear_layers(self):
        """``(embed_x, embed_codes, head's linear layers)`` (stacked critics copy them)."""
        return self.embed_x, self.embed_codes, [m for m in self.head.modules()
                                                if isinstance(m, nn.Linear)]

    def forward(self, x, codes):
        """Scores of the aligned pairs ``(x_i, codes_i)``, shape ``(B,)``."""
        return self.head(self.embed_x(x) + self.embed_codes(codes)).squeeze(-1)

    def joint_and_shifted(self, x, codes, shift):
        """Scores of ``(x_i, codes_i)`` and ``(x_i, codes_{i+shift})``, in one pass of the head."""
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

    The decoder mirrors the encoder's hidden layers. The critic's first size is its joint
    (x, codes) layer, the rest its head.
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


def build_networks(spec, encoder=None, decoder=None, critic=None):
    """Encoder, decoder and critic for ``spec``, each replaced by the user's when given; weights
    come from torch's global generator (seed it: ``_utils.seeded``)."""
    if spec.architecture == "conv":
        built = build_conv_networks(spec.image_shape, spec.n_components, spec.n_info_components,
                                    spec.conv_channels, spec.critic_hidden_layer_sizes)
    else:
        built = build_mlp_networks(spec.n_features, spec.n_components, spec.n_info_components,
                                   spec.hidden_layer_sizes, spec.critic_hidden_layer_sizes)
    input_shape = spec.image_shape or (spec.n_features,)
    return tuple(
        module if custom is None
        else custom_module(custom, name, input_shape, spec.n_components, spec.n_info_components)
        for name, custom, module in zip(("encoder", "decoder", "critic"),
                                        (encoder, decoder, critic), built))


def custom_module(given, name, input_shape, n_components, n_info_components):
    """A deep copy of a user's module (fitting never changes the caller's), or the module a
    user's factory ``given(input_shape, n_components, n_info_components)`` builds."""
    if isinstance(given, nn.Module):
        return copy.deepcopy(given)
    module = given(tuple(input_shape), n_components, n_info_components)
    if not isinstance(module, nn.Module):
        raise TypeError(f"{name}= must be a torch.nn.Module or a factory returning one; the "
                        f"factory returned {type(module).__name__}.")
    return module


def _check_shape(out, expected, name, what="scores"):
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != expected:
        raise ValueError(f"The {name} must return {what} of shape {expected}; on 2 samples it "
                         f"returned {got}. Check the module against the data shape and "
                         "n_components / n_info_components.")


@torch.no_grad()
def check_networks(encoder, decoder, critic, x, n_components, n_info_components):
    """One dry forward pass on 2 rows ``x`` in eval mode (BatchNorm statistics untouched):
    ValueError on a shape misfit, before any training time is spent."""
    for method in ("joint_and_shifted", "score_matrix"):
        if not callable(getattr(critic, method, None)):
            raise TypeError(f"The critic must provide forward, joint_and_shifted and "
                            f"score_matrix; {type(critic).__name__} has no {method}. Wrap your "
                            "x feature extractor in skinfomax.Critic(embed_x, n_codes, width).")
    modes = [(m, m.training) for m in (encoder, decoder, critic)]
    for module, _ in modes:
        module.train(False)
    try:
        n, n_features = x.shape
        n_codes = n_components + n_info_components
        try:
            out = encoder(x)
        except RuntimeError as exc:
            raise ValueError(f"The encoder fails on inputs of shape {tuple(x.shape)}: "
                             f"{exc}") from None
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            raise ValueError("The encoder must return a tuple (z_mean, z_log_var, c); it returned "
                             f"{type(out).__name__}.")
        for what, tensor, size in zip(("z_mean", "z_log_var", "c"), out,
                                      (n_components, n_components, n_info_components)):
            _check_shape(tensor, (n, size), "encoder", what)
        codes = torch.cat([out[0], out[2]], dim=1)
        try:
            x_hat = decoder(codes)
        except RuntimeError as exc:
            raise ValueError(f"The decoder fails on codes of shape {(n, n_codes)}: {exc}") from None
        _check_shape(x_hat, (n, n_features), "decoder", "flat output")
        try:
            scores = critic(x, codes)
            pair = critic.joint_and_shifted(x, codes, 1)
            matrix = critic.score_matrix(x, codes)
        except RuntimeError as exc:
            raise ValueError(f"The critic fails on x of shape {tuple(x.shape)} and codes of shape "
                             f"{(n, n_codes)}: {exc}") from None
        _check_shape(scores, (n,), "critic")
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError("The critic's joint_and_shifted must return two score tensors.")
        for part in pair:
            _check_shape(part, (n,), "critic's joint_and_shifted")
        _check_shape(matrix, (n, n), "critic's score_matrix")
    finally:
        for module, mode in modes:
            module.train(mode)


# -- convolutional networks for images (bacdavid/InfomaxVAE's layout) --------------------
_KERNEL, _STRIDE, _PADDING = 5, 2, 2
_CRITIC_GRID = 4  # side of the critic's pooled feature grid


def conv_output_size(size, n_layers):
    """Side length after ``n_layers`` stride-2, 5x5, padding-2 convolutions: ``ceil`` halving."""
    for _ in range(n_layers):
        size = (size + 2 * _PADDING - _KERNEL) // _STRIDE + 1
    return size


class ImageView(nn.Module):
    """Reshape flat rows ``(B, C*H*W)`` to images ``(B, C, H, W)``."""

    def __init__(self, image_shape):
        super().__init__()
        self.image_shape = tuple(image_shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.image_shape)


def _conv_stack(channels, batch_norm_from):
    """Stride-2 convolutions through ``channels``; BatchNorm from layer ``batch_norm_from`` on."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(channels[:-1], channels[1:])):
        with_bn = i >= batch_norm_from
        # The convolution's bias is redundant before BatchNorm.
        layers.append(nn.Conv2d(n_in, n_out, _KERNEL, _STRIDE, _PADDING, bias=not with_bn))
        if with_bn:
            layers.append(nn.BatchNorm2d(n_out))
        layers.append(nn.ReLU())
    return layers


class ConvDecoder(nn.Module):
    """Codes ``(B, n_codes)`` -> flat images ``(B, C*H*W)``: a dense layer to ``(channels[0],
    h, w)``, side-doubling transposed convolutions through ``channels`` and to ``C``, cropped."""

    def __init__(self, n_codes, image_shape, channels):
        super().__init__()
        n_channels, height, width = image_shape
        n_up = len(channels)
        self.start_shape = (channels[0], conv_output_size(height, n_up),
                            conv_output_size(width, n_up))
        self.image_shape = tuple(image_shape)
        self.dense = nn.Sequential(nn.Linear(n_codes, math.prod(self.start_shape)), nn.ReLU())
        layers = []
        sizes = [*channels, n_channels]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            # output_padding=1 makes each layer exactly double the side length.
            layers.append(nn.ConvTranspose2d(n_in, n_out, _KERNEL, _STRIDE, _PADDING,
                                             output_padding=1, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(n_out), nn.ReLU()]
        self.deconv = nn.Sequential(*layers)

    def forward(self, codes):
        _, height, width = self.image_shape
        h = self.dense(codes).reshape(codes.shape[0], *self.start_shape)
        return self.deconv(h)[:, :, :height, :width].flatten(1)


def build_conv_networks(
    image_shape, n_components, n_info_components, conv_channels, critic_hidden_layer_sizes
):
    """Encoder, decoder and critic for flat rows of ``image_shape = (C, H, W)`` images.

    Parameters
    ----------
    image_shape : tuple of int
        ``(C, H, W)``; any positive sizes.
    n_components, n_info_components : int
        Sizes of z and c.
    conv_channels : sequence of int
        Encoder feature maps, one stride-2 convolution each.
    critic_hidden_layer_sizes : sequence of int
        The critic's joint width, then its head's hidden sizes.

    Returns
    -------
    encoder : Encoder
    decoder : ConvDecoder
    critic : Critic

    The critic embeds x with convolutions through the first two of ``conv_channels`` (no
    BatchNorm: a pair's score does not depend on the rest of the batch), average-pooled to at
    most 4x4, then one linear layer to the joint width, whose size does not grow with the image.
    """
    n_channels, height, width = image_shape
    channels = tuple(conv_channels)
    n_codes = n_components + n_info_components
    n_conv = len(channels)
    flat = channels[-1] * conv_output_size(height, n_conv) * conv_output_size(width, n_conv)
    body = nn.Sequential(ImageView(image_shape),
                         *_conv_stack((n_channels, *channels), batch_norm_from=1), nn.Flatten())
    encoder = Encoder(body, flat, n_components, n_info_components)
    decoder = ConvDecoder(n_codes, image_shape, tuple(reversed(channels)))
    critic_channels = channels[:2]
    n_critic = len(critic_channels)
    pooled = tuple(min(_CRITIC_GRID, conv_output_size(side, n_critic)) for side in (height, width))
    joint_width, *head_sizes = critic_hidden_layer_sizes
    embed_x = nn.Sequential(
        ImageView(image_shape),
        *_conv_stack((n_channels, *critic_channels), batch_norm_from=n_critic),
        nn.AdaptiveAvgPool2d(pooled), nn.Flatten(),
        nn.Linear(critic_channels[-1] * math.prod(pooled), joint_width))
    critic = Critic(embed_x, n_codes, joint_width, head_sizes)
    return encoder, decoder, critic
