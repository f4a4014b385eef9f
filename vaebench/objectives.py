"""The built-in training objectives: the ELBO (with KL warm-up), the IWAE bound and beta-VAE.

Each turns the log-weight terms of a batch (``log p(x|z)``, ``log p(z)``, ``log q(z|x)``, each
``[k, B]``) and the training progress into the loss to minimise. They are plain tensor
arithmetic, so the seed trained alone and the seeds trained together under ``vmap`` run the same
code.

* ``elbo``: -(log p(x|z) + w (log p(z) - log q(z|x))), one sample per point. With a warm-up
  (``warmup_epochs`` or ``warmup_steps``), the KL weight w rises linearly from 0 at the first
  step to 1 at the end of the warm-up (Bowman et al. 2016; Sønderby et al. 2016; Tomczak &
  Welling 2018 warm up over 100 epochs); without one, w = 1.
* ``iwae``: -log (1/k) sum_k p(x, z_k) / q(z_k|x), with k samples per point (Burda et al. 2015).
  With k = 1 it is the ELBO.
* ``beta``: -(log p(x|z) + beta (log p(z) - log q(z|x))) (Higgins et al. 2017).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from vaebench.contracts import ObjectiveSpec, Progress
from vaebench.errors import ConfigError


def _whole(name: str, option: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"objective {name!r}: option {option} must be a whole number >= {minimum}, "
            f"got {value!r}"
        )
    return value


def _number(name: str, option: str, value: Any, minimum: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not minimum <= value < math.inf
    ):
        raise ConfigError(
            f"objective {name!r}: option {option} must be a finite number >= {minimum}, "
            f"got {value!r}"
        )
    return float(value)


class Elbo:
    """The ELBO with an optional linear KL warm-up."""

    samples = 1

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.warmup_epochs = _number("elbo", "warmup_epochs", options["warmup_epochs"], 0)
        self.warmup_steps = _whole("elbo", "warmup_steps", options["warmup_steps"], 0)
        if self.warmup_epochs and self.warmup_steps:
            raise ConfigError(
                "objective 'elbo': give warmup_epochs or warmup_steps, not both "
                f"(got {self.warmup_epochs} and {self.warmup_steps})"
            )

    def kl_weight(self, progress: Progress) -> float:
        """0 at the first step, rising linearly to 1 at the end of the warm-up, then 1."""
        if self.warmup_steps:
            return min(1.0, progress.step / self.warmup_steps)
        if self.warmup_epochs:
            return min(1.0, progress.epoch / self.warmup_epochs)
        return 1.0

    def loss(self, terms: Any, progress: Progress) -> torch.Tensor:
        weight = self.kl_weight(progress)
        if weight == 1.0:  # the plain -ELBO, summed exactly as validation sums it
            return -(terms.log_px_z + terms.log_pz - terms.log_qz).mean()
        return -(terms.log_px_z + weight * (terms.log_pz - terms.log_qz)).mean()


class Iwae:
    """The importance-weighted bound with ``k`` samples per point."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.samples = _whole("iwae", "k", options["k"], 1)

    def loss(self, terms: Any, progress: Progress) -> torch.Tensor:
        log_w = terms.log_px_z + terms.log_pz - terms.log_qz  # [k, B]
        if self.samples == 1:
            return -log_w.mean()
        return -(torch.logsumexp(log_w, dim=0) - math.log(self.samples)).mean()


class Beta:
    """Reconstruction plus ``beta`` times the KL term, one sample per point."""

    samples = 1

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.beta = _number("beta", "beta", options["beta"], 0)

    def loss(self, terms: Any, progress: Progress) -> torch.Tensor:
        if self.beta == 1.0:
            return -(terms.log_px_z + terms.log_pz - terms.log_qz).mean()
        return -(terms.log_px_z + self.beta * (terms.log_pz - terms.log_qz)).mean()


ELBO = ObjectiveSpec(
    "elbo",
    Elbo,
    "the evidence lower bound, one sample per point; optional linear KL warm-up",
    options={"warmup_epochs": 0, "warmup_steps": 0},
)
IWAE = ObjectiveSpec(
    "iwae",
    Iwae,
    "the importance-weighted bound of Burda et al. 2015 with k samples per point",
    options={"k": 5},
)
BETA = ObjectiveSpec(
    "beta",
    Beta,
    "beta-VAE (Higgins et al. 2017): reconstruction + beta x KL",
    options={"beta": 4.0},
)
BASELINE = "elbo"
