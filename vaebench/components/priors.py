"""Priors: standard Gaussian, a trainable mixture of Gaussians, and the VampPrior.

VampPrior: Tomczak & Welling 2018, "VAE with a VampPrior": p(z) = 1/K sum_k q(z | u_k) with
K learned pseudo-inputs u_k, so the prior is the aggregate posterior of the pseudo-inputs. The
pseudo-inputs live in the data's range through ``pseudo_init``: ``sigmoid`` (u = sigmoid(w)) or
``hardtanh`` (u = min(max(w, 0), 1), the reference code's parameterisation), with w initialised
from N(``pseudo_mean``, ``pseudo_std``) (Tomczak & Welling: hardtanh, N(0.05, 0.01) on MNIST).

Every prior here also has the optional ``marginals()`` of the prior contract
(:mod:`vaebench.contracts`): its one-dimensional marginals p(z_d) as one distribution of batch
``[M]``, which collapse metrics use for the KL per latent dimension. The VampPrior also has the
optional ``fixed_components()``: a context in which its pseudo-inputs' posteriors are computed
once, which evaluation enters around the slices of one batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from vaebench.contracts import BuildContext
from vaebench.errors import ConfigError

PSEUDO_INITS = ("sigmoid", "hardtanh")
VAMP_OPTIONS = {
    "pseudo_inputs": 50,
    "pseudo_init": "sigmoid",
    "pseudo_mean": 0.0,
    "pseudo_std": 0.1,
}


class StandardNormalPrior(nn.Module):
    _anchor: torch.Tensor  # a buffer: carries the device and dtype

    def __init__(self, latent: int) -> None:
        super().__init__()
        self.latent = latent
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)

    def sample(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent, device=self._anchor.device, dtype=self._anchor.dtype)

    def marginals(self) -> Normal:
        zeros = torch.zeros(self.latent, device=self._anchor.device, dtype=self._anchor.dtype)
        return Normal(zeros, torch.ones_like(zeros))


class MixtureOfGaussiansPrior(nn.Module):
    """p(z) = sum_k pi_k N(z | mu_k, diag(sigma_k^2)), every parameter trained."""

    def __init__(self, latent: int, components: int) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.randn(components, latent))
        self.log_scales = nn.Parameter(torch.zeros(components, latent))
        self.logits = nn.Parameter(torch.zeros(components))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        per_comp = diagonal_gaussian_log_probs(z, self.means, self.log_scales)  # [..., K]
        return torch.logsumexp(per_comp + torch.log_softmax(self.logits, -1), dim=-1)

    def sample(self, n: int) -> torch.Tensor:
        idx = torch.multinomial(torch.softmax(self.logits, -1), n, replacement=True)
        eps = torch.randn(n, self.means.shape[-1], device=self.means.device)
        return self.means[idx] + self.log_scales.exp()[idx] * eps

    def marginals(self) -> MixtureSameFamily:
        """p(z_d) = sum_k pi_k N(z_d | mu_kd, sigma_kd^2): a 1-D mixture per dimension."""
        return _per_dim_mixture(self.logits, self.means, self.log_scales.exp())


class VampPrior(nn.Module):
    """Mixture of the encoder's posteriors at learned pseudo-inputs.

    The encoder is held without registering it as a sub-module: its parameters belong to the
    VAE's encoder (trained once, saved once), and ``torch.func.functional_call`` on the VAE
    still swaps them because it swaps them on the shared module object.
    """

    _encoder: nn.Module

    def __init__(
        self,
        encoder: nn.Module,
        data_dim: int,
        levels: int,
        pseudo_inputs: int,
        pseudo_init: str = "sigmoid",
        pseudo_mean: float = 0.0,
        pseudo_std: float = 0.1,
    ) -> None:
        super().__init__()
        object.__setattr__(self, "_encoder", encoder)
        self._held: torch.distributions.Distribution | None = None
        self.top = levels - 1
        self.squash = pseudo_init
        # Pseudo-inputs live in the data's range [0, levels-1] through a sigmoid or a hard tanh.
        self.pseudo_logits = nn.Parameter(
            pseudo_mean + pseudo_std * torch.randn(pseudo_inputs, data_dim)
        )

    def pseudo_inputs(self) -> torch.Tensor:
        if self.squash == "hardtanh":
            return self.top * torch.clamp(self.pseudo_logits, 0.0, 1.0)
        return self.top * torch.sigmoid(self.pseudo_logits)

    def components(self) -> torch.distributions.Distribution:
        if self._held is not None:
            return self._held
        return self._encoder(self.pseudo_inputs())

    @contextlib.contextmanager
    def fixed_components(self) -> Iterator[None]:
        """Within the block, every call reuses the components computed on entry: for an
        evaluation that calls ``log_prob`` on many slices of one batch with the parameters
        unchanged (the encoder ran on the pseudo-inputs once per 1024 rows before)."""
        self._held = self._encoder(self.pseudo_inputs())
        try:
            yield
        finally:
            self._held = None

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        q = self.components()  # batch [K], event [M]
        base = _diagonal_base(q)
        if base is not None:
            per_comp = diagonal_gaussian_log_probs(z, base.loc, scale=base.scale)
        else:
            per_comp = q.log_prob(z.unsqueeze(-2))  # [..., K]
        return torch.logsumexp(per_comp, dim=-1) - math.log(per_comp.shape[-1])

    def sample(self, n: int) -> torch.Tensor:
        q = self.components()
        z = q.sample((n,))  # [n, K, M]: a draw from every pseudo-input's posterior
        pick = torch.randint(0, z.shape[1], (n,), device=z.device)
        return z[torch.arange(n, device=z.device), pick]

    def marginals(self) -> MixtureSameFamily | None:
        """Per-dimension 1-D mixtures when the encoder gives diagonal Gaussians, else None."""
        base = _diagonal_base(self.components())
        if base is None:
            return None
        return _per_dim_mixture(torch.zeros_like(base.loc[:, 0]), base.loc, base.scale)


def _diagonal_base(q: torch.distributions.Distribution) -> Normal | None:
    """The Normal under a diagonal Gaussian ``Independent(Normal, 1)``, else None."""
    if isinstance(q, Independent) and q.reinterpreted_batch_ndims == 1:
        base = q.base_dist
        if type(base) is Normal:
            return base
    return None


def centred_diagonal_gaussian_log_probs(
    z: torch.Tensor,
    loc: torch.Tensor,
    log_scale: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same as :func:`diagonal_gaussian_log_probs` in the centred form, ``(z - mu) / s`` on
    ``[..., K, M]`` temporaries in ``z``'s dtype: for devices without float64 (MPS)."""
    if log_scale is None:
        assert scale is not None, "give log_scale or scale"
        log_scale = scale.log()
    inv_scale = torch.exp(-log_scale) if scale is None else scale.reciprocal()
    log_norm = log_scale.sum(-1) + 0.5 * loc.shape[-1] * math.log(2 * math.pi)  # [K]
    d = (z.unsqueeze(-2) - loc) * inv_scale  # [..., K, M]
    return -0.5 * torch.linalg.vecdot(d, d) - log_norm


def diagonal_gaussian_log_probs(
    z: torch.Tensor,
    loc: torch.Tensor,
    log_scale: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """log N(z | loc_k, diag scale_k^2) for every component k: ``z`` ``[..., M]`` and ``loc``
    ``[K, M]`` to ``[..., K]``, in ``z``'s dtype.

    ``Normal(loc, scale).log_prob(z[..., None, :]).sum(-1)`` computes the same on ``[..., K, M]``
    temporaries (500 pseudo-inputs x 40 dimensions x 1024 rows: 80 MB per pass). Here the square
    is expanded, sum_d z_d^2 / s_kd^2 - 2 z_d mu_kd / s_kd^2 + mu_kd^2 / s_kd^2, into two matrix
    products of ``[..., M]`` by ``[M, K]``, in float64: the expansion cancels where z is near a
    component's mean, and float64 keeps its absolute error near 1e-16 x sum_d (z_d / s_kd)^2,
    below the centred float32 form's (1e-7 of the centred sum) for scales down to about 1e-4.
    On MPS, which has no float64, the centred float32 form is used.
    """
    if z.device.type == "mps":
        return centred_diagonal_gaussian_log_probs(z, loc, log_scale, scale)
    if log_scale is None:
        assert scale is not None, "give log_scale or scale"
        log_scale = scale.log()
    log_norm = log_scale.sum(-1) + 0.5 * loc.shape[-1] * math.log(2 * math.pi)  # [K]
    z64, loc64 = z.double(), loc.double()
    inv_var = torch.exp(-2.0 * log_scale.double())  # [K, M]
    scaled_loc = loc64 * inv_var
    quad = (
        (z64 * z64) @ inv_var.T
        - 2.0 * (z64 @ scaled_loc.T)
        + torch.linalg.vecdot(loc64, scaled_loc)
    )
    return (-0.5 * quad - log_norm.double()).to(z.dtype)


def _per_dim_mixture(
    logits: torch.Tensor, means: torch.Tensor, scales: torch.Tensor
) -> MixtureSameFamily:
    """Mixture weights ``[K]`` and component parameters ``[K, M]`` to M 1-D mixtures."""
    latent = means.shape[-1]
    weights = Categorical(logits=logits.expand(latent, -1), validate_args=False)
    return MixtureSameFamily(weights, Normal(means.T, scales.T, validate_args=False))


def build_standard_normal(ctx: BuildContext) -> StandardNormalPrior:
    return StandardNormalPrior(ctx.latent_dim)


def build_mixture(ctx: BuildContext) -> MixtureOfGaussiansPrior:
    return MixtureOfGaussiansPrior(ctx.latent_dim, int(ctx.options.get("components", 10)))


def build_vamp(ctx: BuildContext) -> VampPrior:
    if ctx.encoder is None:
        raise ValueError("the VampPrior needs the encoder; build the encoder first")
    options = {**VAMP_OPTIONS, **ctx.options}
    k = options["pseudo_inputs"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(
            f"prior 'vamp': option pseudo_inputs must be a whole number >= 1, got {k!r}"
        )
    if options["pseudo_init"] not in PSEUDO_INITS:
        raise ConfigError(
            f"prior 'vamp': option pseudo_init must be one of {', '.join(PSEUDO_INITS)}, "
            f"got {options['pseudo_init']!r}"
        )
    std = float(options["pseudo_std"])
    if not std >= 0:
        raise ConfigError(f"prior 'vamp': option pseudo_std must be >= 0, got {std!r}")
    return VampPrior(
        ctx.encoder,
        ctx.data.dim,
        ctx.data.levels,
        k,
        options["pseudo_init"],
        float(options["pseudo_mean"]),
        std,
    )
