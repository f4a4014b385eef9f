"""The plugin authors' kit: contract checks any plugin package runs on its own components.

Every check builds a small VAE around the component under test (built-in partners fill the
other two roles), runs it on tiny data and raises :class:`vaebench.errors.ContractError` naming
the component and what broke. Use it in three ways::

    # 1. one test class that checks everything your plugin registers
    from vaebench.testing import ContractSuite

    class TestMyPlugin(ContractSuite):
        plugin = "my-plugin"            # your entry-point name (or distribution name)

    # 2. one call per component
    from vaebench.testing import check_component
    check_component("prior", "student-t")

    # 3. a tiny end-to-end run of a combination, returning its metrics
    from vaebench.testing import train_and_evaluate
    result = train_and_evaluate({"encoder": "mlp-gaussian", "decoder": "mlp-categorical",
                                 "prior": "student-t"})

The checks are: the factory builds a module; shapes and broadcasting as
:mod:`vaebench.contracts` describes them (including ``[k, 1, M]`` against batch ``[N]`` for an
encoder, which aggregate-posterior metrics use); finite log-probabilities; gradients reaching
every trainable parameter; sampling (shapes, and data values in ``0 .. levels-1``); densities
that are densities (:func:`check_densities`: a prior's integrates to 1 over z, an encoder's
too at a few x, a decoder's sums to 1 over the data's levels at a few z, and samples follow
their own ``log_prob``), each an importance-sampled estimate that a broken component fails; a
tiny training run and evaluation with finite metrics.

Also: :func:`run_in_grid` (a tiny grid through the real runner, into a directory),
:func:`tiny_suite_data`, :func:`host_with` (a host holding a component not yet packaged),
:func:`linked_data_dir`, and for test set-up :func:`every_installed_plugin`,
:func:`offline_data`, :func:`find_real_data` and :func:`real_data` (the real MNIST-family
files, found as vaebench finds them or downloaded). Nothing here imports pytest:
:class:`ContractSuite` only implements pytest's ``pytest_generate_tests`` hook, so the module
also works from a script.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaebench.contracts import (
    COMPONENT_KINDS,
    Budget,
    ComponentSpec,
    DataSpec,
    EvalSettings,
    MetricValue,
    SuiteData,
)
from vaebench.errors import ConfigError, ContractError, DataError, PluginError
from vaebench.hookspecs import hookimpl
from vaebench.model import VAE
from vaebench.plugins import (
    BUILTIN_NAME,
    ENV_PLUGINS,
    PluginHost,
    default_host,
    reset_default_host,
)
from vaebench.train import TrainResult

DIGITS_SPEC = DataSpec(dim=64, levels=17, image_shape=(8, 8))
BINARY_IMAGE_SPEC = DataSpec(dim=784, levels=2, image_shape=(28, 28))
BINARY_VECTOR_SPEC = DataSpec(dim=12, levels=2)
GREY_8BIT_SPEC = DataSpec(dim=64, levels=256, image_shape=(8, 8))
# The data a component is checked on: the first of these it fits (or every one, if asked).
STANDARD_SPECS: tuple[DataSpec, ...] = (
    DIGITS_SPEC,
    BINARY_IMAGE_SPEC,
    BINARY_VECTOR_SPEC,
    GREY_8BIT_SPEC,
)
LATENT_DIM = 4
HIDDEN_DIM = 32


# -- data ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _digits() -> torch.Tensor:
    from vaebench.suites.digits import digits_tensor

    return digits_tensor()


def tiny_suite_data(
    spec: DataSpec | None = None,
    *,
    n_train: int = 64,
    n_val: int = 16,
    n_test: int = 16,
    seed: int = 0,
) -> SuiteData:
    """Small :class:`SuiteData`: real digits rows for the digits spec (the default), else
    uniformly random levels of ``spec`` (enough for contract checks, not for learning)."""
    spec = spec or DIGITS_SPEC
    n = n_train + n_val + n_test
    if spec == DIGITS_SPEC:
        x = _digits()[:n].clone()
    else:
        if spec.image_shape is not None and math.prod(spec.image_shape) != spec.dim:
            raise ContractError(f"{spec}: image_shape does not multiply to dim {spec.dim}")
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, spec.levels, (n, spec.dim), generator=g).float()
    train, val, test = x.split([n_train, n_val, n_test])
    return SuiteData(spec=spec, train=train, val=val, test=test, provenance={"source": "testing"})


# -- cases --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ComponentCase:
    """One component on one kind of data: what a contract test is parametrised over."""

    kind: str
    spec: ComponentSpec
    data: DataSpec

    @property
    def id(self) -> str:
        image = "x".join(map(str, self.data.image_shape)) if self.data.image_shape else "flat"
        return f"{self.kind}:{self.spec.name}@{self.data.dim}d{self.data.levels}l-{image}"


def component_cases(
    plugin: str | None = None,
    kinds: Iterable[str] = COMPONENT_KINDS,
    data_specs: Sequence[DataSpec] = STANDARD_SPECS,
    host: PluginHost | None = None,
    every_spec: bool = False,
) -> list[ComponentCase]:
    """Every registered component (of ``plugin``, if given: its entry-point or distribution
    name) paired with the first spec of ``data_specs`` it fits, or with each one it fits if
    ``every_spec``."""
    host = host or default_host()
    if plugin is not None and not any(
        plugin in (info.name, info.distribution) for info in host.plugins()
    ):
        known = ", ".join(info.name for info in host.plugins())
        raise PluginError(
            f"no plugin {plugin!r} is loaded (loaded: {known}); install your package "
            "(pip install -e .) so its vaebench entry point is found"
        )
    cases = []
    for kind in kinds:
        for entry in host.registry(kind):
            dist = host.info[entry.plugin].distribution
            if plugin is not None and plugin not in (entry.plugin, dist):
                continue
            fitting = [d for d in data_specs if entry.obj.fits(d)]
            cases += [
                ComponentCase(kind, entry.obj, d) for d in fitting[: None if every_spec else 1]
            ]
    if plugin is not None and not cases:
        raise PluginError(
            f"plugin {plugin!r} registers no {'/'.join(kinds)} that fits any of the data specs "
            f"{list(data_specs)}; set data_specs to data your components fit"
        )
    return cases


class _OnePlugin:
    """A plugin object registering one component, for testing a spec before packaging it."""

    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec

    def _give(self, kind: str, register: Any) -> None:
        if self.spec.kind == kind:
            register(self.spec)

    @hookimpl
    def vaebench_register_encoders(self, register: Any) -> None:
        self._give("encoder", register)

    @hookimpl
    def vaebench_register_decoders(self, register: Any) -> None:
        self._give("decoder", register)

    @hookimpl
    def vaebench_register_priors(self, register: Any) -> None:
        self._give("prior", register)


def host_with(*specs: ComponentSpec) -> PluginHost:
    """A host with the built-ins and ``specs``, no entry points: test a component unpackaged."""
    return PluginHost({f"under-test-{i}": _OnePlugin(s) for i, s in enumerate(specs)}, False)


def _partner(host: PluginHost, kind: str, data: DataSpec) -> str:
    preferred = {"encoder": "mlp-gaussian", "prior": "standard-normal"}.get(kind)
    registry = host.registry(kind)
    if preferred is not None and preferred in registry and registry.get(preferred).fits(data):
        return preferred
    for entry in registry:
        if entry.plugin == BUILTIN_NAME and entry.obj.fits(data):
            return entry.obj.name
    raise ContractError(f"no built-in {kind} fits {data}; pass partners={{{kind!r}: NAME}}")


# -- building -----------------------------------------------------------------------------------
@dataclass
class Harness:
    """A built VAE around one component under test, with its tiny data."""

    kind: str
    name: str
    model: VAE
    data: SuiteData
    host: PluginHost
    combination: dict[str, str]
    options: dict[str, dict[str, Any]]
    latent_dim: int
    hidden_dim: int

    @property
    def component(self) -> nn.Module:
        return getattr(self.model, self.kind)

    @property
    def who(self) -> str:
        return f"{self.kind} {self.name!r}"


def build_harness(
    kind: str,
    name_or_spec: str | ComponentSpec,
    data_spec: DataSpec | None = None,
    *,
    host: PluginHost | None = None,
    partners: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
    latent_dim: int = LATENT_DIM,
    hidden_dim: int = HIDDEN_DIM,
    seed: int = 0,
) -> Harness:
    """Build the component (a registered name, or a :class:`ComponentSpec` not yet packaged)
    with built-in partners, on the first of :data:`STANDARD_SPECS` it fits unless given."""
    from vaebench.pipeline import build_model

    if kind not in COMPONENT_KINDS:
        raise ContractError(f"unknown component kind {kind!r}; use one of {COMPONENT_KINDS}")
    if isinstance(name_or_spec, ComponentSpec):
        spec = name_or_spec
        if spec.kind != kind:
            raise ContractError(f"{spec.name!r} is a {spec.kind}, checked as a {kind}")
        host = host or host_with(spec)
        if host.registry(kind).get(spec.name) is not spec:
            raise PluginError(f"host holds another {kind} named {spec.name!r}")
    else:
        host = host or default_host()
        spec = host.get(kind, name_or_spec)
    if data_spec is None:
        data_spec = next((d for d in STANDARD_SPECS if spec.fits(d)), None)
        if data_spec is None:
            raise ContractError(
                f"{kind} {spec.name!r} fits none of {list(STANDARD_SPECS)}; pass data_spec="
            )
    elif not spec.fits(data_spec):
        raise ContractError(f"{kind} {spec.name!r} does not fit {data_spec}")
    combination: dict[str, str] = {
        k: spec.name if k == kind else (partners or {}).get(k) or _partner(host, k, data_spec)
        for k in COMPONENT_KINDS
    }
    component_options: dict[str, dict[str, Any]] = {kind: dict(options or {})}
    data = tiny_suite_data(data_spec, seed=seed)
    torch.manual_seed(seed)
    model = build_model(host, combination, component_options, data_spec, latent_dim, hidden_dim)
    return Harness(
        kind, spec.name, model, data, host, combination, component_options, latent_dim, hidden_dim
    )


# -- checks -------------------------------------------------------------------------------------
def _finite(values: torch.Tensor, who: str, shape: Sequence[int]) -> None:
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != tuple(shape):
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ContractError(f"{who} returned {got}; expected a tensor of shape {tuple(shape)}")
    if not torch.isfinite(values).all():
        raise ContractError(f"{who} returned non-finite values (NaN or inf)")


def check_shapes(h: Harness) -> None:
    """The model's own contract check, plus the broadcasting metrics rely on."""
    x = h.data.val[:6]
    n, m = x.shape[0], h.latent_dim
    model = h.model
    model.check(x, m)
    with torch.no_grad():
        q = model.encoder(x)
        z = q.rsample((3,))
        if h.kind == "encoder":
            # Aggregate-posterior metrics score draws against every point: [k, 1, M] vs [N].
            _finite(q.log_prob(z[:, :1]), f"{h.who} log_prob of [3, 1, M] vs batch [N]", (3, n))
            _finite(q.log_prob(z[0]), f"{h.who} log_prob of [N, M]", (n,))
        if h.kind == "decoder":
            p = model.decoder(z[0])
            if tuple(p.batch_shape) != (n,):
                raise ContractError(f"{h.who}: z of shape [N, M] gave batch {p.batch_shape}")
            _finite(p.log_prob(x), f"{h.who} log_prob with z of shape [N, M]", (n,))
            _finite(model.decoder(z).log_prob(x), f"{h.who} log_prob of [N, D] vs batch [3, N]",
                    (3, n))  # fmt: skip
        if h.kind == "prior":
            _finite(model.prior.log_prob(z), f"{h.who} log_prob of [3, N, M]", (3, n))
            _finite(model.prior.log_prob(z[0]), f"{h.who} log_prob of [N, M]", (n,))


def check_gradients(h: Harness) -> None:
    """One backward pass of the training loss reaches every trainable parameter, finitely."""
    model = h.model
    model.train()
    model.zero_grad(set_to_none=True)
    loss = model.loss(h.data.train[:8])
    if not torch.isfinite(loss):
        raise ContractError(f"{h.who}: the training loss is not finite at initialisation")
    loss.backward()
    params = [(n, p) for n, p in h.component.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None]
    if missing:
        raise ContractError(
            f"{h.who}: no gradient reaches parameter(s) {', '.join(missing)}; they are unused "
            "in log_prob/rsample, or the graph is cut (detach, no_grad, .item())"
        )
    grads = [(n, p.grad) for n, p in params if p.grad is not None]  # all of them, as checked
    bad = [n for n, g in grads if not torch.isfinite(g).all()]
    if bad:
        raise ContractError(f"{h.who}: non-finite gradient in parameter(s) {', '.join(bad)}")
    if grads and all(float(g.abs().sum()) == 0 for _, g in grads):
        raise ContractError(f"{h.who}: every gradient is exactly zero; nothing would train")
    model.zero_grad(set_to_none=True)


def check_sampling(h: Harness) -> None:
    """Samples of every distribution have the promised shape and lie in the support."""
    x = h.data.val[:3]
    n, m, spec = x.shape[0], h.latent_dim, h.data.spec
    model = h.model
    with torch.no_grad():
        q = model.encoder(x)
        _finite(q.rsample((2,)), f"encoder {h.combination['encoder']!r} rsample", (2, n, m))
        _finite(q.sample(), f"encoder {h.combination['encoder']!r} sample", (n, m))
        z = model.prior.sample(n)
        _finite(z, f"prior {h.combination['prior']!r} sample({n})", (n, m))
        _finite(model.prior.log_prob(z), f"prior {h.combination['prior']!r} log_prob", (n,))
        if h.kind == "decoder":
            xs = model.decoder(z).sample()
            _finite(xs, f"{h.who} sample", (n, spec.dim))
            if (xs != xs.round()).any() or xs.min() < 0 or xs.max() > spec.levels - 1:
                raise ContractError(
                    f"{h.who}: samples must be integer levels in 0..{spec.levels - 1}, got "
                    f"values in [{float(xs.min())}, {float(xs.max())}]"
                )


# -- densities that can be wrong -----------------------------------------------------------------
# Each check estimates a quantity that is exactly 1 for a correct component and measurably not 1
# for a broken one, by importance sampling from a proposal whose density is known exactly (built
# from the component's own samples, so it sits where the mass is): the estimate is unbiased
# whatever the component does, so a wrong sampler can make it noisy, never make it pass.
DENSITY_TOLERANCE = 0.1  # nats: |log estimate| allowed
MAX_STANDARD_ERROR = 0.03  # nats: above this the estimate cannot tell 1 from 1.1
MAX_SCORED_PER_LATENT = 1 << 17  # pixels x levels a decoder check scores, per z
_DENSITY_SEED = 20240


@dataclass
class DensityEstimate:
    """``log_value`` (0 when the property holds) and its standard error, in nats."""

    log_value: float
    standard_error: float

    def check(self, who: str, what: str, tolerance: float = DENSITY_TOLERANCE) -> None:
        if not (math.isfinite(self.log_value) and math.isfinite(self.standard_error)):
            raise ContractError(f"{who}: {what} came out non-finite ({self.log_value})")
        if abs(self.log_value) > tolerance:
            raise ContractError(
                f"{who}: {what}: log of the estimate {self.log_value:+.4f} nats (standard error "
                f"{self.standard_error:.4f}); it must be 0 within {tolerance} nats"
            )
        if self.standard_error > MAX_STANDARD_ERROR:
            raise ContractError(
                f"{who}: {what}: the estimate is too noisy to decide (log {self.log_value:+.4f} "
                f"nats, standard error {self.standard_error:.4f} > {MAX_STANDARD_ERROR}): its "
                "samples stray far from its log_prob, or (a decoder) its pixels depend strongly "
                "on each other at this size; check it on smaller data (data_specs)"
            )


def _log_mean_exp(log_w: torch.Tensor) -> DensityEstimate:
    """log mean exp over dim 0 of ``log_w`` [n, B], averaged over B, with a delta-method
    standard error; the worst of the B columns decides."""
    n = log_w.shape[0]
    log_w = log_w.double()
    log_mean = torch.logsumexp(log_w, 0) - math.log(n)
    w = torch.exp(log_w - log_mean)  # weights relative to their mean
    se = w.std(0) / math.sqrt(n)
    worst = int(log_mean.abs().argmax())
    return DensityEstimate(float(log_mean[worst]), float(se.max()))


class _Proposal:
    """A density known exactly, built from draws ``centers`` [m, B, M] of the thing checked: a
    Gaussian kernel density estimate (Scott's bandwidth) mixed with a product of Cauchy
    densities of the same location and spread, whose heavy tails cover what the draws missed.
    The Cauchy part stops at :attr:`REACH` spreads from the location: flows overflow further
    out, and no density worth checking keeps measurable mass there."""

    CAUCHY_SHARE = 0.1
    REACH = 50.0

    def __init__(self, centers: torch.Tensor) -> None:
        m, _, dim = centers.shape
        self.centers = centers.double()
        spread = self.centers.std(0).clamp(min=1e-6)  # [B, M]
        self.bandwidth = spread * m ** (-1.0 / (dim + 4))
        self.location = self.centers.median(0).values
        self.scale = spread
        self.dim = dim

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        m, b, dim = self.centers.shape
        pick = torch.randint(0, m, (n, b), generator=g)
        kde = self.centers.gather(0, pick[..., None].expand(n, b, dim))
        kde = kde + self.bandwidth * torch.randn(n, b, dim, generator=g, dtype=torch.float64)
        edge = math.atan(self.REACH)
        angle = (2 * torch.rand(n, b, dim, generator=g, dtype=torch.float64) - 1) * edge
        cauchy = self.location + self.scale * torch.tan(angle)
        heavy = torch.rand(n, b, 1, generator=g) < self.CAUCHY_SHARE
        return torch.where(heavy, cauchy, kde)

    def log_kde(self, z: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        m = self.centers.shape[0]
        norm = self.bandwidth.log().sum(-1) + 0.5 * self.dim * math.log(2 * math.pi) + math.log(m)
        parts = []
        for block in z.double().split(chunk):
            diff = (block[:, None] - self.centers[None]) / self.bandwidth  # [c, m, B, M]
            parts.append(torch.logsumexp(-0.5 * diff.pow(2).sum(-1), 1) - norm)
        return torch.cat(parts)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        t = (z.double() - self.location) / self.scale
        inside = (t.abs() <= self.REACH).all(-1)
        truncation = self.dim * math.log(2 * math.atan(self.REACH) / math.pi)
        log_cauchy = (-torch.log1p(t.pow(2)) - torch.log(math.pi * self.scale)).sum(-1)
        log_cauchy = torch.where(inside, log_cauchy - truncation, -math.inf)
        return torch.logaddexp(
            math.log(1 - self.CAUCHY_SHARE) + self.log_kde(z),
            math.log(self.CAUCHY_SHARE) + log_cauchy,
        )


def density_estimates(
    sample: Any, log_prob: Any, n: int = 8192, n_centers: int = 256, seed: int = _DENSITY_SEED
) -> tuple[DensityEstimate, DensityEstimate]:
    """Two checks of a continuous density given as ``sample(n) -> [n, B, M]`` and
    ``log_prob([n, B, M]) -> [n, B]``: (1) it integrates to 1, ``E_r[p / r]`` with ``r`` a
    :class:`_Proposal` built from its samples; (2) its samples follow it, ``E_s[k / p]`` over
    fresh samples, with ``k`` the kernel estimate of other samples: 1 when the sampler draws
    from ``p``, and 1 + chi-square(s || p) > 1 (roughly) when it draws from another ``s``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        proposal = _Proposal(sample(n_centers))
        z = proposal.sample(n, g)
        log_p = log_prob(z.to(torch.get_default_dtype())).double()
        normalised = _log_mean_exp(log_p - proposal.log_prob(z))
        fresh = sample(n)
        log_p = log_prob(fresh).double()
        follows = _log_mean_exp(proposal.log_kde(fresh) - log_p)
    return normalised, follows


def check_prior_density(h: Harness) -> None:
    """The prior's density integrates to 1 and its samples follow it."""
    prior = h.model.prior
    normalised, follows = density_estimates(
        lambda n: prior.sample(n)[:, None], lambda z: prior.log_prob(z)
    )
    normalised.check(h.who, "the integral of exp(log_prob) over z is not 1")
    follows.check(h.who, "sample() does not draw from the density log_prob gives")


def check_encoder_density(h: Harness, points: int = 3) -> None:
    """At a few data points, q(z|x) integrates to 1 over z and its samples follow it."""
    x = h.data.val[:points]
    with torch.no_grad():
        q = h.model.encoder(x)
    normalised, follows = density_estimates(
        lambda n: q.sample((n,)), lambda z: q.log_prob(z), n=4096
    )
    normalised.check(h.who, "the integral of exp(log_prob) over z is not 1")
    follows.check(h.who, "sample() does not draw from the density log_prob gives")


def _decoder_log_probs(
    decoder: nn.Module, z: torch.Tensor, x: torch.Tensor, chunk: int = 512
) -> torch.Tensor:
    """log p(x|z) for ``z`` [Z, M] and ``x`` [Z, N, D] -> [Z, N], through the contract's
    plainest call (z [B, M] against x [B, D]), ``chunk`` rows at a time."""
    n_z, n = x.shape[:2]
    zs = z[:, None].expand(n_z, n, z.shape[-1]).reshape(-1, z.shape[-1])
    xs = x.reshape(-1, x.shape[-1]).to(z.dtype)
    parts = [
        decoder(zc).log_prob(xc) for zc, xc in zip(zs.split(chunk), xs.split(chunk), strict=True)
    ]
    return torch.cat(parts).reshape(n_z, n)


def decoder_normaliser(
    decoder: nn.Module,
    z: torch.Tensor,
    levels: int,
    n: int = 4096,
    seed: int = _DENSITY_SEED,
) -> DensityEstimate:
    """``sum_x p(x|z)`` over every x of levels ``0..levels-1``, for each row of ``z`` [Z, M],
    by importance sampling. The proposal is a product over pixels of the decoder's own
    conditionals at one of its samples x0 (pixel d's levels scored with the others at x0,
    normalised over the levels), lightly mixed with uniform: for a decoder whose pixels are
    independent given z it is the decoder itself, so every weight equals the sum checked."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x0 = decoder(z).sample()  # [Z, D]
        n_z, dim = x0.shape
        if dim * levels > MAX_SCORED_PER_LATENT:
            raise ContractError(
                f"decoder density check: {dim} pixels x {levels} levels = {dim * levels} images "
                f"to score per z, over the {MAX_SCORED_PER_LATENT} this check affords; check "
                "the decoder on smaller data (data_specs)"
            )
        steps = torch.arange(levels, dtype=x0.dtype)
        block = max(1, 4096 // levels)  # pixels varied per call: bounded memory
        parts = []
        for first in range(0, dim, block):
            pixels = range(first, min(dim, first + block))
            varied = x0[:, None, None, :].repeat(1, len(pixels), levels, 1)  # [Z, b, L, D]
            for i, d in enumerate(pixels):
                varied[:, i, :, d] = steps
            rows = varied.reshape(n_z, len(pixels) * levels, dim)
            parts.append(_decoder_log_probs(decoder, z, rows).reshape(n_z, len(pixels), levels))
        scores = torch.cat(parts, 1)
        conditional = torch.softmax(scores.double(), -1)
        proposal = 0.98 * conditional + 0.02 / levels
        draws = torch.multinomial(proposal.reshape(-1, levels), n, True, generator=g)
        x = draws.reshape(n_z, dim, n).transpose(1, 2)  # [Z, n, D]
        log_r = proposal.log().gather(-1, x.transpose(1, 2)).sum(1)  # [Z, n]
        log_p = _decoder_log_probs(decoder, z, x).double()
    return _log_mean_exp((log_p - log_r).T)


def check_decoder_density(h: Harness, latents: int = 2) -> None:
    """At a few z from the prior, p(x|z) sums to 1 over the data's levels."""
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(_DENSITY_SEED)
        z = h.model.prior.sample(latents)
    estimate = decoder_normaliser(h.model.decoder, z, h.data.spec.levels)
    estimate.check(h.who, f"the sum of p(x|z) over x in levels 0..{h.data.spec.levels - 1}")


def check_densities(h: Harness) -> None:
    """The density check of the component under test's kind."""
    {
        "prior": check_prior_density,
        "encoder": check_encoder_density,
        "decoder": check_decoder_density,
    }[h.kind](h)


@dataclass
class TrainEvalResult:
    """What :func:`train_and_evaluate` returns: the trained model, its training summary and
    its metric values by output name (``neg_elbo``, ``iw_nll``... for ``likelihood``)."""

    model: VAE
    training: TrainResult
    metrics: dict[str, MetricValue]


def train_and_evaluate(
    combination: Mapping[str, str],
    data: SuiteData | None = None,
    *,
    host: PluginHost | None = None,
    component_options: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int = 8,
    batch_size: int = 16,
    k: int = 8,
    seed: int = 0,
    latent_dim: int = LATENT_DIM,
    hidden_dim: int = HIDDEN_DIM,
    metrics: Sequence[str] = ("likelihood",),
) -> TrainEvalResult:
    """Train ``combination`` for a few steps and evaluate it in process (no files written).

    Checks that every metric is finite. (IW-NLL <= -ELBO is not checked: both come from the
    same log-weights, so it holds for any numbers; :func:`check_densities` checks the values.)
    """
    from vaebench.evaluate import evaluate
    from vaebench.pipeline import build_model
    from vaebench.train import fit

    host = host or default_host()
    data = data or tiny_suite_data()
    torch.manual_seed(seed)
    options = {kind: dict(o) for kind, o in (component_options or {}).items()}
    model = build_model(host, dict(combination), options, data.spec, latent_dim, hidden_dim)
    model.check(data.val[:4], latent_dim)
    budget = Budget(steps=steps, batch_size=batch_size, eval_every=steps, patience=None)
    training = fit(model, data, budget, seed)
    specs = [host.get("metric", name) for name in metrics]
    values, _ = evaluate(
        model, data, EvalSettings(k=k, k_ood=k), specs, torch.device("cpu"), latent_dim
    )
    label = " x ".join(f"{kind} {name!r}" for kind, name in combination.items())
    bad = [name for name, v in values.items() if not math.isfinite(v.value)]
    if bad:
        raise ContractError(f"{label}: metrics {', '.join(bad)} are not finite after training")
    return TrainEvalResult(model, training, values)


def check_train_evaluate(h: Harness, steps: int = 4) -> TrainEvalResult:
    """A tiny end-to-end training run and evaluation of the harness's combination."""
    return train_and_evaluate(
        h.combination,
        h.data,
        host=h.host,
        component_options=h.options,
        steps=steps,
        latent_dim=h.latent_dim,
        hidden_dim=h.hidden_dim,
    )


def run_in_grid(out: str | os.PathLike[str], **request: Any) -> Any:
    """Run a grid through :func:`vaebench.api.run` (default: the ``digits`` suite's ``tiny``
    profile, one seed) into ``out`` and return its summary; raises :class:`ContractError`
    listing every combination whose record is not ``ok``, with its error."""
    from vaebench.api import run

    request = {"suite": "digits", "profile": "tiny", "seeds": [0], **request}
    summary = run(out=str(out), **request)
    failed = [r for r in summary.records if r["status"] != "ok"]
    if failed:
        lines = [
            f"{' / '.join(r['combination'].values())} seed {r['seed']}: "
            f"{(r.get('error') or {}).get('type')}: {(r.get('error') or {}).get('message')}"
            for r in failed
        ]
        raise ContractError("combinations failed in the grid:\n  " + "\n  ".join(lines))
    return summary


def linked_data_dir(
    source: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    datasets: Sequence[str] = ("mnist", "fashion-mnist"),
) -> Path:
    """A data directory under ``dest`` whose dataset files are symlinks into ``source``: a root
    holding ``<name>/`` folders, or a mapping of each name to its folder (what
    :func:`find_real_data` returns).

    Verification writes a checksum cache beside the data, so tests point suites at such a
    directory rather than at a shared, read-only copy. Raises :class:`DataError` naming the
    missing files.
    """
    from vaebench.data.download import FILES

    if isinstance(source, Mapping):
        folders = {name: Path(source[name]) for name in datasets if name in source}
        absent = [name for name in datasets if name not in source]
        if absent:
            raise DataError(f"no folder given for dataset(s) {', '.join(absent)}")
    else:
        folders = {name: Path(source) / name for name in datasets}
    root = Path(dest)
    wanted = [folders[d] / f for d in datasets for f in FILES.values()]
    missing = [str(p) for p in wanted if not p.is_file()]
    if missing:
        raise DataError(f"dataset files missing: {', '.join(missing)}")
    for name in datasets:
        (root / name).mkdir(parents=True, exist_ok=True)
        for fname in FILES.values():
            link = root / name / fname
            if not link.exists():
                link.symlink_to((folders[name] / fname).resolve())
    return root


def _shared_data_beside(near: Path) -> list[Path]:
    """``shared/data`` folders beside ``near`` or a folder above it, nearest first: where a
    checkout's sibling data folder sits (``../shared/data`` from the repository)."""
    near = near.resolve()
    folders = [p / "shared" / "data" for p in (near, *near.parents)]
    return [folder for folder in folders if folder.is_dir()]


def find_real_data(
    datasets: Sequence[str] = ("mnist", "fashion-mnist"),
    *,
    near: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> dict[str, Path]:
    """Each dataset's folder of real files, for tests: found the way vaebench finds data, or
    downloaded the way ``vaebench run`` downloads it.

    Searched in order: ``VAEBENCH_DATA`` (else the user cache directory), a ``shared/data``
    folder beside ``near`` (default: the working directory) or beside a folder above it, then
    the system dataset folders (``/usr/share/datasets``). A dataset complete in none of them is
    downloaded, checksummed, into the first (``download=False`` forbids it). Found nowhere and
    not downloadable, :class:`DataError` says which variable to set.
    """
    from vaebench.data import locate
    from vaebench.data.download import FILES

    roots = locate.candidate_roots()
    ordered = roots[:1] + _shared_data_beside(Path(near or os.getcwd())) + roots[1:]
    found: dict[str, Path] = {}
    for name in datasets:
        complete = (r for r in ordered if all((r / name / f).is_file() for f in FILES.values()))
        root = next(complete, None)
        if root is None:
            searched = ", ".join(str(r / name) for r in ordered)
            hint = f"set {locate.DATA_ENV} to a folder holding {name}/ with its four IDX .gz files"
            if not download:
                raise DataError(f"No real {name} data for the tests in {searched}; {hint}.")
            try:
                root, _ = locate.find_dataset(name, download=True, progress=False)
            except (DataError, ConfigError) as e:
                raise DataError(
                    f"No real {name} data for the tests in {searched}, and the download failed "
                    f"({e}); {hint}."
                ) from e
        found[name] = root / name
    return found


CHECKS = (check_shapes, check_gradients, check_sampling, check_densities, check_train_evaluate)


def check_component(
    kind: str,
    name_or_spec: str | ComponentSpec,
    data_spec: DataSpec | None = None,
    **harness_options: Any,
) -> None:
    """Every check on one component; raises :class:`ContractError` at the first failure.

    ``harness_options`` go to :func:`build_harness` (``host``, ``partners``, ``options``...).
    """
    for check in CHECKS:
        check(build_harness(kind, name_or_spec, data_spec, **harness_options))


class ContractSuite:
    """Subclass in a test module; pytest runs every check on every matching component.

    Set ``plugin`` to your entry-point (or distribution) name; ``None`` checks every
    registered component. ``kinds`` and ``data_specs`` narrow what is checked; each component
    runs on the first of ``data_specs`` it fits, or on every one with ``every_spec = True``.
    """

    plugin: str | None = None
    kinds: tuple[str, ...] = COMPONENT_KINDS
    data_specs: tuple[DataSpec, ...] = STANDARD_SPECS
    every_spec: bool = False

    def host(self) -> PluginHost:
        """Where components are looked up: the process-wide host (override to isolate)."""
        return default_host()

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "case" in metafunc.fixturenames:
            cases = component_cases(
                self.plugin, self.kinds, self.data_specs, self.host(), self.every_spec
            )
            metafunc.parametrize("case", cases, ids=[c.id for c in cases])

    def harness(self, case: ComponentCase) -> Harness:
        return build_harness(case.kind, case.spec.name, case.data, host=self.host())

    def test_shapes_and_broadcasting(self, case: ComponentCase) -> None:
        check_shapes(self.harness(case))

    def test_gradients_reach_every_parameter(self, case: ComponentCase) -> None:
        check_gradients(self.harness(case))

    def test_sampling(self, case: ComponentCase) -> None:
        check_sampling(self.harness(case))

    def test_densities_are_normalised(self, case: ComponentCase) -> None:
        check_densities(self.harness(case))

    def test_tiny_train_and_evaluate(self, case: ComponentCase) -> None:
        check_train_evaluate(self.harness(case))


__all__ = [
    "BINARY_IMAGE_SPEC",
    "BINARY_VECTOR_SPEC",
    "CHECKS",
    "DENSITY_TOLERANCE",
    "DIGITS_SPEC",
    "GREY_8BIT_SPEC",
    "STANDARD_SPECS",
    "ComponentCase",
    "ContractSuite",
    "DensityEstimate",
    "Harness",
    "TrainEvalResult",
    "build_harness",
    "check_component",
    "check_decoder_density",
    "check_densities",
    "check_encoder_density",
    "check_gradients",
    "check_prior_density",
    "check_sampling",
    "check_shapes",
    "check_train_evaluate",
    "component_cases",
    "decoder_normaliser",
    "density_estimates",
    "every_installed_plugin",
    "find_real_data",
    "host_with",
    "linked_data_dir",
    "offline_data",
    "real_data",
    "run_in_grid",
    "tiny_suite_data",
    "train_and_evaluate",
]


@contextlib.contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Environment variables set (or, for None, removed) for the block, restored after."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        _set_environment(values)
        yield
    finally:
        _set_environment(saved)


def _set_environment(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def every_installed_plugin() -> Iterator[None]:
    """The process-wide plugin host with every installed plugin (``VAEBENCH_PLUGINS`` unset)
    for the block, built fresh on entry and forgotten on exit, so neither an earlier nor a later
    test sees a host loaded under other settings."""
    with _environment(**{ENV_PLUGINS: None}):
        reset_default_host()
        try:
            yield
        finally:
            reset_default_host()


# A mirror nobody listens on: a download attempted inside :func:`offline_data` fails at once.
CLOSED_MIRROR = "https://127.0.0.1:9/"


@contextlib.contextmanager
def offline_data(
    source: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    datasets: Sequence[str] = ("mnist", "fashion-mnist"),
) -> Iterator[Path]:
    """:func:`linked_data_dir` of ``source`` under ``dest`` for the block, with every download
    mirror pointed at a closed port, so a test reads local files or fails; never the network."""
    from vaebench.data.download import MIRRORS_ENV

    with _environment(**{MIRRORS_ENV: CLOSED_MIRROR}):
        yield linked_data_dir(source, dest, datasets)


@contextlib.contextmanager
def real_data(
    dest: str | os.PathLike[str],
    datasets: Sequence[str] = ("mnist", "fashion-mnist"),
    *,
    near: str | os.PathLike[str] | None = None,
) -> Iterator[Path]:
    """:func:`offline_data` of what :func:`find_real_data` finds (or downloads first): a data
    directory under ``dest`` for a test that reads the real MNIST-family files. Pass
    ``near=__file__`` so a checkout's ``../shared/data`` is found wherever pytest runs."""
    with offline_data(find_real_data(datasets, near=near), dest, datasets) as root:
        yield root
