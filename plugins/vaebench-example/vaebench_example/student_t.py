"""The Student-t prior module (see the package docstring)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import StudentT

MIN_DF = 0.5  # below this the tails are so heavy that training is unstable


class StudentTPrior(nn.Module):
    """p(z) = prod_d StudentT(z_d; nu_d, 0, s_d), ``nu_d = MIN_DF + softplus(.)`` and
    ``s_d = exp(.)`` trained; starts at ``nu = df`` and ``s = 1``."""

    def __init__(self, latent: int, df: float) -> None:
        super().__init__()
        if not df > MIN_DF:
            raise ValueError(f"student-t prior: df must be > {MIN_DF}, got {df!r}")
        # softplus^-1(df - MIN_DF), so that the prior starts at the requested df exactly
        raw = math.log(math.expm1(df - MIN_DF))
        self.raw_df = nn.Parameter(torch.full((latent,), raw))
        self.log_scale = nn.Parameter(torch.zeros(latent))

    def marginals(self) -> StudentT:
        """The one-dimensional marginals p(z_d), batch ``[M]`` (collapse metrics use them)."""
        df = MIN_DF + nn.functional.softplus(self.raw_df)
        return StudentT(df, torch.zeros_like(df), self.log_scale.exp(), validate_args=False)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.marginals().log_prob(z).sum(-1)

    def sample(self, n: int) -> torch.Tensor:
        return self.marginals().sample((n,))
