"""ELBO and importance-weighted log-likelihood, written once against ``VAE.log_weights``.

Both come from the same ``k`` samples per point: the ELBO as the mean of the log-weights and
the IW bound (Burda et al. 2015) as their log-mean-exp, so IW-NLL <= -ELBO holds for every point
exactly, not only in expectation. Work is chunked over points and samples so that no chunk
holds more than ``max_elements`` floats of decoder output; a running log-sum-exp joins sample
chunks without loss of precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaebench.model import VAE


@dataclass
class LikelihoodStats:
    """Per-point estimates (each ``[N]``, nats) from ``k`` importance samples."""

    k: int
    elbo: torch.Tensor
    iw_ll: torch.Tensor
    recon: torch.Tensor  # E_q log p(x|z)
    kl: torch.Tensor  # E_q [log q(z|x) - log p(z)]

    def mean_and_stderr(self, name: str, sign: float = 1.0) -> tuple[float, float]:
        values = sign * getattr(self, name).double()
        n = values.numel()
        stderr = float(values.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
        return float(values.mean()), stderr


def chunk_sizes(n: int, k: int, cost_per_sample: int, max_elements: int) -> tuple[int, int]:
    """Points per chunk and samples per chunk so that points*samples*cost <= max_elements."""
    budget = max(1, max_elements // max(1, cost_per_sample))
    k_chunk = min(k, budget)
    points = max(1, min(n, budget // k_chunk))
    return points, k_chunk


@torch.no_grad()
def likelihood_stats(
    model: VAE,
    x: torch.Tensor,
    k: int,
    *,
    max_elements: int = 2**25,
    cost_per_sample: int | None = None,
) -> LikelihoodStats:
    """Estimate ELBO terms and the IW log-likelihood of every row of ``x``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n, d = x.shape
    cost = cost_per_sample or 4 * d
    points, k_chunk = chunk_sizes(n, k, cost, max_elements)
    out = {name: torch.empty(n, dtype=torch.float64) for name in ("elbo", "iw", "recon", "kl")}
    for start in range(0, n, points):
        xb = x[start : start + points]
        lse = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
        sum_w = torch.zeros_like(lse)
        sum_rec = torch.zeros_like(lse)
        sum_kl = torch.zeros_like(lse)
        done = 0
        while done < k:
            kc = min(k_chunk, k - done)
            lw = model.log_weights(xb, kc)
            log_w = lw.log_w.double()
            lse = torch.logaddexp(lse, torch.logsumexp(log_w, dim=0))
            sum_w += log_w.sum(0)
            sum_rec += lw.log_px_z.double().sum(0)
            sum_kl += (lw.log_qz - lw.log_pz).double().sum(0)
            done += kc
        sl = slice(start, start + xb.shape[0])
        out["elbo"][sl] = (sum_w / k).cpu()
        out["iw"][sl] = (lse - math.log(k)).cpu()
        out["recon"][sl] = (sum_rec / k).cpu()
        out["kl"][sl] = (sum_kl / k).cpu()
    return LikelihoodStats(k=k, elbo=out["elbo"], iw_ll=out["iw"], recon=out["recon"], kl=out["kl"])


def bits_per_dim(nats: float, dim: int) -> float:
    return nats / (dim * math.log(2.0))
