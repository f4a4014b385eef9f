"""From a request to records: plan the grid into keyed units, skip what is done, execute, write.

Only the runner decides what runs; only :mod:`vaebench.results` writes. A unit is plain data
(names, options, seeds, budget, keys), so an executor can ship it anywhere.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaebench import results
from vaebench.contracts import COMPONENT_KINDS, Budget, EvalSettings, Suite
from vaebench.errors import ConfigError
from vaebench.plugins import PluginHost, default_host

PRECISIONS = ("fp32", "bf16")
# Seeds per unit that ``--seed-batch auto`` trains together on a GPU: 128 copies of the MNIST
# MLP VAE (0.55M parameters each) fit a GPU's memory many times over.
AUTO_GPU_SEED_BATCH = 128
# ... and on a CPU in this process (see benchmarks/README.md). With a parallel executor on a
# CPU, ``auto`` keeps one seed per unit: batching gains little there, and more units spread
# better over the workers (the digits default grid, --jobs 2 on 2 cores: 79 s with one seed per
# unit against 108 s with two; benchmarks/README.md).
AUTO_CPU_SEED_BATCH = 16


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
        return " / ".join(self.combination[kind] for kind in COMPONENT_KINDS)

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
            "components": self.components,
            "seed": self.seeds[index],
            "budget": dataclasses.asdict(self.budget),
            "eval": {**dataclasses.asdict(self.eval), "metrics": list(self.metrics)},
            "precision": self.precision,
        }


@dataclass
class RunRequest:
    """Everything ``vaebench run`` can be asked; ``None`` means "the suite's default"."""

    suite: str = "digits"
    profile: str = "default"
    encoders: Sequence[str] | None = None
    decoders: Sequence[str] | None = None
    priors: Sequence[str] | None = None
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
        raise ConfigError("give either --steps or --epochs, not both")
    if request.steps is not None:
        changes.update(steps=request.steps, epochs=None)
    if request.epochs is not None:
        changes.update(epochs=request.epochs, steps=None)
    return dataclasses.replace(profile_budget, **changes)


def resolve_eval(profile_eval: EvalSettings, request: RunRequest) -> EvalSettings:
    changes = {n: getattr(request, n) for n in ("k", "k_ood") if getattr(request, n) is not None}
    return dataclasses.replace(profile_eval, **changes)


def resolve_grid(
    host: PluginHost, suite: Suite, request: RunRequest, spec: Any
) -> dict[str, list[str]]:
    """Component names per kind: the request's, else the suite's grid, else every registered
    component that fits the data (from the plugins the suite's grid names, if it names any)."""
    grid: dict[str, list[str]] = {}
    for kind, asked, default in (
        ("encoder", request.encoders, suite.grid.encoders),
        ("decoder", request.decoders, suite.grid.decoders),
        ("prior", request.priors, suite.grid.priors),
    ):
        registry = host.registry(kind)
        if asked:
            names = list(dict.fromkeys(asked))
            for name in names:
                component = registry.get(name)
                if not component.fits(spec):
                    raise ConfigError(
                        f"{kind} {name!r} does not fit suite {suite.name!r} (data of dimension "
                        f"{spec.dim} with {spec.levels} levels); run `vaebench list {kind}s`"
                    )
        elif default is not None:
            names = [n for n in default if n in registry]
        else:
            plugins = suite.grid.plugins
            names = [
                entry.obj.name
                for entry in registry
                if entry.obj.fits(spec) and (plugins is None or entry.plugin in plugins)
            ]
        if not names:
            raise ConfigError(
                f"no {kind} fits suite {suite.name!r}; install a plugin that provides one"
            )
        grid[kind] = names
    return grid


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
    """Everything that determines a result; its hash is the result's key."""
    return {
        "suite": {"name": suite.name, "version": suite.version, "options": dict(suite_options)},
        "components": {kind: dict(c) for kind, c in components.items()},
        "latent_dim": latent_dim,
        "hidden_dim": hidden_dim,
        "budget": dataclasses.asdict(budget),
        "eval": dataclasses.asdict(eval_settings),
        "metrics": list(metrics),
        "precision": precision,
        "seed": seed,
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
    unknown = set(request.suite_options) - set(suite.options)
    if unknown:
        raise ConfigError(
            f"suite {suite.name!r} has no option {', '.join(sorted(unknown))}; "
            f"its options: {', '.join(sorted(suite.options)) or '(none)'}"
        )
    suite_options = {**suite.options, **request.suite_options}
    data = load_suite_data(suite, {**suite_options, "data_dir": request.data_dir})
    grid = resolve_grid(host, suite, request, data.spec)
    metrics = tuple(request.metrics or suite.metrics)
    for name in metrics:
        host.get("metric", name)
    seeds = tuple(request.seeds if request.seeds is not None else suite.seeds)
    if not seeds:
        raise ConfigError("no seeds to run; give --seeds 0 1 ...")
    latent_dim = request.latent_dim or suite.latent_dim
    if latent_dim <= 0:
        raise ConfigError(f"latent size must be positive, got {latent_dim}")
    out_dir = str(request.out_dir())
    parallel = request.executor != "local"
    seed_batch = resolve_seed_batch(request.seed_batch, request.device, len(seeds), parallel)
    units: list[Unit] = []
    for enc, dec, pri in itertools.product(grid["encoder"], grid["decoder"], grid["prior"]):
        combination = {"encoder": enc, "decoder": dec, "prior": pri}
        components: dict[str, dict[str, Any]] = {}
        for kind, name in combination.items():
            entry = host.entry(kind, name)
            options = {**entry.obj.options, **request.component_options.get(kind, {})}
            components[kind] = {
                "name": name,
                "plugin": entry.plugin,
                "version": entry.version,
                "options": options,
            }
        identities = tuple(
            identity(
                suite,
                request.profile,
                suite_options,
                components,
                latent_dim,
                suite.hidden_dim,
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
                    hidden_dim=suite.hidden_dim,
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
                )
            )
    return units


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


def write_outcome(root: Path, outcome: Mapping[str, Any]) -> dict[str, Any]:
    """Artifacts first, then the record (the record is what marks a key done)."""
    record = dict(outcome["record"])
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
    return record


def _pending(unit: Unit, done: Mapping[str, str], request: RunRequest) -> list[int]:
    """Indices of the seeds of ``unit`` still to compute."""
    out = []
    for i, key in enumerate(unit.keys):
        status = done.get(key)
        finished = status == "ok" or (status == "failed" and not request.retry_failed)
        if request.force or not finished:
            out.append(i)
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
    done = results.finished_keys(root)
    todo = [u.only(idx) for u in units if (idx := _pending(u, done, request))]
    skipped = total - sum(len(u.seeds) for u in todo)
    records_by_key: dict[str, dict[str, Any]] = {}
    ran = failed = 0
    with results.key_locks(root, [stem for u in todo for stem in u.stems]) as held:
        # Another run may hold some keys, or have finished some between the first look and
        # the locks: keep only seeds locked here and still unfinished.
        done = results.finished_keys(root)
        runnable: list[Unit] = []
        busy = 0
        for unit in todo:
            mine = [i for i, stem in enumerate(unit.stems) if stem in held]
            busy += len(unit.seeds) - len(mine)
            still = _pending(unit.only(mine), done, request)
            skipped += len(mine) - len(still)
            if still:
                runnable.append(unit.only(mine).only(still))
        executor = executor_spec.factory(**dict(request.executor_options))
        bar = tqdm(
            total=total, initial=skipped, desc=f"{request.suite} grid", disable=not request.progress
        )
        for unit, outcome in executor.map(runnable, run_unit):
            outcomes = (
                _failed_outcomes(unit, outcome) if isinstance(outcome, BaseException) else outcome
            )
            for item in outcomes:
                record = write_outcome(root, item)
                records_by_key[record["key"]] = record
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
    for record in loaded:
        if record["key"] in wanted and record["key"] not in records_by_key:
            records_by_key[record["key"]] = record
    ordered = [records_by_key[key] for key in keys if key in records_by_key]
    return RunSummary(root, ordered, ran, skipped, failed, busy, units)
