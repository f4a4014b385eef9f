"""The discretized logistic mixture (vaebench.components.logistic): known answers."""

from __future__ import annotations

import math

import pytest
import torch

from vaebench.components.logistic import DiscretizedLogisticMixture, log1mexp
from vaebench.contracts import DataSpec
from vaebench.testing import ContractSuite

COLOUR_SPEC = DataSpec(dim=3 * 8 * 8, levels=256, image_shape=(3, 8, 8))
GREY_8BIT_SPEC = DataSpec(dim=8 * 8, levels=256, image_shape=(8, 8))


def mixture(d: int, k: int, seed: int = 0, dtype=torch.float64, spread: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(d, k, generator=g, dtype=dtype)
    means = torch.randn(d, k, generator=g, dtype=dtype) * spread
    log_scales = torch.empty(d, k, dtype=dtype).uniform_(-7, 2, generator=g)
    return DiscretizedLogisticMixture(logits, means, log_scales, 256)


def every_level_log_probs(dist: DiscretizedLogisticMixture) -> torch.Tensor:
    """``[L, D]``: log P(x_d = l) for every level l of every dimension d."""
    levels = torch.arange(dist.levels, dtype=dist.means.dtype)
    values = levels[:, None].expand(dist.levels, dist.means.shape[-2])
    return torch.logsumexp(dist.component_log_probs(values), dim=-1)


def logistic_cdf(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t)) if t > -700 else 0.0


@pytest.mark.parametrize("spread", [0.3, 1.0, 3.0])
def test_probabilities_over_256_levels_sum_to_one(spread: float) -> None:
    dist = mixture(50, 4, spread=spread)
    total = every_level_log_probs(dist).exp().sum(0)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-12, rtol=0)


def test_float32_probabilities_sum_to_one() -> None:
    dist = mixture(50, 4, dtype=torch.float32)
    total = every_level_log_probs(dist).exp().sum(0)
    assert (total - 1).abs().max() < 1e-5


def test_matches_cdf_differences_of_one_logistic() -> None:
    mean, log_scale = 0.1, -2.5
    dist = DiscretizedLogisticMixture(
        torch.zeros(1, 1, dtype=torch.float64),
        torch.full((1, 1), mean, dtype=torch.float64),
        torch.full((1, 1), log_scale, dtype=torch.float64),
    )
    got = every_level_log_probs(dist)[:, 0].exp()
    s = math.exp(log_scale)
    for level in (0, 1, 100, 140, 254, 255):
        y = 2 * level / 255 - 1
        upper = 1.0 if level == 255 else logistic_cdf((y + 1 / 255 - mean) / s)
        lower = 0.0 if level == 0 else logistic_cdf((y - 1 / 255 - mean) / s)
        assert got[level].item() == pytest.approx(upper - lower, rel=1e-10, abs=1e-300)


def test_mixture_is_the_weighted_sum_of_its_components() -> None:
    dist = mixture(6, 3, seed=1)
    x = torch.tensor([0.0, 17.0, 128.0, 200.0, 254.0, 255.0], dtype=torch.float64)
    weights = torch.softmax(torch.randn(6, 3, generator=torch.Generator().manual_seed(1),
                                        dtype=torch.float64), -1)  # fmt: skip
    per_component = [
        DiscretizedLogisticMixture(
            torch.zeros(6, 1, dtype=torch.float64),
            dist.means[:, k : k + 1],
            dist.log_scales[:, k : k + 1],
        )
        .component_log_probs(x)[:, 0]
        .exp()
        for k in range(3)
    ]
    expected = sum(weights[:, k] * per_component[k] for k in range(3)).log().sum()
    assert dist.log_prob(x).item() == pytest.approx(expected.item(), rel=1e-12)


def test_tiny_bin_masses_stay_exact_in_float32() -> None:
    """A sharp logistic at level 0 gives level 255 mass exp(-2186.6...) (far below float32's
    range) and level 1 a mass whose CDF difference would round to zero in float32."""
    dist = DiscretizedLogisticMixture(
        torch.zeros(1, 1), torch.full((1, 1), -1.0), torch.full((1, 1), -7.0)
    )
    inv_s = math.exp(7.0)
    log_p = every_level_log_probs(dist)[:, 0]
    assert torch.isfinite(log_p).all()
    assert log_p[255].item() == pytest.approx(-(2 - 1 / 255) * inv_s, rel=1e-5)
    # level 1: bin [1/255, 3/255] around y = -1 + 2/255; both CDFs ~ 1, difference ~ e^-7.6
    a, b = 3 / 255 * inv_s, 1 / 255 * inv_s
    exact = -b + math.log1p(-math.exp(b - a)) - math.log1p(math.exp(-a)) - math.log1p(math.exp(-b))
    assert log_p[1].item() == pytest.approx(exact, rel=1e-5)


def test_log1mexp_small_and_large() -> None:
    """Against 50-digit decimal arithmetic, where float64's log(1 - exp(-d)) would lose all
    digits (d = 1e-30: 1 - exp(-d) rounds to 0; d = 50: it rounds to 1)."""
    from decimal import Decimal, localcontext

    values = [1e-30, 1e-8, 0.5, 0.7, 5.0, 50.0]
    with localcontext() as ctx:
        ctx.prec = 50
        expected = [float((1 - (-Decimal(v)).exp()).ln()) for v in values]
    got = log1mexp(torch.tensor(values, dtype=torch.float64)).tolist()
    assert got == pytest.approx(expected, rel=1e-12, abs=0)


def test_gradients_finite_at_every_level_and_extreme_scales() -> None:
    means = torch.tensor([[-1.0, 0.0, 1.0, 3.0]], requires_grad=True)
    log_scales = torch.tensor([[-7.0, -3.0, 0.0, 6.9]], requires_grad=True)
    logits = torch.zeros(1, 4, requires_grad=True)
    dist = DiscretizedLogisticMixture(
        logits.expand(256, 4), means.expand(256, 4), log_scales.expand(256, 4)
    )
    dist.log_prob(torch.arange(256.0)[:, None]).sum().backward()
    for p in (logits, means, log_scales):
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_mean_is_the_expectation_over_levels() -> None:
    dist = mixture(20, 3, seed=2)
    probs = every_level_log_probs(dist).exp()
    expected = (probs * torch.arange(256.0, dtype=torch.float64)[:, None]).sum(0)
    assert torch.allclose(dist.mean, expected, rtol=1e-10, atol=1e-9)


def test_samples_follow_the_probabilities() -> None:
    """4000 draws of a 3-component mixture over 256 levels, binned into 8 groups of 32 levels:
    a chi-square test against the exact group masses (7 degrees of freedom, 0.1% level)."""
    dist = DiscretizedLogisticMixture(
        torch.tensor([[0.0, 1.0, -0.5]]), torch.tensor([[-0.6, 0.1, 0.8]]),
        torch.tensor([[-2.0, -3.0, -1.5]]),
    )  # fmt: skip
    torch.manual_seed(0)
    draws = dist.sample((4000,))[:, 0]
    assert draws.shape == (4000,)
    assert (draws == draws.round()).all() and draws.min() >= 0 and draws.max() <= 255
    probs = every_level_log_probs(dist)[:, 0].double().exp().reshape(8, 32).sum(1)
    counts = torch.bincount((draws // 32).long(), minlength=8).double()
    expected = 4000 * probs
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 24.32


def test_sample_shape_and_batch() -> None:
    dist = mixture(10, 2, dtype=torch.float32)
    assert dist.sample().shape == (10,)
    assert dist.sample((3, 2)).shape == (3, 2, 10)


def test_log_prob_broadcasts_data_over_samples() -> None:
    g = torch.Generator().manual_seed(3)
    params = torch.randn(3, 2, 4, 5, 2, generator=g)  # [k, B, (logits, means, scales)...]
    dist = DiscretizedLogisticMixture(params[:, :, 0], params[:, :, 1], params[:, :, 2])
    x = torch.randint(0, 256, (2, 5), generator=g).float()
    full = dist.log_prob(x)
    assert full.shape == (3, 2)
    one = DiscretizedLogisticMixture(params[1, 0, 0], params[1, 0, 1], params[1, 0, 2])
    assert full[1, 0].item() == pytest.approx(one.log_prob(x[0]).item(), rel=1e-6)


class TestLogisticMixtureContract(ContractSuite):
    """vaebench's kit on the MLP decoder, on colour and grey 8-bit images."""

    kinds = ("decoder",)
    data_specs = (COLOUR_SPEC, GREY_8BIT_SPEC)
    every_spec = True

    def pytest_generate_tests(self, metafunc) -> None:  # type: ignore[no-untyped-def]
        if "case" in metafunc.fixturenames:
            from vaebench.testing import component_cases

            cases = [
                c
                for c in component_cases(None, self.kinds, self.data_specs, every_spec=True)
                if c.spec.name == "mlp-logistic-mixture"
            ]
            assert len(cases) == 2
            metafunc.parametrize("case", cases, ids=[c.id for c in cases])

    @pytest.mark.slow
    def test_densities_are_normalised(self, case) -> None:
        super().test_densities_are_normalised(case)

    @pytest.mark.slow
    def test_tiny_train_and_evaluate(self, case) -> None:
        super().test_tiny_train_and_evaluate(case)


def test_maximum_likelihood_reaches_the_entropy(one_thread: None) -> None:
    """Fitted by Adam to data that is level 10 or level 200 with equal odds, a two-component
    mixture's NLL falls to the data's entropy (about log 2 per dimension) plus what the scale
    bound leaves outside the bins: gradients reach every parameter and the optimum is found."""
    torch.manual_seed(0)
    x = torch.where(torch.rand(512, 3) < 0.5, 10.0, 200.0)
    params = torch.zeros(3, 3, 2)
    params[1] = torch.tensor([-0.5, 0.5])
    params.requires_grad_(True)
    optimiser = torch.optim.Adam([params], lr=0.05)
    for _ in range(400):
        optimiser.zero_grad()
        nll = -DiscretizedLogisticMixture(*params).log_prob(x).mean() / 3
        nll.backward()
        optimiser.step()
    share = (x == 10.0).double().mean(0)
    entropy = -(share * share.log() + (1 - share) * (1 - share).log()).mean().item()
    # The sharpest logistic (scale e^-7) keeps 2 sigmoid(e^7 / 255) - 1 of its mass in its bin.
    in_bin = 2 / (1 + math.exp(-math.exp(7) / 255)) - 1
    assert nll.item() == pytest.approx(entropy - math.log(in_bin), abs=2e-3)
