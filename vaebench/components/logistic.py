"""A discretized logistic mixture likelihood for 8-bit data (Salimans et al. 2017, PixelCNN++),
and the MLP decoder that outputs it.

Each data dimension (a pixel's channel) has its own mixture of ``K`` logistics over the levels
``0 .. L-1``, rescaled to ``[-1, 1]``: level ``x`` sits at ``y = 2x / (L-1) - 1`` and owns the
bin ``[y - h, y + h)`` with ``h = 1 / (L-1)``; the first and last bins extend to -inf and +inf,
so the L probabilities sum to one exactly (the bin edges telescope). Unlike Salimans et al.,
channels are not coupled: the mixture is per pixel *and* channel, so the decoder fits any 8-bit
image (or vector) and every term stays a pure tensor expression (seeds train under ``vmap``).

Every probability is computed in log space. An interior bin's mass is

    sigmoid(a) - sigmoid(b) = sigmoid(a) (1 - e^(b - a)) / (1 + e^b),   a = (y + h - mu) / s,
                                                                       b = (y - h - mu) / s,

so ``log p = logsigmoid(a) + log1mexp(2h / s) - softplus(b)``: no difference of two
probabilities is ever formed, which keeps tiny bin masses exact where Salimans et al. fall back
on a density approximation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from vaebench.components.mlp import mlp
from vaebench.contracts import BuildContext
from vaebench.errors import ConfigError

# Scales outside e^-7 .. e^7 (in units of the [-1, 1] data range) are clamped: e^-7 already
# puts nearly all mass in one bin (as Salimans et al. bound it); e^7 is already flat over the
# range, and keeps 2h/s away from float underflow, where log1mexp would return -inf.
MIN_LOG_SCALE, MAX_LOG_SCALE = -7.0, 7.0
_LN2 = math.log(2.0)


def log1mexp(d: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-d))`` for ``d > 0``, accurate for small and large d (Maechler 2012)."""
    return torch.where(d < _LN2, torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


class DiscretizedLogisticMixture(Distribution):
    """Independent discretized logistic mixtures over ``levels`` values per data dimension.

    Parameters are ``[..., D, K]`` tensors (mixture logits, means in [-1, 1] units, log scales);
    the distribution has batch shape ``[...]`` and event shape ``[D]``, and ``log_prob`` sums
    over the D dimensions.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        logit_weights: torch.Tensor,
        means: torch.Tensor,
        log_scales: torch.Tensor,
        levels: int = 256,
    ) -> None:
        if levels < 2:
            raise ConfigError(f"a discretized logistic needs at least 2 levels, got {levels}")
        if not logit_weights.shape == means.shape == log_scales.shape:
            raise ConfigError(
                "mixture logits, means and log scales must share one shape [..., D, K], got "
                f"{tuple(logit_weights.shape)}, {tuple(means.shape)}, {tuple(log_scales.shape)}"
            )
        self.levels = levels
        self.log_weights = torch.log_softmax(logit_weights, dim=-1)
        self.means = means
        self.log_scales = log_scales.clamp(MIN_LOG_SCALE, MAX_LOG_SCALE)
        super().__init__(means.shape[:-2], means.shape[-2:-1], validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.integer_interval(0, self.levels - 1), 1)

    @property
    def half_bin(self) -> float:
        return 1.0 / (self.levels - 1)

    def component_log_probs(self, value: torch.Tensor) -> torch.Tensor:
        """``log pi_k + log P_k(x)`` for levels ``value [..., D]``: ``[..., D, K]``."""
        x = value.unsqueeze(-1)
        top = self.levels - 1
        y = x * (2.0 / top) - 1.0
        inv_scale = torch.exp(-self.log_scales)
        centred = y - self.means
        upper = (centred + self.half_bin) * inv_scale
        lower = (centred - self.half_bin) * inv_scale
        below_upper = F.logsigmoid(upper)  # log F(upper edge): all of the first bin
        above_lower = -F.softplus(lower)  # log (1 - F(lower edge)): all of the last bin
        interior = below_upper + log1mexp(2.0 * self.half_bin * inv_scale) - F.softplus(lower)
        log_p = torch.where(x <= 0, below_upper, torch.where(x >= top, above_lower, interior))
        return self.log_weights + log_p

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.component_log_probs(value), dim=-1).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        """The exact mean level, ``sum_{j=1}^{L-1} P(x >= j)``: one pass per bin edge, so the
        memory stays that of the parameters (image grids need it, training does not)."""
        inv_scale = torch.exp(-self.log_scales)
        weights = self.log_weights.exp()
        total = torch.zeros_like(self.means)
        top = self.levels - 1
        for j in range(1, self.levels):
            edge = (2 * j - 1) / top - 1.0  # between levels j - 1 and j
            total = total + torch.sigmoid((self.means - edge) * inv_scale)
        return (weights * total).sum(-1)

    @torch.no_grad()
    def sample(
        self, sample_shape: torch.Size | list[int] | tuple[int, ...] = torch.Size()
    ) -> torch.Tensor:
        """Pick a component, draw a logistic by inversion, and return the level whose bin it
        falls in (the end bins take the tails)."""
        shape = torch.Size(sample_shape) + self.means.shape
        log_w = self.log_weights.expand(shape)
        gumbel = -torch.log(-torch.log(_uniform(shape, log_w)))
        component = (log_w + gumbel).argmax(-1, keepdim=True)
        mean = self.means.expand(shape).gather(-1, component).squeeze(-1)
        log_scale = self.log_scales.expand(shape).gather(-1, component).squeeze(-1)
        u = _uniform(mean.shape, mean)
        y = mean + log_scale.exp() * (torch.log(u) - torch.log1p(-u))
        top = self.levels - 1
        return torch.round((y + 1.0) * (top / 2.0)).clamp(0, top)


def _uniform(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """Uniform draws in the open interval (0, 1), so logarithms stay finite."""
    tiny = torch.finfo(like.dtype).tiny
    u = torch.rand(shape, dtype=like.dtype, device=like.device)
    return u.clamp(tiny, 1.0 - torch.finfo(like.dtype).eps)


def mixture_from_channels(params: torch.Tensor, levels: int) -> DiscretizedLogisticMixture:
    """A mixture from parameters laid out ``[..., 3, D, K]`` (logits, means, log scales)."""
    logits, means, log_scales = params.unbind(-3)
    return DiscretizedLogisticMixture(logits, means, log_scales, levels)


class LogisticMixtureMLPDecoder(nn.Module):
    """p(x|z) = prod_d sum_k pi_dk DLogistic(x_d | mu_dk(z), s_dk(z)), from one MLP."""

    def __init__(self, latent: int, hidden: int, data_dim: int, levels: int, mixtures: int):
        super().__init__()
        if mixtures < 1:
            raise ConfigError(f"decoder option mixtures must be at least 1, got {mixtures}")
        self.data_dim = data_dim
        self.levels = levels
        self.mixtures = mixtures
        self.net = mlp(latent, hidden, 3 * data_dim * mixtures)

    def forward(self, z: torch.Tensor) -> DiscretizedLogisticMixture:
        params = self.net(z).unflatten(-1, (3, self.data_dim, self.mixtures))
        return mixture_from_channels(params, self.levels)


MIXTURE_OPTIONS = {"mixtures": 5}


def build_mlp_decoder(ctx: BuildContext) -> LogisticMixtureMLPDecoder:
    hidden = int(ctx.options.get("hidden", ctx.hidden_dim))
    mixtures = int(ctx.options.get("mixtures", MIXTURE_OPTIONS["mixtures"]))
    return LogisticMixtureMLPDecoder(
        ctx.latent_dim, hidden, ctx.data.dim, ctx.data.levels, mixtures
    )
