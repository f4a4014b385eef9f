"""From a request to records: plan the grid into keyed units, skip what is done, execute, write.

Only the runner decides what runs; only :mod:`vaebench.results` writes. A unit is plain data
(names, options, seeds, budget, keys), so an executor can ship it anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
import itertools
import pickle
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from vaebench import interrupts, results, streams
from vaebench.contracts import COMPONENT_KINDS, Budget, EvalSettings, Grid, Profile, Suite
from vaebench.errors import ConfigError, VaebenchError
from vaebench.plugins import PluginHost, default_host

PRECISIONS = ("fp32", "bf16")
# Seeds per unit that ``--seed-batch auto`` trains together on a GPU: 128 copies of the MNIST
# MLP VAE (0.55M parameters each) fit a GPU's memory many times over.
AUTO_GPU_SEED_BATCH = 128
# ... and on a CPU in this process (see benchmarks/README.md). With a parallel executor on a
# CPU, ``auto`` keeps one seed per unit: batching gains little there, and more units spread
# better over the workers (measured on the digits grid: benchmarks/README.md).
AUTO_CPU_SEED_BATCH = 16
# The four parts of a combination, in the order labels and keys name them.
PARTS: tuple[str, ...] = (*COMPONENT_KINDS, "objective")
GRIDS = ("ofat", "full")
# Bounds that catch a typo before hours of work: papers use K <= 5000 importance samples.
MAX_K = 100_000
MAX_LATENT = 4096
MAX_HIDDEN = 16_384
MAX_SEED = 2**63
# An option every component accepts: its hidden width (BuildContext.hidden_dim otherwise).
COMMON_OPTIONS = ("hidden",)


@dataclass(frozen=True)
class Unit:
    """One combination and a batch of its seeds, with a result key per seed."""

    suite: str
    suite_version: str
    profile: str
    suite_options: Mapping[str, Any]
    data_dir: str | None
    combination: Mapping[str, str]
    components: Mapping[str, Mapping[str, Any]]
    component_options: Mapping[str, Mapping[str, Any]]
    latent_dim: int
    hidden_dim: int
    seeds: tuple[int, ...]
    keys: tuple[str, ...]
    stems: tuple[str, ...]
    identities: tuple[Mapping[str, Any], ...]
    budget: Budget
    eval: EvalSettings
    metrics: tuple[str, ...]
    out_dir: str
    device: str = "cpu"
    precision: str = "fp32"
    progress: bool = False
    checkpoints: bool = True
    variants: Mapping[str, str] = dataclasses.field(default_factory=dict)
    defaults: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def former_stem(self, index: int) -> str | None:
        """The stem the seed at ``index`` had while ``checkpoint_every`` was part of the key
        (a checkpoint of a run begun then is under it), or None where it is the same stem."""
        former = {**self.identities[index], "budget": dataclasses.asdict(self.budget)}
        key = results.make_key(former)
        if key == self.keys[index]:
            return None
        return results.stem(self.suite, self.combination, self.seeds[index], key)

    def checkpoint(self, root: Path, index: int) -> Path:
        """Where the seed at ``index`` has its checkpoint: under its stem, or under its
        :meth:`former_stem` if only that one exists."""
        path = results.checkpoint_path(root, self.stems[index])
        former = self.former_stem(index)
        if not path.exists() and former and results.checkpoint_path(root, former).is_file():
            return results.checkpoint_path(root, former)
        return path

    def only(self, indices: Sequence[int]) -> Unit:
        """This unit with only the seeds at ``indices`` (to resume a partly finished unit)."""
        pick = list(indices)
        return dataclasses.replace(
            self,
            seeds=tuple(self.seeds[i] for i in pick),
            keys=tuple(self.keys[i] for i in pick),
            stems=tuple(self.stems[i] for i in pick),
            identities=tuple(self.identities[i] for i in pick),
        )

    @property
    def label(self) -> str:
        """``encoder / decoder / prior / objective``, each with the options that set it apart
        from its defaults (``iwae(k=50)``)."""
        parts = []
        for kind in PARTS:
            name = self.combination[kind]
            variant = self.variants.get(kind)
            parts.append(f"{name}({variant})" if variant else name)
        return " / ".join(parts)

    def record_head(self, index: int) -> dict[str, Any]:
        """What the record of the seed at ``index`` says about its identity, whatever became
        of it: the worker fills in the rest, or the runner does for a lost worker."""
        return {
            "schema_version": results.SCHEMA_VERSION,
            "key": self.keys[index],
            "stem": self.stems[index],
            "identity": self.identities[index],
            "suite": {
                "name": self.suite,
                "version": self.suite_version,
                "profile": self.profile,
                "options": dict(self.suite_options),
            },
            "combination": dict(self.combination),
            "components": {
                kind: {**c, "defaults": dict(self.defaults.get(kind, {}))}
                for kind, c in self.components.items()
            },
            "seed": self.seeds[index],
            "seeding": streams.SEEDING,
            "latent_dim": self.latent_dim,
            "hidden_dim": self.hidden_dim,
            "budget": dataclasses.asdict(self.budget),
            "eval": {**dataclasses.asdict(self.eval), "metrics": list(self.metrics)},
            "precision": self.precision,
        }


@dataclass
class RunRequest:
    """Everything ``vaebench run`` can be asked; ``None`` means "the profile's, else the
    suite's default".

    ``component_options`` maps a part (``encoder``, ``decoder``, ``prior``, ``objective``) to
    options applied to every chosen component of that part that accepts them. ``grid`` is
    ``"ofat"`` (one factor at a time around the baseline combination) or ``"full"`` (every
    combination).
    """

    suite: str = "digits"
    profile: str = "default"
    encoders: Sequence[str] | None = None
    decoders: Sequence[str] | None = None
    priors: Sequence[str] | None = None
    objectives: Sequence[str] | None = None
    grid: str = "ofat"
    seeds: Sequence[int] | None = None
    steps: int | None = None
    epochs: int | None = None
    max_seconds: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    patience: int | None = None
    eval_every: int | None = None
    checkpoint_every: int | None = None
    k: int | None = None
    k_ood: int | None = None
    metrics: Sequence[str] | None = None
    suite_options: Mapping[str, Any] = field(default_factory=dict)
    component_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    latent_dim: int | None = None
    hidden_dim: int | None = None
    out: str | None = None
    data_dir: str | None = None
    executor: str = "local"
    executor_options: Mapping[str, Any] = field(default_factory=dict)
    device: str = "auto"
    precision: str = "fp32"
    seed_batch: int | str = "auto"
    force: bool = False
    retry_failed: bool = True
    progress: bool = True

    @classmethod
    def from_args(cls, values: Mapping[str, Any]) -> RunRequest:
        """A request from a mapping (parsed command-line arguments, a config file) holding
        some of its fields by name; other keys are not the request's and are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("results") / self.suite


@dataclass
class RunSummary:
    out_dir: Path
    records: list[dict[str, Any]]
    ran: int
    skipped: int
    failed: int
    busy: int
    units: list[Unit]


def resolve_budget(profile_budget: Budget, request: RunRequest) -> Budget:
    changes: dict[str, Any] = {}
    for name in ("max_seconds", "batch_size", "lr", "patience", "eval_every", "checkpoint_every"):
        value = getattr(request, name)
        if value is not None:
            changes[name] = value
    if request.steps is not None and request.epochs is not None:
        raise ConfigError("give either steps or epochs, not both")
    if request.steps is not None:
        changes.update(steps=request.steps, epochs=None)
    if request.epochs is not None:
        changes.update(epochs=request.epochs, steps=None)
    return dataclasses.replace(profile_budget, **changes)


def resolve_eval(profile_eval: EvalSettings, request: RunRequest) -> EvalSettings:
    changes = {n: getattr(request, n) for n in ("k", "k_ood") if getattr(request, n) is not None}
    for name, value in changes.items():
        if isinstance(value, int) and value > MAX_K:
            raise ConfigError(
                f"{name} = {value} importance samples is more than {MAX_K:,}; papers use up to "
                "5000 (a larger K is hours of evaluation per model)"
            )
    return dataclasses.replace(profile_eval, **changes)


@dataclass(frozen=True)
class Choice:
    """One candidate for a part of a combination: a registered name and its resolved options;
    ``variant`` says how the options differ from the name's defaults (empty if they do not)."""

    name: str
    options: Mapping[str, Any]
    variant: str = ""


def _suggest(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _names(
    host: PluginHost, suite: Suite, profile: Profile, request: RunRequest, spec: Any
) -> dict[str, list[str]]:
    """Names per part: the request's, else the profile's grid, else the suite's, else every
    registered component that fits the data (from the plugins the grid names, if any)."""
    grids = [g for g in (profile.grid, suite.grid) if g is not None]
    out: dict[str, list[str]] = {}
    for kind, asked, field_name in (
        ("encoder", request.encoders, "encoders"),
        ("decoder", request.decoders, "decoders"),
        ("prior", request.priors, "priors"),
        ("objective", request.objectives, "objectives"),
    ):
        registry = host.registry(kind)
        default = next((getattr(g, field_name) for g in grids if getattr(g, field_name)), None)
        if asked:
            names = list(dict.fromkeys(asked))
            for name in names:
                component = registry.get(name)
                if kind != "objective" and not component.fits(spec):
                    raise ConfigError(
                        f"{kind} {name!r} does not fit suite {suite.name!r} (data of dimension "
                        f"{spec.dim} with {spec.levels} levels); run `vaebench list {kind}s`"
                    )
        elif default is not None:
            names = [n for n in default if n in registry]
        elif kind == "objective":
            from vaebench.objectives import BASELINE

            names = [BASELINE]
        else:
            plugins = next((g.plugins for g in grids if g.plugins is not None), None)
            names = [
                entry.obj.name
                for entry in registry
                if entry.obj.fits(spec)
                and getattr(entry.obj, "default_grid", True)
                and (plugins is None or entry.plugin in plugins)
            ]
        if not names:
            raise ConfigError(
                f"no {kind} fits suite {suite.name!r}; install a plugin that provides one"
            )
        out[kind] = names
    return out


def resolve_grid(
    host: PluginHost, suite: Suite, request: RunRequest, spec: Any
) -> dict[str, list[str]]:
    """Component names per kind for ``request`` under its profile (see :func:`_names`)."""
    return _names(host, suite, suite.profile(request.profile), request, spec)


def _variants(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    return list(value)


def resolve_choices(
    host: PluginHost,
    names: Mapping[str, Sequence[str]],
    profile: Profile,
    request: RunRequest,
) -> dict[str, list[Choice]]:
    """Each part's choices with their options: the component's defaults, then the profile's
    options for that name (one choice per variant), then the request's options for the part.

    A request option that no chosen component of its part accepts is an error (with the
    closest accepted name): a typo must not train the defaults under a new key.
    """
    unknown_parts = set(request.component_options) - set(PARTS)
    if unknown_parts:
        part = sorted(unknown_parts)[0]
        raise ConfigError(
            f"component option for {part!r}: options are given per part, one of "
            f"{', '.join(PARTS)} (e.g. prior.components=20){_suggest(part, PARTS)}"
        )
    out: dict[str, list[Choice]] = {}
    for kind in PARTS:
        asked = dict(request.component_options.get(kind, {}))
        specs = {name: host.get(kind, name) for name in names[kind]}
        accepted = {
            name: set(spec.options) | (set() if kind == "objective" else set(COMMON_OPTIONS))
            for name, spec in specs.items()
        }
        every = sorted(set().union(*accepted.values()))
        for key in asked:
            if not any(key in keys for keys in accepted.values()):
                who = ", ".join(repr(n) for n in specs)
                raise ConfigError(
                    f"no {kind} of this run ({who}) has an option {key!r}"
                    f"{_suggest(key, every)}; its options: {', '.join(every) or '(none)'}"
                )
        choices: list[Choice] = []
        for name, spec in specs.items():
            defaults = dict(spec.options)
            for variant in _variants(profile.options.get(name, {})):
                bad = set(variant) - accepted[name]
                if bad:
                    raise ConfigError(
                        f"profile {request.profile!r} gives {kind} {name!r} unknown option(s) "
                        f"{', '.join(sorted(bad))}; its options: "
                        f"{', '.join(sorted(accepted[name])) or '(none)'}"
                    )
                own = {k: v for k, v in asked.items() if k in accepted[name]}
                options = {**defaults, **variant, **own}
                changed = {k: v for k, v in options.items() if defaults.get(k) != v}
                label = ",".join(f"{k}={v}" for k, v in sorted(changed.items()))
                choices.append(Choice(name, options, label))
        out[kind] = _unique(choices)
    return out


def _unique(choices: Sequence[Choice]) -> list[Choice]:
    seen: set[str] = set()
    out = []
    for choice in choices:
        key = results.canonical_json({"name": choice.name, "options": dict(choice.options)})
        if key not in seen:
            seen.add(key)
            out.append(choice)
    return out


def combine(
    choices: Mapping[str, Sequence[Choice]], baseline: Mapping[str, str], mode: str
) -> list[dict[str, Choice]]:
    """The combinations to train: with ``mode == "full"`` every one; with ``"ofat"`` the
    baseline (per part, the choice named in ``baseline``, else the first) and, for each part,
    every other choice of that part with the baseline's other parts."""
    if mode not in GRIDS:
        raise ConfigError(f"grid {mode!r} is not one of {', '.join(GRIDS)}")
    if mode == "full":
        return [
            dict(zip(PARTS, combo, strict=True))
            for combo in itertools.product(*(choices[k] for k in PARTS))
        ]
    base = {}
    for kind in PARTS:
        named = [c for c in choices[kind] if c.name == baseline.get(kind)]
        base[kind] = named[0] if named else choices[kind][0]
    out = [base]
    for kind in PARTS:
        for choice in choices[kind]:
            if choice != base[kind]:
                out.append({**base, kind: choice})
    return out


def identity(
    suite: Suite,
    profile: str,
    suite_options: Mapping[str, Any],
    components: Mapping[str, Mapping[str, Any]],
    latent_dim: int,
    hidden_dim: int,
    budget: Budget,
    eval_settings: EvalSettings,
    metrics: Sequence[str],
    precision: str,
    seed: int,
) -> dict[str, Any]:
    """Everything that determines a result; its hash is the result's key. ``components``
    holds the four parts (the objective included); ``seeding`` names the random-stream scheme
    (:mod:`vaebench.streams`), so results of another scheme never share a key. The budget's
    fields that do not change a result (``checkpoint_every``) are cleared
    (:data:`vaebench.results.RESULT_NEUTRAL_BUDGET`)."""
    return {
        "suite": {"name": suite.name, "version": suite.version, "options": dict(suite_options)},
        "components": {kind: dict(c) for kind, c in components.items()},
        "latent_dim": latent_dim,
        "hidden_dim": hidden_dim,
        "budget": results.neutral_budget(dataclasses.asdict(budget)),
        "eval": dataclasses.asdict(eval_settings),
        "metrics": list(metrics),
        "precision": precision,
        "seed": seed,
        "seeding": streams.SEEDING,
        "profile": profile,
    }


def resolve_seed_batch(value: int | str, device: str, n_seeds: int, parallel: bool = False) -> int:
    """Seeds per unit: ``value`` itself, or for ``"auto"`` what measured fastest: every seed (up
    to a cap) on a GPU or on a CPU in this process, one seed per unit on a CPU with a
    ``parallel`` executor. A seed's key does not depend on it: batched or not, a seed ends with
    the same numbers."""
    from vaebench.pipeline import resolve_device

    if value == "auto":
        if resolve_device(device).type != "cpu":
            return max(1, min(n_seeds, AUTO_GPU_SEED_BATCH))
        return 1 if parallel else max(1, min(n_seeds, AUTO_CPU_SEED_BATCH))
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"seed batch must be a positive whole number or 'auto', got {value!r}")
    return value


def check_seeds(seeds: Sequence[Any]) -> tuple[int, ...]:
    """The seeds, refused when empty, repeated, not whole numbers or outside [0, 2**63)."""
    if not seeds:
        raise ConfigError("no seeds to run; give seeds 0 1 ...")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
            raise ConfigError(f"seed {seed!r} must be a whole number in [0, 2**63)")
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ConfigError(
            f"seed {repeated[0]} is given more than once; each seed is one result, give it once"
        )
    return tuple(seeds)


def check_suite_options(suite: Suite, given: Mapping[str, Any]) -> None:
    """Unknown suite options and values of the wrong type are one-line errors."""
    unknown = set(given) - set(suite.options)
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(
            f"suite {suite.name!r} has no option {name!r}{_suggest(name, list(suite.options))}; "
            f"its options: {', '.join(sorted(suite.options)) or '(none)'}"
        )
    for key, value in given.items():
        expected = suite.option_types.get(key)
        default = suite.options[key]
        if expected is None and default is not None:
            expected = type(default)
        if expected is None or value is None:
            continue
        ok = isinstance(value, expected) and not (
            isinstance(value, bool) and expected in (int, float)
        )
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(
                f"suite {suite.name!r}: option {key} must be {expected.__name__}, got {value!r}"
            )


def check_executor_options(spec: Any, options: Mapping[str, Any]) -> None:
    """Executor options the factory does not take are errors naming the accepted ones."""
    try:
        params = inspect.signature(spec.factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in options:
        if key not in accepted:
            raise ConfigError(
                f"executor {spec.name!r} has no option {key!r}{_suggest(key, accepted)}; "
                f"its options: {', '.join(accepted) or '(none)'}"
            )


def plan(request: RunRequest, host: PluginHost | None = None) -> list[Unit]:
    """Turn a request into units (one per combination and batch of seeds), with a key per
    seed."""
    from vaebench.pipeline import load_suite_data

    host = host or default_host()
    suite: Suite = host.get("suite", request.suite)
    profile = suite.profile(request.profile)
    budget = resolve_budget(profile.budget, request)
    eval_settings = resolve_eval(profile.eval, request)
    if request.precision not in PRECISIONS:
        raise ConfigError(
            f"unknown precision {request.precision!r}; use one of {', '.join(PRECISIONS)}"
        )
    check_suite_options(suite, request.suite_options)
    suite_options = {**suite.options, **request.suite_options}
    data = load_suite_data(suite, {**suite_options, "data_dir": request.data_dir}, host)
    names = _names(host, suite, profile, request, data.spec)
    choices = resolve_choices(host, names, profile, request)
    grid = profile.grid or suite.grid or Grid()
    combinations = combine(choices, {**suite.grid.baseline, **grid.baseline}, request.grid)
    metrics = tuple(request.metrics or suite.metrics)
    for name in metrics:
        host.get("metric", name)
    seeds = check_seeds(list(request.seeds if request.seeds is not None else suite.seeds))
    latent_dim = request.latent_dim or profile.latent_dim or suite.latent_dim
    hidden_dim = request.hidden_dim or profile.hidden_dim or suite.hidden_dim
    for what, value, limit in (
        ("latent size", latent_dim, MAX_LATENT),
        ("hidden width", hidden_dim, MAX_HIDDEN),
    ):
        if not 0 < value <= limit:
            raise ConfigError(f"{what} must be in 1..{limit}, got {value}")
    out_dir = str(request.out_dir())
    parallel = request.executor != "local"
    seed_batch = resolve_seed_batch(request.seed_batch, request.device, len(seeds), parallel)
    units: list[Unit] = []
    for combo in combinations:
        combination = {kind: combo[kind].name for kind in PARTS}
        components: dict[str, dict[str, Any]] = {}
        for kind in PARTS:
            entry = host.entry(kind, combo[kind].name)
            components[kind] = {
                "name": combo[kind].name,
                "plugin": entry.plugin,
                "version": entry.version,
                "options": dict(combo[kind].options),
            }
        identities = tuple(
            identity(
                suite,
                request.profile,
                suite_options,
                components,
                latent_dim,
                hidden_dim,
                budget,
                eval_settings,
                metrics,
                request.precision,
                seed,
            )
            for seed in seeds
        )
        keys = tuple(results.make_key(i) for i in identities)
        stems = tuple(
            results.stem(suite.name, combination, s, k) for s, k in zip(seeds, keys, strict=True)
        )
        variants = {kind: combo[kind].variant for kind in PARTS if combo[kind].variant}
        defaults = {kind: dict(host.get(kind, combo[kind].name).options) for kind in PARTS}
        for first in range(0, len(seeds), seed_batch):
            batch = slice(first, first + seed_batch)
            units.append(
                Unit(
                    suite=suite.name,
                    suite_version=suite.version,
                    profile=request.profile,
                    suite_options=suite_options,
                    data_dir=request.data_dir,
                    combination=combination,
                    components=components,
                    component_options={k: dict(v) for k, v in request.component_options.items()},
                    latent_dim=latent_dim,
                    hidden_dim=hidden_dim,
                    seeds=seeds[batch],
                    keys=keys[batch],
                    stems=stems[batch],
                    identities=identities[batch],
                    budget=budget,
                    eval=eval_settings,
                    metrics=metrics,
                    out_dir=out_dir,
                    device=request.device,
                    precision=request.precision,
                    progress=request.progress,
                    variants=variants,
                    defaults=defaults,
                )
            )
    return units


def make_executor(spec: Any, options: Mapping[str, Any]) -> Any:
    """The executor ``spec`` builds from ``options``; a bad option is a one-line error."""
    check_executor_options(spec, options)
    try:
        return spec.factory(**dict(options))
    except VaebenchError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"executor {spec.name!r}: bad option: {exc}") from exc


def _failed_outcomes(unit: Unit, exc: BaseException) -> list[dict[str, Any]]:
    """Records for every seed of a unit whose worker failed as a whole."""
    out = []
    for index in range(len(unit.seeds)):
        out.append(
            {
                "record": {
                    **unit.record_head(index),
                    "status": "failed",
                    "metrics": {},
                    "error": {
                        "type": type(exc).__name__,
                        "message": str(exc),
                        "phase": "worker",
                        "traceback": "",
                    },
                },
                "artifacts": {},
            }
        )
    return out


def write_outcome(
    root: Path, outcome: Mapping[str, Any], former: str | None = None
) -> dict[str, Any]:
    """Artifacts first, then the record (the record is what marks a key done). The record is
    held to :class:`vaebench.results.Record` before anything is written. The files of the same
    result under its ``former`` stem (:meth:`Unit.former_stem`), if any, are removed once the
    record is written, as a rerun's record replaces the one under its own stem."""
    record = dict(outcome["record"])
    results.check_record(record)
    stem = record["stem"]
    if outcome.get("artifacts"):
        folder = results.artifact_dir(root, stem)
        for name, data in outcome["artifacts"].items():
            results.atomic_write_bytes(folder / name, data)
            record.setdefault("artifacts", {})[name.split(".")[0]] = str(
                (folder / name).relative_to(root)
            )
    results.write_record(root, record)
    if record["status"] == "ok":
        results.remove_checkpoint(root, stem)
    if former and former != stem:
        results.remove_superseded(root, former)
    return record


def _adopt_former_checkpoints(root: Path, units: Sequence[Unit], held: set[str]) -> None:
    """Move each checkpoint left under a seed's :meth:`Unit.former_stem` (a run begun while
    ``checkpoint_every`` was in the key) to the seed's stem, so that the training resumes from
    it. Only seeds whose stem this run holds, and only under the former stem's lock too: a run
    of the earlier version may still be writing that checkpoint."""
    moves = {}
    for unit in units:
        for index, stem in enumerate(unit.stems):
            former = unit.former_stem(index)
            if stem in held and former and results.checkpoint_path(root, former).is_file():
                moves[former] = stem
    if not moves:
        return
    with results.key_locks(root, moves) as free:
        for former in free:
            target = results.checkpoint_path(root, moves[former])
            if not target.exists():
                results.checkpoint_path(root, former).replace(target)


def _pending(unit: Unit, done: Mapping[str, str], request: RunRequest) -> list[int]:
    """Indices of the seeds of ``unit`` still to compute."""
    out = []
    for i, key in enumerate(unit.keys):
        status = done.get(key)
        finished = status == "ok" or (status == "failed" and not request.retry_failed)
        if request.force or not finished:
            out.append(i)
    return out


@dataclass(frozen=True)
class SeedState:
    """What a run would do with one seed: ``status`` is ``finished``, ``failed (kept...)``,
    ``resumes`` (from a checkpoint at ``step``) or ``new``."""

    status: str
    step: int = 0

    @property
    def todo(self) -> bool:
        """Whether the run would train (and evaluate) this seed."""
        return self.status in ("new", "resumes")

    def __str__(self) -> str:
        return f"resumes at step {self.step:,}" if self.status == "resumes" else self.status


def seed_states(request: RunRequest, units: Sequence[Unit]) -> dict[str, SeedState]:
    """What a run of ``units`` would do with each seed, by stem, read from the results
    directory without creating or locking anything: finished, failed and kept (with
    ``retry_failed`` off), resumed from a readable checkpoint, or new."""
    import torch

    root = request.out_dir()
    done = results.finished_keys(root) if (root / results.RECORDS).is_dir() else {}
    out: dict[str, SeedState] = {}
    for unit in units:
        for index, (key, stem) in enumerate(zip(unit.keys, unit.stems, strict=True)):
            status = done.get(key)
            if status == "ok" and not request.force:
                out[stem] = SeedState("finished")
                continue
            if status == "failed" and not request.retry_failed and not request.force:
                out[stem] = SeedState("failed (kept: --no-retry-failed)")
                continue
            path = unit.checkpoint(root, index)
            step = None
            if path.is_file():
                try:
                    saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                    step = int(saved["step"]) if isinstance(saved, dict) else None
                except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError,
                        pickle.UnpicklingError, zipfile.BadZipFile):  # fmt: skip
                    step = None  # unreadable: the run sets it aside and starts afresh
            out[stem] = SeedState("resumes", step) if step is not None else SeedState("new")
    return out


def run(
    request: RunRequest,
    host: PluginHost | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Plan, skip finished keys, execute the rest, write every record as it arrives.

    Resume works per seed: a unit whose seeds are partly finished runs only the others. An
    executor yields, per unit, either its outcomes or the exception that lost it (a worker
    that died on every retry); the latter is recorded as a failure of each of its seeds.
    """
    from tqdm.auto import tqdm

    from vaebench.pipeline import run_unit

    host = host or default_host()
    units = plan(request, host)
    total = sum(len(u.seeds) for u in units)
    root = results.prepare_dir(request.out_dir())
    executor_spec = host.get("executor", request.executor)
    check_executor_options(executor_spec, request.executor_options)
    done = results.finished_keys(root)
    if not request.force:
        # A run killed between writing a seed's record and removing its checkpoint leaves the
        # checkpoint behind; the seed is finished, so nothing would ever resume or remove it.
        for unit in units:
            for index, (key, stem) in enumerate(zip(unit.keys, unit.stems, strict=True)):
                if done.get(key) == "ok":
                    results.remove_checkpoint(root, stem)
                    if former := unit.former_stem(index):
                        results.remove_checkpoint(root, former)
    todo = [u.only(idx) for u in units if (idx := _pending(u, done, request))]
    skipped = total - sum(len(u.seeds) for u in todo)
    records_by_key: dict[str, dict[str, Any]] = {}
    ran = failed = 0
    with results.key_locks(root, [stem for u in todo for stem in u.stems]) as held:
        # Another run may hold some keys, or have finished some between the first look and
        # the locks: keep only seeds locked here and still unfinished.
        done = results.finished_keys(root)
        _adopt_former_checkpoints(root, todo, held)
        runnable: list[Unit] = []
        busy = 0
        for unit in todo:
            mine = [i for i, stem in enumerate(unit.stems) if stem in held]
            busy += len(unit.seeds) - len(mine)
            still = _pending(unit.only(mine), done, request)
            skipped += len(mine) - len(still)
            if still:
                runnable.append(unit.only(mine).only(still))
        formers = {
            stem: former
            for unit in runnable
            for index, stem in enumerate(unit.stems)
            if (former := unit.former_stem(index))
        }
        executor = make_executor(executor_spec, request.executor_options)
        bar = tqdm(
            total=total, initial=skipped, desc=f"{request.suite} grid", disable=not request.progress
        )
        # In this process, SIGINT and SIGTERM stop a training with a checkpoint of its step.
        in_process = getattr(executor, "in_process", False)
        with interrupts.stop_on_signals() if in_process else contextlib.nullcontext():
            for unit, outcome in executor.map(runnable, run_unit):
                outcomes = (
                    _failed_outcomes(unit, outcome)
                    if isinstance(outcome, BaseException)
                    else outcome
                )
                for item in outcomes:
                    record = write_outcome(root, item, formers.get(item["record"]["stem"]))
                    records_by_key[results.result_key(record)] = record
                    ran += 1
                    failed += record["status"] != "ok"
                    if on_record:
                        on_record(record)
                bar.update(len(unit.seeds))
        bar.close()
    if busy:
        print(
            f"{busy} seed(s) are being computed by another run into {root}; they were left to it",
            file=sys.stderr,
        )
    keys = [key for u in units for key in u.keys]
    wanted = set(keys)
    loaded, _ = results.load_records([root])
    for record in cast(list[dict[str, Any]], loaded):  # Records, held as plain dicts
        key = results.result_key(record)
        if key in wanted and key not in records_by_key:
            records_by_key[key] = record
    ordered = [records_by_key[key] for key in keys if key in records_by_key]
    return RunSummary(root, ordered, ran, skipped, failed, busy, units)
