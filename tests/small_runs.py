"""Run settings shared by tests that train through the runner: the digits suite's tiny
profile on 200 images, with a 4-dimensional latent and 32 hidden units."""

from __future__ import annotations

from typing import Any


def tiny_digits(**changes: Any) -> dict[str, Any]:
    """Keyword arguments for ``vaebench.api.run``: a tiny digits grid (MLP encoder and
    categorical decoder, every prior unless ``priors`` is given), updated by ``changes``."""
    settings: dict[str, Any] = {
        "suite": "digits",
        "profile": "tiny",
        "progress": False,
        "encoders": ["mlp-gaussian"],
        "decoders": ["mlp-categorical"],
        "metrics": ["likelihood"],
        "suite_options": {"limit": 200},
        "latent_dim": 4,
        "component_options": {"encoder": {"hidden": 32}, "decoder": {"hidden": 32}},
    }
    settings.update(changes)
    return settings
