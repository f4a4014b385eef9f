"""Posterior collapse: KL per latent dimension, active units and the mutual information I_q(x; z).

* **KL** ``E_x KL(q(z|x) || p(z))`` (Bowman et al. 2016), per latent dimension against the
  prior's one-dimensional marginals p(z_d): closed form when both are Gaussian, Monte Carlo
  otherwise. The per-dimension values need the prior's optional ``marginals()`` (a
  distribution of batch ``[M]`` holding p(z_d), or None) and a posterior with per-dimension
  marginals (an ``Independent`` distribution or a ``MultivariateNormal``); without them only
  the total is reported. The total is always the KL against the prior itself, the term of the
  ELBO: in closed form, as the sum over dimensions, when q(z|x) is a diagonal Gaussian and the
  prior the product of Gaussian marginals; by Monte Carlo otherwise (recorded in ``method``).
* **Active units** (Burda et al. 2015): dimension d is active when
  ``Cov_x(E_{q(z|x)}[z_d]) > threshold``; the activities themselves stay in the record.
* **Mutual information** ``I_q(x; z) = E_x KL(q(z|x) || q(z))`` with q(z) the aggregate
  posterior of the N evaluation points, estimated as He et al. 2019 do: log q(z) by a
  log-mean-exp of the N posteriors at draws z ~ q(z|x_i). Each point's term lies below log N.
  Its cost grows as N squared, so on a split of more than ``max_points`` points (default
  ``AGGREGATE_POINTS``) N is a fixed random subset of that many; ``n`` and ``of`` are recorded.

Every Monte Carlo pass runs under its own fixed seed and is cached on the context, so the holes
metric reads the same numbers whether or not this metric ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from vaebench.contracts import MetricSpec, MetricValue
from vaebench.errors import ConfigError, ContractError
from vaebench.evaluate import AGGREGATE_POINTS, TEST, EvalContext

DEFAULT_THRESHOLD = 0.01
KL_SAMPLES = 64  # draws per point where the KL has no closed form
MEAN_SAMPLES = 256  # draws per point where q(z|x) has no analytic mean
MI_DRAWS = 4096  # posterior draws in all for the MI estimator: ceil(MI_DRAWS / N) per point
_KL_SALT, _MEAN_SALT, _MI_SALT = 101, 102, 103


@dataclass
class KLStats:
    """E_q[log q(z|x) - log p(z)] per point (``[N]``) and per point and dimension (``[N, M]``)."""

    per_point: torch.Tensor
    per_dim: torch.Tensor | None
    method: str  # "closed-form" or "monte-carlo": how the total was computed
    per_dim_method: str | None
    mc_samples: int | None
    note: str = ""


@dataclass
class MIStats:
    """Each point's term of the MI estimate (``[N]``), from ``samples`` draws per point."""

    per_point: torch.Tensor
    samples: int
    split: str  # the split (or capped subset of it) whose posteriors make up q(z)
    rows: torch.Tensor | None  # that subset's rows of the parent split; None: all of them
    of: int  # points in the parent split

    @property
    def n(self) -> int:
        return self.per_point.numel()


def prior_marginals(ctx: EvalContext) -> Distribution | None:
    """The prior's optional ``marginals()``, checked to have batch ``[M]`` and event ``[]``."""
    method = getattr(ctx.model.prior, "marginals", None)
    if method is None:
        return None
    marginals = method()
    if marginals is None:
        return None
    if not isinstance(marginals, Distribution) or tuple(marginals.batch_shape) != (ctx.latent_dim,):
        raise ContractError(
            f"prior {ctx.model.names.get('prior', 'prior')!r}: marginals() must return a "
            f"torch Distribution of batch_shape ({ctx.latent_dim},) and event_shape () or None, "
            f"got {marginals!r}"
        )
    return marginals


def posterior_marginals(q: Distribution) -> Distribution | None:
    """q(z_d|x) for every point and dimension (batch ``[B, M]``) where the family allows it."""
    if isinstance(q, Independent) and q.reinterpreted_batch_ndims == 1:
        return q.base_dist
    if isinstance(q, MultivariateNormal):
        return Normal(q.loc, q.variance.sqrt(), validate_args=False)
    return None


def _factorises(ctx: EvalContext, marginals: Distribution, z: torch.Tensor) -> bool:
    """Whether log p(z) equals the sum of the marginals' log densities at the draws ``z``."""
    joint = ctx.model.prior.log_prob(z).double()
    product = marginals.log_prob(z).sum(-1).double()
    return bool(torch.allclose(joint, product, rtol=1e-4, atol=1e-3))


def kl_stats(ctx: EvalContext, split: str = TEST) -> KLStats:
    """E_x KL(q(z|x) || p(z)) per point and per dimension; computed once per split."""

    def compute() -> KLStats:
        with ctx.fixed_rng(_KL_SALT), torch.no_grad():
            return _kl_stats(ctx, split)

    return ctx.cached(("collapse/kl", split), compute)


def _kl_stats(ctx: EvalContext, split: str) -> KLStats:
    chunks = ctx.posteriors(split)
    p_marg = prior_marginals(ctx)
    first = chunks[0][1]
    q_marg = posterior_marginals(first)
    per_dim_ok = p_marg is not None and q_marg is not None
    # Per dimension, Gaussian against Gaussian has a closed form; the total is their sum only
    # when both q(z|x) and p(z) are products of those marginals (a full-covariance q is not).
    dims_closed = per_dim_ok and isinstance(q_marg, Normal) and isinstance(p_marg, Normal)
    total_closed = (
        dims_closed
        and isinstance(first, Independent)
        and _factorises(ctx, cast(Distribution, p_marg), first.sample())  # not None: dims_closed
    )
    note = ""
    if p_marg is None:
        note = "the prior has no marginals(); per-dimension KL not available"
    elif q_marg is None:
        note = f"{type(first).__name__} posteriors have no per-dimension marginals"
    n = chunks[-1][0].stop
    per_point = torch.empty(n, dtype=torch.float64)
    per_dim = torch.empty(n, ctx.latent_dim, dtype=torch.float64) if per_dim_ok else None
    for rows, q in chunks:
        z = None if total_closed else q.sample((KL_SAMPLES,))  # [S, B, M]
        if per_dim is not None:
            marginals = posterior_marginals(q)
            # per_dim_ok: both have marginals (every chunk comes from the same encoder)
            assert marginals is not None and p_marg is not None
            if dims_closed:
                dims = torch.distributions.kl_divergence(marginals, p_marg).double()
            else:
                assert z is not None  # drawn whenever the total is not closed-form
                dims = (marginals.log_prob(z).double() - p_marg.log_prob(z).double()).mean(0)
            per_dim[rows] = dims.cpu()
        if total_closed:
            assert per_dim is not None  # total_closed implies per_dim_ok
            per_point[rows] = per_dim[rows].sum(-1)
        else:
            assert z is not None
            log_ratio = q.log_prob(z).double() - ctx.model.prior.log_prob(z).double()
            per_point[rows] = log_ratio.mean(0).cpu()
    return KLStats(
        per_point=per_point,
        per_dim=per_dim,
        method="closed-form" if total_closed else "monte-carlo",
        per_dim_method=None
        if not per_dim_ok
        else ("closed-form" if dims_closed else "monte-carlo"),
        mc_samples=None if total_closed else KL_SAMPLES,
        note=note,
    )


def activities(ctx: EvalContext, split: str = TEST) -> tuple[torch.Tensor, int | None]:
    """Cov_x(E_q[z_d]) for every dimension (``[M]``, float64) and the draws per point used
    where q(z|x) has no analytic mean (None where it has one); computed once per split.

    A mean estimated from S draws varies between points by its own noise too, Var_q(z_d) / S
    on average; that noise is subtracted (with the draws' unbiased variance), so a collapsed
    dimension does not look active because its mean was estimated.
    """

    def compute() -> tuple[torch.Tensor, int | None]:
        means, noise, samples = [], [], None
        with ctx.fixed_rng(_MEAN_SALT), torch.no_grad():
            for _, q in ctx.posteriors(split):
                try:
                    mean = q.mean.double()
                    noise.append(torch.zeros_like(mean))
                except NotImplementedError:
                    draws = q.sample((MEAN_SAMPLES,)).double()
                    mean, samples = draws.mean(0), MEAN_SAMPLES
                    noise.append(draws.var(0) / MEAN_SAMPLES)
                means.append(mean.cpu())
        means_all = torch.cat(means)
        if means_all.shape[0] < 2:
            return torch.zeros(means_all.shape[1], dtype=torch.float64), samples
        return means_all.var(0) - torch.cat(noise).cpu().mean(0), samples

    return ctx.cached(("collapse/activity", split), compute)


def mutual_information(
    ctx: EvalContext, split: str = TEST, max_points: int | None = AGGREGATE_POINTS
) -> MIStats:
    """He et al. 2019's estimate of I_q(x; z), per point of ``split`` or of its fixed subset of
    ``max_points`` points; computed once per (split, cap)."""
    of = ctx.split_size(split)
    name, rows = ctx.capped(split, max_points)

    def compute() -> MIStats:
        chunks = ctx.posteriors(name)
        n = chunks[-1][0].stop
        samples = max(1, math.ceil(MI_DRAWS / n))
        per_point = torch.empty(n, dtype=torch.float64)
        with ctx.fixed_rng(_MI_SALT), torch.no_grad():
            for part, q in chunks:
                z = q.sample((samples,))  # [S, B, M]
                log_q_x = q.log_prob(z).double()
                log_q = ctx.aggregate_log_q(name, z.reshape(-1, z.shape[-1]))
                per_point[part] = (log_q_x - log_q.reshape(log_q_x.shape)).mean(0).cpu()
        return MIStats(per_point, samples, name, rows, of)

    return ctx.cached(("collapse/mi", name), compute)


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float | None]:
    n = values.numel()
    se = float(values.std() / math.sqrt(n)) if n > 1 else None
    return float(values.mean()), se


def check_max_points(max_points: int | None) -> None:
    if max_points is not None and (
        not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 2
    ):
        raise ConfigError(
            f"max_points (points of the aggregate posterior) must be an integer >= 2 or None "
            f"for every point, got {max_points!r}"
        )


def make_collapse(
    threshold: float = DEFAULT_THRESHOLD,
    name: str = "collapse",
    max_points: int | None = AGGREGATE_POINTS,
) -> MetricSpec:
    """The collapse metric with an active-unit ``threshold``; outputs are named ``name/...``.
    The mutual information uses the posteriors of at most ``max_points`` test points (None:
    all); KL and active units use every test point."""
    if not threshold >= 0:
        raise ConfigError(f"the active-unit threshold must be >= 0, got {threshold!r}")
    check_max_points(max_points)

    def compute(ctx: EvalContext) -> dict[str, MetricValue]:
        kl = kl_stats(ctx)
        activity, mean_samples = activities(ctx)
        mi = mutual_information(ctx, max_points=max_points)
        kl_mean, kl_se = mean_and_stderr(kl.per_point)
        mi_mean, mi_se = mean_and_stderr(mi.per_point)
        per_dim = None if kl.per_dim is None else kl.per_dim.mean(0).tolist()
        kl_extra = {
            "per_dim": per_dim,
            "method": kl.method,
            "mc_samples": kl.mc_samples,
            "per_dim_method": kl.per_dim_method,
        }
        if kl.note:
            kl_extra["note"] = kl.note
        return {
            f"{name}/kl": MetricValue(kl_mean, "nats", None, kl_se, kl_extra),
            f"{name}/active_units": MetricValue(
                float((activity > threshold).sum()),
                "dims",
                True,
                None,
                {
                    "per_dim": activity.tolist(),
                    "threshold": threshold,
                    "of": ctx.latent_dim,
                    "mean_mc_samples": mean_samples,
                },
            ),
            f"{name}/mi": MetricValue(
                mi_mean,
                "nats",
                None,
                mi_se,
                {"n": mi.n, "of": mi.of, "mc_samples": mi.samples, "log_n": math.log(mi.n)},
            ),
        }

    return MetricSpec(
        name=name,
        compute=compute,
        description=(
            "posterior collapse on test: KL per dimension, active units "
            f"(Cov_x E_q[z_d] > {threshold}), mutual information I_q(x; z)"
        ),
        unit="nats",
        needs=frozenset({"test"}),
        section="collapse",
        columns=(f"{name}/kl", f"{name}/active_units", f"{name}/mi"),
        headline=f"{name}/kl",
    )


COLLAPSE = make_collapse()
