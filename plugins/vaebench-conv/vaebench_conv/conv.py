"""A convolutional encoder and decoders for single-channel images whose sides are multiples of
4 (28x28 MNIST, 8x8 digits): two stride-2 convolutions down, two transposed ones up, as in the
DCGAN-style VAEs common in the literature (Radford et al. 2016). Decoders output independent
Bernoulli pixels (binary data) or a categorical over the data's levels per pixel.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, Normal

from vaebench.contracts import DataSpec

CHANNELS = (32, 64)


class ConvGaussianEncoder(nn.Module):
    """q(z|x) = N(mu(x), diag sigma(x)^2) from two strided convolutions and a linear layer."""

    def __init__(self, data: DataSpec, hidden: int, latent: int) -> None:
        super().__init__()
        h, w = data.image_shape  # type: ignore[misc]
        self.shape = (1, h, w)
        self.scale = 1.0 / (data.levels - 1)
        self.latent = latent
        c1, c2 = CHANNELS
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 4, stride=2, padding=1),
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

    def __init__(self, data: DataSpec, hidden: int, latent: int) -> None:
        super().__init__()
        h, w = data.image_shape  # type: ignore[misc]
        self.dim = data.dim
        self.levels = data.levels
        self.out_channels = 1 if data.binary else data.levels
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
