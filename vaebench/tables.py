"""One table model for every output: per-seed rows, aggregates over seeds, leaderboards.

::

    records ─ merge_records ─ records_frame ─ aggregate ─ leaderboard ─> [Leaderboard]
                                   │                                          │
                          export --per-seed               to_markdown / to_latex / to_html
                                                          to_csv / to_json

Only records of one *comparability group* share a table: same suite name, version and profile,
same budget and same evaluation settings (the eval block less its timing). A group is named by
the first 8 hex digits of the hash of those fields. When one suite has several groups, each gets
its own table with a note saying which fields differ.

A cell shows mean ± std over seeds (ddof=1). Failed runs are counted, never averaged. In each
column with a direction (a metric's ``higher_is_better``) the best mean is marked, and every row
is tested against it with Welch's t-test (one-sided, alpha 0.05) over per-seed values: rows whose
p-value is at least alpha are "not significantly worse" (†). A row or a best with fewer than two
seeds cannot be tested; the table's footnote lists them.

The per-seed CSV written by ``vaebench export --per-seed`` can be read back
(:func:`load_results`), so leaderboards can be rebuilt from exported files.
"""

from __future__ import annotations

import difflib
import hashlib
import html
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from vaebench.errors import ConfigError, VaebenchError
from vaebench.results import SCHEMA_VERSION, LoadProblem, canonical_json, load_records

ALPHA = 0.05
DEFAULT_DECIMALS = 2
DEFAULT_METRICS = ("neg_elbo", "iw_nll")
# IW-NLL is the tighter bound on -log p(x), so it ranks when shown.
PREFERRED_RANK = "iw_nll"
STDERR_SUFFIX = ":stderr"
FORMATS = ("md", "latex", "csv", "json", "html")
SUFFIX_FORMATS = {".md": "md", ".tex": "latex", ".csv": "csv", ".json": "json", ".html": "html"}

# Cell marks: the best mean of a column, or the verdict of the test against it.
BEST, NOT_WORSE, WORSE, UNTESTED = "best", "not worse", "worse", "untested"

ID_COLUMNS = (
    "key", "suite", "version", "profile", "group", "budget", "encoder", "decoder", "prior",
    "combination", "seed", "status", "error", "n_params", "steps_done", "train_seconds",
    "budget_json", "eval_json", "metric_meta", "path",
)  # fmt: skip
GROUP_COLUMNS = [
    "group", "suite", "version", "profile", "budget", "budget_json", "eval_json",
    "combination", "encoder", "decoder", "prior",
]  # fmt: skip
BUDGET_ORDER = ("steps", "epochs", "max_seconds", "batch_size", "lr")
EVAL_ORDER = ("k", "k_ood", "seed", "max_elements", "metrics")


# ---------------------------------------------------------------- metrics and groups


@dataclass(frozen=True)
class MetricInfo:
    """What the records say about a metric: its unit and which direction is better."""

    name: str
    unit: str = ""
    higher_is_better: bool | None = None

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓", None: ""}[self.higher_is_better]

    @property
    def header(self) -> str:
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.name}{unit} {self.arrow}".rstrip()


def metric_info(records: Iterable[Mapping[str, Any]]) -> dict[str, MetricInfo]:
    """Unit and direction of every metric in the records, by name (sorted)."""
    units: dict[str, str] = {}
    directions: dict[str, bool | None] = {}
    for record in records:
        for name, metric in record.get("metrics", {}).items():
            if not units.get(name):
                units[name] = str(metric.get("unit") or "")
            if directions.get(name) is None:
                directions[name] = metric.get("higher_is_better")
    return {n: MetricInfo(n, units[n], directions[n]) for n in sorted(units)}


def metric_names(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every metric name found in the records, sorted."""
    return list(metric_info(records))


def default_metrics(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """neg_elbo and iw_nll where present, else every metric the records hold."""
    names = metric_names(records)
    if not names:
        raise ConfigError("the records hold no metrics (did every run fail?)")
    return [m for m in DEFAULT_METRICS if m in names] or names


def check_metrics(wanted: Iterable[str], known: Iterable[str]) -> None:
    """Raise a one-line error naming unknown metrics and listing those that exist."""
    known = sorted(known)
    unknown = [m for m in wanted if m not in known]
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"unknown metric {', '.join(map(repr, unknown))}{hint}; "
        f"the records have: {', '.join(known) or 'none'}"
    )


def combination_label(combination: Mapping[str, str]) -> str:
    return f"{combination['encoder']} / {combination['decoder']} / {combination['prior']}"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _eval_identity(record: Mapping[str, Any]) -> dict[str, Any]:
    # How long evaluation took says nothing about what was measured.
    return {k: v for k, v in (record.get("eval") or {}).items() if k != "seconds"}


def comparability_group(record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields two records must share to appear in one table."""
    suite = record.get("suite") or {}
    return {
        "suite": _text(suite.get("name")),
        "version": _text(suite.get("version")),
        "profile": _text(suite.get("profile")),
        "budget": record.get("budget") or {},
        "eval": _eval_identity(record),
    }


def group_id(record: Mapping[str, Any]) -> str:
    """Short name of a record's comparability group."""
    return hashlib.sha256(canonical_json(comparability_group(record)).encode()).hexdigest()[:8]


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return value if isinstance(value, str) else canonical_json(value)


def settings_summary(settings: Mapping[str, Any], order: Sequence[str] = ()) -> str:
    """``k=v, ...`` for the set (non-null) fields, the usual ones first."""
    keys = [k for k in order if k in settings] + sorted(k for k in settings if k not in order)
    return ", ".join(f"{k}={_show(settings[k])}" for k in keys if settings[k] is not None)


def group_fields(
    version: str, profile: str, budget: Mapping[str, Any], eval_: Mapping[str, Any]
) -> dict[str, str]:
    """A group's settings flattened to ``field -> shown value`` to spell out differences."""
    fields = {"version": version, "profile": profile}
    fields.update({f"budget.{k}": _show(v) for k, v in budget.items()})
    fields.update({f"eval.{k}": _show(v) for k, v in eval_.items()})
    return fields


def differing_fields(groups: Sequence[Mapping[str, str]]) -> list[str]:
    """Fields whose values are not the same in every group (a missing field counts as null)."""
    names = sorted({k for g in groups for k in g})
    return [k for k in names if len({g.get(k, "null") for g in groups}) > 1]


# ---------------------------------------------------------------- records -> frames


def _error_text(error: Any) -> str:
    if not isinstance(error, Mapping):
        return _text(error)
    kind, message = error.get("type"), _text(error.get("message"))
    return f"{kind}: {message}" if kind else message


def _identity_row(record: Mapping[str, Any]) -> dict[str, Any]:
    suite = record.get("suite") or {}
    combo = record["combination"]
    training = record.get("training") or {}
    budget = record.get("budget") or {}
    meta = {
        name: {"unit": m.get("unit", ""), "higher_is_better": m.get("higher_is_better")}
        for name, m in record["metrics"].items()
    }
    return {
        "key": record["key"],
        "suite": _text(suite.get("name")),
        "version": _text(suite.get("version")),
        "profile": _text(suite.get("profile")),
        "group": group_id(record),
        "budget": settings_summary(budget, BUDGET_ORDER),
        "encoder": combo["encoder"],
        "decoder": combo["decoder"],
        "prior": combo["prior"],
        "combination": combination_label(combo),
        "seed": int(record["seed"]),
        "status": record["status"],
        "error": _error_text(record.get("error")),
        "n_params": record.get("n_params"),
        "steps_done": training.get("steps_done"),
        "train_seconds": training.get("seconds"),
        "budget_json": canonical_json(budget),
        "eval_json": canonical_json(_eval_identity(record)),
        "metric_meta": canonical_json(meta),
        "path": _text(record.get("_path")),
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


def merge_records(
    records: Iterable[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Drop repeated keys: identical copies silently, differing ones reported as conflicts.

    The first record of a key is kept; each later copy whose status or metric values differ
    yields one message naming both files.
    """
    kept: dict[str, dict[str, Any]] = {}
    conflicts: list[str] = []
    for record in records:
        first = kept.setdefault(record["key"], record)
        if first is record or _metric_numbers(first) == _metric_numbers(record):
            continue
        old, new = _metric_numbers(first)[1], _metric_numbers(record)[1]
        differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        what = f"metrics {', '.join(differ)}" if differ else "status"
        conflicts.append(
            f"conflict: key {record['key'][:12]} ({combination_label(record['combination'])}, "
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


# ---------------------------------------------------------------- leaderboards


@dataclass
class Cell:
    """One metric of one row: the per-seed values, their summary and the row's mark."""

    mean: float
    std: float
    n: int
    se: float
    values: list[float]
    mark: str | None = None  # BEST, NOT_WORSE, WORSE, UNTESTED; None without a direction
    p_value: float | None = None


@dataclass
class Row:
    """One combination in one comparability group."""

    rank: int | None  # None when no seed succeeded
    combination: str
    encoder: str
    decoder: str
    prior: str
    n_seeds: int
    n_failed: int
    params: float
    train_seconds: float
    cells: dict[str, Cell]


@dataclass
class Leaderboard:
    """The ranked table of one comparability group of one suite."""

    suite: str
    version: str
    profile: str
    group: str
    budget: dict[str, Any]
    eval: dict[str, Any]
    description: str
    metrics: list[MetricInfo]
    rank_by: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        profile = f", profile {self.profile}" if self.profile else ""
        return f"{self.suite} v{self.version}{profile}"

    @property
    def best(self) -> Row | None:
        return self.rows[0] if self.rows and self.rows[0].rank == 1 else None


def _welch_not_worse(
    values: Sequence[float], best: Sequence[float], higher_is_better: bool
) -> tuple[bool, float]:
    """Whether ``values`` are not significantly worse than ``best``, and the p-value."""
    from scipy import stats

    # H1: this row is worse than the best, i.e. lower when higher is better.
    alternative = "less" if higher_is_better else "greater"
    # scipy warns of precision loss when a sample is (nearly) constant, as a metric that barely
    # moves between seeds is; the exactly constant case is handled below.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(values, best, equal_var=False, alternative=alternative).pvalue)
    if math.isnan(p):
        # Both samples constant and equal: t is 0/0, and equal means are not worse.
        return True, 1.0
    return p >= ALPHA, p


def _mark_column(rows: Sequence[Row], info: MetricInfo) -> list[str]:
    """Mark the best mean and test every other row against it; returns untested rows."""
    scored = [r for r in rows if r.cells[info.name].n > 0]
    if not scored or info.higher_is_better is None:
        return []
    pick = max if info.higher_is_better else min
    best_mean = pick(r.cells[info.name].mean for r in scored)
    reference = next(r.cells[info.name] for r in scored if r.cells[info.name].mean == best_mean)
    untested = []
    for row in scored:
        cell = row.cells[info.name]
        if cell.mean == best_mean:
            cell.mark = BEST
        elif cell.n < 2 or reference.n < 2:
            cell.mark = UNTESTED
            untested.append(row.combination)
        else:
            not_worse, cell.p_value = _welch_not_worse(
                cell.values, reference.values, info.higher_is_better
            )
            cell.mark = NOT_WORSE if not_worse else WORSE
    return untested


def _board_footnotes(board: Leaderboard, untested: Mapping[str, list[str]]) -> list[str]:
    rank = next(m for m in board.metrics if m.name == board.rank_by)
    better = "higher" if rank.higher_is_better else "lower"
    notes = [
        f"Ranked by {board.rank_by} ({better} is better). Cells: mean ± std over seeds "
        "(ddof=1); a single seed shows its value alone."
    ]
    if any(m.higher_is_better is not None for m in board.metrics):
        notes.append(
            f"Bold: best in its column. †: not significantly worse than the best (Welch's "
            f"t-test, one-sided, α = {ALPHA:g}, over per-seed values)."
        )
    if any(untested.values()):
        listed = "; ".join(f"{m}: {', '.join(rows)}" for m, rows in untested.items() if rows)
        notes.append(f"Not tested (fewer than 2 seeds here or in the best): {listed}.")
    if any(r.n_failed for r in board.rows):
        notes.append("Seeds: successful runs; failed runs are counted, not averaged.")
    return notes


def _rank_order(info: MetricInfo) -> Any:
    def key(row: Row) -> tuple[int, float, str]:
        cell = row.cells[info.name]
        if cell.n == 0:
            return (1, 0.0, row.combination)
        return (0, -cell.mean if info.higher_is_better else cell.mean, row.combination)

    return key


def _build_board(
    stats: pd.DataFrame,
    per_seed: Mapping[tuple[str, str], pd.DataFrame],
    infos: list[MetricInfo],
    rank_by: str,
) -> Leaderboard:
    """The table of one group from its aggregates and per-seed values."""
    first = stats.iloc[0]
    budget, eval_ = json.loads(first["budget_json"]), json.loads(first["eval_json"])
    rows = []
    for _, agg in stats.iterrows():
        seeds = per_seed.get((agg["group"], agg["combination"]))
        cells = {}
        for m in infos:
            values = [] if seeds is None else seeds[m.name].dropna().astype(float).tolist()
            cells[m.name] = Cell(
                mean=agg[f"{m.name}:mean"],
                std=agg[f"{m.name}:std"],
                n=int(agg[f"{m.name}:n"]),
                se=agg[f"{m.name}:se"],
                values=values,
            )
        names = ("combination", "encoder", "decoder", "prior", "params", "train_seconds")
        rows.append(
            Row(
                rank=None,
                n_seeds=int(agg["n_seeds"]),
                n_failed=int(agg["n_failed"]),
                cells=cells,
                **{k: agg[k] for k in names},
            )
        )
    rank_info = next(m for m in infos if m.name == rank_by)
    rows.sort(key=_rank_order(rank_info))
    for position, row in enumerate(rows, start=1):
        row.rank = position if row.cells[rank_by].n else None
    untested = {m.name: _mark_column(rows, m) for m in infos}
    board = Leaderboard(
        suite=first["suite"],
        version=first["version"],
        profile=first["profile"],
        group=first["group"],
        budget=budget,
        eval=eval_,
        description=(
            f"budget: {settings_summary(budget, BUDGET_ORDER)}; "
            f"eval: {settings_summary(eval_, EVAL_ORDER)}; group {first['group']}."
        ),
        metrics=infos,
        rank_by=rank_by,
        rows=rows,
    )
    board.footnotes = _board_footnotes(board, untested)
    return board


def _note_differences(boards: Sequence[Leaderboard]) -> None:
    """Tell each of a suite's several tables what sets it apart from the others."""
    by_suite: dict[str, list[Leaderboard]] = {}
    for board in boards:
        by_suite.setdefault(board.suite, []).append(board)
    for suite, group in by_suite.items():
        if len(group) < 2:
            continue
        flats = [group_fields(b.version, b.profile, b.budget, b.eval) for b in group]
        fields = differing_fields(flats)
        for board, flat in zip(group, flats, strict=True):
            here = ", ".join(f"{f}={flat.get(f, 'null')}" for f in fields)
            others = f"{len(group) - 1} other {suite} table" + ("s" if len(group) > 2 else "")
            board.notes.append(
                f"Not comparable with {others}: they differ in {', '.join(fields)}. Here {here}."
            )


def leaderboard(
    records: Iterable[dict[str, Any]], metrics: Sequence[str], rank_by: str | None = None
) -> list[Leaderboard]:
    """One ranked table per comparability group, ordered by suite.

    ``rank_by`` defaults to iw_nll when among ``metrics``, else the first metric with a
    direction; a rank metric not in ``metrics`` is shown as the first column. Records are
    merged first (:func:`merge_records`); conflicting copies are left out and footnoted.
    """
    records, conflicts = merge_records(records)
    if not records:
        raise ConfigError("no records to rank")
    infos = metric_info(records)
    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        raise ConfigError(f"no metric chosen; the records have: {', '.join(infos)}")
    check_metrics([*metrics, *([rank_by] if rank_by else [])], infos)
    if rank_by is None:
        directed = [m for m in metrics if infos[m].higher_is_better is not None]
        if not directed:
            raise ConfigError(f"none of {', '.join(metrics)} has a better direction to rank by")
        rank_by = PREFERRED_RANK if PREFERRED_RANK in directed else directed[0]
    elif infos[rank_by].higher_is_better is None:
        ranked = [m for m, i in infos.items() if i.higher_is_better is not None]
        raise ConfigError(
            f"metric {rank_by!r} has no better direction; rank by one of: {', '.join(ranked)}"
        )
    if rank_by not in metrics:
        metrics.insert(0, rank_by)
    frame = records_frame(records)
    stats = aggregate(frame, metrics)
    ok = frame[frame["status"] == "ok"]
    per_seed = {key: part for key, part in ok.groupby(["group", "combination"])}
    shown = [infos[m] for m in metrics]
    boards = [
        _build_board(part, per_seed, shown, rank_by)
        for _, part in stats.groupby("group", sort=False)
    ]
    boards.sort(key=lambda b: (b.suite, b.version, b.profile, canonical_json([b.budget, b.eval])))
    _note_differences(boards)
    if conflicts:
        for board in boards:
            board.footnotes.append(
                f"{len(conflicts)} conflicting duplicate record(s) left out (same key, "
                "different numbers)."
            )
    return boards


def leaderboard_frame(boards: Sequence[Leaderboard]) -> pd.DataFrame:
    """The leaderboards as one flat frame: a row per combination and group."""
    rows = []
    for board in boards:
        group = {k: getattr(board, k) for k in ("suite", "version", "profile", "group")}
        group["budget"] = settings_summary(board.budget, BUDGET_ORDER)
        for row in board.rows:
            flat = {**group, **{k: v for k, v in vars(row).items() if k != "cells"}}
            for name, cell in row.cells.items():
                for stat in ("mean", "std", "n", "mark", "p_value"):
                    flat[f"{name}:{stat}"] = getattr(cell, stat)
            rows.append(flat)
    frame = pd.DataFrame(rows)
    if "rank" in frame:
        frame["rank"] = frame["rank"].astype("Int64")
    return frame


# ---------------------------------------------------------------- reading results back


CSV_REQUIRED = ("key", "suite", "version", "profile", "encoder", "decoder", "prior", "seed",
                "status", "budget_json", "eval_json", "metric_meta")  # fmt: skip


def _number(text: str, kind: type = float) -> Any:
    return None if text == "" else kind(float(text))


def _record_from_row(row: Mapping[str, str], label: str) -> dict[str, Any]:
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
    return {
        "schema_version": SCHEMA_VERSION,
        "key": row["key"],
        "status": row["status"],
        "error": {"type": None, "message": error} if error else None,
        "suite": {"name": row["suite"], "version": row["version"], "profile": row["profile"]},
        "combination": {k: row[k] for k in ("encoder", "decoder", "prior")},
        "seed": int(row["seed"]),
        "budget": json.loads(row["budget_json"]),
        "eval": json.loads(row["eval_json"]),
        "training": {
            "steps_done": _number(row.get("steps_done", ""), int),
            "seconds": _number(row.get("train_seconds", "")),
        },
        "n_params": _number(row.get("n_params", ""), int),
        "metrics": metrics,
        "_path": label,
    }


def read_csv_records(
    path: Path, strict: bool = False
) -> tuple[list[dict[str, Any]], list[LoadProblem]]:
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
) -> tuple[list[dict[str, Any]], list[LoadProblem]]:
    """Records from results directories, record files and per-seed CSV files.

    Raises :class:`ConfigError` for a path that is missing or holds no records at all.
    """
    records: list[dict[str, Any]] = []
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


# ---------------------------------------------------------------- rendering


@dataclass
class _Num:
    """A number to show, with the marks that decide bold and dagger."""

    mean: float
    std: float = math.nan
    mark: str | None = None


@dataclass
class _Grid:
    """A format-neutral table: what every renderer draws."""

    title: str
    label: str
    lines: list[str]
    headers: list[str]
    align: list[str]  # "left" / "right"
    rows: list[list[str | _Num]]
    footnotes: list[str]


def _optional(value: float, spec: str) -> str:
    return "" if math.isnan(value) else format(value, spec)


def _seeds_text(row: Row) -> str:
    return f"{row.n_seeds} (+{row.n_failed} failed)" if row.n_failed else str(row.n_seeds)


def _board_grid(board: Leaderboard) -> _Grid:
    headers = ["#", "combination", *(m.header for m in board.metrics)]
    headers += ["seeds", "params", "train (s)"]
    rows: list[list[str | _Num]] = []
    for row in board.rows:
        cells: list[str | _Num] = [_text(row.rank), row.combination]
        cells += [_Num(c.mean, c.std, c.mark) for c in row.cells.values()]
        cells += [
            _seeds_text(row),
            _optional(row.params, ".0f"),
            _optional(row.train_seconds, ".1f"),
        ]
        rows.append(cells)
    slug = "".join(c if c.isalnum() else "-" for c in board.suite)
    return _Grid(
        title=board.title,
        label=f"tab:vaebench-{slug}-{board.group}",
        lines=[board.description, *board.notes],
        headers=headers,
        align=["right", "left"] + ["right"] * (len(headers) - 2),
        rows=rows,
        footnotes=board.footnotes,
    )


def _frame_grid(frame: pd.DataFrame) -> _Grid:
    """The per-seed frame as a readable table: identity, status, cost and metric values."""
    infos: dict[str, MetricInfo] = {}
    for meta in frame["metric_meta"]:
        for name, m in json.loads(meta).items():
            infos.setdefault(name, MetricInfo(name, m.get("unit", ""), m.get("higher_is_better")))
    names = [c for c in frame.columns if c in infos]
    headers = ["key", "suite", "group", "combination", "seed", "status", "steps", "train (s)"]
    headers += [infos[n].header for n in names]
    rows: list[list[str | _Num]] = []
    for _, r in frame.iterrows():
        cells: list[str | _Num] = [r["key"][:12], r["suite"], r["group"], r["combination"]]
        cells += [str(r["seed"]), r["status"]]
        cells += [_optional(r["steps_done"], ".0f"), _optional(r["train_seconds"], ".1f")]
        cells += [_Num(float(r[n])) for n in names]
        rows.append(cells)
    return _Grid(
        title="Per-seed results",
        label="tab:vaebench-per-seed",
        lines=[],
        headers=headers,
        align=["left"] * 4 + ["right", "left"] + ["right"] * (len(headers) - 6),
        rows=rows,
        footnotes=[
            "One row per run; group: records sharing suite version, profile, budget and eval "
            "settings."
        ],
    )


def _grids(tables: Sequence[Leaderboard] | pd.DataFrame) -> list[_Grid]:
    if isinstance(tables, pd.DataFrame):
        return [_frame_grid(tables)]
    return [_board_grid(board) for board in tables]


def _number_text(num: _Num, decimals: int, pm: str) -> str:
    text = f"{num.mean:.{decimals}f}"
    return text if math.isnan(num.std) else f"{text}{pm}{num.std:.{decimals}f}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_cell(cell: str | _Num, decimals: int) -> str:
    if isinstance(cell, str):
        return _md_escape(cell)
    if math.isnan(cell.mean):
        return "—"
    text = _number_text(cell, decimals, " ± ")
    if cell.mark == BEST:
        return f"**{text}**"
    return f"{text} †" if cell.mark == NOT_WORSE else text


def to_markdown(
    tables: Sequence[Leaderboard] | pd.DataFrame, decimals: int = DEFAULT_DECIMALS
) -> str:
    """GitHub-flavoured Markdown: a heading, settings, the table and its footnotes."""
    parts = []
    for grid in _grids(tables):
        lines = [f"### {_md_escape(grid.title)}", ""]
        for line in grid.lines:
            lines += [_md_escape(line), ""]
        body = [[_md_cell(c, decimals) for c in row] for row in grid.rows]
        # "pipe" is GFM table syntax with alignment colons, so numbers stay right-aligned.
        lines.append(
            tabulate(
                body,
                headers=[_md_escape(h) for h in grid.headers],
                tablefmt="pipe",
                colalign=grid.align,
                disable_numparse=True,
            )
        )
        for note in grid.footnotes:
            lines += ["", _md_escape(note)]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


_LATEX = str.maketrans({
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "†": r"$^{\dagger}$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
    "α": r"$\alpha$", "—": "---",
})  # fmt: skip


def latex_escape(text: str) -> str:
    """Text made safe for LaTeX, with the table symbols (±, †, arrows, α) as math."""
    return text.translate(_LATEX)


def _latex_cell(cell: str | _Num, decimals: int) -> str:
    if isinstance(cell, str):
        return latex_escape(cell)
    if math.isnan(cell.mean):
        return "--"
    text = _number_text(cell, decimals, r" \pm ")
    if cell.mark == BEST:
        return f"$\\mathbf{{{text}}}$"
    return f"${text}^{{\\dagger}}$" if cell.mark == NOT_WORSE else f"${text}$"


def to_latex(tables: Sequence[Leaderboard] | pd.DataFrame, decimals: int = DEFAULT_DECIMALS) -> str:
    """A booktabs ``table`` float per group, settings and footnotes in the caption."""
    parts = []
    for grid in _grids(tables):
        spec = "".join("l" if a == "left" else "r" for a in grid.align)
        texts = [f"{grid.title}.", *grid.lines, *grid.footnotes]
        caption = " ".join(latex_escape(t) for t in texts)
        lines = [
            "% needs \\usepackage{booktabs}",
            "\\begin{table}[htbp]",
            "\\centering",
            f"\\caption{{{caption}}}",
            f"\\label{{{grid.label}}}",
            f"\\begin{{tabular}}{{{spec}}}",
            "\\toprule",
            " & ".join(latex_escape(h) for h in grid.headers) + " \\\\",
            "\\midrule",
            *(" & ".join(_latex_cell(c, decimals) for c in row) + " \\\\" for row in grid.rows),
            "\\bottomrule",
            "\\end{tabular}",
            "\\end{table}",
        ]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _html_cell(cell: str | _Num, decimals: int) -> str:
    if isinstance(cell, str):
        return html.escape(cell)
    if math.isnan(cell.mean):
        return "—"
    text = html.escape(_number_text(cell, decimals, " ± "))
    if cell.mark == BEST:
        return f"<strong>{text}</strong>"
    return f"{text} †" if cell.mark == NOT_WORSE else text


def to_html(tables: Sequence[Leaderboard] | pd.DataFrame, decimals: int = DEFAULT_DECIMALS) -> str:
    """A plain, escaped ``<table>`` per group (no script, no styling)."""
    parts = []
    seen: dict[str, int] = {}
    for grid in _grids(tables):
        # One id per table: tables of the same group (likelihood, collapse...) share a label.
        ident = grid.label.replace(":", "-")
        seen[ident] = seen.get(ident, 0) + 1
        if seen[ident] > 1:
            ident = f"{ident}-{seen[ident]}"
        caption = "<br>".join(html.escape(t) for t in [grid.title, *grid.lines])
        head = "".join(f"<th>{html.escape(h)}</th>" for h in grid.headers)
        body = ["".join(f"<td>{_html_cell(c, decimals)}</td>" for c in row) for row in grid.rows]
        lines = [
            f'<table id="{html.escape(ident)}">',
            f"<caption>{caption}</caption>",
            f"<thead>\n<tr>{head}</tr>\n</thead>",
            "<tbody>",
            *(f"<tr>{cells}</tr>" for cells in body),
            "</tbody>",
        ]
        if grid.footnotes:
            span = len(grid.headers)
            lines.append("<tfoot>")
            lines += [
                f'<tr><td colspan="{span}">{html.escape(n)}</td></tr>' for n in grid.footnotes
            ]
            lines.append("</tfoot>")
        lines.append("</table>")
        parts.append("\n".join(lines))
    return "\n".join(parts)


def to_csv(tables: Sequence[Leaderboard] | pd.DataFrame) -> str:
    """CSV via pandas: the per-seed frame as is, or the leaderboards flattened."""
    frame = tables if isinstance(tables, pd.DataFrame) else leaderboard_frame(tables)
    return frame.to_csv(index=False)


def _plain(value: Any) -> Any:
    """JSON-ready data: NaN becomes null, numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA:
        return None
    return value


def to_json(tables: Sequence[Leaderboard] | pd.DataFrame) -> str:
    """JSON: a list of per-seed rows, or a list of leaderboards with their rows and cells."""
    if isinstance(tables, pd.DataFrame):
        data = tables.astype(object).to_dict("records")
    else:
        data = [{**asdict(board), "title": board.title} for board in tables]
    return json.dumps(_plain(data), indent=2, ensure_ascii=False)


def render(
    tables: Sequence[Leaderboard] | pd.DataFrame, fmt: str, decimals: int = DEFAULT_DECIMALS
) -> str:
    """Dispatch to a formatter by name (one of :data:`FORMATS`)."""
    if fmt == "md":
        return to_markdown(tables, decimals)
    if fmt == "latex":
        return to_latex(tables, decimals)
    if fmt == "html":
        return to_html(tables, decimals)
    if fmt == "csv":
        return to_csv(tables)
    if fmt == "json":
        return to_json(tables)
    raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")


LIKELIHOOD_METRICS = ("neg_elbo", "iw_nll", "recon", "kl")
COLLAPSE_METRICS = (
    "collapse/kl",
    "collapse/active_units",
    "collapse/mi",
    "holes/marginal_kl",
    "holes/reverse_kl",
)
OOD_STATS = ("auroc", "auprc", "fpr95")
TABULATE_FORMATS = {"md": "pipe", "latex": "latex_booktabs", "html": "html"}


def ood_frame(
    records: Iterable[Mapping[str, Any]], decimals: int = DEFAULT_DECIMALS
) -> pd.DataFrame:
    """OOD detection per combination, score and OOD set: AUROC, AUPRC and FPR@95%TPR as
    mean ± std over the seeds that succeeded (metrics named ``ood/<score>/<set>/<stat>``)."""
    cells: dict[tuple[str, str, str, str], list[float]] = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        label = combination_label(record["combination"])
        for name, value in record["metrics"].items():
            parts = name.split("/")
            if len(parts) == 4 and parts[0] == "ood" and parts[3] in OOD_STATS:
                key = (record["suite"]["name"], label, parts[1], parts[2])
                cells.setdefault(key + (parts[3],), []).append(float(value["value"]))
    rows = []
    for suite, label, score, ood_set in sorted({k[:4] for k in cells}):
        row = {"suite": suite, "combination": label, "score": score, "ood set": ood_set}
        for stat in OOD_STATS:
            values = np.asarray(cells.get((suite, label, score, ood_set, stat), []))
            if not len(values):
                row[stat] = ""
            elif len(values) == 1:
                row[stat] = f"{values[0]:.{decimals}f}"
            else:
                row[stat] = f"{values.mean():.{decimals}f} ± {values.std(ddof=1):.{decimals}f}"
        rows.append(row)
    columns = ["suite", "combination", "score", "ood set", "AUROC ↑", "AUPRC ↑", "FPR95 ↓"]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame.columns = columns
    return frame


def _render_frame(frame: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return frame.to_json(orient="records", force_ascii=False, indent=1)
    return tabulate(
        frame.values.tolist(), headers=list(frame.columns), tablefmt=TABULATE_FORMATS[fmt]
    )


def render_run(
    records: Iterable[dict[str, Any]], fmt: str = "md", decimals: int = DEFAULT_DECIMALS
) -> str:
    """What ``vaebench run`` prints: the likelihood leaderboard, then the collapse/holes table
    and the OOD table when the records hold those metrics."""
    records, _ = merge_records(records)
    if not any(r["metrics"] for r in records):
        return "(no metrics to show: every run failed)" if records else "(no results)"
    names = metric_names(records)
    sections = []
    likelihood = [m for m in LIKELIHOOD_METRICS if m in names] or default_metrics(records)
    sections.append(render(leaderboard(records, likelihood), fmt, decimals))
    collapse = [m for m in COLLAPSE_METRICS if m in names]
    if collapse:
        rank = "holes/marginal_kl" if "holes/marginal_kl" in collapse else None
        boards = leaderboard(records, collapse, rank_by=rank)
        sections.append("Posterior collapse and prior mismatch\n\n" + render(boards, fmt, decimals))
    ood = ood_frame(records, decimals)
    if not ood.empty:
        sections.append(
            "Out-of-distribution detection (OOD set = positive class)\n\n" + _render_frame(ood, fmt)
        )
    return "\n\n".join(sections)


def write_per_seed_csv(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write the per-seed CSV that ``vaebench leaderboard`` and ``compare`` can read back."""
    path = Path(path)
    try:
        path.write_text(to_csv(records_frame(records)), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {str(path)!r}: {exc}") from exc
    return path


def format_for(output: str | None, given: str | None, default: str) -> str:
    """The format asked for, else the one an output file's suffix implies, else ``default``."""
    if given:
        return given
    if output:
        return SUFFIX_FORMATS.get(Path(output).suffix.lower(), default)
    return default
