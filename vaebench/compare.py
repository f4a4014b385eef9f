"""Compare current results with a baseline, per combination, and flag regressions.

Both sides are aggregated over seeds with :func:`vaebench.tables.aggregate`. For each metric a
combination gets baseline and current mean ± standard error, where the standard error is
std/sqrt(n) over seeds, or for a single seed the record's own ``stderr``. The difference
(current - baseline) has standard error sqrt(se_b² + se_c²); an unknown standard error counts
as zero.

"Worse" follows the metric's ``higher_is_better``. A combination regresses on a metric when it
is worse by more than the tolerance:

* default: more than max(3 standard errors of the difference, 1% of |baseline|);
* ``abs``: more than X in the metric's unit;
* ``rel``: more than X·|baseline|;
* ``sigma``: more than X standard errors of the difference.

A combination whose runs all failed now but succeeded in the baseline also counts as a
regression. Metrics without a direction are shown but never flagged. Only comparable results
are compared (same suite version, profile, budget, eval settings and random-stream scheme);
groups that differ are reported, and when nothing is comparable the comparison is an input
error.

Exit codes (:func:`exit_code`): 0 no regression, 1 at least one regression, 2 no verdict: a
usage or input error (a :class:`~vaebench.errors.VaebenchError`, which the CLI turns into
exit 2), or an unexpected error, which ``vaebench compare`` reports with its traceback and
also exits 2 with, so that 1 always means a regression.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
from tabulate import tabulate

from vaebench import tables
from vaebench.errors import ConfigError

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
DEFAULT_SIGMA = 3.0
DEFAULT_REL = 0.01

# Verdicts; the first two are regressions.
REGRESSION = "regression"
FAILED = "failed"
IMPROVED = "improved"
OK = "ok"
NO_DIRECTION = "no direction"

Mode = Literal["default", "abs", "rel", "sigma"]


@dataclass(frozen=True)
class Tolerance:
    """How much worse a metric may get before it counts as a regression."""

    mode: Mode = "default"
    value: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("default", "abs", "rel", "sigma"):
            raise ConfigError(f"unknown tolerance mode {self.mode!r}")
        if self.mode != "default" and (
            self.value is None or not math.isfinite(self.value) or self.value < 0
        ):
            raise ConfigError(f"--{self.mode} needs a finite number >= 0, got {self.value!r}")

    def threshold(self, baseline: float, diff_se: float) -> float:
        """The largest worsening that is still accepted."""
        se = 0.0 if math.isnan(diff_se) else diff_se
        if self.mode == "abs":
            return float(self.value)  # type: ignore[arg-type]
        if self.mode == "rel":
            return float(self.value) * abs(baseline)  # type: ignore[arg-type]
        if self.mode == "sigma":
            return float(self.value) * se  # type: ignore[arg-type]
        return max(DEFAULT_SIGMA * se, DEFAULT_REL * abs(baseline))

    def describe(self) -> str:
        if self.mode == "abs":
            return f"worse by more than {self.value:g} (absolute)"
        if self.mode == "rel":
            return f"worse by more than {self.value:g} x |baseline|"
        if self.mode == "sigma":
            return f"worse by more than {self.value:g} standard errors"
        return (
            f"worse by more than max({DEFAULT_SIGMA:g} standard errors, "
            f"{DEFAULT_REL:.0%} of |baseline|) (default)"
        )


@dataclass
class ComparisonRow:
    """One metric of one combination, baseline against current."""

    suite: str
    group: str
    combination: str
    metric: str
    unit: str
    higher_is_better: bool | None
    baseline_mean: float
    baseline_se: float
    baseline_n: int
    current_mean: float
    current_se: float
    current_n: int
    difference: float  # current - baseline
    difference_se: float
    threshold: float
    verdict: str  # REGRESSION, FAILED, IMPROVED, OK or NO_DIRECTION

    @property
    def regressed(self) -> bool:
        return self.verdict in (REGRESSION, FAILED)


@dataclass
class Comparison:
    """Everything :func:`compare` found."""

    tolerance: Tolerance
    metrics: list[str]
    rows: list[ComparisonRow] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the baseline, not in current
    new: list[str] = field(default_factory=list)  # in current, not in the baseline
    mismatches: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[ComparisonRow]:
        return [r for r in self.rows if r.regressed]


def exit_code(comparison: Comparison) -> int:
    """0 when nothing regressed, 1 otherwise (input errors raise and exit 2 in the CLI)."""
    return EXIT_REGRESSION if comparison.regressions else EXIT_OK


def _groups(stats: pd.DataFrame, suite: str) -> dict[str, pd.DataFrame]:
    part = stats[stats["suite"] == suite]
    return {gid: g for gid, g in part.groupby("group", sort=True)}


def _fields(group: pd.DataFrame) -> dict[str, str]:
    first = group.iloc[0]
    budget, eval_ = json.loads(first["budget_json"]), json.loads(first["eval_json"])
    options = json.loads(first["options_json"])
    return tables.group_fields(
        first["version"], first["profile"], budget, eval_, first["seeding"], options
    )


def _mismatch(suite: str, only_base: list[pd.DataFrame], only_cur: list[pd.DataFrame]) -> str:
    base = [_fields(g) for g in only_base]
    cur = [_fields(g) for g in only_cur]
    fields = tables.differing_fields(base + cur) if base and cur else []
    if fields:
        parts = [
            f"{f}: baseline {'/'.join(sorted({g.get(f, 'null') for g in base}))}, "
            f"current {'/'.join(sorted({g.get(f, 'null') for g in cur}))}"
            for f in fields
        ]
        return f"suite {suite}: baseline and current are not comparable ({'; '.join(parts)})"
    side, groups = ("baseline", only_base) if only_base else ("current", only_cur)
    settings = "; ".join(g.iloc[0]["budget"] for g in groups)
    return f"suite {suite}: {side} results with budget {settings} have no comparable counterpart"


def _compare_metric(
    base: pd.Series, cur: pd.Series, info: tables.MetricInfo, tol: Tolerance
) -> ComparisonRow:
    m = info.name
    b_mean, b_se, b_n = base[f"{m}:mean"], base[f"{m}:se"], int(base[f"{m}:n"])
    c_mean, c_se, c_n = cur[f"{m}:mean"], cur[f"{m}:se"], int(cur[f"{m}:n"])
    known = [se for se in (b_se, c_se) if not math.isnan(se)]
    diff_se = math.sqrt(sum(se**2 for se in known)) if known else math.nan
    diff = c_mean - b_mean if c_n else math.nan
    limit = tol.threshold(b_mean, diff_se)
    if not c_n:
        verdict = FAILED
    elif info.higher_is_better is None:
        verdict = NO_DIRECTION
    else:
        worse = -diff if info.higher_is_better else diff
        verdict = REGRESSION if worse > limit else IMPROVED if -worse > limit else OK
    return ComparisonRow(
        suite=base["suite"],
        group=base["group"],
        combination=base.name,
        metric=m,
        unit=info.unit,
        higher_is_better=info.higher_is_better,
        baseline_mean=b_mean,
        baseline_se=b_se,
        baseline_n=b_n,
        current_mean=c_mean,
        current_se=c_se,
        current_n=c_n,
        difference=diff,
        difference_se=diff_se,
        threshold=limit,
        verdict=verdict,
    )


def _compare_group(
    result: Comparison, base: pd.DataFrame, cur: pd.DataFrame, infos: dict[str, tables.MetricInfo]
) -> None:
    """Compare the combinations of one comparability group that both sides ran."""
    suite = base["suite"].iloc[0]
    base, cur = base.set_index("combination"), cur.set_index("combination")
    result.missing += [f"{suite}: {c}" for c in base.index if c not in cur.index]
    result.new += [f"{suite}: {c}" for c in cur.index if c not in base.index]
    for combination in (c for c in base.index if c in cur.index):
        b, c = base.loc[combination], cur.loc[combination]
        if not b["n_seeds"]:
            result.notes.append(f"{suite}: {combination}: every baseline run failed; not compared")
            continue
        for metric in result.metrics:
            b_n, c_n = b[f"{metric}:n"], c[f"{metric}:n"]
            # A combination that now fails entirely is compared (and fails); a metric that
            # one side lacks is only noted.
            if not b_n or (c["n_seeds"] and not c_n):
                side = "baseline" if not b_n else "current"
                result.notes.append(f"{suite}: {combination}: no {metric} in {side}")
                continue
            result.rows.append(_compare_metric(b, c, infos[metric], result.tolerance))


def compare(
    baseline_records: Iterable[Mapping[str, Any]],
    current_records: Iterable[Mapping[str, Any]],
    metrics: Sequence[str] | None = None,
    tolerance: Tolerance | None = None,
) -> Comparison:
    """Compare every combination that both sides ran under comparable settings.

    ``metrics`` defaults to neg_elbo and iw_nll where present; ``tolerance`` to the default
    rule in the module docstring. Raises :class:`ConfigError` for an empty side, an unknown
    metric, or when no results are comparable.
    """
    base_records, base_conflicts = tables.merge_records(baseline_records)
    cur_records, cur_conflicts = tables.merge_records(current_records)
    if not base_records or not cur_records:
        raise ConfigError(f"the {'baseline' if not base_records else 'current'} has no records")
    both = [*base_records, *cur_records]
    infos = tables.metric_info(both)
    metrics = list(metrics) if metrics else tables.default_metrics(both)
    tables.check_metrics(metrics, infos)
    result = Comparison(tolerance or Tolerance(), metrics)
    result.conflicts = [f"baseline {c}" for c in base_conflicts]
    result.conflicts += [f"current {c}" for c in cur_conflicts]

    stats = []
    for records in (base_records, cur_records):
        frame = tables.records_frame(records)
        for m in metrics:
            if m not in frame:  # a metric only the other side has
                frame[m] = math.nan
        stats.append(tables.aggregate(frame, metrics))
    base_stats, cur_stats = stats

    compared = 0
    for suite in sorted(set(base_stats["suite"]) | set(cur_stats["suite"])):
        base_groups, cur_groups = _groups(base_stats, suite), _groups(cur_stats, suite)
        if not cur_groups or not base_groups:
            side = result.missing if not cur_groups else result.new
            groups = cur_groups if cur_groups else base_groups
            side += [f"{suite}: {c}" for g in groups.values() for c in g["combination"]]
            continue
        only_base = [g for gid, g in base_groups.items() if gid not in cur_groups]
        only_cur = [g for gid, g in cur_groups.items() if gid not in base_groups]
        if only_base or only_cur:
            result.mismatches.append(_mismatch(suite, only_base, only_cur))
        for gid in sorted(base_groups.keys() & cur_groups.keys()):
            compared += 1
            _compare_group(result, base_groups[gid], cur_groups[gid], infos)
    if not compared:
        why = "; ".join(result.mismatches) or "no suite appears in both"
        raise ConfigError(f"nothing comparable between baseline and current: {why}")
    return result


def _with_se(mean: float, se: float, n: int, decimals: int) -> str:
    if math.isnan(mean):
        return "—"
    text = f"{mean:.{decimals}f}"
    return f"{text} ± {se:.{decimals}f} (n={n})" if not math.isnan(se) else f"{text} (n={n})"


def format_comparison(comparison: Comparison, decimals: int = 2) -> str:
    """A Markdown table of differences, then missing, new, mismatched and a verdict line."""
    lines = [f"Regression: {comparison.tolerance.describe()}.", ""]
    body = []
    for r in comparison.rows:
        diff = "—" if math.isnan(r.difference) else f"{r.difference:+.{decimals}f}"
        if not math.isnan(r.difference) and not math.isnan(r.difference_se):
            diff += f" ± {r.difference_se:.{decimals}f}"
        arrow = {True: " ↑", False: " ↓", None: ""}[r.higher_is_better]
        body.append(
            [
                r.suite,
                r.combination,
                r.metric + arrow,
                _with_se(r.baseline_mean, r.baseline_se, r.baseline_n, decimals),
                _with_se(r.current_mean, r.current_se, r.current_n, decimals),
                diff,
                f"{r.threshold:.{decimals}f}",
                r.verdict.upper() if r.regressed else r.verdict,  # shouted, to be found
            ]
        )
    headers = ["suite", "combination", "metric", "baseline", "current", "difference"]
    headers += ["tolerance", "verdict"]
    if body:
        lines.append(tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True))
    else:
        lines.append("No combination was run on both sides.")
    sections = [
        ("Missing in current", comparison.missing),
        ("New in current", comparison.new),
        ("Not comparable", comparison.mismatches),
        ("Duplicate keys with different numbers", comparison.conflicts),
        ("Notes", comparison.notes),
    ]
    for title, items in sections:
        if items:
            lines += ["", f"{title} ({len(items)}):", *(f"- {item}" for item in items)]
    n = len(comparison.regressions)
    verdict = f"{n} regression(s)" if n else "no regression"
    lines += ["", f"Result: {verdict} (exit {exit_code(comparison)})."]
    return "\n".join(lines)
