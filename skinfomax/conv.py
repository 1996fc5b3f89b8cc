"""Convolutional encoder, decoder and critic for images (the Keras design).

The engine only sees flat ``(B, C*H*W)`` float32 rows; these modules reshape
to ``(B, C, H, W)`` on the way in and flatten on the way out, so an image
model stays a normal scikit-learn transformer on 2-D data.

Layout after bacdavid/InfomaxVAE: 5x5 kernels with stride 2; the encoder's
feature maps are ``conv_channels`` (64-128-256 by default) with BatchNorm +
ReLU after every convolution but the first; the decoder maps the codes
through a dense layer to the encoder's last feature map and mirrors it with
transposed convolutions. Each stride-2 convolution maps a side ``n`` to
``ceil(n / 2)``; each transposed one doubles it, so the decoder reaches at
least ``H x W`` and is cropped back, which makes any size work (28x28, 48x48,
13x17).
"""

import math

from torch import nn

from .networks import Critic, Encoder

__all__ = ["ConvDecoder", "ImageView", "build_conv_networks", "conv_output_size"]

_KERNEL, _STRIDE, _PADDING = 5, 2, 2
# Side of the critic's pooled feature grid.
_CRITIC_GRID = 4


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
    """Codes ``(B, n_codes)`` -> flat images ``(B, C*H*W)``.

    Dense layer to ``(channels[0], h, w)``, then transposed convolutions
    through ``channels[1:]`` and a last one to ``C`` (linear output: the
    likelihood turns it into a mean), cropped to ``H x W``.

    Parameters
    ----------
    n_codes : int
        Size of ``[z, c]``.
    image_shape : tuple of int
        ``(C, H, W)`` of the output images.
    channels : sequence of int
        Feature maps from the dense layer's output on (the encoder's
        ``conv_channels`` reversed); one upsampling per entry.
    """

    def __init__(self, n_codes, image_shape, channels):
        super().__init__()
        n_channels, height, width = image_shape
        n_up = len(channels)
        self.start_shape = (
            channels[0],
            conv_output_size(height, n_up),
            conv_output_size(width, n_up),
        )
        self.image_shape = tuple(image_shape)
        self.dense = nn.Sequential(nn.Linear(n_codes, math.prod(self.start_shape)), nn.ReLU())
        layers = []
        sizes = [*channels, n_channels]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            # output_padding=1 makes each layer exactly double the side length.
            layers.append(
                nn.ConvTranspose2d(
                    n_in, n_out, _KERNEL, _STRIDE, _PADDING, output_padding=1, bias=last
                )
            )
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

    The critic embeds x with a small convolutional feature extractor (the
    first two of ``conv_channels``, no BatchNorm so that its score of a pair
    does not depend on the rest of the batch), average-pooled to at most a
    4x4 grid, then one linear layer to the joint width: its size does not
    grow with the image, where a dense layer over the raw pixels would dwarf
    the rest of the critic.
    """
    n_channels, height, width = image_shape
    channels = tuple(conv_channels)
    n_codes = n_components + n_info_components
    n_conv = len(channels)
    flat = channels[-1] * conv_output_size(height, n_conv) * conv_output_size(width, n_conv)
    body = nn.Sequential(
        ImageView(image_shape),
        *_conv_stack((n_channels, *channels), batch_norm_from=1),
        nn.Flatten(),
    )
    encoder = Encoder(body, flat, n_components, n_info_components)
    decoder = ConvDecoder(n_codes, image_shape, tuple(reversed(channels)))

    # Pooled to at most 4x4 so the critic's size does not grow with the image.
    critic_channels = channels[:2]
    n_critic = len(critic_channels)
    pooled = tuple(
        min(_CRITIC_GRID, conv_output_size(side, n_critic)) for side in (height, width)
    )
    joint_width, *head_sizes = critic_hidden_layer_sizes
    embed_x = nn.Sequential(
        ImageView(image_shape),
        *_conv_stack((n_channels, *critic_channels), batch_norm_from=n_critic),
        nn.AdaptiveAvgPool2d(pooled),
        nn.Flatten(),
        nn.Linear(critic_channels[-1] * math.prod(pooled), joint_width),
    )
    critic = Critic(embed_x, n_codes, joint_width, head_sizes)
    return encoder, decoder, critic
