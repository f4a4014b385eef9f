"""What happens to one unit of work where it runs: build, check, train, evaluate, describe.

:func:`run_unit` takes a plain :class:`vaebench.runner.Unit` and returns plain data (records
and artifact bytes), so it runs the same in this process, a worker process or a Ray node. It
never writes a record itself: the runner does, through :mod:`vaebench.results`.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vaebench import results
from vaebench.contracts import BuildContext, DataSpec, Suite, SuiteData, as_module
from vaebench.environment import environment
from vaebench.errors import ConfigError, ContractError, VaebenchError
from vaebench.evaluate import evaluate
from vaebench.model import VAE, n_parameters
from vaebench.plugins import PluginHost, default_host
from vaebench.train import fit

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
            f"device {name!r} asked for, but this torch sees no CUDA GPU; use --device cpu"
        )
    return device


_DATA_CACHE: dict[tuple[str, str], SuiteData] = {}


def load_suite_data(suite: Suite, options: Mapping[str, Any]) -> SuiteData:
    """Load a suite's data once per process and options (a grid reuses it for every unit)."""
    cache_key = (suite.name, results.canonical_json(dict(options)))
    if cache_key not in _DATA_CACHE:
        data = suite.load(dict(options))
        if not isinstance(data, SuiteData):
            raise ContractError(
                f"suite {suite.name!r} load() must return SuiteData, got {type(data).__name__}"
            )
        _DATA_CACHE.clear()  # keep one suite's tensors, not every suite's
        _DATA_CACHE[cache_key] = data
    return _DATA_CACHE[cache_key]


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
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_unit(unit: Unit) -> list[dict[str, Any]]:
    """Train and evaluate every seed of ``unit``; one outcome dict per seed.

    Each outcome is ``{"record": ..., "artifacts": {file name: bytes}}``. A seed that fails is
    recorded as failed with its phase and traceback; the other seeds still run.
    """
    host = default_host()
    suite: Suite = host.get("suite", unit.suite)
    options = {**unit.suite_options, "data_dir": unit.data_dir}
    data = load_suite_data(suite, options)
    device = resolve_device(unit.device)
    metrics = [host.get("metric", name) for name in unit.metrics]
    return [run_seed(unit, index, host, data, device, metrics) for index in range(len(unit.seeds))]


def run_seed(
    unit: Unit,
    index: int,
    host: PluginHost,
    data: SuiteData,
    device: torch.device,
    metrics: list[Any],
) -> dict[str, Any]:
    seed, key, stem = unit.seeds[index], unit.keys[index], unit.stems[index]
    started = time.perf_counter()
    record: dict[str, Any] = {
        "schema_version": results.SCHEMA_VERSION,
        "key": key,
        "stem": stem,
        "identity": unit.identities[index],
        "suite": {
            "name": unit.suite,
            "version": unit.suite_version,
            "profile": unit.profile,
            "options": dict(unit.suite_options),
        },
        "combination": dict(unit.combination),
        "components": unit.components,
        "seed": seed,
        "budget": unit.budget_json(),
        "eval": {**unit.eval_json(), "metrics": list(unit.metrics)},
        "precision": unit.precision,
        "environment": environment(device, host.versions()),
        "data": {**data.provenance, "spec": {"dim": data.spec.dim, "levels": data.spec.levels}},
        "metrics": {},
        "error": None,
        "artifacts": {},
        "started": _now(),
    }
    artifacts: dict[str, bytes] = {}
    phase = "build"
    try:
        torch.manual_seed(seed)
        model = build_model(
            host,
            unit.combination,
            unit.component_options,
            data.spec,
            unit.latent_dim,
            unit.hidden_dim,
        ).to(device)
        model.check(data.val[:8].to(device), unit.latent_dim)
        record["n_params"] = n_parameters(model)
        phase = "train"
        checkpoint = (
            Path(unit.out_dir) / results.CHECKPOINTS / f"{stem}.pt" if unit.checkpoints else None
        )
        trained = fit(
            model,
            data,
            unit.budget,
            seed,
            device=device,
            precision=unit.precision,
            progress=unit.progress,
            description=f"{'/'.join(unit.combination.values())} s{seed}",
            checkpoint=checkpoint,
            write_bytes=results.atomic_write_bytes,
        )
        record["training"] = trained.to_json()
        phase = "evaluate"
        eval_start = time.perf_counter()
        values, per_example = evaluate(model, data, unit.eval, metrics, device, unit.latent_dim)
        record["eval"]["seconds"] = time.perf_counter() - eval_start
        bad = [name for name, v in values.items() if not math.isfinite(v.value)]
        if bad:
            raise ContractError(f"metrics {', '.join(bad)} are not finite (NaN or inf)")
        record["metrics"] = {name: v.to_json() for name, v in values.items()}
        if per_example:
            artifacts["scores.npz"] = _npz_bytes(per_example)
        record["status"] = "ok"
    except Exception as exc:
        record["status"] = "failed"
        record["error"] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "phase": phase,
            "traceback": traceback.format_exc(limit=20),
        }
        record["metrics"] = {}
    record["wall_seconds"] = time.perf_counter() - started
    record["created"] = _now()
    return {"record": record, "artifacts": artifacts}
