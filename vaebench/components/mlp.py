"""MLP encoder and decoders, as in the reference VAE (Kingma & Welling 2014).

Every network is Linear-LeakyReLU-Linear-LeakyReLU-Linear. The encoder sees data scaled to
[0, 1]; decoders return distributions over the data's integer levels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, Normal

from vaebench.contracts import BuildContext


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, n_out),
    )


class GaussianMLPEncoder(nn.Module):
    """q(z|x) = N(mu(x), diag(exp(logvar(x))))."""

    def __init__(self, data_dim: int, levels: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.scale = 1.0 / (levels - 1)
        self.latent = latent
        self.net = mlp(data_dim, hidden, 2 * latent)

    def forward(self, x: torch.Tensor) -> Independent:
        mu, logvar = self.net(x * self.scale).split(self.latent, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1)


class BernoulliMLPDecoder(nn.Module):
    """p(x|z) = prod_d Bernoulli(x_d | sigmoid(f(z)_d)), for binary data."""

    def __init__(self, latent: int, hidden: int, data_dim: int) -> None:
        super().__init__()
        self.net = mlp(latent, hidden, data_dim)

    def forward(self, z: torch.Tensor) -> Independent:
        return Independent(Bernoulli(logits=self.net(z), validate_args=False), 1)


class CategoricalMLPDecoder(nn.Module):
    """p(x|z) = prod_d Categorical(x_d | softmax(f(z)_d)) over ``levels`` values per dimension."""

    def __init__(self, latent: int, hidden: int, data_dim: int, levels: int) -> None:
        super().__init__()
        self.data_dim = data_dim
        self.levels = levels
        self.net = mlp(latent, hidden, data_dim * levels)

    def forward(self, z: torch.Tensor) -> Independent:
        logits = self.net(z).unflatten(-1, (self.data_dim, self.levels))
        return Independent(Categorical(logits=logits, validate_args=False), 1)


def build_gaussian_encoder(ctx: BuildContext) -> GaussianMLPEncoder:
    hidden = int(ctx.options.get("hidden", ctx.hidden_dim))
    return GaussianMLPEncoder(ctx.data.dim, ctx.data.levels, hidden, ctx.latent_dim)


def build_bernoulli_decoder(ctx: BuildContext) -> BernoulliMLPDecoder:
    hidden = int(ctx.options.get("hidden", ctx.hidden_dim))
    return BernoulliMLPDecoder(ctx.latent_dim, hidden, ctx.data.dim)


def build_categorical_decoder(ctx: BuildContext) -> CategoricalMLPDecoder:
    hidden = int(ctx.options.get("hidden", ctx.hidden_dim))
    return CategoricalMLPDecoder(ctx.latent_dim, hidden, ctx.data.dim, ctx.data.levels)
