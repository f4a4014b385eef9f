"""Out-of-distribution detection: per-example scores and how well each separates OOD sets.

Orientation, one convention for every stored array: the per-example score stored as
``f"{split}/{score}"`` (``split`` = ``test`` or an OOD set's name) is a *normality* score,
**higher = more in-distribution**. The detection curves use the anomaly score ``-stored`` with
the OOD set as the **positive** class (label 1) and the in-distribution test split as the
negative class (label 0). Every score uses the IW estimate with ``k_ood`` samples per point,
the same estimator on the test split and on every OOD set.

Scores:

* ``iw_ll``: the IW log-likelihood log p(x) (nats; Burda et al. 2015).
* ``elbo``: the ELBO (nats).
* ``complexity``: log2 p(x) + L(x) in bits, where L(x) is the length of x compressed by zlib
  (a generic lossless compressor). Serra et al. 2020's complexity-corrected score
  S(x) = -log2 p(x) - L(x), negated to follow the convention: a likelihood ratio against a
  universal model, which removes the bonus simple inputs get from every likelihood model.
* ``typicality``: -| -log p(x) - H |, with H the mean of -log p(x) over a fixed subsample of
  the training split (Nalisnick et al. 2019's typicality test with batches of one): too high a
  likelihood is as suspicious as too low a one.

For each score and OOD set: AUROC, average precision (AUPRC) and the false-positive rate at 95%
true-positive rate, by scikit-learn's curve arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vaebench.contracts import MetricSpec, MetricValue
from vaebench.errors import ContractError
from vaebench.estimators import likelihood_stats
from vaebench.evaluate import TEST, EvalContext, compression_bits

SCORES = ("iw_ll", "elbo", "complexity", "typicality")
TYPICALITY_TRAIN = 1000  # training points whose mean -log p(x) is the typical value H
ORIENTATION = "stored score: higher = more in-distribution; curves: anomaly = -score, OOD = 1"
_TRAIN_SALT = 301


def detection_metrics(in_anomaly: np.ndarray, out_anomaly: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC and FPR at 95% TPR for anomaly scores (higher = more OOD); OOD positive."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    in_anomaly, out_anomaly = np.asarray(in_anomaly, float), np.asarray(out_anomaly, float)
    if in_anomaly.size == 0 or out_anomaly.size == 0:
        raise ValueError(
            "detection metrics need at least one in- and one out-of-distribution score"
        )
    labels = np.concatenate([np.zeros(in_anomaly.size), np.ones(out_anomaly.size)])
    scores = np.concatenate([in_anomaly, out_anomaly])
    # Keep every threshold: dropping collinear points could skip the first one reaching 95%.
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "auprc": float(average_precision_score(labels, scores)),
        "fpr95": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    }


def typical_neg_log_p(ctx: EvalContext) -> tuple[float, int, int]:
    """Mean -log p(x) over a fixed subsample of the training split, as the model saw it (the
    suite's training transform applied); returns (H, points, k). Computed once."""

    def compute() -> tuple[float, int, int]:
        train = ctx.data.train
        n = min(TYPICALITY_TRAIN, train.shape[0])
        k = ctx.settings.k_ood
        generator = torch.Generator().manual_seed(ctx.settings.seed + _TRAIN_SALT)
        x = train[torch.randperm(train.shape[0], generator=generator)[:n]].to(ctx.device)
        if ctx.data.train_transform is not None:
            x = ctx.data.train_transform(x, generator)
        with ctx.fixed_rng(_TRAIN_SALT):
            stats = likelihood_stats(
                ctx.model,
                x,
                k,
                max_elements=ctx.settings.max_elements,
                cost_per_sample=ctx.cost_per_sample(),
            )
        return -float(stats.iw_ll.double().mean()), n, k

    return ctx.cached(("ood/typical", ctx.settings.k_ood), compute)


def split_scores(ctx: EvalContext, split: str, typical: float) -> dict[str, np.ndarray]:
    """Every score of every row of a split (higher = more in-distribution), stored on ctx."""
    stats = ctx.likelihood(split, ctx.settings.k_ood)
    iw_ll = stats.iw_ll.double().numpy()
    bits = compression_bits(ctx.split(split), ctx.data.spec.levels)
    scores = {
        "iw_ll": iw_ll,
        "elbo": stats.elbo.double().numpy(),
        "complexity": iw_ll / math.log(2.0) + bits,
        "typicality": -np.abs(-iw_ll - typical),
    }
    for name, values in scores.items():
        if not np.isfinite(values).all():
            raise ContractError(
                f"OOD score {name!r} is not finite on split {split!r}; the model's "
                "log-likelihood there is NaN or infinite"
            )
        ctx.store(f"{split}/{name}", values)
    return scores


def ood(ctx: EvalContext) -> dict[str, MetricValue]:
    if not ctx.ood_names:
        return {}
    typical, n_train, k = typical_neg_log_p(ctx)
    inside = split_scores(ctx, TEST, typical)
    out: dict[str, MetricValue] = {}
    for name in ctx.ood_names:
        outside = split_scores(ctx, name, typical)
        for score in SCORES:
            curves = detection_metrics(-inside[score], -outside[score])
            extra = {
                "orientation": ORIENTATION,
                "k": k,
                "n_in": int(inside[score].size),
                "n_ood": int(outside[score].size),
                "mean_in": float(inside[score].mean()),
                "mean_ood": float(outside[score].mean()),
            }
            if score == "typicality":
                extra.update(typical_neg_log_p=typical, train_points=n_train)
            if score == "complexity":
                extra["compressor"] = "zlib level 9, 8-bit pixels"
            for stat, hib in (("auroc", True), ("auprc", True), ("fpr95", False)):
                out[f"ood/{score}/{name}/{stat}"] = MetricValue(curves[stat], "", hib, None, extra)
    return out


OOD = MetricSpec(
    name="ood",
    compute=ood,
    description=(
        "OOD detection, test split vs each OOD set: AUROC, AUPRC, FPR@95%TPR of the IW "
        "log-likelihood, ELBO, complexity-corrected likelihood and typicality"
    ),
    unit="",
    higher_is_better=True,
    needs=frozenset({"ood", "iw"}),
    section="ood",
    columns=("ood/*/*/auroc", "ood/*/*/auprc", "ood/*/*/fpr95"),
    headline="ood/*/*/auroc",
    table_per=1,
)
