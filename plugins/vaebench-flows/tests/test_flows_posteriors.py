"""Known answers for the flow posteriors q(z|x): identity flows leave log q unchanged, the
density integrates to one, Householder steps give the full-covariance Gaussian they should,
and log q of a fresh value (by inversion) equals the value remembered at sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal
from vaebench_flows import plugin
from vaebench_flows.posterior import FlowPosterior

from vaebench.contracts import BuildContext, DataSpec

SPEC = DataSpec(dim=12, levels=2)
BUILDERS = {
    "householder": plugin.build_householder,
    "iaf": plugin.build_iaf,
    "sylvester": plugin.build_sylvester,
}


def _encoder(name: str, latent: int = 2, seed: int = 0, **options: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return BUILDERS[name](BuildContext(SPEC, latent, 16, dict(options))).double()


def _x(n: int = 3) -> torch.Tensor:
    return torch.randint(0, 2, (n, SPEC.dim), generator=torch.Generator().manual_seed(0)).double()


def _base(q: FlowPosterior) -> Independent:
    return q.base


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_no_flow_steps_leave_the_gaussian_unchanged(name: str) -> None:
    q = _encoder(name, steps=0)(_x())
    z = q.rsample((4,))
    base = Independent(Normal(_base(q).base_dist.loc, _base(q).base_dist.scale), 1)
    assert torch.equal(q.log_prob(z), base.log_prob(z))
    assert torch.equal(q.log_prob(z.clone()), base.log_prob(z))


def test_zeroed_sylvester_steps_are_the_identity() -> None:
    encoder = _encoder("sylvester")
    with torch.no_grad():  # R1 = R2 = 0: z' = z + Q R1 tanh(...) = z, log |det| = log 1
        encoder.flow.head.weight.zero_()
        encoder.flow.head.bias.zero_()
    q = encoder(_x())
    torch.manual_seed(5)
    z = q.rsample((4,))
    torch.manual_seed(5)
    z0 = _base(q).rsample((4,))
    assert torch.allclose(z, z0)
    assert torch.allclose(q.log_prob(z), _base(q).log_prob(z0))


def test_a_reflection_applied_twice_is_the_identity() -> None:
    encoder = _encoder("householder", steps=2)
    with torch.no_grad():  # both steps reflect in the same hyperplane
        half = encoder.flow.vectors.weight.shape[0] // 2
        encoder.flow.vectors.weight[half:] = encoder.flow.vectors.weight[:half]
        encoder.flow.vectors.bias[half:] = encoder.flow.vectors.bias[:half]
    q = encoder(_x())
    torch.manual_seed(6)
    z = q.rsample((4,))
    torch.manual_seed(6)
    z0 = _base(q).rsample((4,))
    assert torch.allclose(z, z0, atol=1e-12)
    assert torch.allclose(q.log_prob(z.clone()), _base(q).log_prob(z0))


def test_householder_posterior_is_the_rotated_gaussian() -> None:
    """z = U z0 with U orthogonal gives N(U mu, U diag(sigma^2) U^T) (Tomczak & Welling)."""
    latent = 3
    q = _encoder("householder", latent=latent, steps=3)(_x(1))
    eye = torch.eye(latent, dtype=torch.double).unsqueeze(1)  # columns as [M, 1, M] values
    u = q.flow.forward(eye)[0][:, 0].T  # U e_j = column j
    loc, scale = _base(q).base_dist.loc[0], _base(q).base_dist.scale[0]
    rotated = MultivariateNormal(u @ loc, u @ torch.diag(scale**2) @ u.T)
    z = q.rsample((20,))
    assert torch.allclose(q.log_prob(z.clone())[:, 0], rotated.log_prob(z[:, 0]), atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_density_integrates_to_one(name: str) -> None:
    q = _encoder(name, seed=3)(_x(1))
    grid = torch.linspace(-9, 9, 241, dtype=torch.double)
    cell = float(grid[1] - grid[0]) ** 2
    points = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 1, 2)
    with torch.no_grad():
        mass = float(q.log_prob(points).exp().sum()) * cell
    assert mass == pytest.approx(1.0, abs=5e-3)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_log_prob_of_a_fresh_value_equals_the_remembered_one(name: str) -> None:
    q = _encoder(name, latent=5, seed=4)(_x(4))
    z = q.rsample((6,))
    remembered = q.log_prob(z)
    assert torch.allclose(q.log_prob(z.detach().clone()), remembered, atol=1e-9)
    # Pairs: every draw against every point, as aggregate-posterior metrics ask.
    pairs = q.log_prob(z[:, :1])
    assert pairs.shape == (6, 4)
    assert torch.allclose(pairs[:, 0], remembered[:, 0], atol=1e-9)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_sampling_is_reparameterised(name: str) -> None:
    encoder = _encoder(name, latent=3)
    q = encoder(_x())
    assert q.has_rsample and q.batch_shape == (3,) and q.event_shape == (3,)
    loss = q.rsample((2,)).pow(2).sum() + q.log_prob(q.rsample()).sum()
    loss.backward()
    assert all(p.grad is not None for p in encoder.parameters())
    assert q.sample((2,)).requires_grad is False
    assert math.isfinite(float(loss.detach()))
