"""Reading results back: records from results directories, record files and per-seed CSVs.

The per-seed CSV written by ``vaebench export --per-seed`` (:func:`write_per_seed_csv`) holds
every field a table needs, so leaderboards can be rebuilt from exported files; each row is read
back through the same validation as a record file (:func:`vaebench.results.validate_record`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from vaebench.errors import ConfigError, VaebenchError
from vaebench.results import LEGACY_SEEDING, LoadProblem, Record, load_records, validate_record
from vaebench.tables.frames import STDERR_SUFFIX, records_frame
from vaebench.tables.render import to_csv

CSV_REQUIRED = ("key", "suite", "version", "profile", "encoder", "decoder", "prior", "seed",
                "status", "budget_json", "eval_json", "metric_meta")  # fmt: skip


def _number(text: str, kind: type = float) -> Any:
    return None if text == "" else kind(float(text))


def _record_from_row(row: Mapping[str, str], label: str) -> Record:
    if row["status"] not in ("ok", "failed"):
        raise ValueError(f"status {row['status']!r} is not 'ok' or 'failed'")
    if not row["key"]:
        raise ValueError("empty key")
    metrics = {}
    for name, meta in json.loads(row["metric_meta"]).items():
        if name not in row:
            raise ValueError(f"metric {name!r} has no column")
        metric = {
            "value": math.nan if row[name] == "" else float(row[name]),
            "unit": meta.get("unit", ""),
            "higher_is_better": meta.get("higher_is_better"),
        }
        if row.get(name + STDERR_SUFFIX, ""):
            metric["stderr"] = float(row[name + STDERR_SUFFIX])
        metrics[name] = metric
    error = row.get("error", "")
    seeding = row.get("seeding") or LEGACY_SEEDING
    # A row exported before objectives (or from a schema-1 record) reads as schema 1.
    schema = 1 if seeding == LEGACY_SEEDING else 2
    combination = {k: row[k] for k in ("encoder", "decoder", "prior")}
    record: dict[str, Any] = {
        "schema_version": schema,
        "key": row["key"],
        "status": row["status"],
        "error": {"type": None, "message": error} if error else None,
        "suite": {
            "name": row["suite"],
            "version": row["version"],
            "profile": row["profile"],
            "options": json.loads(row.get("options_json") or "{}"),  # older exports lack it
        },
        "combination": combination,
        "components": json.loads(row.get("components_json") or "{}"),
        "seed": int(row["seed"]),
        "budget": json.loads(row["budget_json"]),
        "eval": json.loads(row["eval_json"]),
        "training": {
            "steps_done": _number(row.get("steps_done", ""), int),
            "seconds": _number(row.get("train_seconds", "")),
        },
        "n_params": _number(row.get("n_params", ""), int),
        "metrics": metrics,
    }
    if schema == 2:
        combination["objective"] = row.get("objective", "")
        record["seeding"] = seeding
    checked = validate_record(record)
    checked["_path"] = label
    return checked


def read_csv_records(path: Path, strict: bool = False) -> tuple[list[Record], list[LoadProblem]]:
    """Records from a per-seed CSV written by ``vaebench export --per-seed``.

    A bad row is reported as a :class:`LoadProblem` and skipped, or raises under ``strict``.
    """
    try:
        # Strings throughout: "1" stays a version, not an integer.
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read CSV {str(path)!r}: {exc}") from exc
    missing = [c for c in CSV_REQUIRED if c not in table.columns]
    if missing:
        raise ConfigError(
            f"{str(path)!r} is not a per-seed CSV from `vaebench export --per-seed` "
            f"(missing columns: {', '.join(missing)})"
        )
    records, problems = [], []
    for number, row in enumerate(table.to_dict("records"), start=1):
        try:
            records.append(_record_from_row(row, f"{path} (row {number})"))
        except (ValueError, TypeError, AttributeError) as exc:
            problem = LoadProblem(path, f"row {number}: {exc}")
            if strict:
                raise VaebenchError(
                    f"bad record {problem} (run without --strict to skip it)"
                ) from exc
            problems.append(problem)
    return records, problems


def load_results(
    paths: Iterable[str | Path], strict: bool = False
) -> tuple[list[Record], list[LoadProblem]]:
    """Records from results directories, record files and per-seed CSV files.

    Raises :class:`ConfigError` for a path that is missing or holds no records at all.
    """
    records: list[Record] = []
    problems: list[LoadProblem] = []
    for given in paths:
        path = Path(given)
        if path.suffix.lower() == ".csv" and path.is_file():
            found, bad = read_csv_records(path, strict)
        else:
            found, bad = load_records([path], strict=strict)
        if not found and not bad:
            raise ConfigError(
                f"no result records in {str(path)!r} (expected {path / 'records'}/*.json, "
                "a results root holding such directories, or a CSV from `export --per-seed`)"
            )
        records += found
        problems += bad
    return records, problems


def write_per_seed_csv(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write the per-seed CSV that ``vaebench leaderboard`` and ``compare`` can read back."""
    path = Path(path)
    try:
        path.write_text(to_csv(records_frame(records)), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {str(path)!r}: {exc}") from exc
    return path
