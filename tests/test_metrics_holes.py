"""Aggregate posterior vs prior: both KL directions against closed forms, the decomposition
shared with the collapse metric, and the aggregate log-density against brute force."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from tests.latent_models import (
    ConstantBernoulliDecoder,
    FixedGaussianEncoder,
    GaussianPrior,
    context,
    gaussian_kl,
    index_data,
)
from vaebench.contracts import EvalSettings
from vaebench.errors import ConfigError
from vaebench.evaluate import evaluate
from vaebench.metrics.collapse import COLLAPSE
from vaebench.metrics.holes import HOLES, make_holes
from vaebench.model import VAE


def _model(mu: torch.Tensor, scale: float, prior_scale: float = 1.0) -> VAE:
    encoder = FixedGaussianEncoder(mu, torch.tensor(scale))
    return VAE(encoder, ConstantBernoulliDecoder(2), GaussianPrior(mu.shape[1], prior_scale))


def _holes(ctx, spec=HOLES):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return spec.compute(ctx)


def test_identical_posteriors_give_both_directions_in_closed_form() -> None:
    # Every q(z|x) = N(m, s^2): the aggregate posterior is that Gaussian and I(x; z) = 0.
    n, m, s = 40, 0.7, 0.5
    out = _holes(context(_model(torch.full((n, 1), m), s), index_data(n)))
    marginal, reverse = out["holes/marginal_kl"], out["holes/reverse_kl"]
    assert marginal.value == pytest.approx(gaussian_kl(m, s, 0.0, 1.0), abs=1e-6)
    assert reverse.value == pytest.approx(gaussian_kl(0.0, 1.0, m, s), abs=4 * reverse.stderr)
    assert reverse.extra == {"n": n, "of": n, "prior_samples": 4096}
    assert marginal.extra["kl_method"] == "closed-form" and marginal.extra["mi"] == pytest.approx(
        0.0, abs=1e-6
    )


@pytest.mark.slow
def test_a_broad_aggregate_posterior_matches_the_gaussian_it_approximates() -> None:
    # x ~ N(0, 1) and q(z|x) = N(x, 1): q(z) is close to N(0, 2) for large N.
    n = 2000
    mu = torch.randn(n, 1, generator=torch.Generator().manual_seed(5))
    out = _holes(context(_model(mu, 1.0), index_data(n)))
    assert out["holes/marginal_kl"].value == pytest.approx(
        gaussian_kl(0.0, math.sqrt(2), 0.0, 1.0), abs=0.03
    )
    assert out["holes/reverse_kl"].value == pytest.approx(
        gaussian_kl(0.0, 1.0, 0.0, math.sqrt(2)), abs=0.03
    )


@pytest.mark.slow
def test_a_capped_aggregate_posterior_is_the_one_of_its_subset() -> None:
    n, cap = 300, 40
    g = torch.Generator().manual_seed(8)
    model = _model(torch.randn(n, 2, generator=g), 0.6, prior_scale=1.2)
    ctx = context(model, index_data(n))
    out = _holes(ctx, make_holes(max_points=cap))
    ((_, rows),) = ctx.subsets.values()
    alone = _holes(context(model, index_data(n)[rows]), make_holes(max_points=None))
    for name in ("holes/marginal_kl", "holes/reverse_kl"):
        assert out[name].value == pytest.approx(alone[name].value, abs=1e-12)
        assert out[name].extra["n"] == cap and out[name].extra["of"] == n
    with pytest.raises(ConfigError, match="max_points"):
        make_holes(max_points=1)


@pytest.mark.slow
def test_marginal_kl_is_kl_minus_mi_and_does_not_depend_on_metric_order() -> None:
    n = 60
    g = torch.Generator().manual_seed(6)
    model = _model(torch.randn(n, 3, generator=g), 0.4, prior_scale=1.5)
    x = index_data(n)
    settings = EvalSettings(k=5, k_ood=5)
    cpu = torch.device("cpu")
    both, _ = evaluate(model, context(model, x).data, settings, [COLLAPSE, HOLES], cpu, 3)
    alone, _ = evaluate(model, context(model, x).data, settings, [HOLES], cpu, 3)
    assert both["holes/marginal_kl"].value == pytest.approx(
        both["collapse/kl"].value - both["collapse/mi"].value, abs=1e-9
    )
    for name in ("holes/marginal_kl", "holes/reverse_kl"):
        assert alone[name].value == both[name].value
    assert both["holes/marginal_kl"].value > 0 and both["holes/reverse_kl"].value > 0


def test_aggregate_log_density_matches_brute_force_in_any_chunking() -> None:
    n, latent = 37, 3
    g = torch.Generator().manual_seed(7)
    mu, scale = torch.randn(n, latent, generator=g), 0.3 + torch.rand(n, latent, generator=g)
    z = 2 * torch.randn(11, latent, generator=g)
    q = Independent(Normal(mu, scale), 1)
    expected = torch.logsumexp(q.log_prob(z.unsqueeze(1)).double(), 1) - math.log(n)
    model = VAE(FixedGaussianEncoder(mu, scale), ConstantBernoulliDecoder(2), GaussianPrior(3))
    for max_elements in (2**25, 500):  # one chunk; many chunks of points and of draws
        ctx = context(model, index_data(n), settings=EvalSettings(max_elements=max_elements))
        got = ctx.aggregate_log_q("test", z)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-5)
    # The generic path (any distribution that broadcasts) gives the same numbers.
    generic = ctx._pairwise_log_prob(q, z, n).double()
    torch.testing.assert_close(torch.logsumexp(generic, 1) - math.log(n), expected)


def test_prior_samples_is_recorded_and_checked() -> None:
    n = 20
    out = _holes(context(_model(torch.zeros(n, 1), 0.5), index_data(n)), make_holes(100))
    assert out["holes/reverse_kl"].extra["prior_samples"] == 100
    with pytest.raises(ConfigError, match="prior_samples"):
        make_holes(1)
