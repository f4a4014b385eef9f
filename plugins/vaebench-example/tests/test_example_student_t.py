"""The template's test: vaebench's kit holds the prior to the contract; then known answers."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from vaebench_example.student_t import StudentTPrior

from vaebench.testing import ContractSuite


class TestContract(ContractSuite):
    """Shapes, finite log-densities, gradients, sampling, a tiny train + evaluate."""

    plugin = "vaebench-example"

    @pytest.mark.slow
    def test_densities_are_normalised(self, case) -> None:
        super().test_densities_are_normalised(case)


def test_log_prob_matches_scipy() -> None:
    prior = StudentTPrior(latent=3, df=4.0)
    with torch.no_grad():
        prior.log_scale.copy_(torch.tensor([0.0, 0.5, -1.0]))
    z = torch.randn(10, 3)
    expected = sum(
        stats.t.logpdf(z[:, d].numpy(), df=4.0, scale=math.exp([0.0, 0.5, -1.0][d]))
        for d in range(3)
    )
    assert torch.allclose(prior.log_prob(z), torch.as_tensor(expected).float(), atol=1e-5)


def test_starts_at_the_requested_degrees_of_freedom() -> None:
    assert torch.allclose(StudentTPrior(2, df=7.5).marginals().df, torch.tensor([7.5, 7.5]))
    with pytest.raises(ValueError, match="df must be > 0.5"):
        StudentTPrior(2, df=0.5)


def test_samples_follow_the_density() -> None:
    torch.manual_seed(0)
    z = StudentTPrior(latent=1, df=3.0).sample(5000)[:, 0].numpy()
    assert stats.kstest(z, stats.t(df=3.0).cdf).pvalue > 0.001
