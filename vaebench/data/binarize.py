"""Turning grey-level pixels into the binary data Bernoulli-likelihood VAEs are scored on.

Dynamic binarization draws a fresh sample every time (a regulariser during training); static
binarization fixes one sample per seed, so every model is evaluated on the same bits.
"""

from __future__ import annotations

import torch

from vaebench.errors import DataError


def to_unit_interval(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0-255 as float32 in [0, 1] (x / 255)."""
    if images.dtype != torch.uint8:
        raise DataError(f"to_unit_interval expects uint8 pixels, got dtype {images.dtype}.")
    return images.to(torch.float32) / 255.0


def dynamic_binarize(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh Bernoulli(probs) sample as float32 0/1 (global RNG when ``generator`` is None)."""
    return torch.bernoulli(probs.to(torch.float32), generator=generator)


def static_binarize(probs: torch.Tensor, seed: int) -> torch.Tensor:
    """The same Bernoulli(probs) sample for the same seed, without touching the global RNG."""
    generator = torch.Generator(device=probs.device).manual_seed(seed)
    return torch.bernoulli(probs.to(torch.float32), generator=generator)
