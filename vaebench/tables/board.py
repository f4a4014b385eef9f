"""Leaderboards: the ranked table of one comparability group, its marks and its notes.

A cell shows mean ± std over seeds (ddof=1). Failed runs are counted, never averaged. In each
column with a direction (a metric's ``higher_is_better``) the best mean is marked, and every row
is tested against it with Welch's t-test (one-sided, alpha 0.05) over per-seed values: rows whose
p-value is at least alpha are "not significantly worse" (†). A row or a best with fewer than two
seeds cannot be tested; the table's footnote lists them.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from vaebench.errors import ConfigError
from vaebench.results import canonical_json
from vaebench.tables.frames import aggregate, merge_records, records_frame
from vaebench.tables.groups import (
    BUDGET_ORDER,
    EVAL_ORDER,
    LEGACY_SEEDING,
    differing_fields,
    group_fields,
    settings_summary,
)
from vaebench.tables.info import MetricInfo, check_metrics, metric_info

ALPHA = 0.05
# IW-NLL is the tighter bound on -log p(x), so it ranks when shown.
PREFERRED_RANK = "iw_nll"

# Cell marks: the best mean of a column, or the verdict of the test against it.
BEST, NOT_WORSE, WORSE, UNTESTED = "best", "not worse", "worse", "untested"


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
    objective: str
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
    seeding: str = LEGACY_SEEDING
    options: dict[str, Any] = field(default_factory=dict)

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
    if any(m.name.endswith("/auprc") for m in board.metrics):
        notes.append(
            "AUPRC's chance level is the OOD set's share of the points scored, not 0.5 as for "
            "AUROC: about 0.17 for 2,000 OOD images against 10,000 test images (mnist, "
            "fashion-mnist), 0.5 for sets of equal size (digits)."
        )
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
    options = json.loads(first["options_json"])
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
        names = (
            "combination",
            "encoder",
            "decoder",
            "prior",
            "objective",
            "params",
            "train_seconds",
        )
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
            (f"suite options: {settings_summary(options)}; " if options else "")
            + f"budget: {settings_summary(budget, BUDGET_ORDER)}; "
            f"eval: {settings_summary(eval_, EVAL_ORDER)}; group {first['group']}."
        ),
        metrics=infos,
        rank_by=rank_by,
        rows=rows,
        seeding=first["seeding"],
        options=options,
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
        flats = [
            group_fields(b.version, b.profile, b.budget, b.eval, b.seeding, b.options)
            for b in group
        ]
        fields = differing_fields(flats)
        for board, flat in zip(group, flats, strict=True):
            here = ", ".join(f"{f}={flat.get(f, 'null')}" for f in fields)
            others = f"{len(group) - 1} other {suite} table" + ("s" if len(group) > 2 else "")
            board.notes.append(
                f"Not comparable with {others}: they differ in {', '.join(fields)}. Here {here}."
            )


def leaderboard(
    records: Iterable[Mapping[str, Any]], metrics: Sequence[str], rank_by: str | None = None
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
    boards.sort(
        key=lambda b: (
            b.suite,
            b.version,
            b.profile,
            canonical_json([b.options, b.budget, b.eval, b.seeding]),
        )
    )
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
