"""MLP encoder and decoders, as in the reference VAE (Kingma & Welling 2014) and the set-ups of
Burda et al. 2015 and Tomczak & Welling 2018.

By default every network is Linear-LeakyReLU-Linear-LeakyReLU-Linear. Options choose the
hidden layers' ``activation`` (``leaky_relu``, ``tanh``, or ``gated``: h = (W1 x + b1) *
sigmoid(W2 x + b2), the gated dense layer of Tomczak & Welling's reference code), their number
(``layers``), the weight initialisation (``init``: torch's default or ``he``, weights drawn from
N(0, 2 / fan_in)) and, for the encoder, bounds on the log-variance (``logvar_bounds``: a hard
tanh to [-6, 2] in Tomczak & Welling's set-up). The encoder sees data scaled to [0, 1]; decoders
return distributions over the data's integer levels.

The decoders' distributions are torch's ``Independent(Bernoulli)`` and ``Categorical`` with a
cheaper ``log_prob`` (the same values up to float rounding): on CPU, scoring the logits cost as
much as the GEMMs that produce them (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal
from torch.distributions.utils import lazy_property

from vaebench.contracts import BuildContext
from vaebench.errors import ConfigError

ACTIVATIONS = ("leaky_relu", "tanh", "gated")
INITS = ("default", "he")
# The options every MLP component takes, with their defaults (part of every result key).
MLP_OPTIONS: dict[str, Any] = {"layers": 2, "activation": "leaky_relu", "init": "default"}
ENCODER_OPTIONS: dict[str, Any] = {**MLP_OPTIONS, "logvar_bounds": None}


class GatedDense(nn.Module):
    """h = (W1 x + b1) * sigmoid(W2 x + b2), as one GEMM producing both halves."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.n_out = n_out
        self.linear = nn.Linear(n_in, 2 * n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, g = self.linear(x).split(self.n_out, dim=-1)
        return h * torch.sigmoid(g)


def mlp(
    n_in: int,
    hidden: int,
    n_out: int,
    *,
    layers: int = 2,
    activation: str = "leaky_relu",
    init: str = "default",
) -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden`` and a linear output layer."""
    modules: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        if activation == "gated":
            modules.append(GatedDense(width, hidden))
        else:
            modules.append(nn.Linear(width, hidden))
            modules.append(nn.LeakyReLU() if activation == "leaky_relu" else nn.Tanh())
        width = hidden
    modules.append(nn.Linear(width, n_out))
    net = nn.Sequential(*modules)
    if init == "he":
        # A gated layer's two halves are each an n_in -> n_out layer: N(0, 2 / n_in) for both.
        for module in net.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / module.in_features))
    return net


def mlp_options(ctx: BuildContext, who: str) -> dict[str, Any]:
    """The MLP's hidden width and checked ``layers``/``activation``/``init`` options."""
    options: Mapping[str, Any] = ctx.options
    layers = options.get("layers", MLP_OPTIONS["layers"])
    activation = options.get("activation", MLP_OPTIONS["activation"])
    init = options.get("init", MLP_OPTIONS["init"])
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ConfigError(f"{who}: option layers must be a whole number >= 1, got {layers!r}")
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"{who}: option activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
        )
    if init not in INITS:
        raise ConfigError(f"{who}: option init must be one of {', '.join(INITS)}, got {init!r}")
    hidden = int(options.get("hidden") or ctx.hidden_dim)
    return {"hidden": hidden, "layers": layers, "activation": activation, "init": init}


# A product of this many sigmoids of |logit| (each in [1/2, 1]) stays above 2**-120, a normal
# float32: it neither underflows nor loses precision (relative rounding below 120 * 2**-24).
_MAX_PRODUCT = 120
_MIN_PRODUCT = 8  # fewer factors per logarithm would not pay for the extra passes


@functools.cache
def _product_group(dim: int) -> int:
    """The largest divisor of ``dim`` that is at most ``_MAX_PRODUCT``."""
    return max(g for g in range(1, min(dim, _MAX_PRODUCT) + 1) if dim % g == 0)


class BernoulliPixels(Independent):
    """``Independent(Bernoulli(logits=...), 1)``, summing log-probabilities over pixels.

    With gradients (training), ``log_prob`` is torch's. Without them (evaluation), it computes
    the sum over pixels directly, with one sigmoid per pixel as its only transcendental function
    instead of softplus's exp and log1p::

        x l - softplus(l) = (x l - relu(l)) + log sigmoid(|l|)

    and the log-sigmoids of each group of ``_product_group(D)`` pixels are added as the
    logarithm of their product. The result equals the plain sum up to float rounding: within
    about ``D * 2**-24`` nats (sigmoids near 1 round to 1), as torch's own path is for
    log-likelihoods far from 0 (measured against float64 in benchmarks/README.md).
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        base = self.base_dist
        if torch.is_grad_enabled() or self.reinterpreted_batch_ndims != 1:
            return super().log_prob(value)
        logits = base.logits
        group = _product_group(logits.shape[-1])
        if (
            logits.dtype not in (torch.float32, torch.float64)
            or value.dtype != logits.dtype
            or group < _MIN_PRODUCT
            or torch.broadcast_shapes(value.shape, logits.shape) != logits.shape
        ):
            return super().log_prob(value)
        # No out= and no in-place addcmul_: they have no batching rule under torch.func.vmap
        # (seeds evaluated together) and fall back to a per-seed loop; sigmoid_ and log_ have one.
        excess = torch.addcmul(logits.clamp(min=0), logits, value, value=-1.0)  # relu(l) - x l
        sigmoids = logits.abs().sigmoid_().unflatten(-1, (-1, group))
        return sigmoids.prod(-1).log_().sum(-1) - excess.sum(-1)


class LevelCategorical(Categorical):
    """``Categorical(logits=...)`` over the last axis, normalised only when first needed.

    torch's ``Categorical`` normalises its logits as it is built (a logsumexp and a subtraction:
    several passes and temporaries the size of the logits); here ``logits`` is one fused
    ``log_softmax`` computed on first use, and ``log_prob`` (torch's: a gather) reads it.
    """

    def __init__(self, logits: torch.Tensor) -> None:
        self._raw_logits = logits
        # what Categorical's methods read: _param for shape, dtype and device; _num_events
        self._param = logits
        self._num_events = logits.shape[-1]
        Distribution.__init__(self, logits.shape[:-1], validate_args=False)

    @lazy_property
    def logits(self) -> torch.Tensor:
        return torch.log_softmax(self._raw_logits, dim=-1)

    def expand(
        self, batch_shape: torch.Size | list[int] | tuple[int, ...], _instance: object = None
    ) -> LevelCategorical:
        shape = torch.Size(batch_shape) + torch.Size((self._num_events,))
        return LevelCategorical(self._raw_logits.expand(shape))


class GaussianMLPEncoder(nn.Module):
    """q(z|x) = N(mu(x), diag(exp(logvar(x)))), the log-variance optionally bounded."""

    def __init__(
        self,
        data_dim: int,
        levels: int,
        hidden: int,
        latent: int,
        logvar_bounds: tuple[float, float] | None = None,
        **net: Any,
    ) -> None:
        super().__init__()
        self.scale = 1.0 / (levels - 1)
        self.latent = latent
        self.net = mlp(data_dim, hidden, 2 * latent, **net)
        self.logvar_bounds = logvar_bounds

    def forward(self, x: torch.Tensor) -> Independent:
        mu, logvar = self.net(x * self.scale).split(self.latent, dim=-1)
        if self.logvar_bounds is not None:
            logvar = torch.nn.functional.hardtanh(logvar, *self.logvar_bounds)
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1)


class BernoulliMLPDecoder(nn.Module):
    """p(x|z) = prod_d Bernoulli(x_d | sigmoid(f(z)_d)), for binary data."""

    def __init__(self, latent: int, hidden: int, data_dim: int, **net: Any) -> None:
        super().__init__()
        self.net = mlp(latent, hidden, data_dim, **net)

    def forward(self, z: torch.Tensor) -> Independent:
        return BernoulliPixels(Bernoulli(logits=self.net(z), validate_args=False), 1)


class CategoricalMLPDecoder(nn.Module):
    """p(x|z) = prod_d Categorical(x_d | softmax(f(z)_d)) over ``levels`` values per dimension."""

    def __init__(self, latent: int, hidden: int, data_dim: int, levels: int, **net: Any) -> None:
        super().__init__()
        self.data_dim = data_dim
        self.levels = levels
        self.net = mlp(latent, hidden, data_dim * levels, **net)

    def forward(self, z: torch.Tensor) -> Independent:
        logits = self.net(z).unflatten(-1, (self.data_dim, self.levels))
        return Independent(LevelCategorical(logits), 1)


def _logvar_bounds(ctx: BuildContext) -> tuple[float, float] | None:
    bounds = ctx.options.get("logvar_bounds")
    if bounds is None:
        return None
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        low, high = math.nan, math.nan
    if not low < high:
        raise ConfigError(
            "encoder 'mlp-gaussian': option logvar_bounds must be [low, high] with low < high, "
            f"got {bounds!r}"
        )
    return low, high


def build_gaussian_encoder(ctx: BuildContext) -> GaussianMLPEncoder:
    net = mlp_options(ctx, "encoder 'mlp-gaussian'")
    hidden = net.pop("hidden")
    return GaussianMLPEncoder(
        ctx.data.dim, ctx.data.levels, hidden, ctx.latent_dim, _logvar_bounds(ctx), **net
    )


def build_bernoulli_decoder(ctx: BuildContext) -> BernoulliMLPDecoder:
    net = mlp_options(ctx, "decoder 'mlp-bernoulli'")
    hidden = net.pop("hidden")
    return BernoulliMLPDecoder(ctx.latent_dim, hidden, ctx.data.dim, **net)


def build_categorical_decoder(ctx: BuildContext) -> CategoricalMLPDecoder:
    net = mlp_options(ctx, "decoder 'mlp-categorical'")
    hidden = net.pop("hidden")
    return CategoricalMLPDecoder(ctx.latent_dim, hidden, ctx.data.dim, ctx.data.levels, **net)
