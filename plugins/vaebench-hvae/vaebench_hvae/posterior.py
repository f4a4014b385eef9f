"""The encoder ``hvae-encoder``: q(z1, z2 | x) as one distribution over z = (z1, z2).

Two factorisations (option ``form``):

* ``burda``: q(z1|x) q(z2|z1), bottom-up (Burda et al. 2015);
* ``tomczak``: q(z2|x) q(z1|x, z2) (Tomczak & Welling 2018, ``hvae_2level``).

Both are "a first layer given x, then the other layer given the first": :class:`TwoLayerPosterior`
draws the first layer, then the second from its conditional at that draw, and its ``log_prob``
is the exact joint density, the sum of the two factors' log densities, at any z: the draws
just made, or values of shape ``[..., 1, M]`` scored against a batch ``[N]`` of points
(aggregate-posterior metrics).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, constraints

from vaebench.contracts import DataSpec
from vaebench_hvae.nets import GaussianHead, JoinedNet, Net, initialise
from vaebench_hvae.settings import Settings


class TwoLayerPosterior(Distribution):
    """q(a|x) q(b|a, x) over z = (z1, z2), where a is the layer drawn first.

    :param first: q(a|x), a Normal of batch ``[B, M_a]``.
    :param conditional: maps draws of a (``[..., B or 1, M_a]``) to q(b|a, x), a Normal over b.
    :param bottom_up: a is z1 (``burda``), else a is z2 (``tomczak``).
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        first: Normal,
        conditional: Callable[[torch.Tensor], Normal],
        z1: int,
        z2: int,
        bottom_up: bool,
    ) -> None:
        self.first = first
        self.conditional = conditional
        self.z1, self.z2 = z1, z2
        self.bottom_up = bottom_up
        super().__init__(first.batch_shape[:-1], torch.Size([z1 + z2]), validate_args=False)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> torch.Tensor:
        # The noise of a first, then of b: two standard-normal draws in a fixed order, which
        # is what seeds trained together replay.
        a = self.first.rsample(sample_shape)
        b = self.conditional(a).rsample()
        return torch.cat((a, b) if self.bottom_up else (b, a), -1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def _parts(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = z[..., : self.z1], z[..., self.z1 :]
        return (z1, z2) if self.bottom_up else (z2, z1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        a, b = self._parts(value)
        return self.first.log_prob(a).sum(-1) + self.conditional(a).log_prob(b).sum(-1)

    def log_prob_per_dim(self, value: torch.Tensor) -> torch.Tensor:
        """Each coordinate's log density under its own layer's conditional, ``[..., M]`` in
        z's order (z1, then z2); the sum over the last axis is :meth:`log_prob`. Both factors
        are diagonal, so this splits the joint exactly (the per-layer collapse metric)."""
        a, b = self._parts(value)
        la, lb = self.first.log_prob(a), self.conditional(a).log_prob(b)
        lead = torch.broadcast_shapes(la.shape[:-1], lb.shape[:-1])
        la, lb = la.expand(*lead, la.shape[-1]), lb.expand(*lead, lb.shape[-1])
        return torch.cat((la, lb) if self.bottom_up else (lb, la), -1)


class HierarchicalEncoder(nn.Module):
    """q(z1, z2 | x) in the ``form`` of ``settings``; networks as :mod:`vaebench_hvae.nets`."""

    def __init__(self, data: DataSpec, settings: Settings) -> None:
        super().__init__()
        s = self.settings = settings
        self.scale = 1.0 / (data.levels - 1)
        self.bottom_up = s.form == "burda"
        first, second = (s.z1, s.z2) if self.bottom_up else (s.z2, s.z1)
        self.first = Net(data.dim, s.hidden, 2 * first, s.activation)
        if self.bottom_up:  # q(z2 | z1): the top path, of its own width
            self.second: nn.Module = Net(first, s.hidden_top, 2 * second, s.activation)
        else:  # q(z1 | x, z2)
            self.second = JoinedNet(data.dim, first, s.hidden, 2 * second, s.activation)
        self.first_head = GaussianHead(first, s.logvar_bounds)
        self.second_head = GaussianHead(second, s.logvar_bounds)
        initialise(self, s.init)

    def forward(self, x: torch.Tensor) -> TwoLayerPosterior:
        x = x * self.scale
        first = self.first_head(self.first(x))
        if self.bottom_up:

            def conditional(a: torch.Tensor) -> Normal:
                return self.second_head(self.second(a))

        else:
            # The x branch of q(z1 | x, z2) once per point, not once per draw of z2.
            hx = self.second.branch_a(x)

            def conditional(a: torch.Tensor) -> Normal:
                net = self.second
                return self.second_head(net.out(net.joint(hx, net.branch_b(a))))

        return TwoLayerPosterior(
            first, conditional, self.settings.z1, self.settings.z2, self.bottom_up
        )

    def top(self, x: torch.Tensor) -> Independent:
        """The encoder's path from x to the top layer, a diagonal Gaussian over z2 (batch
        ``[B]``): q(z2|x) in the ``tomczak`` form; in the ``burda`` form, where q(z2|x) is an
        integral over z1, q(z2 | z1 = E[z1|x]), the bottom-up path through the mean."""
        x = x * self.scale
        first = self.first_head(self.first(x))
        top = first if not self.bottom_up else self.second_head(self.second(first.loc))
        return Independent(top, 1)
