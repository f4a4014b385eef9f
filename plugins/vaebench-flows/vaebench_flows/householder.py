"""The Householder flow posterior (Tomczak & Welling 2016, "Improving Variational Auto-Encoders
using Householder Flow").

Each step reflects z in the hyperplane orthogonal to a vector v_t(x):
``H_t z = z - 2 v_t (v_t . z) / |v_t|^2``. Reflections are orthogonal, so every step preserves
volume (log |det| = 0) and is its own inverse; T steps turn the diagonal Gaussian into a
Gaussian with a full covariance ``U diag(sigma^2) U^T`` (U = H_T ... H_1). The paper chains the
vectors (v_t from v_{t-1}); here each v_t is a linear function of the encoder's features.
"""

from __future__ import annotations

import torch
from torch import nn

from vaebench_flows.posterior import AmortizedFlow, Chain

_TINY = 1e-12  # keeps a zero vector from dividing by zero; H is then the identity


def reflect(v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``z - 2 v (v.z)/|v|^2`` for ``v [B, M]`` broadcasting against ``z [..., B, M]``."""
    coeff = (v * z).sum(-1, keepdim=True) / (v * v).sum(-1, keepdim=True).clamp_min(_TINY)
    return z - 2.0 * v * coeff


class Reflection:
    """One Householder step bound to per-point vectors ``v [B, M]``."""

    def __init__(self, v: torch.Tensor) -> None:
        self.v = v

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return reflect(self.v, z), torch.zeros((), dtype=z.dtype, device=z.device)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return reflect(self.v, y)


class HouseholderFlow(AmortizedFlow):
    """``steps`` reflections whose vectors are linear in the encoder's features."""

    def __init__(self, hidden: int, latent: int, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.latent = latent
        self.vectors = nn.Linear(hidden, steps * latent) if steps else None

    def bind(self, h: torch.Tensor) -> Chain:
        if self.vectors is None:
            return Chain([])
        vs = self.vectors(h).unflatten(-1, (self.steps, self.latent))
        return Chain([Reflection(vs[..., t, :]) for t in range(self.steps)])
