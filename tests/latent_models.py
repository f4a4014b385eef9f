"""Small hand-made encoders, decoders and priors whose metrics have known answers."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, MixtureSameFamily, Normal

from vaebench.contracts import DataSpec, EvalSettings, SuiteData
from vaebench.evaluate import EvalContext
from vaebench.model import VAE


class FixedGaussianEncoder(nn.Module):
    """q(z|x_i) = N(mu_i, diag scale_i^2), where column 0 of x holds the row index i."""

    def __init__(self, mu: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mu", mu.float())
        self.register_buffer("scale", scale.float().expand_as(mu).clone())

    def forward(self, x: torch.Tensor) -> Independent:
        i = x[:, 0].long()
        return Independent(Normal(self.mu[i], self.scale[i], validate_args=False), 1)


class LinearGaussianEncoder(nn.Module):
    """q(z|x) = N(A x + b, diag exp(C x + d)): a linear VAE's encoder."""

    def __init__(self, data_dim: int, latent: int) -> None:
        super().__init__()
        self.latent = latent
        self.net = nn.Linear(data_dim, 2 * latent)

    def forward(self, x: torch.Tensor) -> Independent:
        mu, log_scale = self.net(x).split(self.latent, dim=-1)
        return Independent(Normal(mu, log_scale.exp(), validate_args=False), 1)


class ConstantBernoulliDecoder(nn.Module):
    """p(x|z) = prod_d Bernoulli(x_d | sigmoid(l_d)): ignores z entirely."""

    def __init__(self, data_dim: int, logit: float = 0.0) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.full((data_dim,), float(logit)))

    def forward(self, z: torch.Tensor) -> Independent:
        logits = self.logits.expand(*z.shape[:-1], -1)
        return Independent(Bernoulli(logits=logits, validate_args=False), 1)


class LinearGaussianDecoder(nn.Module):
    """p(x|z) = N(W z + b, sigma^2 I) with a fixed sigma: probabilistic PCA's likelihood."""

    def __init__(self, latent: int, data_dim: int, sigma: float) -> None:
        super().__init__()
        self.net = nn.Linear(latent, data_dim)
        self.sigma = sigma

    def forward(self, z: torch.Tensor) -> Independent:
        mean = self.net(z)
        return Independent(Normal(mean, torch.full_like(mean, self.sigma), validate_args=False), 1)


class GaussianPrior(nn.Module):
    """p(z) = N(0, scale^2 I). ``marginals`` chooses what its optional ``marginals()`` gives:
    ``"normal"``, a one-component ``"mixture"`` (same density, no closed form) or nothing."""

    def __init__(self, latent: int, scale: float = 1.0, marginals: str | None = "normal") -> None:
        super().__init__()
        self.latent, self.scale, self.kind = latent, scale, marginals
        if marginals is None:
            self.marginals = None

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return (-0.5 * (z / self.scale).pow(2) - math.log(self.scale * math.sqrt(2 * math.pi))).sum(
            -1
        )

    def sample(self, n: int) -> torch.Tensor:
        return self.scale * torch.randn(n, self.latent)

    def marginals(self) -> Normal | MixtureSameFamily:
        normal = Normal(torch.zeros(self.latent), torch.full((self.latent,), self.scale))
        if self.kind == "normal":
            return normal
        weights = Categorical(logits=torch.zeros(self.latent, 1))
        return MixtureSameFamily(weights, Normal(normal.loc[:, None], normal.scale[:, None]))


def index_data(n: int, dim: int = 2) -> torch.Tensor:
    """Rows whose column 0 is the row index, for :class:`FixedGaussianEncoder`."""
    x = torch.zeros(n, dim)
    x[:, 0] = torch.arange(n, dtype=torch.float32)
    return x


def context(
    model: VAE,
    test: torch.Tensor,
    *,
    train: torch.Tensor | None = None,
    ood: dict[str, torch.Tensor] | None = None,
    levels: int = 2,
    settings: EvalSettings | None = None,
) -> EvalContext:
    """An evaluation context over ``test`` (train and val default to it)."""
    train = test if train is None else train
    data = SuiteData(DataSpec(dim=test.shape[1], levels=levels), train, test, test, ood or {})
    latent = model.prior.latent if hasattr(model.prior, "latent") else model.encoder.latent
    return EvalContext(
        model.eval(), data, settings or EvalSettings(k=10, k_ood=10), torch.device("cpu"), latent
    )


def gaussian_kl(m: float, s: float, m2: float, s2: float) -> float:
    """KL(N(m, s^2) || N(m2, s2^2)) in nats."""
    return math.log(s2 / s) + (s**2 + (m - m2) ** 2) / (2 * s2**2) - 0.5
