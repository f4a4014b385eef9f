"""OOD detection: the curve arithmetic on hand-computed cases, and the scores on a model whose
likelihood is exact, built to fail the way Nalisnick et al. 2019 describe (a simpler OOD set
gets a higher likelihood) so that the fixes must repair it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

from tests.latent_models import ConstantBernoulliDecoder, GaussianPrior, context
from vaebench.contracts import EvalSettings
from vaebench.evaluate import compression_bits
from vaebench.metrics.ood import OOD, SCORES, detection_metrics
from vaebench.model import VAE

DIM, ON = 64, 0.1  # 64 pixels, each on with probability 0.1


def test_perfect_separation_gives_auroc_one_and_reversed_gives_zero() -> None:
    inside, outside = np.array([0.1, 0.2, 0.3]), np.array([0.7, 0.8])
    assert detection_metrics(inside, outside) == {"auroc": 1.0, "auprc": 1.0, "fpr95": 0.0}
    flipped = detection_metrics(outside, inside)
    assert flipped["auroc"] == 0.0 and flipped["fpr95"] == 1.0


def test_identical_distributions_give_auroc_one_half() -> None:
    same = np.array([0.5, 1.0, 2.0, 3.0])
    assert detection_metrics(same, same)["auroc"] == 0.5
    g = np.random.default_rng(0)
    drawn = detection_metrics(g.normal(size=4000), g.normal(size=4000))
    assert drawn["auroc"] == pytest.approx(0.5, abs=0.03)
    assert drawn["auprc"] == pytest.approx(0.5, abs=0.03)
    assert drawn["fpr95"] == pytest.approx(0.95, abs=0.02)


def test_small_case_matches_hand_computation() -> None:
    # OOD (positive) 2.5 and 4 against in-distribution 1, 2, 3. AUROC: 5 of 6 pairs ordered.
    # Ranked 4(+) 3(-) 2.5(+): precision 1 at recall 1/2, 2/3 at recall 1, so AP = 5/6.
    # Reaching 95% TPR needs the threshold 2.5, which also passes the negative 3: FPR 1/3.
    got = detection_metrics(np.array([1.0, 2.0, 3.0]), np.array([2.5, 4.0]))
    assert got == pytest.approx({"auroc": 5 / 6, "auprc": 5 / 6, "fpr95": 1 / 3})
    # A tie counts one half.
    assert detection_metrics(np.array([1.0, 2.0]), np.array([2.0, 3.0]))["auroc"] == 0.875


class PriorEncoder(nn.Module):
    """q(z|x) = N(0, I) for every x: with a decoder that ignores z, every importance weight is
    exactly p(x), so the IW log-likelihood and the ELBO are exact."""

    latent = 2

    def forward(self, x: torch.Tensor) -> Independent:
        zeros = torch.zeros(x.shape[0], self.latent)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)


def _exact_model() -> VAE:
    decoder = ConstantBernoulliDecoder(DIM, logit=math.log(ON / (1 - ON)))
    return VAE(PriorEncoder(), decoder, GaussianPrior(2))


def _log_p(x: torch.Tensor) -> torch.Tensor:
    return (x * math.log(ON) + (1 - x) * math.log(1 - ON)).sum(-1).double()


def _pixels(n: int, seed: int) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, DIM), ON), generator=torch.Generator().manual_seed(seed))


def _run(ctx):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return OOD.compute(ctx)


def test_a_blank_ood_set_fools_the_likelihood_but_not_the_fixes() -> None:
    test, train = _pixels(300, 0), _pixels(500, 1)
    blank = torch.zeros(100, DIM)  # every pixel at its likelier value: the likeliest image
    ctx = context(_exact_model(), test, train=train, ood={"blank": blank})
    out = _run(ctx)

    assert set(out) == {
        f"ood/{score}/blank/{stat}" for score in SCORES for stat in ("auroc", "auprc", "fpr95")
    }
    assert out["ood/iw_ll/blank/auroc"].value < 0.05
    assert out["ood/elbo/blank/auroc"].value < 0.05
    assert out["ood/typicality/blank/auroc"].value > 0.95
    assert out["ood/complexity/blank/auroc"].value > 0.95
    assert out["ood/complexity/blank/fpr95"].value < out["ood/iw_ll/blank/fpr95"].value
    for name, value in out.items():
        assert 0.0 <= value.value <= 1.0
        assert value.higher_is_better is (not name.endswith("fpr95"))
        assert value.extra["k"] == 10 and value.extra["n_in"] == 300

    typical = out["ood/typicality/blank/auroc"].extra
    assert typical["train_points"] == 500
    assert typical["typical_neg_log_p"] == pytest.approx(-float(_log_p(train).mean()), abs=1e-3)
    for split, x in (("test", test), ("blank", blank)):
        stored = {score: ctx.per_example[f"{split}/{score}"] for score in SCORES}
        np.testing.assert_allclose(stored["iw_ll"], _log_p(x).numpy(), atol=1e-3)
        np.testing.assert_allclose(stored["elbo"], stored["iw_ll"], atol=1e-3)
        np.testing.assert_array_equal(
            stored["iw_ll"], ctx.likelihood(split, ctx.settings.k_ood).iw_ll.numpy()
        )
        expected = stored["iw_ll"] / math.log(2) + compression_bits(x, 2)
        np.testing.assert_allclose(stored["complexity"], expected)
        expected = -np.abs(-stored["iw_ll"] - typical["typical_neg_log_p"])
        np.testing.assert_allclose(stored["typicality"], expected)


def test_the_typical_value_comes_from_training_data_as_the_model_saw_it() -> None:
    test = _pixels(50, 2)
    ctx = context(
        _exact_model(), test, ood={"blank": torch.zeros(20, DIM)}, settings=EvalSettings(k_ood=3)
    )
    ctx.data.train_transform = lambda x, generator: torch.zeros_like(x)
    extra = _run(ctx)["ood/typicality/blank/auroc"].extra
    assert extra["typical_neg_log_p"] == pytest.approx(-DIM * math.log(1 - ON), rel=1e-5)
    assert extra["k"] == 3


def test_a_suite_without_ood_sets_reports_nothing() -> None:
    ctx = context(_exact_model(), _pixels(10, 3))
    assert _run(ctx) == {} and ctx.per_example == {}


def test_the_builtin_metrics_are_registered_with_their_needs(host) -> None:  # type: ignore[no-untyped-def]
    needs = {name: host.get("metric", name).needs for name in ("collapse", "holes", "ood")}
    assert needs == {
        "collapse": {"test"},
        "holes": {"test", "prior-samples"},
        "ood": {"ood", "iw"},
    }
    assert {"likelihood", "collapse", "holes", "ood"} <= set(host.get("suite", "digits").metrics)
