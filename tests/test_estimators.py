"""ELBO and IW-NLL against known answers.

Probabilistic PCA (Tipping & Bishop 1999) has an exact marginal likelihood and an exact
Gaussian posterior: x = W z + b + eps, z ~ N(0, I_M), eps ~ N(0, s^2 I_D) gives
p(x) = N(x | b, W W^T + s^2 I) and p(z|x) = N(mu, Sigma) with
Sigma = (I + W^T W / s^2)^-1 and mu = Sigma W^T (x - b) / s^2.
With q = p(z|x) every importance weight equals p(x); with any other Gaussian q the IW bound
(Burda et al. 2015) climbs to log p(x) as K grows, and E[ELBO] = log p(x) - KL(q || p(z|x)).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from vaebench.components.priors import StandardNormalPrior
from vaebench.contracts import DataSpec, EvalSettings, MetricValue, SuiteData
from vaebench.estimators import (
    LikelihoodStats,
    bits_per_dim,
    chunk_sizes,
    likelihood_stats,
)
from vaebench.evaluate import EvalContext, evaluate
from vaebench.model import VAE, LogWeights

D, M, NOISE, N = 5, 2, 0.5, 20
N_WIDE = 100  # points for the noisy estimates: their standard errors need more than 20
KS = (1, 10, 100, 1000, 5000)
SEED = 0


@dataclass
class PPCA:
    weight: torch.Tensor  # [D, M]
    bias: torch.Tensor  # [D]
    noise: float

    @classmethod
    def random(cls, seed: int, dtype: torch.dtype = torch.float64) -> PPCA:
        g = torch.Generator().manual_seed(seed)
        weight = torch.randn(D, M, generator=g, dtype=dtype)
        return cls(weight, torch.randn(D, generator=g, dtype=dtype), NOISE)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, M, generator=g, dtype=self.weight.dtype)
        eps = torch.randn(n, D, generator=g, dtype=self.weight.dtype)
        return z @ self.weight.T + self.bias + self.noise * eps

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(D, dtype=x.dtype)
        cov = self.weight @ self.weight.T + self.noise**2 * eye
        return MultivariateNormal(self.bias, cov).log_prob(x)

    def posterior_cov(self) -> torch.Tensor:
        eye = torch.eye(M, dtype=self.weight.dtype)
        return torch.linalg.inv(eye + self.weight.T @ self.weight / self.noise**2)

    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.bias) @ self.weight @ self.posterior_cov() / self.noise**2


class LinearGaussianDecoder(nn.Module):
    """p(x|z) = N(W z + b, s^2 I)."""

    def __init__(self, ppca: PPCA) -> None:
        super().__init__()
        self.weight = nn.Parameter(ppca.weight.clone())
        self.bias = nn.Parameter(ppca.bias.clone())
        self.noise = ppca.noise

    def forward(self, z: torch.Tensor) -> Independent:
        return Independent(Normal(z @ self.weight.T + self.bias, self.noise), 1)


class PosteriorEncoder(nn.Module):
    """The exact posterior, or a wrong one: mean moved by ``shift`` posterior standard
    deviations in every coordinate, covariance times ``inflate``."""

    def __init__(self, ppca: PPCA, shift: float = 0.0, inflate: float = 1.0) -> None:
        super().__init__()
        cov = ppca.posterior_cov()
        # mu = (x - b) W Sigma / s^2 (+ shift); factors computed once, not per chunk
        self.gain = ppca.weight @ cov / ppca.noise**2
        self.offset = shift * cov.diagonal().sqrt() - ppca.bias @ self.gain
        self.scale_tril = torch.linalg.cholesky(inflate * cov)

    def forward(self, x: torch.Tensor) -> MultivariateNormal:
        loc = x @ self.gain + self.offset
        return MultivariateNormal(loc, scale_tril=self.scale_tril, validate_args=False)


def ppca_vae(ppca: PPCA, shift: float = 0.0, inflate: float = 1.0) -> VAE:
    prior = StandardNormalPrior(M).to(ppca.weight.dtype)
    return VAE(PosteriorEncoder(ppca, shift, inflate), LinearGaussianDecoder(ppca), prior)


def stats(model: VAE, x: torch.Tensor, k: int, seed: int = SEED, **kw: int) -> LikelihoodStats:
    torch.manual_seed(seed)
    return likelihood_stats(model, x, k, **kw)


def paired(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of a - b over points."""
    diff = (a - b).double()
    return float(diff.mean()), float(diff.std() / math.sqrt(diff.numel()))


@pytest.fixture(scope="module")
def ppca() -> PPCA:
    return PPCA.random(0)


@pytest.fixture(scope="module")
def data(ppca: PPCA) -> torch.Tensor:
    return ppca.sample(N, seed=1)


@pytest.fixture(scope="module")
def exact(ppca: PPCA, data: torch.Tensor) -> torch.Tensor:
    return ppca.log_marginal(data)


# -- 1a. the exact posterior: every weight is p(x) -----------------------------------------


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-9), (torch.float32, 1e-4)])
@pytest.mark.parametrize("k", [1, 3, 64])
def test_exact_posterior_gives_exact_likelihood_for_any_k(
    dtype: torch.dtype, tol: float, k: int
) -> None:
    ppca = PPCA.random(0, dtype)
    x = ppca.sample(N, seed=1)
    model = ppca_vae(ppca)
    model.check(x, M)  # the PPCA modules keep the component contracts
    exact = ppca.log_marginal(x).double()
    out = stats(model, x, k)
    assert out.k == k and out.iw_ll.dtype == torch.float64 and out.iw_ll.shape == (N,)
    scale = exact.abs().max()
    torch.testing.assert_close(out.iw_ll, exact, atol=tol * scale, rtol=0)
    torch.testing.assert_close(out.elbo, exact, atol=tol * scale, rtol=0)
    torch.testing.assert_close(out.recon - out.kl, out.elbo, atol=tol * scale, rtol=0)


# -- 1b. a wrong posterior: the IW bound converges from below ------------------------------


@pytest.fixture(scope="module")
def wrong_model(ppca: PPCA) -> VAE:
    return ppca_vae(ppca, shift=1.0, inflate=2.0)


@pytest.fixture(scope="module")
def wide_data(ppca: PPCA) -> torch.Tensor:
    return ppca.sample(N_WIDE, seed=2)


@pytest.fixture(scope="module")
def wide_exact(ppca: PPCA, wide_data: torch.Tensor) -> torch.Tensor:
    return ppca.log_marginal(wide_data)


@pytest.fixture(scope="module")
def wrong_stats(wrong_model: VAE, wide_data: torch.Tensor) -> dict[int, LikelihoodStats]:
    return {k: stats(wrong_model, wide_data, k) for k in KS}


def test_iw_estimate_converges_to_the_exact_likelihood(
    wrong_stats: dict[int, LikelihoodStats], wide_exact: torch.Tensor
) -> None:
    worst = [float((wrong_stats[k].iw_ll - wide_exact).abs().max()) for k in KS]
    assert all(a > b for a, b in itertools.pairwise(worst)), worst
    assert worst[0] > 1.0  # K = 1 is far off: the test can tell a right answer from a wrong one
    assert worst[-1] < 0.15
    bias, se = paired(wrong_stats[KS[-1]].iw_ll, wide_exact)
    assert abs(bias) < 4 * se + 0.01, (bias, se)


def test_iw_bound_is_below_the_likelihood_on_average(
    wrong_stats: dict[int, LikelihoodStats], wide_exact: torch.Tensor
) -> None:
    for k in KS:
        bias, se = paired(wrong_stats[k].iw_ll, wide_exact)
        assert bias < 3 * se, (k, bias, se)


def test_iw_nll_is_below_neg_elbo_for_every_point(
    wrong_stats: dict[int, LikelihoodStats],
) -> None:
    # both come from the same samples: log-mean-exp >= mean, point by point
    for k, out in wrong_stats.items():
        assert (out.iw_ll >= out.elbo).all(), k
    torch.testing.assert_close(wrong_stats[1].iw_ll, wrong_stats[1].elbo, rtol=0, atol=1e-12)
    assert (wrong_stats[100].iw_ll - wrong_stats[100].elbo).min() > 0.1


def test_mean_iw_nll_does_not_increase_with_k(
    wrong_stats: dict[int, LikelihoodStats],
) -> None:
    # Where the expected drop is far below the noise (K >= 1000) the comparison says nothing.
    for small, large in ((1, 10), (10, 100), (100, 1000)):
        drop, se = paired(-wrong_stats[small].iw_ll, -wrong_stats[large].iw_ll)
        assert drop > -2 * se, (small, large, drop, se)
    drop, se = paired(-wrong_stats[1].iw_ll, -wrong_stats[10].iw_ll)
    assert drop > 2 * se, (drop, se)  # and it really drops where it should


def test_elbo_terms_match_their_closed_forms(
    wrong_model: VAE,
    wrong_stats: dict[int, LikelihoodStats],
    wide_data: torch.Tensor,
    wide_exact: torch.Tensor,
    ppca: PPCA,
) -> None:
    q = wrong_model.encoder(wide_data)
    true_posterior = MultivariateNormal(ppca.posterior_mean(wide_data), ppca.posterior_cov())
    gap = kl_divergence(q, true_posterior)  # E_q[ELBO] = log p(x) - KL(q || p(z|x))
    prior = MultivariateNormal(
        torch.zeros(M, dtype=wide_data.dtype), torch.eye(M, dtype=wide_data.dtype)
    )
    kl_prior = kl_divergence(q, prior)  # the ``kl`` field: E_q[log q(z|x) - log p(z)]
    assert float(gap.min()) > 0.5  # a clearly wrong posterior
    out = wrong_stats[KS[-1]]
    for estimate, answer in ((out.elbo, wide_exact - gap), (out.kl, kl_prior)):
        mean, se = paired(estimate, answer)
        assert abs(mean) < 4 * se, (mean, se)
        assert float((estimate - answer).abs().max()) < 0.15
    torch.testing.assert_close(out.recon - out.kl, out.elbo)


# -- 2. chunking -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k", "cost", "cap", "expected"),
    [
        (10, 100, 4, 1000, (2, 100)),  # 250 samples of room: all of K, two points
        (10, 1000, 4, 1000, (1, 250)),  # K does not fit: one point, K in chunks of 250
        (3, 5, 1, 10**6, (3, 5)),  # everything in one chunk
        (10, 7, 100, 10, (1, 1)),  # a sample larger than the cap still makes progress
        (10, 7, 0, 20, (2, 7)),  # a cost of 0 counts as 1
    ],
)
def test_chunk_sizes(n: int, k: int, cost: int, cap: int, expected: tuple[int, int]) -> None:
    assert chunk_sizes(n, k, cost, cap) == expected


def test_chunk_sizes_keep_the_cap_and_use_it() -> None:
    for n in (1, 7, 50):
        for k in (1, 9, 100):
            for cost in (1, 3, 16):
                for cap in (16, 100, 1000, 10**5):
                    points, k_chunk = chunk_sizes(n, k, cost, cap)
                    assert 1 <= points <= n and 1 <= k_chunk <= k
                    assert points * k_chunk * cost <= cap
                    # no room wasted: another point or another sample would not fit
                    assert points == n or (points + 1) * k_chunk * cost > cap
                    assert k_chunk == k or (k_chunk + 1) * cost > cap


@pytest.mark.parametrize(
    "cap",
    [5 * 24, 5 * 128, 5 * 200],  # cost 5: room for 24 (K in 3 uneven chunks), 128, 200 samples
)
def test_chunking_does_not_change_a_noise_free_answer(
    cap: int, ppca: PPCA, data: torch.Tensor, exact: torch.Tensor
) -> None:
    model = ppca_vae(ppca)
    points, k_chunk = chunk_sizes(N, 64, 5, cap)
    assert points < N  # the case really is chunked
    chunked = stats(model, data, 64, max_elements=cap, cost_per_sample=5)
    whole = stats(model, data, 64)
    torch.testing.assert_close(chunked.iw_ll, exact, atol=1e-9, rtol=0)
    torch.testing.assert_close(chunked.iw_ll, whole.iw_ll, atol=1e-9, rtol=0)
    torch.testing.assert_close(chunked.elbo, whole.elbo, atol=1e-9, rtol=0)


class TableModel:
    """Stands in for a VAE: hands out prescribed log-weights, row by row and sample by sample,
    so that any chunking must reproduce statistics of the whole table exactly."""

    def __init__(self, log_px_z: torch.Tensor, log_pz: torch.Tensor, log_qz: torch.Tensor) -> None:
        self.tables = (log_px_z, log_pz, log_qz)  # each [N, K]
        self.used = torch.zeros(log_px_z.shape[0], dtype=torch.long)

    def log_weights(self, x: torch.Tensor, k: int) -> LogWeights:
        rows = x[:, 0].long()  # each point's first coordinate is its row number
        start = int(self.used[rows[0]])
        assert (self.used[rows] == start).all()
        self.used[rows] += k
        terms = (t[rows, start : start + k].T for t in self.tables)
        return LogWeights(*terms)


@pytest.mark.parametrize(("cap", "cost"), [(10**6, 1), (40, 1), (3, 1), (17, 2), (1, 1)])
def test_chunked_statistics_equal_those_of_the_whole_table(cap: int, cost: int) -> None:
    g = torch.Generator().manual_seed(0)
    n, k = 9, 40
    # large magnitudes: a naive exp-sum would underflow; the running log-sum-exp must not
    log_px_z = -5000.0 + 30.0 * torch.randn(n, k, generator=g, dtype=torch.float64)
    log_pz = torch.randn(n, k, generator=g, dtype=torch.float64)
    log_qz = torch.randn(n, k, generator=g, dtype=torch.float64)
    model = TableModel(log_px_z, log_pz, log_qz)
    x = torch.arange(n, dtype=torch.float64)[:, None].expand(n, 3)
    out = likelihood_stats(model, x, k, max_elements=cap, cost_per_sample=cost)  # type: ignore[arg-type]
    assert (model.used == k).all()  # every sample drawn once
    log_w = log_px_z + log_pz - log_qz
    torch.testing.assert_close(out.iw_ll, torch.logsumexp(log_w, 1) - math.log(k))
    torch.testing.assert_close(out.elbo, log_w.mean(1))
    torch.testing.assert_close(out.recon, log_px_z.mean(1))
    torch.testing.assert_close(out.kl, (log_qz - log_pz).mean(1))


def test_chunking_a_noisy_estimate_agrees_statistically(
    wrong_model: VAE, wrong_stats: dict[int, LikelihoodStats], wide_data: torch.Tensor
) -> None:
    n = 25  # one point per chunk, K = 1000 in chunks of 600 and 400
    x = wide_data[:n]
    chunked = stats(wrong_model, x, 1000, seed=SEED + 1, max_elements=5 * 600, cost_per_sample=5)
    whole = wrong_stats[1000]
    assert not torch.equal(chunked.iw_ll, whole.iw_ll[:n])  # different noise ...
    for name in ("iw_ll", "elbo", "kl"):
        mean, se = paired(getattr(chunked, name), getattr(whole, name)[:n])
        assert abs(mean) < 4 * se + 1e-3, (name, mean, se)  # ... the same answer


def test_k_must_be_positive(ppca: PPCA, data: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        likelihood_stats(ppca_vae(ppca), data, 0)


# -- 3. the KL term of a diagonal Gaussian against N(0, I) ------------------------------------


class DiagonalEncoder(nn.Module):
    """q(z|x_i) = N(mu_i, diag sigma_i^2) for point number i (x_i's first coordinate)."""

    def __init__(self, mu: torch.Tensor, sigma: torch.Tensor) -> None:
        super().__init__()
        self.mu, self.sigma = mu, sigma

    def forward(self, x: torch.Tensor) -> Independent:
        rows = x[:, 0].long()
        return Independent(Normal(self.mu[rows], self.sigma[rows]), 1)


def test_kl_term_matches_the_gaussian_closed_form() -> None:
    g = torch.Generator().manual_seed(3)
    n, m = 40, 3
    mu = 1.5 * torch.randn(n, m, generator=g, dtype=torch.float64)
    sigma = 0.2 + 1.5 * torch.rand(n, m, generator=g, dtype=torch.float64)
    ppca = PPCA(torch.zeros(D, m, dtype=torch.float64), torch.zeros(D, dtype=torch.float64), 1.0)
    model = VAE(DiagonalEncoder(mu, sigma), LinearGaussianDecoder(ppca), StandardNormalPrior(m))
    x = torch.arange(n, dtype=torch.float64)[:, None].expand(n, D)
    out = stats(model, x, 4000)
    closed = 0.5 * (mu**2 + sigma**2 - 1 - torch.log(sigma**2)).sum(-1)
    mean, se = paired(out.kl, closed)
    assert abs(mean) < 4 * se, (mean, se)
    assert float((out.kl - closed).abs().max()) < 0.3  # each point: K = 4000 samples


# -- 4. summaries -----------------------------------------------------------------------------


def test_bits_per_dim() -> None:
    assert bits_per_dim(64 * math.log(2.0), 64) == pytest.approx(1.0)
    assert bits_per_dim(100.0, 784) == pytest.approx(100.0 / 784 / math.log(2.0))
    assert bits_per_dim(0.0, 10) == 0.0
    assert bits_per_dim(-2 * 8 * math.log(2.0), 8) == pytest.approx(-2.0)


def test_mean_and_stderr() -> None:
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    zeros = torch.zeros(4)
    out = LikelihoodStats(k=4, elbo=values, iw_ll=zeros, recon=zeros, kl=zeros)
    sample_sd = math.sqrt(5.0 / 3.0)  # sum of squared deviations 5, over n - 1
    assert out.mean_and_stderr("elbo") == pytest.approx((2.5, sample_sd / 2))
    assert out.mean_and_stderr("elbo", -1.0) == pytest.approx((-2.5, sample_sd / 2))
    one = LikelihoodStats(1, torch.ones(1), torch.ones(1), torch.ones(1), torch.ones(1))
    mean, se = one.mean_and_stderr("iw_ll")
    assert mean == 1.0 and math.isnan(se)


# -- the estimator as metrics read it ---------------------------------------------------------


def suite_data(x: torch.Tensor) -> SuiteData:
    spec = DataSpec(dim=x.shape[1], levels=256)
    return SuiteData(spec=spec, train=x, val=x, test=x)


def test_eval_context_likelihood_is_seeded_cached_and_leaves_the_rng_alone(
    wrong_model: VAE, data: torch.Tensor
) -> None:
    settings = EvalSettings(k=50, k_ood=5, max_elements=2**20, seed=7)
    ctx = EvalContext(wrong_model, suite_data(data), settings, torch.device("cpu"), M)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = ctx.likelihood("test")
    assert torch.equal(torch.get_rng_state(), before)
    assert first.k == 50 and ctx.likelihood("test") is first
    assert ctx.likelihood("val").k == 5
    again = EvalContext(wrong_model, suite_data(data), settings, torch.device("cpu"), M)
    torch.testing.assert_close(again.likelihood("test").iw_ll, first.iw_ll, rtol=0, atol=0)


def _noise_metric(name: str):  # type: ignore[no-untyped-def]
    from vaebench.contracts import MetricSpec

    def compute(ctx: EvalContext) -> dict[str, MetricValue]:
        return {name: MetricValue(float(torch.rand(())))}

    return MetricSpec(name, compute)


def test_a_metric_draws_the_same_noise_whatever_other_metrics_run(
    wrong_model: VAE, data: torch.Tensor
) -> None:
    # Each metric is seeded from settings.seed and its own name, not its place in the list.
    settings = EvalSettings(k=5, k_ood=5)
    args = (wrong_model, suite_data(data), settings)
    alone, _ = evaluate(*args, [_noise_metric("b")], torch.device("cpu"), M)
    behind, _ = evaluate(*args, [_noise_metric("a"), _noise_metric("b")], torch.device("cpu"), M)
    assert behind["b"].value == alone["b"].value
