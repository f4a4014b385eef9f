from __future__ import annotations

import pytest
import torch

from vaebench.data.binarize import dynamic_binarize, static_binarize, to_unit_interval
from vaebench.errors import DataError


@pytest.fixture
def probs() -> torch.Tensor:
    return torch.linspace(0.0, 1.0, 11).repeat(2000, 1)  # 11 columns, p = 0, 0.1, ..., 1


def test_to_unit_interval() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    y = to_unit_interval(x)
    assert y.dtype == torch.float32
    assert torch.allclose(y, torch.tensor([0.0, 0.2, 1.0]))
    with pytest.raises(DataError, match="uint8"):
        to_unit_interval(y)


def test_dynamic_is_fresh_each_call(probs: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(0)
    a, b = dynamic_binarize(probs, g), dynamic_binarize(probs, g)
    assert a.dtype == torch.float32 and set(a.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(a, b)
    assert not torch.equal(dynamic_binarize(probs), dynamic_binarize(probs))


def test_static_is_reproducible_per_seed(probs: torch.Tensor) -> None:
    state = torch.get_rng_state()
    a, b, c = static_binarize(probs, 1), static_binarize(probs, 1), static_binarize(probs, 2)
    assert torch.equal(torch.get_rng_state(), state), "static_binarize must not use the global RNG"
    assert a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    "binarize",
    [
        lambda p: dynamic_binarize(p, torch.Generator().manual_seed(5)),
        lambda p: static_binarize(p, 3),
    ],
    ids=["dynamic", "static"],
)
def test_means_match_probabilities(probs: torch.Tensor, binarize) -> None:
    means = binarize(probs).mean(dim=0)
    assert means[0] == 0.0 and means[-1] == 1.0
    assert torch.allclose(means, probs[0], atol=0.05)


def test_accepts_uint8_scaled_images() -> None:
    images = torch.full((4, 28, 28), 128, dtype=torch.uint8)
    out = static_binarize(to_unit_interval(images), seed=0)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert set(out.unique().tolist()) == {0.0, 1.0}
    # Bernoulli(128/255) over 3136 pixels: the mean is 0.502 within 4 standard errors (0.036).
    assert abs(float(out.mean()) - 128 / 255) < 4 * (0.25 / out.numel()) ** 0.5
    assert torch.equal(out, static_binarize(to_unit_interval(images), seed=0))
