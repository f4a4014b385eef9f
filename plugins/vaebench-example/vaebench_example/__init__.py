"""vaebench-example: a Student-t prior, and the template for writing a vaebench plugin.

Copy this package, rename it, and replace the component. Three things make it a plugin:

1. ``pyproject.toml`` names this module under ``[project.entry-points.vaebench]``;
2. a function marked ``@hookimpl`` and named after a hook in :mod:`vaebench.hookspecs`
   (here ``vaebench_register_priors``) calls ``register`` with a ``ComponentSpec``;
3. the spec's factory builds an ``nn.Module`` honouring the contract of its kind
   (:mod:`vaebench.contracts`): a prior has ``log_prob(z [..., M]) -> [...]`` and
   ``sample(n) -> [n, M]``.

The prior: independent Student-t marginals, p(z) = prod_d t_nu_d(z_d / s_d) / s_d, with the
degrees of freedom nu_d and scales s_d learned. Heavy tails let the prior cover posteriors far
from the origin (a standard-normal prior punishes them quadratically); as nu grows it becomes a
Gaussian. Heavy-tailed priors in VAEs: e.g. Mathieu et al. 2019, "Disentangling
Disentanglement in Variational Autoencoders".
"""

from __future__ import annotations

from typing import Any

from vaebench.contracts import BuildContext, ComponentSpec
from vaebench.hookspecs import Register, hookimpl

__version__ = "0.1.0"

DEFAULTS = {"df": 5.0}


def build_student_t(ctx: BuildContext) -> Any:
    """The factory: vaebench calls it with the latent size and the merged options."""
    from vaebench_example.student_t import StudentTPrior  # torch only when built

    return StudentTPrior(ctx.latent_dim, float(ctx.options.get("df", DEFAULTS["df"])))


@hookimpl
def vaebench_register_priors(register: Register) -> None:
    register(
        ComponentSpec(
            name="student-t",
            kind="prior",
            factory=build_student_t,
            description="independent Student-t per dimension, degrees of freedom and scale learned",
            options=DEFAULTS,
        )
    )
