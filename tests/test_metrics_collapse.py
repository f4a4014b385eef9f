"""Posterior-collapse metrics against known answers: closed-form vs Monte Carlo KL, MI at its
bounds and on a Gaussian with a known value, and two trained models (a decoder that ignores z,
probabilistic PCA data of rank 2 under a linear VAE with 5 latent dimensions)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import (
    Distribution,
    MultivariateNormal,
    Normal,
    constraints,
    kl_divergence,
)

from tests.latent_models import (
    ConstantBernoulliDecoder,
    FixedGaussianEncoder,
    GaussianPrior,
    LinearGaussianDecoder,
    LinearGaussianEncoder,
    context,
    index_data,
)
from vaebench.contracts import Budget, DataSpec, SuiteData
from vaebench.errors import ConfigError, ContractError
from vaebench.metrics.collapse import COLLAPSE, activities, kl_stats, make_collapse
from vaebench.model import VAE
from vaebench.train import fit


def _fixed_model(mu: torch.Tensor, scale: torch.Tensor | float, prior: torch.nn.Module) -> VAE:
    scale = torch.as_tensor(scale, dtype=torch.float32)
    return VAE(FixedGaussianEncoder(mu, scale), ConstantBernoulliDecoder(2), prior)


def _random_posteriors(n: int = 200, m: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, m, generator=g), 0.2 + torch.rand(n, m, generator=g)


def _collapse(ctx, spec=COLLAPSE):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return spec.compute(ctx)


def test_closed_form_kl_matches_monte_carlo_within_its_error() -> None:
    mu, scale = _random_posteriors()
    x = index_data(mu.shape[0])
    exact = kl_stats(context(_fixed_model(mu, scale, GaussianPrior(3)), x))
    total_mc = kl_stats(context(_fixed_model(mu, scale, GaussianPrior(3, marginals=None)), x))
    dims_mc = kl_stats(context(_fixed_model(mu, scale, GaussianPrior(3, marginals="mixture")), x))

    assert (exact.method, exact.per_dim_method, exact.mc_samples) == ("closed-form",) * 2 + (None,)
    assert total_mc.method == "monte-carlo" and total_mc.per_dim is None and total_mc.note
    assert dims_mc.method == dims_mc.per_dim_method == "monte-carlo"
    by_hand = (-scale.log() + (scale**2 + mu**2) / 2 - 0.5).double()
    torch.testing.assert_close(exact.per_dim, by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(exact.per_point, by_hand.sum(-1), rtol=1e-5, atol=1e-6)
    for estimate, truth in (
        (total_mc.per_point, exact.per_point),
        (dims_mc.per_point, exact.per_point),
        (dims_mc.per_dim[:, 1], exact.per_dim[:, 1]),
    ):
        error = estimate - truth
        stderr = error.std() / math.sqrt(error.numel())
        assert abs(float(error.mean())) < 4 * float(stderr)


class _CorrelatedEncoder(FixedGaussianEncoder):
    """q(z|x_i) = N(mu_i, S) with one full covariance S: it does not factorise over dims."""

    covariance = torch.tensor([[1.0, 0.6], [0.6, 0.5]])

    def forward(self, x: torch.Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mu[x[:, 0].long()], self.covariance)


def test_a_full_covariance_posterior_has_closed_form_dims_and_a_monte_carlo_total() -> None:
    n = 100
    mu, _ = _random_posteriors(n, 2)
    model = VAE(
        _CorrelatedEncoder(mu, torch.ones(())), ConstantBernoulliDecoder(2), GaussianPrior(2)
    )
    kl = kl_stats(context(model, index_data(n)))
    assert (kl.method, kl.per_dim_method, kl.mc_samples) == ("monte-carlo", "closed-form", 64)
    q = MultivariateNormal(mu, _CorrelatedEncoder.covariance)
    truth = kl_divergence(q, MultivariateNormal(torch.zeros(2), torch.eye(2))).double()
    error = kl.per_point - truth
    assert abs(float(error.mean())) < 4 * float(error.std() / math.sqrt(n))
    variances = _CorrelatedEncoder.covariance.diagonal()
    by_hand = 0.5 * (variances + mu**2 - 1 - variances.log())
    torch.testing.assert_close(kl.per_dim, by_hand.double(), rtol=1e-5, atol=1e-6)
    # The dimensions' sum misses the posterior's correlation: the total is larger.
    assert float(kl.per_dim.sum(-1).mean()) < float(truth.mean())


def test_mi_and_activity_vanish_when_every_posterior_is_the_same() -> None:
    n = 50
    mu = torch.full((n, 4), 0.3)
    out = _collapse(context(_fixed_model(mu, 0.5, GaussianPrior(4)), index_data(n)))
    assert out["collapse/mi"].value == pytest.approx(0.0, abs=1e-6)  # float32 log_prob
    assert out["collapse/active_units"].value == 0
    assert out["collapse/active_units"].extra["per_dim"] == [0.0] * 4
    assert out["collapse/active_units"].extra["of"] == 4
    per_dim_kl = -math.log(0.5) + (0.25 + 0.09) / 2 - 0.5
    assert out["collapse/kl"].value == pytest.approx(4 * per_dim_kl, rel=1e-5)
    assert out["collapse/kl"].extra["per_dim"] == pytest.approx([per_dim_kl] * 4, rel=1e-5)


def test_mi_reaches_log_n_when_posteriors_do_not_overlap() -> None:
    n = 30
    mu = 100.0 * torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 2)
    mi = _collapse(context(_fixed_model(mu, 0.1, GaussianPrior(2)), index_data(n)))["collapse/mi"]
    assert mi.value == pytest.approx(math.log(n), abs=1e-6)
    assert mi.extra == {"n": n, "of": n, "mc_samples": math.ceil(4096 / n), "log_n": math.log(n)}


def test_mi_on_a_large_split_uses_a_fixed_subset_and_records_it() -> None:
    # The capped estimate is the uncapped one on the chosen rows: FixedGaussianEncoder reads
    # each row's index, so a subset of rows keeps its posteriors.
    n, cap = 200, 50
    mu, scale = _random_posteriors(n, 2)
    model = _fixed_model(mu, scale, GaussianPrior(2))
    ctx = context(model, index_data(n))
    capped = _collapse(ctx, make_collapse(max_points=cap))
    mi = capped["collapse/mi"]
    assert mi.extra["n"] == cap and mi.extra["of"] == n
    assert mi.extra["log_n"] == pytest.approx(math.log(cap))
    ((name, (parent, rows)),) = ctx.subsets.items()
    assert name == f"test[{cap} of {n}]" and parent == "test"
    assert rows.numel() == cap and rows.unique().numel() == cap and bool((rows.diff() > 0).all())
    alone = _collapse(context(model, index_data(n)[rows]), make_collapse(max_points=None))
    assert mi.value == pytest.approx(alone["collapse/mi"].value, abs=1e-12)
    # KL and active units still use every point.
    full = _collapse(context(model, index_data(n)), make_collapse(max_points=None))
    assert capped["collapse/kl"].value == full["collapse/kl"].value
    assert capped["collapse/active_units"].extra == full["collapse/active_units"].extra
    # The same rows for every model evaluated on the same data.
    other = context(_fixed_model(mu + 1.0, scale, GaussianPrior(2)), index_data(n))
    _collapse(other, make_collapse(max_points=cap))
    assert torch.equal(other.subsets[name][1], rows)


@pytest.mark.parametrize("bad", [0, 1, 2.5, "all", True])
def test_a_bad_aggregate_cap_is_a_config_error(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="max_points"):
        make_collapse(max_points=bad)


def test_mi_of_a_gaussian_channel_matches_its_closed_form() -> None:
    # x ~ N(0, 1), q(z|x) = N(x, s^2): I(x; z) = 0.5 log(1 + 1/s^2) as N grows.
    n, s = 2000, 1.0
    mu = torch.randn(n, 1, generator=torch.Generator().manual_seed(1))
    mi = _collapse(context(_fixed_model(mu, s, GaussianPrior(1)), index_data(n)))["collapse/mi"]
    assert mi.value == pytest.approx(0.5 * math.log(1 + 1 / s**2), abs=max(0.02, 4 * mi.stderr))


def test_active_units_count_dimensions_whose_posterior_mean_varies_above_the_threshold() -> None:
    n = 400
    g = torch.Generator().manual_seed(2)
    stds = torch.tensor([1.0, 0.3, 0.05, 0.0])  # variances 1, 0.09, 0.0025, 0
    mu = torch.randn(n, 4, generator=g) * stds
    ctx = context(_fixed_model(mu, 0.5, GaussianPrior(4)), index_data(n))
    default = _collapse(ctx)["collapse/active_units"]
    strict = _collapse(ctx, make_collapse(threshold=0.1))["collapse/active_units"]
    assert default.value == 2 and strict.value == 1 and strict.extra["threshold"] == 0.1
    activity = torch.tensor(default.extra["per_dim"], dtype=torch.float64)
    torch.testing.assert_close(activity, mu.double().var(0))
    with pytest.raises(ConfigError, match="threshold"):
        make_collapse(threshold=-1.0)


class _RigidGaussian(Distribution):
    """A diagonal Gaussian whose log_prob insists on its own batch size: no broadcasting, no
    analytic mean and no per-dimension marginals (what some third-party encoders give)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        self.normal = Normal(loc, scale)
        super().__init__(loc.shape[:1], loc.shape[1:], validate_args=False)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.normal.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if value.shape[-2] != self.batch_shape[0]:
            raise ValueError("value does not match the batch")
        return self.normal.log_prob(value).sum(-1)


class _RigidEncoder(FixedGaussianEncoder):
    def forward(self, x: torch.Tensor) -> _RigidGaussian:
        i = x[:, 0].long()
        return _RigidGaussian(self.mu[i], self.scale[i])


def test_a_posterior_that_cannot_broadcast_is_named_in_a_contract_error() -> None:
    n = 20
    mu, scale = _random_posteriors(n, 2)
    model = VAE(_RigidEncoder(mu, scale), ConstantBernoulliDecoder(2), GaussianPrior(2))
    model.names["encoder"] = "rigid"
    ctx = context(model, index_data(n))
    kl = kl_stats(ctx)  # needs no broadcasting: Monte Carlo, total only
    assert kl.method == "monte-carlo" and kl.per_dim is None and "marginals" in kl.note
    with pytest.raises(ContractError, match="encoder 'rigid'.*broadcast"):
        _collapse(ctx)


def test_activity_from_sampled_means_is_corrected_for_their_noise() -> None:
    # No analytic mean: 256 draws per point. Uncorrected, wide posteriors (scale 3) would show
    # a spurious activity of 9 / 256 = 0.035 in every dimension.
    n = 300
    spread = torch.tensor([0.0, 1.0])  # dimension 0 collapsed, dimension 1 varies with x
    mu = torch.randn(n, 2, generator=torch.Generator().manual_seed(8)) * spread
    model = VAE(_RigidEncoder(mu, torch.tensor(3.0)), ConstantBernoulliDecoder(2), GaussianPrior(2))
    activity, draws = activities(context(model, index_data(n)))
    assert draws == 256
    assert abs(float(activity[0])) < 0.01
    assert float(activity[1]) == pytest.approx(float(mu[:, 1].var()), abs=0.05)


def _fit_quietly(model: VAE, data: SuiteData, steps: int, lr: float) -> None:
    budget = Budget(steps=steps, batch_size=100, lr=lr, eval_every=steps, patience=None)
    fit(model, data, budget, seed=0)


def test_a_decoder_that_ignores_z_leaves_no_active_unit_kl_or_information(one_thread) -> None:
    torch.manual_seed(0)
    probs = torch.linspace(0.1, 0.9, 8)
    x = torch.bernoulli(probs.expand(600, 8), generator=torch.Generator().manual_seed(3))
    data = SuiteData(DataSpec(dim=8, levels=2), x[:400], x[400:500], x[500:])
    model = VAE(LinearGaussianEncoder(8, 3), ConstantBernoulliDecoder(8), GaussianPrior(3))
    _fit_quietly(model, data, steps=300, lr=0.02)
    out = _collapse(context(model, data.test))
    assert out["collapse/active_units"].value == 0
    # Adam's step noise keeps the encoder's weights from reaching exactly zero.
    assert out["collapse/kl"].value < 0.05
    assert abs(out["collapse/mi"].value) < 0.03


@pytest.mark.slow
def test_probabilistic_pca_data_of_rank_two_leaves_two_active_units(one_thread) -> None:
    # The decoder's noise is fixed above the data's: with a learned one the maximum-likelihood
    # fit on a finite sample uses the noise directions whose sample eigenvalues exceed the
    # fitted noise (their spread is sqrt(D / N)), and those directions become weakly active.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    d, rank, latent = 10, 2, 5
    weights = torch.randn(d, rank, generator=g)
    codes = torch.randn(1600, rank, generator=g)
    x = codes @ weights.T + 0.05 * torch.randn(1600, d, generator=g)
    data = SuiteData(DataSpec(dim=d, levels=2), x[:1200], x[1200:1400], x[1400:])
    decoder = LinearGaussianDecoder(latent, d, sigma=0.3)
    model = VAE(LinearGaussianEncoder(d, latent), decoder, GaussianPrior(latent))
    _fit_quietly(model, data, steps=600, lr=0.02)
    out = _collapse(context(model, data.test))
    activity = sorted(out["collapse/active_units"].extra["per_dim"])
    assert out["collapse/active_units"].value == rank, activity
    assert activity[-rank] > 0.5 and activity[-rank - 1] < 0.01
