"""The metric ``hvae-collapse``: the collapse statistics of a two-layer model, per layer.

vaebench's ``collapse`` metric sees one latent vector of M coordinates; which of them are z1 and
which z2 is known only to this plugin's components. This metric reads that split from them and
reports, on the test split:

* ``hvae-collapse/active_units_z1`` and ``.../active_units_z2``: the built-in metric's own
  activities Cov_x(E_q[z_d]) (Burda et al. 2015; the same cached numbers, so the two layers'
  counts add up to ``collapse/active_units``), counted per layer; ``extra`` holds each layer's
  activities, the threshold and its size (``of``);
* ``hvae-collapse/kl_z1`` and ``.../kl_z2``: the two terms of the ELBO's KL,
  ``E_q[log q(z1|.) - log p(z1|z2)]`` and ``E_q[log q(z2|.) - log p(z2)]``, where each q and p
  is the factor the model has for that layer (for ``burda``: q(z1|x) and q(z2|z1)); their sum
  is E_x KL(q(z|x) || p(z)). Monte Carlo, ``KL_SAMPLES`` draws per point under a fixed seed;
  ``extra.per_dim`` holds each coordinate's term where both factors are diagonal in it (the
  top layer of a VampPrior is not: there only the layer's total is reported).

A model whose components have no layers (none of them from this plugin) gets no outputs. The
KL terms need the posterior's per-coordinate log densities (``hvae-encoder``, or a diagonal
Gaussian encoder) and a prior whose layers are known (``hvae-prior``, or a prior that is the
product of its ``marginals()``); otherwise only the active units are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import Distribution, Independent, Normal

from vaebench.contracts import MetricValue
from vaebench.evaluate import TEST, EvalContext
from vaebench.metrics.collapse import (
    DEFAULT_THRESHOLD,
    KL_SAMPLES,
    activities,
    mean_and_stderr,
    prior_marginals,
)
from vaebench_hvae.settings import Settings

NAME = "hvae-collapse"
_KL_SALT = 301


def layer_split(model: Any) -> tuple[int, int] | None:
    """(M1, M2) from the first of the model's encoder, prior, decoder that has layers."""
    for part in (model.encoder, model.prior, model.decoder):
        settings = getattr(part, "settings", None)
        if isinstance(settings, Settings):
            return settings.z1, settings.z2
    return None


def _posterior_per_dim(q: Distribution, z: torch.Tensor) -> torch.Tensor | None:
    method = getattr(q, "log_prob_per_dim", None)
    if method is not None:
        return method(z)
    diagonal = isinstance(q, Independent) and q.reinterpreted_batch_ndims == 1
    return q.base_dist.log_prob(z) if diagonal and type(q.base_dist) is Normal else None


def _prior_layers(
    ctx: EvalContext, z: torch.Tensor, z1: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
    """log p(z1|z2) per coordinate, log p(z2), and log p(z2) per coordinate (or None)."""
    prior = ctx.model.prior
    if hasattr(prior, "layer_log_probs"):
        bottom, top = prior.layer_log_probs(z)
        return bottom, top, prior.top_per_dim(z[..., z1:])
    marginals = prior_marginals(ctx)
    if marginals is None:
        return None
    per_dim = marginals.log_prob(z)
    # Only a prior that is the product of its marginals splits into layers this way.
    if not torch.allclose(
        prior.log_prob(z).double(), per_dim.sum(-1).double(), rtol=1e-4, atol=1e-3
    ):
        return None
    return per_dim[..., :z1], per_dim[..., z1:].sum(-1), per_dim[..., z1:]


@dataclass
class LayerKL:
    """Per point (``[N]``) and, where available, per point and coordinate, for each layer."""

    per_point: tuple[torch.Tensor, torch.Tensor]
    per_dim: tuple[torch.Tensor, torch.Tensor | None]


def layer_kl(ctx: EvalContext, z1: int, split: str = TEST) -> LayerKL | None:
    def compute() -> LayerKL | None:
        chunks = ctx.posteriors(split)
        n = chunks[-1][0].stop
        points = (torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64))
        dims: list[torch.Tensor | None] = [
            torch.empty(n, z1, dtype=torch.float64),
            torch.empty(n, ctx.latent_dim - z1, dtype=torch.float64),
        ]
        with ctx.fixed_rng(_KL_SALT), torch.no_grad():
            for rows, q in chunks:
                z = q.sample((KL_SAMPLES,))
                q_dims = _posterior_per_dim(q, z)
                p = _prior_layers(ctx, z, z1)
                if q_dims is None or p is None:
                    return None
                bottom, top, top_dims = p[0].double(), p[1].double(), p[2]
                q_dims = q_dims.double()
                d1 = (q_dims[..., :z1] - bottom).mean(0)
                points[0][rows] = d1.sum(-1).cpu()
                dims[0][rows] = d1.cpu()
                points[1][rows] = (q_dims[..., z1:].sum(-1) - top).mean(0).cpu()
                if top_dims is None:
                    dims[1] = None
                elif dims[1] is not None:
                    dims[1][rows] = (q_dims[..., z1:] - top_dims.double()).mean(0).cpu()
        return LayerKL(points, (dims[0], dims[1]))

    return ctx.cached((NAME + "/kl", split), compute)


def compute(ctx: EvalContext, threshold: float = DEFAULT_THRESHOLD) -> dict[str, MetricValue]:
    split = layer_split(ctx.model)
    if split is None:
        return {}
    z1, z2 = split
    activity, mean_samples = activities(ctx)
    out: dict[str, MetricValue] = {}
    layers = (("z1", slice(0, z1)), ("z2", slice(z1, z1 + z2)))
    for layer, rows in layers:
        act = activity[rows]
        out[f"{NAME}/active_units_{layer}"] = MetricValue(
            float((act > threshold).sum()),
            "dims",
            True,
            None,
            {
                "per_dim": act.tolist(),
                "threshold": threshold,
                "of": act.numel(),
                "coordinates": [rows.start, rows.stop],
                "mean_mc_samples": mean_samples,
            },
        )
    kl = layer_kl(ctx, z1)
    if kl is not None:
        for i, (layer, rows) in enumerate(layers):
            mean, se = mean_and_stderr(kl.per_point[i])
            per_dim = kl.per_dim[i]
            out[f"{NAME}/kl_{layer}"] = MetricValue(
                mean,
                "nats",
                None,
                se,
                {
                    "per_dim": None if per_dim is None else per_dim.mean(0).tolist(),
                    "mc_samples": KL_SAMPLES,
                    "coordinates": [rows.start, rows.stop],
                },
            )
    return out
