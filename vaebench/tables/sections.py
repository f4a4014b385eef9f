"""Sections: which tables every output (``vaebench run``, ``leaderboard --section``, ``export
--section``, ``report``) draws from the records, as each metric declares.

A metric's :class:`~vaebench.contracts.MetricSpec` says which section its outputs belong to
(``likelihood``, ``collapse`` for collapse and holes, ``ood``, or ``other``), which outputs its
table shows and in what order (``columns``), which output ranks the section (``headline``), and
whether its outputs split into one table per name part (``table_per``: the OOD metric's table
per score). Outputs no installed metric claims go to "other". Every section is a leaderboard of
the same model, so every format, the escaping and the bold/dagger marks apply to all of them.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from vaebench.errors import ConfigError
from vaebench.formats import FORMATS
from vaebench.tables.board import Leaderboard, leaderboard, leaderboard_frame
from vaebench.tables.frames import merge_records, records_frame
from vaebench.tables.info import metric_info
from vaebench.tables.render import DEFAULT_DECIMALS, json_data, render, to_csv

LIKELIHOOD, COLLAPSE, OOD, OTHER = "likelihood", "collapse", "ood", "other"
SECTIONS = (LIKELIHOOD, COLLAPSE, OOD, OTHER)
TITLES = {
    LIKELIHOOD: "Likelihood (test split)",
    COLLAPSE: "Posterior collapse and prior mismatch",
    OOD: "Out-of-distribution detection (OOD set = positive class)",
    OTHER: "Other metrics",
}


@dataclass(frozen=True)
class Placement:
    """Where one metric's outputs are shown (the table fields of its MetricSpec)."""

    metric: str
    section: str = OTHER
    columns: tuple[str, ...] = ()
    headline: str | None = None
    table_per: int | None = None

    def owns(self, names: Iterable[str]) -> list[str]:
        """The outputs among ``names`` this metric's table shows, in its order (a column may
        be a shell-style pattern: ``ood/*/*/auroc``)."""
        names = list(names)
        if not self.columns:
            return [n for n in names if n.startswith(f"{self.metric}/")]
        matched = (fnmatch.filter(names, c) if _is_pattern(c) else [c] for c in self.columns)
        return list(dict.fromkeys(n for group in matched for n in group if n in names))

    def headline_in(self, metrics: Sequence[str]) -> str | None:
        """The first of ``metrics`` that is this metric's headline (or matches its pattern)."""
        if self.headline is None:
            return None
        return next((m for m in metrics if fnmatch.fnmatchcase(m, self.headline)), None)


def _is_pattern(column: str) -> bool:
    return any(c in column for c in "*?[")


@dataclass(frozen=True)
class SectionTable:
    """One table of a section: its key (``collapse``, ``ood/iw_ll``), heading, the outputs it
    shows and the one it is ranked by (None: the table's own default)."""

    key: str
    section: str
    title: str
    metrics: tuple[str, ...]
    rank_by: str | None

    def boards(self, records: Iterable[Mapping[str, Any]]) -> list[Leaderboard]:
        """The table's leaderboards; ConfigError when none of its outputs has a direction."""
        return leaderboard(records, list(self.metrics), self.rank_by)


def placements(specs: Iterable[Any]) -> list[Placement]:
    """The placements declared by metric specs (anything with MetricSpec's fields)."""
    return [
        Placement(
            spec.name,
            getattr(spec, "section", OTHER) or OTHER,
            tuple(getattr(spec, "columns", ()) or ()),
            getattr(spec, "headline", None),
            getattr(spec, "table_per", None),
        )
        for spec in specs
    ]


def registered_placements() -> list[Placement]:
    """The placements of every installed metric, in registry (name) order."""
    from vaebench.plugins import default_host

    return placements(entry.obj for entry in default_host().registry("metric"))


def _order(section: str) -> tuple[int, str]:
    # Known sections in their order; a plugin's own section after OOD, before "other".
    known = {s: i for i, s in enumerate(SECTIONS)}
    return (known.get(section, len(SECTIONS) - 1) if section != OTHER else len(SECTIONS), section)


def section_tables(
    records: Sequence[Mapping[str, Any]], declared: Sequence[Placement] | None = None
) -> list[SectionTable]:
    """The tables the records' metrics make, section by section (``declared`` defaults to the
    installed metrics' placements)."""
    declared = registered_placements() if declared is None else declared
    infos = metric_info(records)
    names = list(infos)
    claimed: set[str] = set()
    by_section: dict[str, list[tuple[Placement, list[str]]]] = {}
    for placement in declared:
        owned = [n for n in placement.owns(names) if n not in claimed]
        if owned and placement.section != OTHER:
            claimed.update(owned)
            by_section.setdefault(placement.section, []).append((placement, owned))
    tables: list[SectionTable] = []
    for section in sorted(by_section, key=_order):
        title = TITLES.get(section, section)
        parts: dict[str, list[tuple[Placement, list[str]]]] = {}
        for placement, owned in by_section[section]:
            if placement.table_per is None:
                parts.setdefault("", []).append((placement, owned))
                continue
            for name in owned:
                value = name.split("/")[placement.table_per]
                parts.setdefault(value, []).append((placement, [name]))
        for value, members in parts.items():
            metrics = tuple(dict.fromkeys(n for _, owned in members for n in owned))
            headlines = [h for p, _ in members if (h := p.headline_in(metrics))]
            directed = [h for h in headlines if infos[h].higher_is_better is not None]
            tables.append(
                SectionTable(
                    key=f"{section}/{value}" if value else section,
                    section=section,
                    title=f"{title}: {value}" if value else title,
                    metrics=metrics,
                    rank_by=directed[0] if directed else None,
                )
            )
    rest = tuple(n for n in names if n not in claimed)
    if rest:
        tables.append(SectionTable(OTHER, OTHER, TITLES[OTHER], rest, None))
    return tables


def _heading(title: str, fmt: str) -> str:
    if fmt == "md":
        return f"## {title}"
    if fmt == "latex":
        return f"% {title}"
    if fmt == "html":
        import html

        return f"<h2>{html.escape(title)}</h2>"
    return title


def render_sections(
    records: Iterable[Mapping[str, Any]],
    fmt: str = "md",
    decimals: int = DEFAULT_DECIMALS,
    only: Sequence[str] | None = None,
    declared: Sequence[Placement] | None = None,
) -> str:
    """The section tables of the records (those of the sections in ``only``, default all) as
    one document in the format asked for.

    md, latex and html: the tables, each headed by its section's title when there is more than
    one. json: one object with a key per table (``likelihood``, ``collapse``, ``ood/<score>``,
    ``other``), each a list of leaderboards. csv: the leaderboards flattened, a row per
    combination and table, the table's key in the first column.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    records, _ = merge_records(records)
    if not any(r["metrics"] for r in records):
        if fmt == "csv":
            return ""
        if fmt == "json":
            return json.dumps({})
        return "(no metrics to show: every run failed)" if records else "(no results)"
    tables = [t for t in section_tables(records, declared) if only is None or t.section in only]
    if not tables:
        raise ConfigError(
            f"the records have no {' or '.join(only or ())} metrics; sections present: "
            + ", ".join(dict.fromkeys(t.section for t in section_tables(records, declared)))
        )
    drawn: list[tuple[SectionTable, list[Leaderboard] | str]] = []
    for table in tables:
        try:
            drawn.append((table, table.boards(records)))
        except ConfigError as exc:  # no output of this table has a direction to rank by
            drawn.append((table, str(exc)))
    if fmt == "json":
        data = {t.key: json_data(b) if isinstance(b, list) else {"error": b} for t, b in drawn}
        return json.dumps(data, indent=2, ensure_ascii=False)
    if fmt == "csv":
        frames = [leaderboard_frame(b).assign(table=t.key) for t, b in drawn if isinstance(b, list)]
        frame = pd.concat(frames, ignore_index=True)
        return frame[["table", *(c for c in frame.columns if c != "table")]].to_csv(index=False)
    parts = []
    for table, boards in drawn:
        body = render(boards, fmt, decimals) if isinstance(boards, list) else f"({boards})"
        parts.append(f"{_heading(table.title, fmt)}\n\n{body}" if len(drawn) > 1 else body)
    return "\n\n".join(parts)


def render_run(
    records: Iterable[Mapping[str, Any]], fmt: str = "md", decimals: int = DEFAULT_DECIMALS
) -> str:
    """What ``vaebench run`` prints: every section's tables as one document
    (:func:`render_sections`), so a program can parse json whole; csv is the per-seed table
    (one row per run, every metric), which ``leaderboard`` and ``compare`` read back."""
    if fmt == "csv":
        records, _ = merge_records(records)
        return to_csv(records_frame(records)) if records else ""
    return render_sections(records, fmt, decimals)
