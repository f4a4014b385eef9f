"""The hole problem: how far the aggregate posterior q(z) = 1/N sum_i q(z|x_i) of the test
split is from the prior p(z), in both directions (Hoffman & Johnson 2016; Rezende & Viola 2018).

* **Marginal KL** ``KL(q(z) || p(z)) = E_x KL(q(z|x) || p(z)) - I_q(x; z)``, from the same
  per-point KL and MI estimates the collapse metric reports, so ``collapse/kl - collapse/mi``
  equals it exactly. It is large when the posteriors sit where the prior has little mass.
* **Reverse KL** ``KL(p(z) || q(z)) = E_{z ~ p}[log p(z) - log q(z)]``, with prior draws and
  log q(z) by a log-mean-exp over the N posteriors. It is large when the prior puts mass in
  "holes" that no posterior covers, where samples from the model decode to nonsense.

On a split of more than ``max_points`` points, q(z) is the aggregate posterior of a fixed random
subset of that many (as for the mutual information; ``n`` and ``of`` are recorded), and the
marginal KL averages over that subset.
"""

from __future__ import annotations

import torch

from vaebench.contracts import MetricSpec, MetricValue
from vaebench.errors import ConfigError
from vaebench.evaluate import AGGREGATE_POINTS, TEST, EvalContext
from vaebench.metrics.collapse import (
    check_max_points,
    kl_stats,
    mean_and_stderr,
    mutual_information,
)

PRIOR_SAMPLES = 4096
_PRIOR_SALT = 201


def reverse_kl_terms(ctx: EvalContext, samples: int, split: str = TEST) -> torch.Tensor:
    """``log p(z) - log q(z)`` at ``samples`` prior draws (float64 ``[samples]``); cached."""

    def compute() -> torch.Tensor:
        prior = ctx.model.prior
        # Draw and score in pieces: a mixture prior's log_prob holds [n, K, M] floats.
        step = max(1, ctx.settings.max_elements // (ctx.latent_dim * 64))
        terms = []
        with ctx.fixed_rng(_PRIOR_SALT), torch.no_grad():
            for start in range(0, samples, step):
                z = prior.sample(min(step, samples - start))
                log_p = prior.log_prob(z).double()
                terms.append((log_p - ctx.aggregate_log_q(split, z)).cpu())
        return torch.cat(terms)

    return ctx.cached(("holes/reverse", split, samples), compute)


def make_holes(
    prior_samples: int = PRIOR_SAMPLES,
    name: str = "holes",
    max_points: int | None = AGGREGATE_POINTS,
) -> MetricSpec:
    """The holes metric with ``prior_samples`` draws for the reverse KL and the aggregate
    posterior of at most ``max_points`` test points (None: all)."""
    if not isinstance(prior_samples, int) or prior_samples < 2:
        raise ConfigError(f"prior_samples must be an integer >= 2, got {prior_samples!r}")
    check_max_points(max_points)

    def compute(ctx: EvalContext) -> dict[str, MetricValue]:
        kl = kl_stats(ctx)
        mi = mutual_information(ctx, max_points=max_points)
        kl_points = kl.per_point if mi.rows is None else kl.per_point[mi.rows]
        marginal, marginal_se = mean_and_stderr(kl_points - mi.per_point)
        reverse, reverse_se = mean_and_stderr(reverse_kl_terms(ctx, prior_samples, mi.split))
        return {
            f"{name}/marginal_kl": MetricValue(
                marginal,
                "nats",
                False,
                marginal_se,
                {
                    "n": mi.n,
                    "of": mi.of,
                    "kl": float(kl_points.mean()),
                    "kl_method": kl.method,
                    "kl_mc_samples": kl.mc_samples,
                    "mi": float(mi.per_point.mean()),
                    "mi_mc_samples": mi.samples,
                },
            ),
            f"{name}/reverse_kl": MetricValue(
                reverse,
                "nats",
                False,
                reverse_se,
                {"n": mi.n, "of": mi.of, "prior_samples": prior_samples},
            ),
        }

    return MetricSpec(
        name=name,
        compute=compute,
        description="aggregate posterior vs prior on test: KL(q(z)||p(z)) and KL(p(z)||q(z))",
        unit="nats",
        higher_is_better=False,
        needs=frozenset({"test", "prior-samples"}),
        section="collapse",
        columns=(f"{name}/marginal_kl", f"{name}/reverse_kl"),
        headline=f"{name}/marginal_kl",
    )


HOLES = make_holes()
