"""The prior ``hvae-prior``: p(z) = p(z2) p(z1|z2) over z = (z1, z2).

p(z1|z2) is a diagonal Gaussian whose mean and log-variance a network computes from z2. The top
p(z2) (option ``top``) is N(0, I) or a VampPrior (Tomczak & Welling 2018): the mixture of the
encoder's top path at learned pseudo-inputs, 1/K sum_k q(z2|u_k). vaebench's own VampPrior does
the mixing; it is handed the top path instead of the whole encoder. The top path is
``hvae-encoder``'s (:meth:`HierarchicalEncoder.top`), or, for any encoder whose q(z|x) is a
diagonal Gaussian, its exact marginal over the z2 coordinates.

There is no ``marginals()``: p(z1) is an integral over z2 with no closed form. The built-in
collapse metric then reports the total KL without its per-dimension split, and the plugin's
``hvae-collapse`` metric reports it per layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Independent, Normal

from vaebench.components.priors import StandardNormalPrior, VampPrior
from vaebench.contracts import DataSpec
from vaebench.errors import ContractError
from vaebench_hvae.nets import GaussianHead, Net, initialise
from vaebench_hvae.posterior import HierarchicalEncoder
from vaebench_hvae.settings import Settings


class TopPath(nn.Module):
    """x to a diagonal Gaussian over z2, through an encoder held without registering it: its
    parameters belong to the VAE's encoder (as in vaebench's VampPrior)."""

    def __init__(self, encoder: nn.Module, z1: int) -> None:
        super().__init__()
        object.__setattr__(self, "_encoder", encoder)
        self.z1 = z1

    def forward(self, x: torch.Tensor) -> Independent:
        if isinstance(self._encoder, HierarchicalEncoder):
            return self._encoder.top(x)
        base = self._encoder(x).base_dist
        return Independent(Normal(base.loc[..., self.z1 :], base.scale[..., self.z1 :]), 1)


def check_top_path(encoder: nn.Module, data: DataSpec, who: str) -> None:
    """Refuse an encoder that has no top path (one whose q(z|x) is not a diagonal Gaussian)."""
    if isinstance(encoder, HierarchicalEncoder):
        return
    with torch.random.fork_rng(), torch.no_grad():  # a probe must not move the build's RNG
        q = encoder(torch.zeros(1, data.dim))
    diagonal = (
        isinstance(q, Independent)
        and q.reinterpreted_batch_ndims == 1
        and type(q.base_dist) is Normal
    )
    if not diagonal:
        raise ContractError(
            f"{who} with top=vamp passes its pseudo-inputs through the encoder's path to z2, "
            f"which needs the encoder 'hvae-encoder' or one whose q(z|x) is a diagonal Gaussian; "
            f"this encoder returns {type(q).__name__}. Use --encoders hvae-encoder, or "
            "--component-option prior.top=standard-normal"
        )


class HierarchicalPrior(nn.Module):
    """p(z2) p(z1|z2); ``top`` is a module with ``log_prob`` and ``sample`` over z2."""

    def __init__(self, settings: Settings, top: nn.Module) -> None:
        super().__init__()
        s = self.settings = settings
        self.top = top
        self.net = Net(s.z2, s.hidden_top, 2 * s.z1, s.activation)
        self.head = GaussianHead(s.z1, s.logvar_bounds)
        initialise(self.net, s.init)

    def conditional(self, z2: torch.Tensor) -> Normal:
        """p(z1|z2), per coordinate of z1 (batch ``[..., M1]``)."""
        return self.head(self.net(z2))

    def layer_log_probs(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(z1|z2) per coordinate of z1 (``[..., M1]``) and log p(z2) (``[...]``)."""
        z1, z2 = z[..., : self.settings.z1], z[..., self.settings.z1 :]
        return self.conditional(z2).log_prob(z1), self.top.log_prob(z2)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        per_dim, top = self.layer_log_probs(z)
        return per_dim.sum(-1) + top

    def top_per_dim(self, z2: torch.Tensor) -> torch.Tensor | None:
        """log p(z2) per coordinate where the top factorises (N(0, I)), else None."""
        if isinstance(self.top, StandardNormalPrior):
            return Normal(torch.zeros_like(z2), torch.ones_like(z2)).log_prob(z2)
        return None

    def sample(self, n: int) -> torch.Tensor:
        z2 = self.top.sample(n)
        return torch.cat((self.conditional(z2).sample(), z2), -1)


def build_top(settings: Settings, data: DataSpec, encoder: nn.Module | None, who: str) -> nn.Module:
    if settings.top == "standard-normal":
        return StandardNormalPrior(settings.z2)
    if encoder is None:
        raise ContractError(f"{who} with top=vamp needs the model's encoder; build it first")
    check_top_path(encoder, data, who)
    return VampPrior(
        TopPath(encoder, settings.z1),
        data.dim,
        data.levels,
        settings.pseudo_inputs,
        settings.pseudo_init,
        settings.pseudo_mean,
        settings.pseudo_std,
    )
