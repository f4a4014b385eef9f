"""-ELBO (reconstruction and KL terms apart) and IW-NLL on the test split.

Per-example likelihood scores on OOD sets are the ``ood`` metric's (:mod:`vaebench.metrics.ood`).
"""

from __future__ import annotations

import math

from vaebench.contracts import MetricSpec, MetricValue
from vaebench.estimators import bits_per_dim
from vaebench.evaluate import TEST, EvalContext


def likelihood(ctx: EvalContext) -> dict[str, MetricValue]:
    stats = ctx.likelihood(TEST)
    dim = ctx.data.spec.dim
    k = {"k": stats.k}
    out: dict[str, MetricValue] = {}
    for name, field, sign, hib in (
        ("neg_elbo", "elbo", -1.0, False),
        ("iw_nll", "iw_ll", -1.0, False),
        ("recon", "recon", -1.0, False),
        ("kl", "kl", 1.0, None),
    ):
        mean, se = stats.mean_and_stderr(field, sign)
        out[name] = MetricValue(mean, "nats", hib, se, k)
        if name in ("neg_elbo", "iw_nll"):
            out[f"{name}_bpd"] = MetricValue(
                bits_per_dim(mean, dim), "bits/dim", False, bits_per_dim(se, dim), k
            )
    gap_mean, gap_se = _gap(stats)
    out["iw_gap"] = MetricValue(gap_mean, "nats", None, gap_se, k)
    return out


def _gap(stats) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    gap = (stats.iw_ll - stats.elbo).double()
    n = gap.numel()
    se = float(gap.std() / math.sqrt(n)) if n > 1 else float("nan")
    return float(gap.mean()), se


LIKELIHOOD = MetricSpec(
    name="likelihood",
    compute=likelihood,
    description="-ELBO (recon + KL), IW-NLL with K samples, in nats and bits/dim, on test",
    unit="nats",
    higher_is_better=False,
    needs=frozenset({"iw"}),
    section="likelihood",
    columns=("neg_elbo", "iw_nll", "recon", "kl"),
    headline="iw_nll",
)
