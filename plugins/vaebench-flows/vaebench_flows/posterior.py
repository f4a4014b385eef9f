"""A Gaussian posterior pushed through invertible maps, with exact log-densities.

q(z|x) is the density of ``z_T = f_T(...f_1(z_0))`` with ``z_0 ~ N(mu(x), diag sigma(x)^2)``
and each ``f_t`` depending on x (Rezende & Mohamed 2015):
``log q(z_T|x) = log N(z_0) - sum_t log |det df_t/dz_{t-1}|``.

``rsample`` computes that log-density alongside the sample and remembers it for the exact
tensor it returned, so the ELBO and IW bound (which score the draws they just made) cost one
pass. ``log_prob`` of any other value inverts the flow exactly (each step provides an inverse)
and broadcasts like a torch distribution, as aggregate-posterior metrics need; that is slower
(IAF inverts one dimension per pass, Sylvester by back-substitution) but exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, constraints

from vaebench.contracts import DataSpec

_REMEMBERED = 4  # draws whose log q is kept: log_weights scores the draw it has just made


class Step(Protocol):
    """One invertible map bound to a batch of data points (parameters of batch ``[B]``)."""

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [..., B, M] -> (f(z), log |det df/dz| [..., B])``."""
        ...

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """``f^{-1}(y)`` for ``y [..., B, M]`` (any leading shape broadcasting with B)."""
        ...


class Chain:
    """Steps applied in order; log-determinants add."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = torch.zeros((), dtype=z.dtype, device=z.device)
        for step in self.steps:
            z, logdet = step.forward(z)
            total = total + logdet
        return z, total.expand(z.shape[:-1])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for step in reversed(self.steps):
            y = step.inverse(y)
        return y


class FlowPosterior(Distribution):
    """q(z|x) of batch ``[B]`` and event ``[M]``: a diagonal Gaussian through a :class:`Chain`."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, flow: Chain) -> None:
        self.base = Independent(Normal(loc, scale, validate_args=False), 1)
        self.flow = flow
        self._drawn: list[tuple[torch.Tensor, torch.Tensor]] = []
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> torch.Tensor:
        z0 = self.base.rsample(torch.Size(sample_shape))
        z, logdet = self.flow.forward(z0)
        self._drawn = [*self._drawn[-(_REMEMBERED - 1) :], (z, self.base.log_prob(z0) - logdet)]
        return z

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        for z, log_q in self._drawn:
            if value is z:
                return log_q
        z0 = self.flow.inverse(value)
        _, logdet = self.flow.forward(z0)
        return self.base.log_prob(z0) - logdet


class AmortizedFlow(nn.Module):
    """Maps an encoder's hidden features ``h [B, H]`` to a :class:`Chain` bound to each point.
    The base of the flows here (Householder, IAF, Sylvester); each defines ``bind``."""

    def bind(self, h: torch.Tensor) -> Chain:
        raise NotImplementedError(
            f"{type(self).__name__} is an AmortizedFlow without bind(h); a flow subclass must "
            "define bind to map hidden features [B, H] to the Chain of each point's steps"
        )


class FlowEncoder(nn.Module):
    """The built-in MLP encoder's network (two LeakyReLU layers to a diagonal Gaussian), whose
    last hidden features also parameterise the flow; with no flow steps it is that encoder."""

    def __init__(self, data: DataSpec, hidden: int, latent: int, flow: AmortizedFlow) -> None:
        super().__init__()
        self.scale = 1.0 / (data.levels - 1)
        self.latent = latent
        self.trunk = nn.Sequential(
            nn.Linear(data.dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU()
        )
        self.gaussian = nn.Linear(hidden, 2 * latent)
        self.flow = flow

    def forward(self, x: torch.Tensor) -> FlowPosterior:
        h = self.trunk(x * self.scale)
        mu, logvar = self.gaussian(h).split(self.latent, dim=-1)
        return FlowPosterior(mu, torch.exp(0.5 * logvar), self.flow.bind(h))
