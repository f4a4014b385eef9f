"""The decoders' fast evaluation log-probabilities give torch's own values: BernoulliPixels
against Independent(Bernoulli) and LevelCategorical against Categorical, computed in float64,
over the shapes evaluation uses (k samples of z against a batch of x)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent

from vaebench.components.mlp import BernoulliPixels, LevelCategorical


def binary(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=g) < 0.4).float()


@pytest.mark.parametrize("dim", [784, 64, 13, 12])  # groups of 112, 64, none (prime), 12
def test_bernoulli_pixels_evaluation_log_prob_is_torchs(dim: int) -> None:
    g = torch.Generator().manual_seed(dim)
    # Logits as a trained decoder gives them: mostly confident, some near 0, some extreme.
    logits = torch.randn(5, 7, dim, generator=g) * 6
    logits[..., :3] = torch.tensor([40.0, -40.0, 0.0])
    x = binary((7, dim), g)
    exact = Independent(Bernoulli(logits=logits.double()), 1).log_prob(x.double())
    with torch.no_grad():
        fast = BernoulliPixels(Bernoulli(logits=logits), 1).log_prob(x)
    assert fast.shape == (5, 7) and fast.dtype == torch.float32
    # float32 rounding of a sum of dim terms: within dim * 2**-24 of the value, relatively.
    torch.testing.assert_close(fast.double(), exact, rtol=dim * 2**-24, atol=1e-4)


def test_bernoulli_pixels_with_gradients_is_torchs_exactly() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, 784, generator=g, requires_grad=True)
    x = binary((4, 784), g)
    ours = BernoulliPixels(Bernoulli(logits=logits), 1).log_prob(x)
    theirs = Independent(Bernoulli(logits=logits), 1).log_prob(x)
    assert torch.equal(ours, theirs)
    ours.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_bernoulli_pixels_of_a_known_value() -> None:
    # Two pixels, logits 0 and log 3: p(x=1) = 1/2 and 3/4; x = (1, 0) scores log(1/2 * 1/4).
    logits = torch.tensor([[0.0, math.log(3.0)]])
    with torch.no_grad():
        value = BernoulliPixels(Bernoulli(logits=logits), 1).log_prob(torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(value, torch.tensor([0.125]).log())


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_level_categorical_log_prob_is_torchs(levels: int) -> None:
    g = torch.Generator().manual_seed(levels)
    logits = torch.randn(5, 7, 64, levels, generator=g) * 4
    x = torch.randint(0, levels, (7, 64), generator=g)
    exact = Independent(Categorical(logits=logits.double()), 1).log_prob(x)
    ours = Independent(LevelCategorical(logits), 1)
    value = ours.log_prob(x.float())
    assert value.shape == (5, 7)
    torch.testing.assert_close(value.double(), exact, rtol=64 * 2**-23, atol=1e-4)
    # Probabilities over the levels sum to 1 at every pixel.
    torch.testing.assert_close(
        ours.base_dist.logits.exp().sum(-1), torch.ones(5, 7, 64), rtol=0, atol=1e-5
    )
    wide = ours.base_dist.expand(torch.Size((2, 5, 7, 64)))
    torch.testing.assert_close(wide.log_prob(x.float()).sum(-1), value.expand(2, 5, 7))


def test_level_categorical_of_a_known_value() -> None:
    # Logits (0, log 2, log 5) give probabilities 1/8, 2/8, 5/8.
    logits = torch.tensor([0.0, math.log(2.0), math.log(5.0)])
    dist = LevelCategorical(logits)
    torch.testing.assert_close(
        dist.log_prob(torch.tensor([0.0, 1.0, 2.0])), torch.tensor([1 / 8, 2 / 8, 5 / 8]).log()
    )
