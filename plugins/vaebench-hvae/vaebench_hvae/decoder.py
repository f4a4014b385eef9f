"""The decoder ``hvae-decoder``: p(x|z1) (``burda``) or p(x|z1, z2) (``tomczak``).

The output distribution is vaebench's own: independent Bernoulli pixels for binary data, a
categorical over the levels of each dimension otherwise, so the decoder fits every suite.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Bernoulli, Independent

from vaebench.components.mlp import BernoulliPixels, LevelCategorical
from vaebench.contracts import DataSpec
from vaebench_hvae.nets import JoinedNet, Net, initialise
from vaebench_hvae.settings import Settings


class HierarchicalDecoder(nn.Module):
    def __init__(self, data: DataSpec, settings: Settings) -> None:
        super().__init__()
        s = self.settings = settings
        self.binary = data.binary
        self.dim, self.levels = data.dim, data.levels
        out = data.dim if data.binary else data.dim * data.levels
        self.reads_top = s.form == "tomczak"
        if self.reads_top:
            self.net: nn.Module = JoinedNet(s.z1, s.z2, s.hidden, out, s.activation)
        else:
            self.net = Net(s.z1, s.hidden, out, s.activation)
        initialise(self, s.init)

    def forward(self, z: torch.Tensor) -> Independent:
        z1 = z[..., : self.settings.z1]
        logits = self.net(z1, z[..., self.settings.z1 :]) if self.reads_top else self.net(z1)
        if self.binary:
            return BernoulliPixels(Bernoulli(logits=logits, validate_args=False), 1)
        return Independent(LevelCategorical(logits.unflatten(-1, (self.dim, self.levels))), 1)
