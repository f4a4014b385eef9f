"""A RealNVP flow prior (Dinh et al. 2017, "Density estimation using Real NVP").

p(z) is a standard Gaussian pushed through affine coupling layers: each keeps half of the
dimensions (alternating even/odd) and maps the other half to ``z * exp(s) + t`` with ``s, t``
functions of the kept half. ``log p(z) = log N(g(z); 0, I) + sum_l sum_i s_il`` where g runs
the layers in the data-to-noise direction; ``sample`` runs their exact inverses. ``s`` is
``tanh``-bounded, and the last layer of each coupling network starts at zero, so the prior
starts as N(0, I) exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class AffineCoupling(nn.Module):
    """Maps the dimensions where ``mask`` is False, conditioned on those where it is True."""

    def __init__(self, mask: torch.Tensor, hidden: int) -> None:
        super().__init__()
        latent = mask.numel()
        self.register_buffer("keep", mask.float())
        self.net = nn.Sequential(
            nn.Linear(latent, hidden),
            nn.LeakyReLU(),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(),
            nn.Linear(hidden, 2 * latent),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _shift_scale(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(kept).chunk(2, dim=-1)
        change = 1 - self.keep
        return torch.tanh(s) * change, t * change

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data to noise: ``(u, log |det du/dz|)``."""
        s, t = self._shift_scale(z * self.keep)
        return z * torch.exp(s) + t, s.sum(-1)

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        s, t = self._shift_scale(u * self.keep)  # kept dimensions pass through unchanged
        return (u - t) * torch.exp(-s)


class RealNVPPrior(nn.Module):
    """``layers`` affine couplings on ``latent`` dimensions over a standard Gaussian."""

    def __init__(self, latent: int, layers: int, hidden: int) -> None:
        super().__init__()
        self.latent = latent
        even = torch.arange(latent) % 2 == 0
        self.couplings = nn.ModuleList(
            AffineCoupling(even if i % 2 == 0 else ~even, hidden) for i in range(layers)
        )
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def to_noise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for coupling in self.couplings:
            z, ld = coupling(z)
            logdet = logdet + ld
        return z, logdet

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        u, logdet = self.to_noise(z)
        return -0.5 * (u.pow(2) + math.log(2 * math.pi)).sum(-1) + logdet

    def sample(self, n: int) -> torch.Tensor:
        u = torch.randn(n, self.latent, device=self._anchor.device, dtype=self._anchor.dtype)
        for coupling in reversed(self.couplings):
            u = coupling.inverse(u)
        return u
