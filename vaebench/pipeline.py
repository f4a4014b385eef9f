"""What happens to one unit of work where it runs: build, check, train, evaluate, describe.

:func:`run_unit` takes a plain :class:`vaebench.runner.Unit` and returns plain data (records
and artifact bytes), so it runs the same in this process, a worker process or a Ray node. It
never writes a record itself: the runner does, through :mod:`vaebench.results`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import io
import math
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vaebench import results, streams
from vaebench.batched import NotVectorizable, fit_batched
from vaebench.contracts import BuildContext, DataSpec, Progress, Suite, SuiteData, as_module
from vaebench.environment import environment, keep_freed_memory
from vaebench.errors import ConfigError, ContractError, VaebenchError
from vaebench.evaluate import evaluate
from vaebench.images import model_image_artifacts
from vaebench.model import DECODE_ROWS, VAE, n_parameters
from vaebench.plugins import PluginHost, dataset_loader, default_host
from vaebench.train import TrainResult, fit

if TYPE_CHECKING:
    from vaebench.runner import Unit


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked for, but this torch sees no CUDA GPU; use device cpu"
        )
    return device


_DATA_CACHE: dict[tuple[str, str], SuiteData] = {}


def _takes_datasets(load: Any) -> bool:
    try:
        params = inspect.signature(load).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def load_suite_data(
    suite: Suite, options: Mapping[str, Any], host: PluginHost | None = None
) -> SuiteData:
    """Load a suite's data once per process and options (a grid reuses it for every unit). A
    loader that takes a second argument receives the datasets of ``host`` through it
    (:func:`vaebench.plugins.dataset_loader`)."""
    cache_key = (suite.name, results.canonical_json(dict(options)))
    if cache_key not in _DATA_CACHE:
        try:
            if _takes_datasets(suite.load):
                data = suite.load(dict(options), dataset_loader(host))
            else:
                data = suite.load(dict(options))
        except VaebenchError:
            raise
        except Exception as exc:  # a loader's own failure, as one line naming suite and options
            given = {k: v for k, v in options.items() if v is not None}
            raise ConfigError(
                f"suite {suite.name!r} could not load its data with options {given}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(data, SuiteData):
            raise ContractError(
                f"suite {suite.name!r} load() must return SuiteData, got {type(data).__name__}"
            )
        _DATA_CACHE.clear()  # keep one suite's tensors, not every suite's
        _DATA_CACHE[cache_key] = data
    return _DATA_CACHE[cache_key]


def build_unit_model(host: PluginHost, unit: Unit, spec: DataSpec) -> VAE:
    """The VAE of a planned ``unit``: its combination, each part's options and its sizes (on
    the CPU, initialised from torch's current random state)."""
    return build_model(
        host,
        unit.combination,
        {kind: c["options"] for kind, c in unit.components.items()},
        spec,
        unit.latent_dim,
        unit.hidden_dim,
    )


def build_model(
    host: PluginHost,
    combination: Mapping[str, str],
    component_options: Mapping[str, Mapping[str, Any]],
    spec: DataSpec,
    latent_dim: int,
    hidden_dim: int,
) -> VAE:
    """Build encoder, decoder and prior (the prior sees the encoder) into one VAE."""
    modules: dict[str, Any] = {}
    for kind in ("encoder", "decoder", "prior"):
        name = combination[kind]
        component = host.get(kind, name)
        options = {**component.options, **component_options.get(kind, {})}
        ctx = BuildContext(spec, latent_dim, hidden_dim, options, modules.get("encoder"))
        who = f"{kind} {name!r}"
        try:
            built = component.factory(ctx)
        except VaebenchError:
            raise
        except Exception as exc:
            raise ContractError(f"{who} could not be built: {type(exc).__name__}: {exc}") from exc
        modules[kind] = as_module(built, who)
    return VAE(modules["encoder"], modules["decoder"], modules["prior"], dict(combination))


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    named: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}  # not allow_pickle
    np.savez_compressed(buffer, **named)
    return buffer.getvalue()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def data_on(data: SuiteData, device: torch.device) -> SuiteData:
    """The suite's tensors on ``device``, moved once per process and device (every seed and
    every unit of a grid then reads the same copy)."""
    if device.type == "cpu":
        return data
    key = (id(data), str(device))
    if key not in _DEVICE_DATA:
        _DEVICE_DATA.clear()
        _DEVICE_DATA[key] = dataclasses.replace(
            data,
            train=data.train.to(device),
            val=data.val.to(device),
            test=data.test.to(device),
            ood={name: x.to(device) for name, x in data.ood.items()},
        )
    return _DEVICE_DATA[key]


_DEVICE_DATA: dict[tuple[int, str], SuiteData] = {}


def vectorize_blocker(unit: Unit, host: PluginHost) -> str | None:
    """Why the seeds of ``unit`` cannot train as one vectorised model, or None if they can."""
    if len(unit.seeds) < 2:
        return "one seed in this unit (seed batch 1)"
    for kind in ("encoder", "decoder", "prior"):
        name = unit.combination[kind]
        if not host.get(kind, name).vectorizable:
            return f"{kind} {name!r} is marked not vectorizable by its plugin"
    return None


def build_objective(host: PluginHost, unit: Unit) -> Any:
    """The unit's objective object, built from its registered spec and options."""
    spec = host.get("objective", unit.combination["objective"])
    options = unit.components["objective"]["options"]
    try:
        return spec.factory(dict(options))
    except VaebenchError:
        raise
    except Exception as exc:
        raise ContractError(
            f"objective {spec.name!r} could not be built: {type(exc).__name__}: {exc}"
        ) from exc


def run_unit(unit: Unit, host: PluginHost | None = None) -> list[dict[str, Any]]:
    """Train and evaluate every seed of ``unit``; one outcome dict per seed.

    Each outcome is ``{"record": ..., "artifacts": {file name: bytes}}``. The unit's seeds train
    as one vectorised model (:mod:`vaebench.batched`) when they can, else one at a time; the
    record's ``training`` says which and why. A seed that fails is recorded as failed with its
    phase and traceback; the other seeds still run. ``host`` is the plugin host that resolves
    the unit's names (default: the process-wide one).
    """
    started = time.perf_counter()
    keep_freed_memory()
    host = host or default_host()
    suite: Suite = host.get("suite", unit.suite)
    options = {**unit.suite_options, "data_dir": unit.data_dir}
    device = resolve_device(unit.device)
    data = data_on(load_suite_data(suite, options, host), device)
    metrics = [host.get("metric", name) for name in unit.metrics]
    objective = build_objective(host, unit)
    runs = [_SeedRun(unit, i, host, data, device, objective) for i in range(len(unit.seeds))]
    for run in runs:
        run.attempt("build", run.build)
    built = [run for run in runs if run.model is not None]
    reason = vectorize_blocker(unit, host) if len(built) > 1 else "one seed to train"
    if reason is None:
        try:
            trained = fit_batched(
                [run.model for run in built if run.model is not None],  # all of built
                data,
                unit.budget,
                [run.seed for run in built],
                objective=objective,
                device=device,
                precision=unit.precision,
                progress=unit.progress,
                description=f"{unit.label} x{len(built)} seeds",
                checkpoint=built[0].checkpoint,
                write_bytes=results.atomic_write_bytes,
            )
        except NotVectorizable as exc:
            reason = str(exc)
            for run in built:  # back to each seed's own initialisation
                run.attempt("build", run.build)
        except Exception as exc:  # the batch as a whole failed: so did each of its seeds
            for run in built:
                run.fail(exc, "train")
        else:
            for run, result in zip(built, trained, strict=True):
                run.trained = result
    for run in built:
        if reason is not None:
            run.attempt("train", run.train)
        elif isinstance(run.trained, Exception):
            run.fail(run.trained, "train")
        if run.record["status"] != "failed":
            assert isinstance(run.trained, TrainResult)  # trained, as it did not fail
            run.record["training"] = {
                **run.trained.to_json(),
                "seed_batch": 1 if reason else len(built),
                "vectorized": reason is None,
                "vectorize_reason": reason,
            }
            run.attempt("evaluate", lambda r=run: r.evaluate(metrics))
    shared = (time.perf_counter() - started) / len(runs)
    return [run.outcome(shared) for run in runs]


class _SeedRun:
    """One seed of a unit: its record as it fills, its model, its artifacts."""

    def __init__(
        self,
        unit: Unit,
        index: int,
        host: PluginHost,
        data: SuiteData,
        device: torch.device,
        objective: Any,
    ) -> None:
        self.unit, self.host, self.data, self.device = unit, host, data, device
        self.objective = objective
        self.seed, stem = unit.seeds[index], unit.stems[index]
        self.model: VAE | None = None
        self.trained: TrainResult | Exception | None = None
        self.artifacts: dict[str, bytes] = {}
        self.checkpoint = (
            Path(unit.out_dir) / results.CHECKPOINTS / f"{stem}.pt" if unit.checkpoints else None
        )
        self.record: dict[str, Any] = {
            **unit.record_head(index),
            "environment": environment(device, host.versions()),
            "data": {**data.provenance, "spec": {"dim": data.spec.dim, "levels": data.spec.levels}},
            "metrics": {},
            "error": None,
            "artifacts": {},
            "started": _now(),
            "status": "running",
        }

    def attempt(self, phase: str, step: Any) -> None:
        if self.record["status"] == "failed":
            return
        try:
            step()
        except Exception as exc:
            self.fail(exc, phase)

    def fail(self, exc: BaseException, phase: str) -> None:
        self.record["status"] = "failed"
        self.record["error"] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "phase": phase,
            "traceback": "".join(traceback.format_exception(exc, limit=20)),
        }
        self.record["metrics"] = {}

    def build(self) -> None:
        unit = self.unit
        torch.manual_seed(streams.derive(self.seed, streams.INIT))
        model = build_unit_model(self.host, unit, self.data.spec).to(self.device)
        model.check(self.data.val[:8], unit.latent_dim)
        self.record["n_params"] = n_parameters(model)
        self.model = model

    def train(self) -> None:
        assert self.model is not None
        self.trained = fit(
            self.model,
            self.data,
            self.unit.budget,
            self.seed,
            objective=self.objective,
            device=self.device,
            precision=self.unit.precision,
            progress=self.unit.progress,
            description=f"{self.unit.label} s{self.seed}",
            checkpoint=self.checkpoint,
            write_bytes=results.atomic_write_bytes,
        )

    def evaluate(self, metrics: list[Any]) -> None:
        assert self.model is not None
        unit = self.unit
        eval_start = time.perf_counter()
        values, per_example = evaluate(
            self.model, self.data, unit.eval, metrics, self.device, unit.latent_dim
        )
        self.record["eval"]["seconds"] = time.perf_counter() - eval_start
        bad = [name for name, v in values.items() if not math.isfinite(v.value)]
        if bad:
            raise ContractError(f"metrics {', '.join(bad)} are not finite (NaN or inf)")
        self.record["metrics"] = {name: v.to_json() for name, v in values.items()}
        if per_example:
            self.artifacts["scores.npz"] = _npz_bytes(per_example)
        try:
            self.artifacts.update(model_image_artifacts(self.model, self.data))
        except VaebenchError as exc:  # a picture is not a number: note it, keep the metrics
            self.record["artifact_errors"] = {"images": str(exc)}
        self.record["status"] = "ok"

    def outcome(self, shared_seconds: float) -> dict[str, Any]:
        """The finished record; ``wall_seconds`` is this seed's share of the unit's time."""
        self.record["wall_seconds"] = shared_seconds
        self.record["created"] = _now()
        return {"record": self.record, "artifacts": self.artifacts}


@dataclass(frozen=True)
class Estimate:
    """Measured per-step and per-chunk costs of one unit's model, and what they add up to."""

    step_seconds: float
    train_seconds: float
    eval_seconds: float
    steps_per_seed: int


def estimate_unit(unit: Unit, host: PluginHost | None = None, steps: int = 3) -> Estimate:
    """Time a few training steps and one evaluation chunk of ``unit``'s model (seed 0's
    initialisation, the unit's objective and batch size) and scale them to the budget: training
    at most ``total_steps`` steps per seed, evaluation ``k`` samples per test point and
    ``k_ood`` per OOD point (the other metrics add about half again). Early stopping and
    vectorised seeds make the real time shorter; the measured step is on this machine, now."""
    host = host or default_host()
    suite: Suite = host.get("suite", unit.suite)
    device = resolve_device(unit.device)
    options = {**unit.suite_options, "data_dir": unit.data_dir}
    data = data_on(load_suite_data(suite, options, host), device)
    objective = build_objective(host, unit)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_unit_model(host, unit, data.spec).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=unit.budget.lr)
    batch = data.train[: min(unit.budget.batch_size, data.train.shape[0])]
    if data.train_transform is not None:
        batch = data.train_transform(batch, torch.Generator(device=device).manual_seed(0))
    progress = Progress(0, unit.budget.steps_per_epoch(data.train.shape[0]))

    def step() -> None:
        loss = objective.loss(model.log_weights(batch, objective.samples), progress)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # first call: allocations and lazy initialisation
    started = time.perf_counter()
    for _ in range(steps):
        step()
    step_seconds = (time.perf_counter() - started) / steps
    model.eval()
    # One call of the shape evaluation makes (many samples of few points), up to 8192 rows:
    # a per-call cost such as the VampPrior's pseudo-inputs is then shared as it is there.
    k_chunk = min(unit.eval.k, 8 * DECODE_ROWS)
    x = data.test[: max(1, 8 * DECODE_ROWS // k_chunk)]
    with torch.no_grad():
        model.log_weights(x[:1], 1)
        started = time.perf_counter()
        model.log_weights(x, k_chunk)
        seconds_per_row = (time.perf_counter() - started) / (k_chunk * x.shape[0])
    n_ood = sum(int(v.shape[0]) for v in data.ood.values())
    eval_rows = unit.eval.k * data.test.shape[0] + unit.eval.k_ood * n_ood
    total_steps = unit.budget.total_steps(data.train.shape[0])
    return Estimate(
        step_seconds=step_seconds,
        train_seconds=step_seconds * total_steps * len(unit.seeds),
        eval_seconds=1.5 * seconds_per_row * eval_rows * len(unit.seeds),
        steps_per_seed=total_steps,
    )
