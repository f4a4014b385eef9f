"""Known answers for the per-layer collapse metric ``hvae-collapse``."""

from __future__ import annotations

import math

import pytest
import torch

from vaebench.contracts import EvalSettings, MetricValue
from vaebench.evaluate import evaluate
from vaebench.pipeline import build_model
from vaebench.plugins import default_host
from vaebench.testing import DIGITS_SPEC, tiny_suite_data

HVAE = {"encoder": "hvae-encoder", "decoder": "hvae-decoder", "prior": "hvae-prior"}
N_TEST = 16  # tiny_suite_data's test split
SHIFT = 1.5


def build(combination: dict[str, str], latent: int = 4, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(default_host(), combination, {}, DIGITS_SPEC, latent, 32)


def metrics(model: torch.nn.Module, *names: str, latent: int = 4) -> dict[str, MetricValue]:
    host = default_host()
    specs = [host.get("metric", name) for name in names]
    settings = EvalSettings(k=4, k_ood=2)
    values, _ = evaluate(model, tiny_suite_data(), settings, specs, torch.device("cpu"), latent)
    return values


def _kl_tolerance(dims: int) -> float:
    """5 standard errors of the Monte Carlo KL(N(SHIFT, 1) || N(0, 1)) summed over ``dims``
    coordinates: the log-ratio SHIFT * z - SHIFT^2 / 2 has variance SHIFT^2 per coordinate;
    64 draws for each of the test points."""
    return 5 * math.sqrt(dims * SHIFT**2 / (64 * N_TEST))


def test_each_layers_kl_pairs_the_layers_factors() -> None:
    """q(z1|x) = p(z1|z2) = N(0, I) and q(z2|z1) = N(SHIFT, I) against p(z2) = N(0, I): the z1
    term is exactly 0 at every draw, the z2 term is SHIFT^2 / 2 per coordinate."""
    model = build(HVAE)
    with torch.no_grad():
        for out in (model.encoder.first.out, model.encoder.second.out, model.prior.net.out):
            out.weight.zero_()
            out.bias.zero_()
        model.encoder.second.out.bias[:2] = SHIFT
    values = metrics(model, "hvae-collapse")
    assert values["hvae-collapse/kl_z1"].value == pytest.approx(0.0, abs=1e-6)
    assert values["hvae-collapse/kl_z1"].extra["per_dim"] == pytest.approx([0.0, 0.0], abs=1e-6)
    kl_z2 = values["hvae-collapse/kl_z2"]
    assert kl_z2.value == pytest.approx(2 * SHIFT**2 / 2, abs=_kl_tolerance(2))
    assert kl_z2.extra["per_dim"] == pytest.approx([SHIFT**2 / 2] * 2, abs=_kl_tolerance(1))
    assert kl_z2.extra["coordinates"] == [2, 4]


@pytest.mark.parametrize(
    "combination",
    [
        {"encoder": "mlp-gaussian", "decoder": "hvae-decoder", "prior": "hvae-prior"},
        {"encoder": "hvae-encoder", "decoder": "mlp-categorical", "prior": "standard-normal"},
    ],
    ids=["diagonal-posterior", "factorising-prior"],
)
def test_layers_with_a_built_in_partner(combination: dict[str, str]) -> None:
    """With vaebench's diagonal Gaussian posterior, or its N(0, I) prior, as one side: q = N(0, I)
    but z1's means shifted by SHIFT, and p = N(0, I), give z2 a term of exactly 0 and z1 the
    closed-form KL."""
    model = build(combination)
    encoder = model.encoder
    with torch.no_grad():
        if combination["encoder"] == "mlp-gaussian":
            last = [m for m in encoder.net if isinstance(m, torch.nn.Linear)][-1]
            last.weight.zero_()
            last.bias.zero_()
            last.bias[:2] = SHIFT  # the means of z1's two coordinates
        else:
            for out in (encoder.first.out, encoder.second.out):
                out.weight.zero_()
                out.bias.zero_()
            encoder.first.out.bias[:2] = SHIFT
        if combination["prior"] == "hvae-prior":
            model.prior.net.out.weight.zero_()
            model.prior.net.out.bias.zero_()
    values = metrics(model, "hvae-collapse")
    assert values["hvae-collapse/kl_z2"].value == pytest.approx(0.0, abs=1e-6)
    assert values["hvae-collapse/kl_z1"].value == pytest.approx(SHIFT**2, abs=_kl_tolerance(2))


def test_active_units_per_layer_add_up_to_the_built_in_count() -> None:
    """z1's means follow x strongly and q(z2|z1) ignores z1: every z1 unit is active, no z2
    unit is, and the two layers' counts are the built-in collapse metric's activities split."""
    model = build(HVAE, latent=6)  # z1 = 3, z2 = 3
    with torch.no_grad():
        model.encoder.first.out.weight[:3].mul_(100.0)
        model.encoder.second.out.weight.zero_()
    values = metrics(model, "collapse", "hvae-collapse", latent=6)
    z1, z2 = values["hvae-collapse/active_units_z1"], values["hvae-collapse/active_units_z2"]
    assert (z1.value, z2.value) == (3.0, 0.0)
    assert z1.value + z2.value == values["collapse/active_units"].value
    both = values["collapse/active_units"].extra["per_dim"]
    assert z1.extra["per_dim"] + z2.extra["per_dim"] == both
    assert z1.extra["of"] == z2.extra["of"] == 3


def test_a_one_layer_model_gets_no_outputs() -> None:
    model = build({"encoder": "mlp-gaussian", "decoder": "mlp-categorical", "prior": "mog"})
    assert metrics(model, "hvae-collapse") == {}
