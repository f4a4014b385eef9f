"""Known answers for q(z1, z2 | x): the joint log_prob is a normalised density whose layer
marginal and moments are those of the sampler, it is the sum of its two factors, and it
broadcasts draws against a batch of points as the aggregate-posterior metrics need."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal
from vaebench_hvae.plugin import build_encoder

from vaebench.contracts import BuildContext, DataSpec

SPEC = DataSpec(dim=12, levels=2)
FORMS = ("burda", "tomczak")


def encoder(form: str, latent: int = 2, seed: int = 0, **options: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    enc = build_encoder(BuildContext(SPEC, latent, 16, {"form": form, **options})).double()
    with torch.no_grad():  # the second layer's mean depends strongly on the first layer
        rows = enc.second_head.latent
        enc.second.out.weight[:rows].mul_(4.0)
    return enc


def points(n: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 2, (n, SPEC.dim), generator=g).double()


def grid(lo: float = -9.0, hi: float = 9.0, n: int = 721) -> tuple[torch.Tensor, float]:
    """Every (z1, z2) of a square grid, ``[n * n, 2]``, and the area of one cell."""
    axis = torch.linspace(lo, hi, n, dtype=torch.double)
    z1, z2 = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack((z1.flatten(), z2.flatten()), -1), float(axis[1] - axis[0]) ** 2


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_log_prob_is_a_density_with_the_samplers_moments(form: str) -> None:
    """On a grid, exp(log_prob) integrates to 1, and E[z1], E[z2], E[z1 z2] and E[z2^2]
    by quadrature match 400,000 draws of rsample (within 5 standard errors): log_prob is the
    density of what rsample draws, including how the second layer depends on the first."""
    q = encoder(form)(points(1))
    z, cell = grid()
    with torch.no_grad():
        density = q.log_prob(z.unsqueeze(1)).squeeze(1).exp()  # [G]
    assert float(density.sum() * cell) == pytest.approx(1.0, abs=1e-6)
    torch.manual_seed(2)
    with torch.no_grad():
        draws = q.rsample((400_000,)).squeeze(1)  # [S, 2]
    z1, z2 = z.unbind(-1)
    s1, s2 = draws.unbind(-1)
    for f_grid, f_draws in (
        (z1, s1),
        (z2, s2),
        (z1 * z2, s1 * s2),
        (z2 * z2, s2 * s2),
    ):
        by_quadrature = float((f_grid * density).sum() * cell)
        se = float(f_draws.std() / math.sqrt(f_draws.numel()))
        assert abs(float(f_draws.mean()) - by_quadrature) < 5 * se + 1e-9


@pytest.mark.parametrize("form", FORMS)
def test_the_first_layers_marginal_is_its_gaussian(form: str) -> None:
    """Integrating the second layer out of the joint leaves q(first layer | x) itself: the
    conditional is normalised at every value of the first layer."""
    q = encoder(form)(points(1))
    z, cell = grid()
    n = int(math.isqrt(z.shape[0]))
    density = q.log_prob(z.unsqueeze(1)).squeeze(1).exp().reshape(n, n)  # [z1, z2]
    step = math.sqrt(cell)
    first_is_z1 = form == "burda"
    marginal = density.sum(1 if first_is_z1 else 0) * step
    axis = z[:, 0].reshape(n, n)[:, 0]
    expected = q.first.log_prob(axis.unsqueeze(-1)).squeeze(-1).exp()
    assert torch.allclose(marginal, expected, atol=1e-6)


@pytest.mark.parametrize("form", FORMS)
def test_the_joint_is_the_sum_of_its_factors(form: str) -> None:
    """log q(z|x) = log q(first|x) + log q(second|first, x), with each factor computed from the
    encoder's networks directly (not through the distribution), and log_prob_per_dim splits
    it per coordinate."""
    enc = encoder(form, latent=5, z2=2)
    x = points(4)
    q = enc(x)
    z = q.rsample((6,))  # [6, 4, 5]
    z1, z2 = z[..., :3], z[..., 3:]
    xs = x * enc.scale

    def gaussian(out: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        mu, logvar = out.chunk(2, -1)
        return Normal(mu, (0.5 * logvar).exp()).log_prob(value).sum(-1)

    if form == "burda":
        expected = gaussian(enc.first(xs), z1) + gaussian(enc.second(z1), z2)
    else:
        joined = enc.second(xs.expand(6, -1, -1), z2)
        expected = gaussian(enc.first(xs), z2) + gaussian(joined, z1)
    torch.testing.assert_close(q.log_prob(z), expected)
    torch.testing.assert_close(q.log_prob_per_dim(z).sum(-1), expected)


@pytest.mark.parametrize("form", FORMS)
def test_draws_against_a_batch_of_points(form: str) -> None:
    """``log_prob`` of ``[n, 1, M]`` against batch ``[N]`` gives ``[n, N]``: every draw scored
    under every point's posterior, the same numbers as scoring it one point at a time."""
    enc = encoder(form, latent=4)
    x = points(5)
    q = enc(x)
    z = q.rsample((3,))[:, 0]  # [3, M]: draws of the first point
    pairwise = q.log_prob(z.unsqueeze(1))
    assert pairwise.shape == (3, 5)
    for j in range(5):
        one = enc(x[j : j + 1]).log_prob(z.unsqueeze(1)).squeeze(1)
        torch.testing.assert_close(pairwise[:, j], one)


def test_rsample_draws_the_first_layer_then_the_second() -> None:
    """Noise is drawn in two standard-normal draws, the first layer's then the second's (the
    order seeds trained together replay), and z is (z1, z2) whatever the form."""
    for form, first in (("burda", slice(0, 3)), ("tomczak", slice(3, 5))):
        q = encoder(form, latent=5, z2=2)(points(2))
        torch.manual_seed(3)
        z = q.rsample((4,))
        torch.manual_seed(3)
        eps = torch.randn(4, 2, q.first.loc.shape[-1], dtype=torch.double)
        torch.testing.assert_close(z[..., first], q.first.loc + q.first.scale * eps)
