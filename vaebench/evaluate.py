"""Evaluation of one trained model: the context metrics read from, and the loop over metrics.

Metrics share expensive work through :class:`EvalContext`: the importance-weighted pass over
a split is computed once and read by every metric that needs it. Each metric runs under its own
fixed random seed, so results do not depend on which other metrics were selected.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vaebench.contracts import EvalSettings, MetricSpec, MetricValue, SuiteData
from vaebench.errors import ContractError
from vaebench.estimators import LikelihoodStats, likelihood_stats
from vaebench.model import VAE

TEST = "test"
# Floats of room per point and latent coordinate in one posterior chunk: enough for 64 Monte
# Carlo samples through a prior of up to 64 components without exceeding ``max_elements``.
POSTERIOR_FLOATS_PER_DIM = 64 * 64
# Points of a split whose posteriors make up the aggregate posterior q(z) (mutual information,
# the hole metrics): their cost grows with the square of the points (an IAF posterior's exact
# log_prob on every (draw, point) pair of the 10,000 MNIST test points: about 50 minutes on 2
# cores; 7 with this cap). A fixed random subset of this many points stands in for a larger
# split; the metrics record how many points they used, of how many.
AGGREGATE_POINTS = 2000
_SUBSET_SEED = 7919


@dataclass
class EvalContext:
    """What a metric may read. Splits are named ``train``, ``val``, ``test`` or an OOD set."""

    model: VAE
    data: SuiteData
    settings: EvalSettings
    device: torch.device
    latent_dim: int
    per_example: dict[str, np.ndarray] = field(default_factory=dict)
    cache: dict[Any, Any] = field(default_factory=dict)
    subsets: dict[str, tuple[str, torch.Tensor]] = field(default_factory=dict)

    def split(self, name: str) -> torch.Tensor:
        if name in self.subsets:
            parent, rows = self.subsets[name]
            return self.split(parent)[rows.to(self.device)]
        if name in ("train", "val", "test"):
            x = getattr(self.data, name)
        elif name in self.data.ood:
            x = self.data.ood[name]
        else:
            known = ", ".join(["train", "val", "test", *self.data.ood])
            raise KeyError(f"unknown split {name!r}; known: {known}")
        return x.to(self.device)

    def split_size(self, name: str) -> int:
        if name in self.subsets:
            return int(self.subsets[name][1].numel())
        return int(self.split(name).shape[0])

    def capped(self, split: str, max_points: int | None) -> tuple[str, torch.Tensor | None]:
        """A split of at most ``max_points`` rows: ``split`` itself when it is no larger (rows
        None), else a fixed random subset, the same for every model evaluated on the same
        data, registered under a name of its own (``"test[2000 of 10000]"``) with its rows."""
        n = self.split_size(split)
        if max_points is None or n <= max_points:
            return split, None
        name = f"{split}[{max_points} of {n}]"
        if name not in self.subsets:
            g = torch.Generator().manual_seed(_SUBSET_SEED)
            rows = torch.randperm(n, generator=g)[:max_points].sort().values
            self.subsets[name] = (split, rows)
        return name, self.subsets[name][1]

    @property
    def ood_names(self) -> list[str]:
        return list(self.data.ood)

    def cost_per_sample(self) -> int:
        """Floats of decoder output per importance sample, for the memory cap."""
        spec = self.data.spec
        return spec.dim * (1 if spec.binary else spec.levels) + 4 * 256

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def likelihood(self, split: str, k: int | None = None) -> LikelihoodStats:
        """IW statistics of a split with ``k`` samples (default: ``settings.k`` for the test
        split, ``settings.k_ood`` otherwise). Computed once per (split, k)."""
        if k is None:
            k = self.settings.k if split == TEST else self.settings.k_ood

        def compute() -> LikelihoodStats:
            with torch.random.fork_rng(devices=_rng_devices(self.device)):
                torch.manual_seed(self.settings.seed)
                return likelihood_stats(
                    self.model,
                    self.split(split),
                    k,
                    max_elements=self.settings.max_elements,
                    cost_per_sample=self.cost_per_sample(),
                )

        return self.cached(("likelihood", split, k), compute)

    @contextlib.contextmanager
    def fixed_rng(self, salt: int) -> Iterator[None]:
        """Run a block under its own seed (``settings.seed + salt``), restoring the RNG after:
        a cached Monte Carlo result then does not depend on which metric asked for it first."""
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            torch.manual_seed(self.settings.seed + salt)
            yield

    def posteriors(self, split: str) -> list[tuple[slice, torch.distributions.Distribution]]:
        """q(z|x) of every row of a split, as (rows, distribution) chunks; computed once.

        Distributions cannot be concatenated in general, so they are kept per chunk; a chunk is
        small enough for Monte Carlo work on all its points at once (see
        ``POSTERIOR_FLOATS_PER_DIM``).
        """

        def compute() -> list[tuple[slice, torch.distributions.Distribution]]:
            x = self.split(split)
            per_chunk = self.settings.max_elements // (self.latent_dim * POSTERIOR_FLOATS_PER_DIM)
            points = max(1, per_chunk)
            chunks = []
            with torch.no_grad():
                for start in range(0, x.shape[0], points):
                    rows = slice(start, min(start + points, x.shape[0]))
                    chunks.append((rows, self.model.encoder(x[rows])))
            return chunks

        return self.cached(("posteriors", split), compute)

    def aggregate_log_q(self, split: str, z: torch.Tensor) -> torch.Tensor:
        """log q(z) = log (1/N) sum_j q(z | x_j) over the N rows of a split (the aggregate
        posterior, Hoffman & Johnson 2016), for z of shape ``[n, M]``; float64 ``[n]``.

        Evaluates ``q.log_prob(z.unsqueeze(1))`` against each chunk's batch, so the encoder's
        distribution must broadcast a ``[n, 1, M]`` value against its batch ``[B]``.
        """
        chunks = self.posteriors(split)
        n_rows = chunks[-1][0].stop
        total = torch.full((z.shape[0],), -math.inf, dtype=torch.float64, device=z.device)
        with torch.no_grad():
            for rows, q in chunks:
                width = rows.stop - rows.start
                gaussian = _diagonal_gaussian(q)
                # The Gaussian path holds a few [n, width] tensors, the generic one [n, width, M].
                per_z = width * (4 if gaussian is not None else self.latent_dim * 8)
                step = max(1, self.settings.max_elements // per_z)
                for start in range(0, z.shape[0], step):
                    zc = z[start : start + step]
                    if gaussian is not None:
                        log_q = _gaussian_pairwise(gaussian, zc)
                    else:
                        log_q = self._pairwise_log_prob(q, zc, width).double()
                    sl = slice(start, start + zc.shape[0])
                    total[sl] = torch.logaddexp(total[sl], torch.logsumexp(log_q, 1))
        return total - math.log(n_rows)

    def _pairwise_log_prob(
        self, q: torch.distributions.Distribution, z: torch.Tensor, width: int
    ) -> torch.Tensor:
        who = f"encoder {self.model.names.get('encoder', 'encoder')!r}"
        try:
            log_q = q.log_prob(z.unsqueeze(1))
        except Exception as exc:
            raise ContractError(
                f"{who}: log_prob of its {type(q).__name__} failed to broadcast a value of shape "
                f"{tuple(z.unsqueeze(1).shape)} against batch ({width},) ({exc}); aggregate-"
                "posterior metrics need log_prob to broadcast like torch.distributions do"
            ) from exc
        if tuple(log_q.shape) != (z.shape[0], width):
            raise ContractError(
                f"{who}: log_prob of a value of shape {tuple(z.unsqueeze(1).shape)} against batch "
                f"({width},) returned shape {tuple(log_q.shape)}, expected {(z.shape[0], width)}; "
                "aggregate-posterior metrics need log_prob to broadcast like torch.distributions do"
            )
        return log_q

    def store(self, name: str, values: torch.Tensor | np.ndarray) -> None:
        """Keep per-example values (written beside the record as ``scores.npz``)."""
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().double().numpy()
        self.per_example[name] = np.asarray(values)


def _rng_devices(device: torch.device) -> list[Any]:
    return [device] if device.type == "cuda" else []


def _diagonal_gaussian(q: torch.distributions.Distribution) -> torch.distributions.Normal | None:
    """The per-dimension Normal of a diagonal Gaussian q(z|x) (batch ``[B, M]``), else None."""
    if isinstance(q, torch.distributions.Independent) and q.reinterpreted_batch_ndims == 1:
        base = q.base_dist
        if type(base) is torch.distributions.Normal and base.loc.dim() == 2:
            return base
    return None


def _gaussian_pairwise(base: torch.distributions.Normal, z: torch.Tensor) -> torch.Tensor:
    """log N(z_i | mu_j, diag s_j^2) for every z_i (``[n, M]``) and point j: ``[n, B]``.

    The squared distance expanded into three matrix products, in float64 to keep the expansion's
    cancellation harmless: ``log_prob``'s numbers at a fraction of its time and memory.
    """
    mu, scale, z = base.loc.double(), base.scale.double(), z.double()
    precision = scale.pow(-2)
    quad = z.pow(2) @ precision.T - 2.0 * (z @ (mu * precision).T) + (mu.pow(2) * precision).sum(-1)
    log_norm = scale.log().sum(-1) + 0.5 * mu.shape[-1] * math.log(2 * math.pi)
    return -0.5 * quad - log_norm


def compression_bits(x: torch.Tensor, levels: int) -> np.ndarray:
    """Length in bits of each row compressed losslessly by zlib (level 9), as 8-bit pixels.

    Used by complexity-corrected OOD scores (Serra et al. 2020).
    """
    scaled = (x.detach().cpu().double() * (255.0 / max(1, levels - 1))).round().clamp(0, 255)
    rows = scaled.to(torch.uint8).numpy()
    return np.array([8 * len(zlib.compress(row.tobytes(), 9)) for row in rows], dtype=np.float64)


def evaluate(
    model: VAE,
    data: SuiteData,
    settings: EvalSettings,
    metrics: Sequence[MetricSpec],
    device: torch.device,
    latent_dim: int,
) -> tuple[dict[str, MetricValue], dict[str, np.ndarray]]:
    """Run each metric on a trained model; returns the values and per-example arrays."""
    model.eval()
    ctx = EvalContext(model, data, settings, device, latent_dim)
    values: dict[str, MetricValue] = {}
    for spec in metrics:
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(settings.seed + zlib.crc32(spec.name.encode()))
            with torch.no_grad():
                out = spec.compute(ctx)
        if not isinstance(out, Mapping):
            raise ContractError(
                f"metric {spec.name!r} must return a mapping of names to MetricValue, "
                f"got {type(out).__name__}"
            )
        for name, value in out.items():
            if not isinstance(value, MetricValue):
                raise ContractError(f"metric {spec.name!r} returned {value!r} for {name!r}")
            if name in values:
                raise ContractError(f"metric {spec.name!r} reports {name!r}, already reported")
            values[name] = value
    return values, ctx.per_example
