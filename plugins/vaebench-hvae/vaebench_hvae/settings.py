"""The options of the three components, their two presets, and how z splits into (z1, z2).

The run has one latent size M (``--latent-dim``); z = (z1, z2) is the concatenation of the
bottom layer z1 (next to x) and the top layer z2, M = M1 + M2. Each component reads its split
from its own options ``z1`` and ``z2``: both unset, the decoder and the prior take the split
of an ``hvae-encoder`` in the same model (else M1 = M - M // 2, M2 = M // 2); one set, the
other is M minus it; both set, they must add up to M. A decoder or prior whose explicit split
differs from the encoder's is refused with an error saying which option to change.

A preset (``preset=burda2015`` or ``tomczak2018``) fills every option left unset with the
values of that paper's set-up; options given explicitly override it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vaebench.contracts import BuildContext
from vaebench.errors import ConfigError, ContractError

FORMS = ("burda", "tomczak")
# The names of vaebench's MLP options for the same choices.
ACTIVATIONS = ("leaky_relu", "tanh", "gated")
INITS = ("default", "he")
TOPS = ("standard-normal", "vamp")
# vaebench's VampPrior's (vaebench.components.priors.PSEUDO_INITS), named here so that reading
# the options does not import torch
PSEUDO_INITS = ("sigmoid", "hardtanh")

# Burda et al. 2015 (yburda/iwae, experiments.py, two stochastic layers): tanh layers of 200
# between x and a 100-unit z1, of 100 between z1 and a 50-unit z2; sigma = exp(Linear).
# Tomczak & Welling 2018 (jmtomczak/vae_vampprior, models/HVAE_2level.py): GatedDense layers
# of 300, z1 and z2 of 40, log-variances through hardtanh(-6, 2), He initialisation, and a
# VampPrior of 500 pseudo-inputs over z2 in their best model.
PRESETS: dict[str, dict[str, Any]] = {
    "burda2015": {
        "form": "burda",
        "z1": 100,
        "z2": 50,
        "hidden": 200,
        "hidden_top": 100,
        "activation": "tanh",
        "init": "default",
        "top": "standard-normal",
    },
    "tomczak2018": {
        "form": "tomczak",
        "z1": 40,
        "z2": 40,
        "hidden": 300,
        "hidden_top": 300,
        "activation": "gated",
        "init": "he",
        "logvar_bounds": (-6.0, 2.0),
        "top": "vamp",
        "pseudo_inputs": 500,
        # the reference code's pseudo-inputs: hard-tanh parameterised, from N(0.05, 0.01)
        "pseudo_init": "hardtanh",
        "pseudo_mean": 0.05,
        "pseudo_std": 0.01,
    },
}

# Every option, unset (None: the preset's value, else the default the README gives).
NETWORK_OPTIONS: dict[str, Any] = {
    "preset": None,
    "form": None,
    "z1": None,
    "z2": None,
    "hidden": None,
    "hidden_top": None,
    "activation": None,
    "init": None,
    "logvar_bounds": None,
}
PRIOR_OPTIONS: dict[str, Any] = {
    **{k: v for k, v in NETWORK_OPTIONS.items() if k != "form"},
    "top": None,
    "pseudo_inputs": None,
    "pseudo_init": None,
    "pseudo_mean": None,
    "pseudo_std": None,
}


@dataclass(frozen=True)
class Settings:
    """A component's resolved options."""

    form: str
    z1: int
    z2: int
    hidden: int
    hidden_top: int
    activation: str
    init: str
    logvar_bounds: tuple[float, float] | None
    top: str
    pseudo_inputs: int
    pseudo_init: str
    pseudo_mean: float
    pseudo_std: float

    @property
    def latent(self) -> int:
        return self.z1 + self.z2


class _Options:
    """Look-ups of one component's options: explicit value, else the preset's, else None."""

    def __init__(self, options: Mapping[str, Any], who: str) -> None:
        self.options, self.who = options, who
        preset = options.get("preset")
        if preset is not None and preset not in PRESETS:
            raise ConfigError(
                f"{who}: unknown preset {preset!r}; use one of {', '.join(PRESETS)} or leave "
                "preset unset"
            )
        self.preset = PRESETS.get(preset, {}) if preset is not None else {}

    def get(self, name: str) -> Any:
        value = self.options.get(name)
        return self.preset.get(name) if value is None else value

    def explicit(self, name: str) -> bool:
        return self.get(name) is not None

    def integer(self, name: str, default: int | None, minimum: int = 1) -> int | None:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(
                f"{self.who}: option {name} must be an integer >= {minimum}, got {value!r}"
            )
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name)
        if value is None:
            return default
        if value not in choices:
            raise ConfigError(
                f"{self.who}: option {name} must be one of {', '.join(choices)}, got {value!r}"
            )
        return value

    def number(self, name: str, default: float, minimum: float | None = None) -> float:
        value = self.get(name)
        if value is None:
            return default
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or (minimum is not None and value < minimum):
            at_least = f" >= {minimum}" if minimum is not None else ""
            raise ConfigError(
                f"{self.who}: option {name} must be a finite number{at_least}, got {value!r}"
            )
        return float(value)

    def bounds(self, name: str) -> tuple[float, float] | None:
        value = self.get(name)
        if value is None:
            return None
        numbers = isinstance(value, list | tuple) and len(value) == 2
        numbers = numbers and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        )
        if not numbers or not value[0] < value[1]:
            raise ConfigError(
                f"{self.who}: option {name} must be [low, high] with low < high (e.g. "
                f"{name}=[-6,2]), got {value!r}"
            )
        return float(value[0]), float(value[1])


def resolve(ctx: BuildContext, who: str, follow: Settings | None = None) -> Settings:
    """``ctx.options`` resolved against the preset, the run's sizes and, for a decoder or a
    prior, ``follow``: the settings of the ``hvae-encoder`` of the same model, if it has one."""
    opts = _Options(ctx.options, who)
    z1, z2 = _split(opts, ctx.latent_dim, who, follow)
    hidden = opts.integer("hidden", ctx.hidden_dim)
    default_form = follow.form if follow is not None else "burda"
    return Settings(
        form=opts.choice("form", FORMS, default_form),
        z1=z1,
        z2=z2,
        hidden=hidden,
        hidden_top=opts.integer("hidden_top", hidden),
        activation=opts.choice("activation", ACTIVATIONS, "leaky_relu"),
        init=opts.choice("init", INITS, "default"),
        logvar_bounds=opts.bounds("logvar_bounds"),
        top=opts.choice("top", TOPS, "standard-normal"),
        pseudo_inputs=opts.integer("pseudo_inputs", 50),
        pseudo_init=opts.choice("pseudo_init", PSEUDO_INITS, "sigmoid"),
        pseudo_mean=opts.number("pseudo_mean", 0.0),
        pseudo_std=opts.number("pseudo_std", 0.1, minimum=0.0),
    )


def _split(opts: _Options, latent: int, who: str, follow: Settings | None) -> tuple[int, int]:
    z1 = opts.integer("z1", None)
    z2 = opts.integer("z2", None)
    if z1 is None and z2 is None:
        if follow is not None:
            return follow.z1, follow.z2
        if latent < 2:
            raise ConfigError(
                f"{who} needs a latent size of at least 2 (one unit per layer), got {latent}; "
                "run with --latent-dim 2 or more"
            )
        return latent - latent // 2, latent // 2
    if z1 is None:
        z1 = latent - z2
    elif z2 is None:
        z2 = latent - z1
    if z1 < 1 or z2 < 1 or z1 + z2 != latent:
        given = " and ".join(f"{n} = {opts.get(n)}" for n in ("z1", "z2") if opts.explicit(n))
        preset = f" (preset {opts.options.get('preset')})" if opts.preset else ""
        fix = f"--latent-dim {z1 + z2}" if opts.explicit("z1") and opts.explicit("z2") else ""
        raise ConfigError(
            f"{who}: {given}{preset} does not fit the run's latent size {latent} = z1 + z2 "
            f"with at least one unit per layer; run with {fix or 'a larger --latent-dim'} or "
            "change the component options z1/z2"
        )
    if follow is not None and (z1, z2) != (follow.z1, follow.z2):
        raise ContractError(
            f"{who} splits z into z1 = {z1} and z2 = {z2}, but the model's encoder "
            f"'hvae-encoder' splits it into {follow.z1} and {follow.z2}; leave this "
            "component's z1/z2 unset to follow the encoder, or set the same values"
        )
    return z1, z2
