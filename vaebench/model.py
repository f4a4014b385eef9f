"""One VAE out of any encoder, decoder and prior, and the one place its joint is written.

:meth:`VAE.log_weights` returns the three terms of ``log p(x, z) - log q(z|x)`` for ``k``
samples ``z ~ q(z|x)``; the ELBO, the IW-NLL and every metric are computed from it, so a new
component works everywhere as soon as it honours :mod:`vaebench.contracts`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vaebench.contracts import check_distribution, check_values
from vaebench.errors import ContractError

# Evaluation runs the decoder and the prior on at most this many (sample, point) rows at a time.
# A chunk of the IW-NLL holds up to ``max_elements`` floats of decoder output; computed whole,
# every temporary is a fresh buffer of tens of MB that misses the caches and, on CPU, costs page
# faults that took as long as the decoder's GEMMs. 1024 rows keep temporaries near 4 MB and
# measured fastest of 256..4096 (benchmarks/README.md). The noise is drawn for the whole chunk
# first, so results do not depend on this number beyond float rounding.
DECODE_ROWS = 1024


@dataclass
class LogWeights:
    """Per-sample terms, each ``[k, B]``: log p(x|z), log p(z), log q(z|x)."""

    log_px_z: torch.Tensor
    log_pz: torch.Tensor
    log_qz: torch.Tensor

    @property
    def log_w(self) -> torch.Tensor:
        return self.log_px_z + self.log_pz - self.log_qz


class VAE(nn.Module):
    """Encoder x decoder x prior; ``names`` label errors with the components' registry names."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        names: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        # A plugin's module: its log_prob and sample are the contract (see check), not
        # nn.Module attributes the checker could see.
        self.prior: Any = prior
        self.names = dict(names or {"encoder": "encoder", "decoder": "decoder", "prior": "prior"})

    def log_weights(self, x: torch.Tensor, k: int = 1) -> LogWeights:
        q = self.encoder(x)
        z = q.rsample((k,))
        log_qz = q.log_prob(z)
        log_px_z, log_pz = self._log_joint(z, x)
        return LogWeights(log_px_z, log_pz, log_qz)

    def _log_joint(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x|z) and log p(z) for z ``[k, B, M]``; in evaluation, ``DECODE_ROWS`` rows of
        (sample, point) at a time.

        Only without gradients and in eval mode: a decoder or prior in training mode may depend
        on the whole batch (batch norm) or draw noise (dropout), which slicing would change.
        """
        if (
            torch.is_grad_enabled()
            or self.training
            or z.dim() != 3
            or z.shape[0] * z.shape[1] <= DECODE_ROWS
        ):
            return self.decoder(z).log_prob(x), self.prior.log_prob(z)
        k, batch = z.shape[:2]
        width = min(batch, DECODE_ROWS)
        depth = max(1, DECODE_ROWS // width)
        log_px_z, log_pz = [], []
        # A prior whose density is built from the parameters by a costly step (the VampPrior
        # encodes its pseudo-inputs) may offer to do it once for all the slices.
        fixed = getattr(self.prior, "fixed_components", None)
        with fixed() if callable(fixed) else contextlib.nullcontext():
            for b in range(0, batch, width):
                xb = x[b : b + width]
                px, pz = [], []
                for s in range(0, k, depth):
                    zs = z[s : s + depth, b : b + width]
                    px.append(self.decoder(zs).log_prob(xb))
                    pz.append(self.prior.log_prob(zs))
                log_px_z.append(torch.cat(px, 0))
                log_pz.append(torch.cat(pz, 0))
        return torch.cat(log_px_z, 1), torch.cat(log_pz, 1)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The training objective: -ELBO averaged over the batch, one sample per point."""
        return -self.log_weights(x, 1).log_w.mean()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder mean at the posterior mean (a sample where q has no mean)."""
        q = self.encoder(x)
        try:
            z = q.mean
        except NotImplementedError:
            z = q.sample()
        return _mean_of(self.decoder(z))

    @torch.no_grad()
    def generate(self, n: int) -> torch.Tensor:
        """Decoder means at ``n`` prior samples (what sample grids show)."""
        return _mean_of(self.decoder(self.prior.sample(n)))

    def check(self, x: torch.Tensor, latent_dim: int) -> None:
        """Hold every component to its contract on a small batch; errors name the component."""
        n, d = x.shape
        enc, dec, pri = (f"{kind} {self.names[kind]!r}" for kind in ("encoder", "decoder", "prior"))
        with torch.no_grad():
            q = self.encoder(x)
            check_distribution(q, enc, (n,), (latent_dim,), needs_rsample=True)
            z = q.rsample((2,))
            check_values(z, f"{enc} rsample", (2, n, latent_dim))
            check_values(q.log_prob(z), f"{enc} log_prob", (2, n))
            p = self.decoder(z)
            check_distribution(p, dec, (2, n), (d,), needs_rsample=False)
            check_values(p.log_prob(x), f"{dec} log_prob", (2, n))
            check_values(self.prior.log_prob(z), f"{pri} log_prob", (2, n))
            sample = self.prior.sample(3)
            check_values(sample, f"{pri} sample(3)", (3, latent_dim))
            if not torch.isfinite(self.log_weights(x, 2).log_w).all():
                raise ContractError(
                    f"the model {enc} x {dec} x {pri} gives non-finite log-weights at "
                    "initialisation; check the components' log_prob"
                )


def _mean_of(dist: torch.distributions.Distribution) -> torch.Tensor:
    base = dist.base_dist if isinstance(dist, torch.distributions.Independent) else dist
    if isinstance(base, torch.distributions.Categorical):
        levels = torch.arange(
            base.probs.shape[-1], dtype=base.probs.dtype, device=base.probs.device
        )
        return (base.probs * levels).sum(-1)
    try:
        return dist.mean
    except NotImplementedError:
        return dist.sample()


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
