"""Composition: every built-in encoder x decoder x prior that fits the data makes one VAE whose
``log_weights`` is the joint, and whose loss trains every part."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent, Normal

from vaebench.components.priors import StandardNormalPrior
from vaebench.contracts import COMPONENT_KINDS, DataSpec
from vaebench.model import VAE, n_parameters
from vaebench.pipeline import build_model
from vaebench.plugins import PluginHost

LATENT, HIDDEN, BATCH = 4, 16, 6
SPECS = {"digits": DataSpec(64, 17, (8, 8)), "binary": DataSpec(784, 2, (28, 28))}
HOST = PluginHost(entry_points=False)


def fitting_combinations() -> Iterator[Any]:
    for label, spec in SPECS.items():
        names = [
            [e.obj.name for e in HOST.registry(kind) if e.obj.fits(spec)]
            for kind in COMPONENT_KINDS
        ]
        for combo in itertools.product(*names):
            yield pytest.param(
                spec,
                dict(zip(COMPONENT_KINDS, combo, strict=True)),
                id=f"{label}:{'+'.join(combo)}",
            )


COMBINATIONS = list(fitting_combinations())


def build(spec: DataSpec, combination: dict[str, str], seed: int = 0) -> tuple[VAE, torch.Tensor]:
    torch.manual_seed(seed)
    model = build_model(HOST, combination, {}, spec, LATENT, HIDDEN)
    x = torch.randint(0, spec.levels, (BATCH, spec.dim)).float()
    return model, x


def test_every_builtin_prior_is_combined_for_both_kinds_of_data() -> None:
    for label, spec in SPECS.items():
        combos = [p.values[1] for p in COMBINATIONS if p.values[0] == spec]
        priors = {c["prior"] for c in combos}
        assert {"standard-normal", "mog", "vamp"} <= priors, label
    decoders = {label: {p.values[1]["decoder"] for p in COMBINATIONS if p.values[0] == spec}
                for label, spec in SPECS.items()}  # fmt: skip
    assert "mlp-categorical" in decoders["digits"] and "mlp-bernoulli" not in decoders["digits"]
    assert "mlp-bernoulli" in decoders["binary"] and "mlp-categorical" not in decoders["binary"]


@pytest.mark.parametrize(("spec", "combination"), COMBINATIONS)
def test_composes_and_log_weights_are_k_by_b(spec: DataSpec, combination: dict[str, str]) -> None:
    model, x = build(spec, combination)
    assert model.names == combination
    model.check(x, LATENT)
    lw = model.log_weights(x, 7)
    for term in (lw.log_px_z, lw.log_pz, lw.log_qz, lw.log_w):
        assert term.shape == (7, BATCH)
        assert torch.isfinite(term).all()
    torch.testing.assert_close(lw.log_w, lw.log_px_z + lw.log_pz - lw.log_qz)
    # the loss is -ELBO with one sample: the mean of the log-weights under the same noise
    torch.manual_seed(11)
    loss = model.loss(x)
    torch.manual_seed(11)
    torch.testing.assert_close(loss, -model.log_weights(x, 1).log_w.mean())
    assert loss.shape == ()


@pytest.mark.parametrize(("spec", "combination"), COMBINATIONS)
def test_gradients_reach_every_parameter(spec: DataSpec, combination: dict[str, str]) -> None:
    model, x = build(spec, combination)
    model.loss(x).backward()
    named = dict(model.named_parameters())
    for part in ("encoder", "decoder"):
        assert any(name.startswith(f"{part}.") for name in named), part
    if combination["prior"] == "vamp":
        assert "prior.pseudo_logits" in named
    if combination["prior"] == "mog":
        assert {"prior.means", "prior.log_scales", "prior.logits"} <= set(named)
    for name, p in named.items():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"zero gradient at {name}"
    # a VampPrior shares the encoder without owning it: each parameter is counted once
    parts = sum(n_parameters(getattr(model, part)) for part in COMPONENT_KINDS)
    assert n_parameters(model) == parts == sum(p.numel() for p in named.values())


@pytest.mark.parametrize(("spec", "combination"), COMBINATIONS)
def test_generate_and_reconstruct(spec: DataSpec, combination: dict[str, str]) -> None:
    model, x = build(spec, combination)
    for out, rows in ((model.generate(5), 5), (model.reconstruct(x), BATCH)):
        assert out.shape == (rows, spec.dim)
        assert not out.requires_grad
        assert ((out >= 0) & (out <= spec.levels - 1)).all()


@pytest.mark.parametrize(("spec", "combination"), COMBINATIONS)
def test_composes_in_float64(spec: DataSpec, combination: dict[str, str]) -> None:
    model, x = build(spec, combination)
    model = model.double()
    x = x.double()
    model.check(x, LATENT)
    lw = model.log_weights(x, 3)
    assert lw.log_w.dtype == torch.float64 and torch.isfinite(lw.log_w).all()
    assert model.generate(2).dtype == torch.float64


# -- log_weights is the joint, with hand-made components -----------------------------------


class FixedEncoder(nn.Module):
    def __init__(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.loc, self.scale = nn.Parameter(loc), nn.Parameter(scale)

    def forward(self, x: torch.Tensor) -> Independent:
        shape = (x.shape[0], self.loc.shape[-1])
        return Independent(Normal(self.loc.expand(shape), self.scale.expand(shape)), 1)


class BernoulliDecoder(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, z: torch.Tensor) -> Independent:
        return Independent(Bernoulli(logits=z @ self.weight.T), 1)


def test_log_weights_is_log_joint_minus_log_posterior() -> None:
    torch.manual_seed(0)
    m, d, k = 2, 3, 4
    loc, scale, weight = torch.randn(m), torch.rand(m) + 0.5, torch.randn(d, m)
    model = VAE(FixedEncoder(loc, scale), BernoulliDecoder(weight), StandardNormalPrior(m))
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    torch.manual_seed(5)
    lw = model.log_weights(x, k)
    torch.manual_seed(5)
    z = loc + scale * torch.randn(k, 2, m)  # the same reparameterised draw
    log_q = (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_p = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    logits = z @ weight.T
    log_lik = (x * logits - torch.nn.functional.softplus(logits)).sum(-1)
    torch.testing.assert_close(lw.log_qz, log_q.detach())
    torch.testing.assert_close(lw.log_pz, log_p.detach())
    torch.testing.assert_close(lw.log_px_z, log_lik.detach())


class CategoricalDecoder(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, z: torch.Tensor) -> Independent:
        return Independent(Categorical(logits=self.logits.expand(*z.shape[:-1], -1, -1)), 1)


def test_generate_and_reconstruct_give_decoder_means() -> None:
    # a categorical's mean is its expected level, sum_l l * p_l (torch's Categorical has none)
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, math.log(2.0), math.log(5.0)]])
    model = VAE(FixedEncoder(torch.zeros(2), torch.ones(2)), CategoricalDecoder(logits),
                StandardNormalPrior(2))  # fmt: skip
    expected = torch.tensor([1.0, (2 * 1 + 5 * 2) / 8])
    torch.testing.assert_close(model.generate(3), expected.expand(3, 2))
    torch.testing.assert_close(model.reconstruct(torch.zeros(4, 2)), expected.expand(4, 2))
    # a Bernoulli's mean is its probability, at the posterior mean z = loc
    weight = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    model = VAE(FixedEncoder(torch.tensor([0.5, 1.0]), torch.ones(2)), BernoulliDecoder(weight),
                StandardNormalPrior(2))  # fmt: skip
    torch.testing.assert_close(
        model.reconstruct(torch.zeros(1, 2)), torch.sigmoid(torch.tensor([[0.5, -2.0]]))
    )


def test_mixture_priors_match_torch_mixture_densities() -> None:
    # The priors' fast log-densities against torch.distributions' own mixture, and the plain
    # component log-probability path (a non-diagonal encoder) against the diagonal one.
    from torch.distributions import MixtureSameFamily

    from vaebench.components.priors import (
        MixtureOfGaussiansPrior,
        VampPrior,
        diagonal_gaussian_log_probs,
    )

    torch.manual_seed(3)
    z = 2.0 * torch.randn(5, 7, LATENT)
    mog = MixtureOfGaussiansPrior(LATENT, 6)
    with torch.no_grad():
        mog.log_scales.normal_(0.0, 0.7)
        mog.logits.normal_()
    reference = MixtureSameFamily(
        Categorical(logits=mog.logits),
        Independent(Normal(mog.means, mog.log_scales.exp()), 1),
    )
    assert torch.allclose(mog.log_prob(z), reference.log_prob(z), rtol=1e-6, atol=1e-5)

    model, _ = build(
        SPECS["digits"], {"encoder": "mlp-gaussian", "decoder": "mlp-categorical", "prior": "vamp"}
    )
    vamp = model.prior
    assert isinstance(vamp, VampPrior)
    q = vamp.components()
    weights = Categorical(logits=torch.zeros(q.batch_shape[0]))
    expected = MixtureSameFamily(weights, q).log_prob(z)
    assert torch.allclose(vamp.log_prob(z), expected, rtol=1e-6, atol=1e-5)

    loc, log_scale = torch.randn(3, LATENT), torch.randn(3, LATENT)
    by_normal = Normal(loc, log_scale.exp()).log_prob(z.unsqueeze(-2)).sum(-1)
    for fast in (
        diagonal_gaussian_log_probs(z, loc, log_scale),
        diagonal_gaussian_log_probs(z, loc, scale=log_scale.exp()),
    ):
        assert fast.shape == (5, 7, 3)
        assert torch.allclose(fast, by_normal, rtol=1e-6, atol=1e-5)


def test_diagonal_gaussian_log_probs_are_exact_near_narrow_components() -> None:
    # The expanded square cancels where z is near a narrow component's mean: computed in
    # float32 it is off by 44 nats here; the float64 form must keep the reference's value.
    from vaebench.components.priors import diagonal_gaussian_log_probs

    torch.manual_seed(5)
    loc = 3.0 * torch.randn(4, 40)
    log_scale = torch.full((4, 40), math.log(1e-3))
    log_scale[1] = math.log(2.0)
    z = loc[torch.tensor([0, 1, 2, 3, 0, 2])] + 1e-3 * torch.randn(6, 40)  # each near one mean
    reference = (
        Normal(loc.double(), log_scale.double().exp()).log_prob(z.double().unsqueeze(-2)).sum(-1)
    )
    fast = diagonal_gaussian_log_probs(z, loc, log_scale)
    assert fast.dtype == torch.float32
    near = reference > -1e3  # the components each z sits in (far ones are below -1e6)
    assert near.sum() >= 6
    assert torch.allclose(fast.double()[near], reference[near], rtol=0, atol=1e-4)
    assert torch.allclose(fast.double(), reference, rtol=1e-6, atol=1e-4)


def test_sliced_evaluation_encodes_the_pseudo_inputs_once_and_gives_the_same_weights() -> None:
    from vaebench import model as model_module
    from vaebench.components.priors import VampPrior

    vae, x = build(
        SPECS["digits"], {"encoder": "mlp-gaussian", "decoder": "mlp-categorical", "prior": "vamp"}
    )
    assert isinstance(vae.prior, VampPrior)
    vae.eval()
    calls = []
    hook = vae.encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    k = 2 * model_module.DECODE_ROWS // BATCH + 3  # several slices
    try:
        with torch.no_grad():
            torch.manual_seed(1)
            sliced = vae.log_weights(x, k)
            torch.manual_seed(1)
            vae.train()  # training mode computes the joint whole
            whole = vae.log_weights(x, k)
    finally:
        hook.remove()
    pseudo = vae.prior.pseudo_logits.shape[0]
    # sliced: the batch once, the pseudo-inputs once; whole: the batch and the pseudo-inputs once
    assert calls == [BATCH, pseudo, BATCH, pseudo]
    assert vae.prior._held is None  # released after the evaluation
    for a, b in zip(
        (sliced.log_px_z, sliced.log_pz, sliced.log_qz),
        (whole.log_px_z, whole.log_pz, whole.log_qz),
        strict=True,
    ):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-4)
