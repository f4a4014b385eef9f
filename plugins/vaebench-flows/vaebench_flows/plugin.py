"""The ``vaebench-flows`` plugin: registers its components through vaebench's hooks.

Factories import torch and the component modules when called, so loading the plugin is cheap.
"""

from __future__ import annotations

from typing import Any

from vaebench.contracts import BuildContext, ComponentSpec
from vaebench.hookspecs import Register, hookimpl

HOUSEHOLDER = {"steps": 4}
IAF = {"steps": 2, "made_hidden": 128}
SYLVESTER = {"steps": 4, "reflections": 4}
REALNVP = {"layers": 4, "hidden": 64}


def _int(ctx: BuildContext, defaults: dict[str, int], name: str) -> int:
    return int(ctx.options.get(name, defaults[name]))


def _encoder(ctx: BuildContext, flow: Any) -> Any:
    from vaebench_flows.posterior import FlowEncoder

    return FlowEncoder(
        ctx.data, int(ctx.options.get("hidden", ctx.hidden_dim)), ctx.latent_dim, flow
    )


def build_householder(ctx: BuildContext) -> Any:
    from vaebench_flows.householder import HouseholderFlow

    hidden = int(ctx.options.get("hidden", ctx.hidden_dim))
    return _encoder(ctx, HouseholderFlow(hidden, ctx.latent_dim, _int(ctx, HOUSEHOLDER, "steps")))


def build_iaf(ctx: BuildContext) -> Any:
    from vaebench_flows.iaf import IAFFlow

    hidden = int(ctx.options.get("hidden", ctx.hidden_dim))
    steps, made = _int(ctx, IAF, "steps"), _int(ctx, IAF, "made_hidden")
    return _encoder(ctx, IAFFlow(hidden, ctx.latent_dim, steps, made))


def build_sylvester(ctx: BuildContext) -> Any:
    from vaebench_flows.sylvester import SylvesterFlow

    hidden = int(ctx.options.get("hidden", ctx.hidden_dim))
    steps, reflections = _int(ctx, SYLVESTER, "steps"), _int(ctx, SYLVESTER, "reflections")
    return _encoder(ctx, SylvesterFlow(hidden, ctx.latent_dim, steps, reflections))


def build_realnvp(ctx: BuildContext) -> Any:
    from vaebench_flows.realnvp import RealNVPPrior

    layers, hidden = _int(ctx, REALNVP, "layers"), _int(ctx, REALNVP, "hidden")
    return RealNVPPrior(ctx.latent_dim, layers, hidden)


@hookimpl
def vaebench_register_encoders(register: Register) -> None:
    register(
        ComponentSpec(
            "householder",
            "encoder",
            build_householder,
            "MLP Gaussian through Householder reflections: full-covariance q(z|x) "
            "(Tomczak & Welling 2016)",
            options=HOUSEHOLDER,
        )
    )
    register(
        ComponentSpec(
            "iaf",
            "encoder",
            build_iaf,
            "MLP Gaussian through inverse autoregressive flow steps (Kingma et al. 2016)",
            options=IAF,
        )
    )
    register(
        ComponentSpec(
            "sylvester",
            "encoder",
            build_sylvester,
            "MLP Gaussian through Householder-Sylvester flow steps (van den Berg et al. 2018)",
            options=SYLVESTER,
        )
    )


@hookimpl
def vaebench_register_priors(register: Register) -> None:
    register(
        ComponentSpec(
            "realnvp",
            "prior",
            build_realnvp,
            "RealNVP: affine couplings over N(0, I), trained (Dinh et al. 2017)",
            options=REALNVP,
        )
    )
