"""The ``vaebench-conv`` plugin: registers its components through vaebench's hooks.

Factories import torch and the component modules when called, so loading the plugin is cheap.
"""

from __future__ import annotations

from typing import Any

from vaebench.contracts import BuildContext, ComponentSpec, DataSpec
from vaebench.hookspecs import Register, hookimpl

PIXELCNN = {"channels": 32, "layers": 4, "z_channels": 4}
LOGISTIC = {"mixtures": 5}


def fits_conv(data: DataSpec) -> bool:
    """Single-channel 2-D images with both sides divisible by 4 (28x28, 8x8...)."""
    shape = data.image_shape
    return (
        shape is not None
        and len(shape) == 2
        and shape[0] * shape[1] == data.dim
        and shape[0] % 4 == 0
        and shape[1] % 4 == 0
    )


def fits_conv_any(data: DataSpec) -> bool:
    """Grey images as :func:`fits_conv`, or ``(C, H, W)`` images of 1 or 3 channels with both
    sides divisible by 4 (32x32x3 CIFAR-10, SVHN)."""
    shape = data.image_shape
    if shape is not None and len(shape) == 3 and shape[0] in (1, 3):
        return shape[0] * shape[1] * shape[2] == data.dim and shape[1] % 4 == 0 == shape[2] % 4
    return fits_conv(data)


def fits_pixelcnn(data: DataSpec) -> bool:
    """Single-channel 2-D images of any size."""
    shape = data.image_shape
    return shape is not None and len(shape) == 2 and shape[0] * shape[1] == data.dim


def _hidden(ctx: BuildContext) -> int:
    return int(ctx.options.get("hidden", ctx.hidden_dim))


def build_encoder(ctx: BuildContext) -> Any:
    from vaebench_conv.conv import ConvGaussianEncoder

    return ConvGaussianEncoder(ctx.data, _hidden(ctx), ctx.latent_dim)


def build_decoder(ctx: BuildContext) -> Any:
    from vaebench_conv.conv import ConvDecoder

    return ConvDecoder(ctx.data, _hidden(ctx), ctx.latent_dim)


def build_logistic_decoder(ctx: BuildContext) -> Any:
    from vaebench_conv.conv import ConvLogisticMixtureDecoder

    mixtures = int(ctx.options.get("mixtures", LOGISTIC["mixtures"]))
    return ConvLogisticMixtureDecoder(ctx.data, _hidden(ctx), ctx.latent_dim, mixtures)


def build_pixelcnn(ctx: BuildContext) -> Any:
    from vaebench_conv.pixelcnn import PixelCNNDecoder

    channels, layers, z_channels = (
        int(ctx.options.get(name, default)) for name, default in PIXELCNN.items()
    )
    return PixelCNNDecoder(ctx.data, ctx.latent_dim, channels, layers, z_channels)


@hookimpl
def vaebench_register_encoders(register: Register) -> None:
    register(
        ComponentSpec(
            "conv-gaussian",
            "encoder",
            build_encoder,
            "two strided convolutions and a linear layer to a diagonal Gaussian q(z|x)",
            fits=fits_conv_any,
        )
    )


@hookimpl
def vaebench_register_decoders(register: Register) -> None:
    register(
        ComponentSpec(
            "conv-bernoulli",
            "decoder",
            build_decoder,
            "a linear layer and two transposed convolutions to Bernoulli pixels",
            fits=lambda data: data.binary and fits_conv(data),
        )
    )
    register(
        ComponentSpec(
            "conv-categorical",
            "decoder",
            build_decoder,
            "a linear layer and two transposed convolutions to a categorical per pixel",
            fits=lambda data: 2 < data.levels <= 256 and fits_conv(data),
        )
    )
    register(
        ComponentSpec(
            "conv-logistic-mixture",
            "decoder",
            build_logistic_decoder,
            "the same network to a discretized logistic mixture per pixel and channel (8-bit "
            "grey or colour images; Salimans et al. 2017)",
            fits=lambda data: data.levels == 256 and fits_conv_any(data),
            options=LOGISTIC,
        )
    )
    register(
        ComponentSpec(
            "pixelcnn",
            "decoder",
            build_pixelcnn,
            "PixelCNN conditioned on z (masked convolutions; Gulrajani et al. 2017): models "
            "local structure itself, so it uses z far less (posterior collapse)",
            fits=lambda data: data.levels <= 256 and fits_pixelcnn(data),
            options=PIXELCNN,
            # 60x the MLP decoder's training step and a 28x28 network per importance sample:
            # hours of a default grid's quarter-hour (measured with `vaebench run --dry-run`)
            default_grid=False,
        )
    )
