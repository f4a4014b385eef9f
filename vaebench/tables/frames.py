"""Records as pandas frames: one row per record, then aggregates over seeds.

Rows are told apart by their comparability group and combination label (which names the
objective from schema 2 on); the ``seeding`` column keeps each record's random-stream scheme.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from vaebench.errors import VaebenchError
from vaebench.results import LEGACY_OBJECTIVE, canonical_json, neutral_budget, result_key
from vaebench.tables.groups import (
    BUDGET_ORDER,
    eval_identity,
    group_id,
    record_label,
    seeding,
    settings_summary,
    suite_options,
    text,
)
from vaebench.tables.info import check_metrics, metric_names

STDERR_SUFFIX = ":stderr"
ID_COLUMNS = (
    "key", "suite", "version", "profile", "group", "budget", "encoder", "decoder", "prior",
    "objective", "seeding", "combination", "seed", "status", "error", "n_params", "steps_done",
    "train_seconds", "budget_json", "eval_json", "options_json", "components_json", "metric_meta",
    "path",
)  # fmt: skip
GROUP_COLUMNS = [
    "group", "suite", "version", "profile", "budget", "budget_json", "eval_json", "options_json",
    "seeding", "combination", "encoder", "decoder", "prior", "objective",
]  # fmt: skip


def _error_text(error: Any) -> str:
    if not isinstance(error, Mapping):
        return text(error)
    kind, message = error.get("type"), text(error.get("message"))
    return f"{kind}: {message}" if kind else message


def _label_components(record: Mapping[str, Any]) -> dict[str, Any]:
    components = record.get("components") or {}
    return {
        kind: {"options": c.get("options") or {}, "defaults": c["defaults"]}
        for kind, c in components.items()
        if isinstance(c, Mapping) and c.get("defaults") is not None
    }


def _identity_row(record: Mapping[str, Any]) -> dict[str, Any]:
    suite = record.get("suite") or {}
    combo = record["combination"]
    training = record.get("training") or {}
    budget = neutral_budget(record.get("budget") or {})  # as its table group sees it
    meta = {
        name: {"unit": m.get("unit", ""), "higher_is_better": m.get("higher_is_better")}
        for name, m in record["metrics"].items()
    }
    return {
        "key": record["key"],
        "suite": text(suite.get("name")),
        "version": text(suite.get("version")),
        "profile": text(suite.get("profile")),
        "group": group_id(record),
        "budget": settings_summary(budget, BUDGET_ORDER),
        "encoder": combo["encoder"],
        "decoder": combo["decoder"],
        "prior": combo["prior"],
        "objective": combo.get("objective") or LEGACY_OBJECTIVE,
        "seeding": seeding(record),
        "combination": record_label(record),
        "seed": int(record["seed"]),
        "status": record["status"],
        "error": _error_text(record.get("error")),
        "n_params": record.get("n_params"),
        "steps_done": training.get("steps_done"),
        "train_seconds": training.get("seconds"),
        "budget_json": canonical_json(budget),
        "eval_json": canonical_json(eval_identity(record)),
        "options_json": canonical_json(suite_options(record)),
        # What the label's option suffixes come from, so a CSV reads back to the same labels.
        "components_json": canonical_json(_label_components(record)),
        "metric_meta": canonical_json(meta),
        "path": text(record.get("_path")),
    }


def records_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per record: identity, group, status, cost, and one column per metric value.

    A metric that carries a standard error in some record also gets a ``<metric>:stderr``
    column. ``metric_meta`` keeps each metric's unit and direction so the frame, written as
    CSV, can be read back into records (:func:`read_csv_records`).
    """
    records = list(records)
    names = metric_names(records)
    with_stderr = {
        name
        for r in records
        for name, m in r["metrics"].items()
        if isinstance(m.get("stderr"), int | float)
    }
    metric_columns: list[str] = []
    for name in names:
        metric_columns += [name, name + STDERR_SUFFIX] if name in with_stderr else [name]
    clash = sorted(set(metric_columns) & set(ID_COLUMNS))
    if clash:
        raise VaebenchError(f"metric names {clash} clash with table columns; rename the metrics")
    rows = []
    for record in records:
        row = _identity_row(record)
        for name, m in record["metrics"].items():
            row[name] = float(m["value"])
            if name in with_stderr and isinstance(m.get("stderr"), int | float):
                row[name + STDERR_SUFFIX] = float(m["stderr"])
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*ID_COLUMNS, *metric_columns])
    for column in ("n_params", "steps_done", "train_seconds", *metric_columns):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame.sort_values(["suite", "group", "combination", "seed"], ignore_index=True)


def _metric_numbers(record: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    # repr makes NaN equal to NaN, so a re-read NaN is not mistaken for a conflict.
    return record["status"], {k: repr(float(m["value"])) for k, m in record["metrics"].items()}


_R = TypeVar("_R", bound=Mapping[str, Any])


def merge_records(records: Iterable[_R]) -> tuple[list[_R], list[str]]:
    """Drop repeated keys (:func:`vaebench.results.result_key`, so a record written before
    ``checkpoint_every`` left the key is the same result as one written after): identical
    copies silently, differing ones reported as conflicts.

    The first record of a key is kept; each later copy whose status or metric values differ
    yields one message naming both files.
    """
    kept: dict[str, _R] = {}
    conflicts: list[str] = []
    for record in records:
        first = kept.setdefault(result_key(record), record)
        if first is record or _metric_numbers(first) == _metric_numbers(record):
            continue
        old, new = _metric_numbers(first)[1], _metric_numbers(record)[1]
        differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        what = f"metrics {', '.join(differ)}" if differ else "status"
        conflicts.append(
            f"conflict: key {record['key'][:12]} ({record_label(record)}, "
            f"seed {record['seed']}) has different {what} in {first.get('_path')} and "
            f"{record.get('_path')}; kept the first"
        )
    return list(kept.values()), conflicts


def _mean(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else math.nan


def aggregate(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per comparability group and combination: seeds, failures, cost, and per metric
    ``:mean``, ``:std`` (ddof=1, NaN for one seed), ``:n`` and ``:se``.

    Only successful runs enter means; failed runs are counted in ``n_failed``. ``:se`` is
    std/sqrt(n), or for a single seed the record's own ``stderr`` when it has one.
    """
    check_metrics(
        metrics, [c for c in frame.columns if c not in ID_COLUMNS and not c.endswith(STDERR_SUFFIX)]
    )
    out = []
    for keys, part in frame.groupby(GROUP_COLUMNS, sort=True, dropna=False):
        ok = part[part["status"] == "ok"]
        row: dict[str, Any] = dict(zip(GROUP_COLUMNS, keys, strict=True))
        row.update(
            n_seeds=len(ok),
            n_failed=len(part) - len(ok),
            params=_mean(ok["n_params"]),
            train_seconds=_mean(ok["train_seconds"]),
        )
        for name in metrics:
            present = ok[name].notna()
            values = ok.loc[present, name].to_numpy(dtype=float)
            n = len(values)
            std = float(np.std(values, ddof=1)) if n >= 2 else math.nan
            if n >= 2:
                se = std / math.sqrt(n)
            elif n == 1 and name + STDERR_SUFFIX in ok:
                se = float(ok.loc[present, name + STDERR_SUFFIX].iloc[0])
            else:
                se = math.nan
            row[f"{name}:mean"] = float(values.mean()) if n else math.nan
            row[f"{name}:std"] = std
            row[f"{name}:n"] = n
            row[f"{name}:se"] = se
        out.append(row)
    stats = [f"{m}:{s}" for m in metrics for s in ("mean", "std", "n", "se")]
    columns = [*GROUP_COLUMNS, "n_seeds", "n_failed", "params", "train_seconds", *stats]
    return pd.DataFrame(out, columns=columns)
