"""The inverse autoregressive flow posterior (Kingma et al. 2016, "Improved Variational
Inference with Inverse Autoregressive Flow").

Each step is ``y = sigma * z + (1 - sigma) * m`` with ``[m, s] = MADE(z, h)`` autoregressive
in z (output i sees only ``z_<i``, Germain et al. 2015), ``sigma = sigmoid(s)`` and h the
encoder's features: the paper's numerically stable form. The Jacobian is triangular, so
``log |det| = sum_i log sigma_i``. Steps alternate the order of the dimensions (a reversal:
volume preserving). The inverse is sequential: M passes of the MADE recover z one dimension
per pass, exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaebench_flows.posterior import AmortizedFlow, Chain

GATE_BIAS = 2.0  # sigma starts near sigmoid(2) = 0.88: steps begin close to the identity


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask."""

    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor) -> None:
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Two masked hidden layers; the context enters the first. Outputs ``m, s`` of ``[.., M]``
    where output i depends on inputs ``< i`` only (in the order given)."""

    def __init__(self, latent: int, hidden: int, context: int) -> None:
        super().__init__()
        d_in = torch.arange(1, latent + 1)
        d_hidden = torch.arange(hidden) % max(1, latent - 1) + 1
        self.layer1 = MaskedLinear(latent, hidden, d_hidden[:, None] >= d_in[None, :])
        self.context = nn.Linear(context, hidden, bias=False)
        self.layer2 = MaskedLinear(hidden, hidden, d_hidden[:, None] >= d_hidden[None, :])
        out_mask = d_in[:, None] > d_hidden[None, :]
        self.out = MaskedLinear(hidden, 2 * latent, torch.cat([out_mask, out_mask]))
        with torch.no_grad():
            self.out.bias[latent:].fill_(GATE_BIAS)

    def forward(self, z: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = F.elu(self.layer1(z) + context)
        a = F.elu(self.layer2(a))
        return self.out(a).chunk(2, dim=-1)


class IAFStep:
    """One IAF step bound to the context of a batch of points (``[B, hidden]``)."""

    def __init__(self, made: MADE, context: torch.Tensor, reverse: bool) -> None:
        self.made = made
        self.context = context  # the MADE's first-layer contribution, computed once per batch
        self.reverse = reverse

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, s = self.made(z, self.context)
        sigma = torch.sigmoid(s)
        y = sigma * z + (1 - sigma) * m
        return (y.flip(-1) if self.reverse else y), F.logsigmoid(s).sum(-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        if self.reverse:
            y = y.flip(-1)
        z = y
        tolerance = 4 * torch.finfo(y.dtype).eps
        # The inverse is the fixed point of z -> (y - (1 - sigma(z)) m(z)) / sigma(z). Output i
        # depends on z_<i only, so after pass i dimensions 0..i are exact: M passes at most.
        # Most points settle sooner; stopping once nothing moves saves the rest.
        for _ in range(y.shape[-1]):
            m, s = self.made(z, self.context)
            sigma = torch.sigmoid(s)
            new = (y - (1 - sigma) * m) / sigma
            settled = bool(((new - z).abs() <= tolerance * (1 + new.abs())).all())
            z = new
            if settled:
                break
        return z


class IAFFlow(AmortizedFlow):
    """``steps`` IAF steps, each with its own MADE, alternating the order of dimensions."""

    def __init__(self, hidden: int, latent: int, steps: int, made_hidden: int) -> None:
        super().__init__()
        self.mades = nn.ModuleList(MADE(latent, made_hidden, hidden) for _ in range(steps))

    def bind(self, h: torch.Tensor) -> Chain:
        return Chain(
            [
                IAFStep(made, made.context(h), reverse=t % 2 == 1)
                for t, made in enumerate(self.mades)
            ]
        )
