"""Evaluation of one trained model: the context metrics read from, and the loop over metrics.

Metrics share expensive work through :class:`EvalContext`: the importance-weighted pass over
a split is computed once and read by every metric that needs it. Each metric runs under its own
fixed random seed, so results do not depend on which other metrics were selected.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vaebench.contracts import EvalSettings, MetricSpec, MetricValue, SuiteData
from vaebench.errors import ContractError
from vaebench.estimators import LikelihoodStats, likelihood_stats
from vaebench.model import VAE

TEST = "test"


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

    def split(self, name: str) -> torch.Tensor:
        if name in ("train", "val", "test"):
            x = getattr(self.data, name)
        elif name in self.data.ood:
            x = self.data.ood[name]
        else:
            known = ", ".join(["train", "val", "test", *self.data.ood])
            raise KeyError(f"unknown split {name!r}; known: {known}")
        return x.to(self.device)

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

    def store(self, name: str, values: torch.Tensor | np.ndarray) -> None:
        """Keep per-example values (written beside the record as ``scores.npz``)."""
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().double().numpy()
        self.per_example[name] = np.asarray(values)


def _rng_devices(device: torch.device) -> list[Any]:
    return [device] if device.type == "cuda" else []


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
    for index, spec in enumerate(metrics):
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(settings.seed + 7919 * (index + 1))
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
