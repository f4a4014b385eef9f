"""Known answers for the RealNVP prior: N(0, I) at initialisation, a normalised density once
trained away from it, exact sampling inverse, and log |det| matching autograd."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian
from vaebench_flows.realnvp import RealNVPPrior


def _perturbed(latent: int, seed: int = 0) -> RealNVPPrior:
    torch.manual_seed(seed)
    prior = RealNVPPrior(latent, layers=4, hidden=16).double()
    with torch.no_grad():  # leave the identity it starts as
        for coupling in prior.couplings:
            coupling.net[-1].weight.normal_(std=0.5)
            coupling.net[-1].bias.normal_(std=0.5)
    return prior


def test_starts_as_the_standard_normal() -> None:
    prior = RealNVPPrior(5, layers=4, hidden=16).double()
    z = torch.randn(7, 3, 5, dtype=torch.double)
    expected = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(prior.log_prob(z), expected)


def test_log_determinant_matches_autograd() -> None:
    prior = _perturbed(4)
    z = torch.randn(4, dtype=torch.double)
    jac = jacobian(lambda v: prior.to_noise(v)[0], z)
    assert torch.allclose(prior.to_noise(z)[1], torch.linalg.slogdet(jac).logabsdet, atol=1e-10)


def test_density_integrates_to_one() -> None:
    prior = _perturbed(2, seed=1)
    grid = torch.linspace(-10, 10, 401, dtype=torch.double)
    points = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = float(prior.log_prob(points).exp().sum()) * float(grid[1] - grid[0]) ** 2
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_samples_invert_to_the_noise_they_came_from() -> None:
    prior = _perturbed(6, seed=2)
    torch.manual_seed(3)
    z = prior.sample(50)
    torch.manual_seed(3)
    noise = torch.randn(50, 6, dtype=torch.double)
    assert z.shape == (50, 6)
    assert torch.allclose(prior.to_noise(z)[0], noise, atol=1e-10)


@pytest.mark.slow
def test_samples_follow_the_density() -> None:
    """sample() and log_prob() describe the same distribution: the first coordinate's CDF,
    integrated from the density on a grid, matches the samples' (Kolmogorov-Smirnov)."""
    prior = _perturbed(2, seed=4)
    grid = torch.linspace(-10, 10, 801, dtype=torch.double)
    step = float(grid[1] - grid[0])
    points = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1)
    with torch.no_grad():
        marginal = prior.log_prob(points).exp().sum(1) * step  # p(z_0) on the grid
        cdf = torch.cat([marginal.new_zeros(1), torch.cumulative_trapezoid(marginal, dx=step)])
        torch.manual_seed(5)
        samples = prior.sample(20_000)[:, 0].sort().values
    empirical = torch.searchsorted(samples, grid, right=True).double() / samples.numel()
    assert float((cdf - empirical).abs().max()) < 0.0115  # the 1% KS critical value, n = 20000
