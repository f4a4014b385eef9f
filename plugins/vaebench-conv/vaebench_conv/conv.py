"""A convolutional encoder and decoders for images whose sides are multiples of 4 (28x28 MNIST,
8x8 digits, 32x32x3 CIFAR-10): two stride-2 convolutions down, two transposed ones up, as in the
DCGAN-style VAEs common in the literature (Radford et al. 2016). Decoders output independent
Bernoulli pixels (binary data), a categorical over the data's levels per pixel (grey images), or
a discretized logistic mixture per pixel and channel (8-bit grey or colour images).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, Normal

from vaebench.components.logistic import mixture_from_channels
from vaebench.contracts import DataSpec

CHANNELS = (32, 64)


def image_layout(data: DataSpec) -> tuple[int, int, int]:
    """(channels, height, width) of ``(H, W)`` or ``(C, H, W)`` images."""
    shape = tuple(data.image_shape)  # type: ignore[arg-type]
    return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]


class ConvGaussianEncoder(nn.Module):
    """q(z|x) = N(mu(x), diag sigma(x)^2) from two strided convolutions and a linear layer."""

    def __init__(self, data: DataSpec, hidden: int, latent: int) -> None:
        super().__init__()
        c, h, w = image_layout(data)
        self.shape = (c, h, w)
        self.scale = 1.0 / (data.levels - 1)
        self.latent = latent
        c1, c2 = CHANNELS
        self.net = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1),
            nn.LeakyReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),
            nn.LeakyReLU(),
            nn.Flatten(),
            nn.Linear(c2 * (h // 4) * (w // 4), hidden),
            nn.LeakyReLU(),
            nn.Linear(hidden, 2 * latent),
        )

    def forward(self, x: torch.Tensor) -> Independent:
        images = (x * self.scale).reshape(-1, *self.shape)
        mu, logvar = self.net(images).split(self.latent, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1)


class ConvDecoder(nn.Module):
    """z to per-pixel logits through a linear layer and two transposed convolutions."""

    def __init__(self, data: DataSpec, hidden: int, latent: int, out_channels: int = 0) -> None:
        super().__init__()
        _, h, w = image_layout(data)
        self.dim = data.dim
        self.levels = data.levels
        self.out_channels = out_channels or (1 if data.binary else data.levels)
        c1, c2 = CHANNELS
        self.net = nn.Sequential(
            nn.Linear(latent, hidden),
            nn.LeakyReLU(),
            nn.Linear(hidden, c2 * (h // 4) * (w // 4)),
            nn.LeakyReLU(),
            nn.Unflatten(-1, (c2, h // 4, w // 4)),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
            nn.LeakyReLU(),
            nn.ConvTranspose2d(c1, self.out_channels, 4, stride=2, padding=1),
        )

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` for binary data, ``[..., D, levels]`` otherwise."""
        out = self.net(z.reshape(-1, z.shape[-1]))  # [N, C, H, W]
        if self.out_channels == 1:
            return out.reshape(*z.shape[:-1], self.dim)
        return out.flatten(2).transpose(1, 2).reshape(*z.shape[:-1], self.dim, self.levels)

    def forward(self, z: torch.Tensor) -> Independent:
        logits = self.logits(z)
        if self.out_channels == 1:
            return Independent(Bernoulli(logits=logits, validate_args=False), 1)
        return Independent(Categorical(logits=logits, validate_args=False), 1)


class ConvLogisticMixtureDecoder(nn.Module):
    """The same network to a discretized logistic mixture of ``mixtures`` components per pixel
    and channel (:mod:`vaebench.components.logistic`): 3 x mixtures x C output maps."""

    def __init__(self, data: DataSpec, hidden: int, latent: int, mixtures: int) -> None:
        super().__init__()
        self.channels, self.h, self.w = image_layout(data)
        self.mixtures = mixtures
        self.levels = data.levels
        self.net = ConvDecoder(data, hidden, latent, 3 * mixtures * self.channels).net

    def forward(self, z: torch.Tensor):  # type: ignore[no-untyped-def]
        out = self.net(z.reshape(-1, z.shape[-1]))  # [N, 3 * K * C, H, W]
        out = out.unflatten(1, (3, self.mixtures, self.channels)).flatten(3)  # [N, 3, K, D]
        params = out.transpose(-1, -2).reshape(*z.shape[:-1], 3, -1, self.mixtures)
        return mixture_from_channels(params, self.levels)
