"""The plugin authors' kit (vaebench.testing): one contract test parametrised over every
built-in encoder, decoder and prior, and the kit catching components that break the contract."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal

from vaebench import plugins
from vaebench.components.mlp import GaussianMLPEncoder
from vaebench.components.priors import StandardNormalPrior
from vaebench.contracts import BuildContext, ComponentSpec, DataSpec
from vaebench.errors import ContractError, DataError, PluginError
from vaebench.testing import (
    BINARY_VECTOR_SPEC,
    DIGITS_SPEC,
    STANDARD_SPECS,
    ContractSuite,
    build_harness,
    check_component,
    check_decoder_density,
    check_densities,
    check_encoder_density,
    check_gradients,
    check_prior_density,
    check_sampling,
    check_shapes,
    component_cases,
    host_with,
    linked_data_dir,
    run_in_grid,
    tiny_suite_data,
    train_and_evaluate,
)


@functools.cache
def builtin_host() -> plugins.PluginHost:
    return plugins.PluginHost(entry_points=False).load()


class TestBuiltinContracts(ContractSuite):
    """Every built-in component on every standard data spec it fits."""

    plugin = "vaebench"
    every_spec = True

    def host(self) -> plugins.PluginHost:
        return builtin_host()  # installed plugins cannot change what this test sees

    @pytest.mark.slow
    def test_densities_are_normalised(self, case) -> None:
        super().test_densities_are_normalised(case)

    @pytest.mark.slow
    def test_tiny_train_and_evaluate(self, case) -> None:
        super().test_tiny_train_and_evaluate(case)


def test_every_builtin_component_is_covered() -> None:
    cases = component_cases("vaebench", host=builtin_host(), every_spec=True)
    names = {(c.kind, c.spec.name) for c in cases}
    for kind in ("encoder", "decoder", "prior"):
        assert {(kind, n) for n in builtin_host().registry(kind).names()} <= names


# -- components that break the contract -----------------------------------------------------
class UnusedParameterEncoder(GaussianMLPEncoder):
    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx.data.dim, ctx.data.levels, ctx.hidden_dim, ctx.latent_dim)
        self.forgotten = nn.Parameter(torch.zeros(3))


class DetachedEncoder(GaussianMLPEncoder):
    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx.data.dim, ctx.data.levels, ctx.hidden_dim, ctx.latent_dim)

    def forward(self, x: torch.Tensor) -> Independent:
        q = super().forward(x)
        return Independent(Normal(q.mean.detach(), q.stddev.detach()), 1)


class NoEventEncoder(GaussianMLPEncoder):
    def forward(self, x: torch.Tensor) -> Normal:
        return super().forward(x).base_dist  # per-dimension: batch [B, M], no event


class NaNPrior(StandardNormalPrior):
    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return super().log_prob(z) * math.nan


class WrongSamplePrior(StandardNormalPrior):
    def sample(self, n: int) -> torch.Tensor:
        return super().sample(n + 1)


class OutOfRangeDecoder(nn.Module):
    """Samples the value ``levels``, one past the data's largest level."""

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        self.levels = ctx.data.levels
        self.net = nn.Linear(ctx.latent_dim, ctx.data.dim)

    def forward(self, z: torch.Tensor) -> Independent:
        base = self.net(z).unsqueeze(-1)
        logits = torch.cat([base.expand(*base.shape[:-1], self.levels), base + 50], -1)
        return Independent(Categorical(logits=logits), 1)


class GenerousPrior(StandardNormalPrior):
    """log p(z) = -0.05 |z|^2 + 50: not a density (it integrates to about e^58 in 4 dims), and
    the IW-NLL <= -ELBO check the kit used to run passed it."""

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.05 * z.pow(2).sum(-1) + 50


class MissingConstantPrior(StandardNormalPrior):
    """N(0, I) without its -M/2 log(2 pi): off by 3.7 nats in 4 dims."""

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * z.pow(2).sum(-1)


class WideSamplerPrior(StandardNormalPrior):
    """log_prob is N(0, I)'s, but samples come from N(0, 1.3^2 I)."""

    def sample(self, n: int) -> torch.Tensor:
        return 1.3 * super().sample(n)


class ShiftedNormal(Independent):
    """A diagonal Gaussian whose log_prob is one nat too high everywhere."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return super().log_prob(value) + 1.0


class ShiftedEncoder(GaussianMLPEncoder):
    def forward(self, x: torch.Tensor) -> Independent:
        q = super().forward(x)
        return ShiftedNormal(q.base_dist, 1)


class WideSampler(Independent):
    """log_prob of N(mu, s^2), samples of N(mu, (1.5 s)^2)."""

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        eps = torch.randn(torch.Size(sample_shape) + self.mean.shape)
        return self.mean + 1.5 * self.stddev * eps

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        with torch.no_grad():
            return self.rsample(sample_shape)


class WideSamplingEncoder(GaussianMLPEncoder):
    def forward(self, x: torch.Tensor) -> Independent:
        return WideSampler(super().forward(x).base_dist, 1)


class RawLogits(Categorical):
    """Scores a level by its raw logit: probabilities that do not sum to 1."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__(logits=logits)
        self.raw = logits

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        raw = self.raw.expand(*torch.broadcast_shapes(value.shape, self.raw.shape[:-1]), -1)
        index = value.long().expand(raw.shape[:-1]).unsqueeze(-1)
        return raw.gather(-1, index).squeeze(-1)


class UnnormalisedDecoder(nn.Module):
    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        self.shape = (ctx.data.dim, ctx.data.levels)
        self.net = nn.Linear(ctx.latent_dim, ctx.data.dim * ctx.data.levels)

    def forward(self, z: torch.Tensor) -> Independent:
        return Independent(RawLogits(self.net(z).unflatten(-1, self.shape)), 1)


class MassOffTheLevelsDecoder(nn.Module):
    """A categorical over levels + 1 values whose sampler never draws the extra one: the
    levels' probabilities sum to less than 1."""

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()
        self.shape = (ctx.data.dim, ctx.data.levels + 1)
        self.net = nn.Linear(ctx.latent_dim, ctx.data.dim * (ctx.data.levels + 1))

    def forward(self, z: torch.Tensor) -> Independent:
        logits = self.net(z).unflatten(-1, self.shape)
        logits = torch.cat([logits[..., :-1], logits[..., -1:].detach() * 0 + 1.0], -1)
        dist = Independent(Categorical(logits=logits), 1)
        dist.sample = lambda shape=torch.Size(): dist.base_dist.sample(shape).clamp(  # type: ignore[method-assign]
            max=self.shape[1] - 2
        )
        return dist


def _no_event_encoder(ctx: BuildContext) -> GaussianMLPEncoder:
    return NoEventEncoder(ctx.data.dim, ctx.data.levels, ctx.hidden_dim, ctx.latent_dim)


BROKEN: dict[str, tuple[ComponentSpec, Any, str]] = {
    "unused parameter": (
        ComponentSpec("forgetful", "encoder", UnusedParameterEncoder),
        check_gradients,
        "no gradient reaches parameter.*forgotten",
    ),
    "graph cut": (
        ComponentSpec("detached", "encoder", DetachedEncoder),
        check_gradients,
        "no gradient reaches parameter",
    ),
    "no event dimension": (
        ComponentSpec("no-event", "encoder", _no_event_encoder),
        check_shapes,
        "Independent",
    ),
    "NaN log-density": (
        ComponentSpec("nan", "prior", lambda ctx: NaNPrior(ctx.latent_dim)),
        check_shapes,
        "NaN",
    ),
    "wrong sample shape": (
        ComponentSpec("extra", "prior", lambda ctx: WrongSamplePrior(ctx.latent_dim)),
        check_shapes,
        r"sample\(3\) returned shape \(4, 4\)",
    ),
    "sample out of range": (
        ComponentSpec("overflow", "decoder", OutOfRangeDecoder),
        check_sampling,
        "integer levels in 0..16",
    ),
    "prior 50 nats too generous": (
        ComponentSpec("generous", "prior", lambda ctx: GenerousPrior(ctx.latent_dim)),
        check_prior_density,
        r"integral of exp\(log_prob\) over z is not 1: log of the estimate \+5\d\.",
    ),
    "prior without its normalising constant": (
        ComponentSpec("unnormalised", "prior", lambda ctx: MissingConstantPrior(ctx.latent_dim)),
        check_prior_density,
        r"integral of exp\(log_prob\) over z is not 1: log of the estimate \+3\.6",
    ),
    "prior sampling another distribution": (
        ComponentSpec("wide", "prior", lambda ctx: WideSamplerPrior(ctx.latent_dim)),
        check_prior_density,
        r"sample\(\) does not draw from the density log_prob gives",
    ),
    "encoder log_prob a nat too high": (
        ComponentSpec(
            "shifted",
            "encoder",
            lambda ctx: ShiftedEncoder(
                ctx.data.dim, ctx.data.levels, ctx.hidden_dim, ctx.latent_dim
            ),
        ),
        check_encoder_density,
        r"integral of exp\(log_prob\) over z is not 1: log of the estimate \+1\.0",
    ),
    "encoder samples wider than its log_prob": (
        ComponentSpec(
            "wide-q",
            "encoder",
            lambda ctx: WideSamplingEncoder(
                ctx.data.dim, ctx.data.levels, ctx.hidden_dim, ctx.latent_dim
            ),
        ),
        check_encoder_density,
        r"sample\(\) does not draw from the density log_prob gives",
    ),
    "decoder probabilities not normalised": (
        ComponentSpec("raw-logits", "decoder", UnnormalisedDecoder),
        check_decoder_density,
        r"sum of p\(x\|z\) over x in levels 0..16: log of the estimate",
    ),
    "decoder mass outside the data's levels": (
        ComponentSpec("leaky", "decoder", MassOffTheLevelsDecoder),
        check_decoder_density,
        r"sum of p\(x\|z\) over x in levels 0..16: log of the estimate -",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_kit_names_the_broken_component(name: str) -> None:
    spec, check, message = BROKEN[name]
    harness = build_harness(spec.kind, spec, DIGITS_SPEC)
    with pytest.raises(ContractError, match=message) as info:
        check(harness)
    if check is not check_gradients:
        assert repr(spec.name) in str(info.value)


@pytest.mark.slow
def test_check_component_accepts_an_unpackaged_spec() -> None:
    spec = ComponentSpec("plain", "prior", lambda ctx: StandardNormalPrior(ctx.latent_dim))
    check_component("prior", spec)  # every check passes on a correct component
    assert build_harness("prior", spec).data.spec == STANDARD_SPECS[0]


def test_spec_that_fits_no_standard_data_needs_a_data_spec() -> None:
    spec = ComponentSpec(
        "picky", "prior", lambda ctx: StandardNormalPrior(ctx.latent_dim), fits=lambda d: False
    )
    with pytest.raises(ContractError, match="pass data_spec"):
        build_harness("prior", spec)
    with pytest.raises(ContractError, match="does not fit"):
        build_harness("prior", spec, BINARY_VECTOR_SPEC)


def test_unknown_plugin_is_named() -> None:
    with pytest.raises(PluginError, match="no plugin 'vaebench-nope' is loaded"):
        component_cases("vaebench-nope", host=builtin_host())


# -- data, training, grids ----------------------------------------------------------------------
def test_tiny_suite_data_uses_real_digits_and_random_levels_otherwise() -> None:
    from vaebench.suites.digits import digits_tensor

    digits = tiny_suite_data()
    assert torch.equal(digits.train, digits_tensor()[:64])
    assert (digits.val.shape, digits.test.shape) == ((16, 64), (16, 64))
    spec = DataSpec(dim=9, levels=5, image_shape=(3, 3))
    data = tiny_suite_data(spec, n_train=10, n_val=4, n_test=3, seed=2)
    assert data.spec == spec and data.train.shape == (10, 9) and data.test.shape == (3, 9)
    values = torch.cat([data.train, data.val, data.test])
    assert values.min() >= 0 and values.max() <= 4 and torch.equal(values, values.round())
    assert torch.equal(tiny_suite_data(spec, n_train=10, n_val=4, n_test=3, seed=2).train,
                       data.train)  # fmt: skip


def test_train_and_evaluate_reports_finite_consistent_metrics() -> None:
    combination = {"encoder": "mlp-gaussian", "decoder": "mlp-categorical", "prior": "mog"}
    result = train_and_evaluate(combination, host=builtin_host(), steps=5, k=6)
    assert result.training.steps_done == 5
    metrics = {name: v.value for name, v in result.metrics.items()}
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["neg_elbo"] == pytest.approx(metrics["recon"] + metrics["kl"])


@pytest.mark.slow
def test_run_in_grid_returns_records_and_reports_failures(
    tmp_path: Path, fresh_default_host: None
) -> None:
    grid = {
        "encoders": ["mlp-gaussian"],
        "decoders": ["mlp-categorical"],
        "metrics": ["likelihood"],
    }
    nan_host = host_with(ComponentSpec("nan", "prior", lambda ctx: NaNPrior(ctx.latent_dim)))
    with plugins.use_host(nan_host.load()):
        summary = run_in_grid(tmp_path / "ok", priors=["standard-normal"], **grid)
        assert [r["status"] for r in summary.records] == ["ok"]
        with pytest.raises(
            ContractError, match="mlp-gaussian / mlp-categorical / nan / elbo seed 0"
        ):
            run_in_grid(tmp_path / "bad", priors=["nan"], **grid)


def test_linked_data_dir_links_and_names_missing_files(tmp_path: Path) -> None:
    from vaebench.data.download import FILES

    source = tmp_path / "shared"
    (source / "mnist").mkdir(parents=True)
    for fname in FILES.values():
        (source / "mnist" / fname).write_bytes(b"x")
    root = linked_data_dir(source, tmp_path / "data", ["mnist"])
    linked = sorted((root / "mnist").iterdir())
    assert len(linked) == len(FILES) and all(p.is_symlink() for p in linked)
    assert linked_data_dir(source, tmp_path / "data", ["mnist"]) == root  # idempotent
    with pytest.raises(DataError, match="fashion-mnist"):
        linked_data_dir(source, tmp_path / "other", ["fashion-mnist"])


def test_set_up_helpers_restore_the_environment_and_the_host(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from vaebench import plugins
    from vaebench.data.download import MIRRORS_ENV
    from vaebench.testing import CLOSED_MIRROR, every_installed_plugin, offline_data

    monkeypatch.setenv(plugins.ENV_PLUGINS, "none")
    monkeypatch.setenv(MIRRORS_ENV, "http://mirror.example/")
    plugins.reset_default_host()
    before = plugins.default_host()
    with every_installed_plugin():
        assert plugins.ENV_PLUGINS not in os.environ
        assert plugins.default_host() is not before
    assert os.environ[plugins.ENV_PLUGINS] == "none"
    source = tmp_path / "source"
    from vaebench.data.download import FILES

    (source / "mnist").mkdir(parents=True)
    for name in FILES.values():
        (source / "mnist" / name).write_bytes(b"x")
    with offline_data(source, tmp_path / "data", datasets=("mnist",)) as root:
        assert os.environ[MIRRORS_ENV] == CLOSED_MIRROR
        assert all((root / "mnist" / n).is_symlink() for n in FILES.values())
    assert os.environ[MIRRORS_ENV] == "http://mirror.example/"
    plugins.reset_default_host()


@pytest.mark.slow
def test_the_generous_prior_fails_the_whole_kit_now() -> None:
    spec = ComponentSpec("generous", "prior", lambda ctx: GenerousPrior(ctx.latent_dim))
    # What the kit checked before, the IW bound below -ELBO, holds for this prior too: it holds
    # for any log-weights (a log-mean-exp is never below the mean).
    combination = {"encoder": "mlp-gaussian", "decoder": "mlp-categorical", "prior": "generous"}
    result = train_and_evaluate(combination, host=host_with(spec), steps=4, k=6)
    assert result.metrics["iw_nll"].value <= result.metrics["neg_elbo"].value
    with pytest.raises(ContractError, match="prior 'generous': the integral of exp"):
        check_component("prior", spec)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["prior", "encoder", "decoder"])
def test_density_checks_pass_correct_components_with_room_to_spare(kind: str) -> None:
    from vaebench.testing import DENSITY_TOLERANCE, decoder_normaliser, density_estimates

    name = {"prior": "mog", "encoder": "mlp-gaussian", "decoder": "mlp-categorical"}[kind]
    harness = build_harness(kind, name, DIGITS_SPEC, host=builtin_host())
    check_densities(harness)
    if kind == "decoder":
        z = torch.randn(2, harness.latent_dim)
        estimate = decoder_normaliser(harness.model.decoder, z, DIGITS_SPEC.levels)
        # Independent pixels: the proposal is the decoder itself, every weight equals the sum.
        assert abs(estimate.log_value) < 1e-3 and estimate.standard_error < 1e-3
        return
    if kind == "prior":
        prior = harness.model.prior
        estimates = density_estimates(lambda n: prior.sample(n)[:, None], prior.log_prob)
    else:
        with torch.no_grad():
            q = harness.model.encoder(harness.data.val[:3])
        estimates = density_estimates(lambda n: q.sample((n,)), q.log_prob, n=4096)
    for estimate in estimates:
        assert abs(estimate.log_value) < DENSITY_TOLERANCE / 2
