"""The ``vaebench-hvae`` plugin: registers its components and metric through vaebench's hooks.

Factories import torch and the component modules when called, so loading the plugin is cheap.
A decoder's or prior's factory reads the model's encoder from its build context: where that is
an ``hvae-encoder``, the layer split (and the decoder's form) default to the encoder's.
"""

from __future__ import annotations

from typing import Any

from vaebench.contracts import BuildContext, ComponentSpec, MetricSpec
from vaebench.hookspecs import Register, hookimpl
from vaebench_hvae.settings import NETWORK_OPTIONS, PRIOR_OPTIONS


def _encoder_settings(ctx: BuildContext) -> Any:
    from vaebench_hvae.posterior import HierarchicalEncoder

    return ctx.encoder.settings if isinstance(ctx.encoder, HierarchicalEncoder) else None


def build_encoder(ctx: BuildContext) -> Any:
    from vaebench_hvae.posterior import HierarchicalEncoder
    from vaebench_hvae.settings import resolve

    return HierarchicalEncoder(ctx.data, resolve(ctx, "encoder 'hvae-encoder'"))


def build_decoder(ctx: BuildContext) -> Any:
    from vaebench_hvae.decoder import HierarchicalDecoder
    from vaebench_hvae.settings import resolve

    settings = resolve(ctx, "decoder 'hvae-decoder'", _encoder_settings(ctx))
    return HierarchicalDecoder(ctx.data, settings)


def build_prior(ctx: BuildContext) -> Any:
    from vaebench_hvae.prior import HierarchicalPrior, build_top
    from vaebench_hvae.settings import resolve

    who = "prior 'hvae-prior'"
    settings = resolve(ctx, who, _encoder_settings(ctx))
    return HierarchicalPrior(settings, build_top(settings, ctx.data, ctx.encoder, who))


def compute_hvae_collapse(ctx: Any) -> Any:
    from vaebench_hvae.metric import compute

    return compute(ctx)


@hookimpl
def vaebench_register_encoders(register: Register) -> None:
    register(
        ComponentSpec(
            "hvae-encoder",
            "encoder",
            build_encoder,
            "two stochastic layers, z = (z1, z2): q(z1|x) q(z2|z1) (Burda et al. 2015) or "
            "q(z2|x) q(z1|x, z2) (Tomczak & Welling 2018, form=tomczak)",
            options=NETWORK_OPTIONS,
        )
    )


@hookimpl
def vaebench_register_decoders(register: Register) -> None:
    register(
        ComponentSpec(
            "hvae-decoder",
            "decoder",
            build_decoder,
            "p(x|z1) (Burda et al. 2015) or p(x|z1, z2) (Tomczak & Welling 2018, form=tomczak)",
            options=NETWORK_OPTIONS,
        )
    )


@hookimpl
def vaebench_register_priors(register: Register) -> None:
    register(
        ComponentSpec(
            "hvae-prior",
            "prior",
            build_prior,
            "p(z2) p(z1|z2), p(z2) N(0, I) or a VampPrior over the encoder's top path (top=vamp)",
            options=PRIOR_OPTIONS,
        )
    )


@hookimpl
def vaebench_register_metrics(register: Register) -> None:
    register(
        MetricSpec(
            name="hvae-collapse",
            compute=compute_hvae_collapse,
            description=(
                "posterior collapse of a two-layer model per layer: active units and the KL "
                "term of z1 and of z2 (nothing for one-layer models)"
            ),
            unit="dims",
            higher_is_better=True,
            needs=frozenset({"test"}),
        )
    )
