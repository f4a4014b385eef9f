"""``vaebench report``: one self-contained HTML page of a results directory's figures.

Per suite (per comparability group, as the leaderboards): the leaderboard tables, the status of
every run, learning curves, KL per latent dimension and active units, ROC curves per OOD set and
score, sample and reconstruction grids, and the provenance of the runs. Everything comes from the
records and the artifacts beside them; a part that is absent is named where it would be.

:mod:`.figdata` computes the numbers (no matplotlib), :mod:`.figures` draws them and
:mod:`.html` lays out the page.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaebench import tables
from vaebench.errors import ConfigError, VaebenchError
from vaebench.report import figdata, html
from vaebench.report.html import EmbeddedFigure
from vaebench.results import atomic_write_bytes, load_records

INSTALL_HINT = "pip install 'vaebench[report]'"


@dataclass
class Report:
    """A built report: the page, its figures (PNG, and PDF when asked) and what was missing."""

    html: str
    figures: list[EmbeddedFigure] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def require_matplotlib() -> None:
    """Raise a :class:`VaebenchError` with the install command when matplotlib is absent."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise VaebenchError(
            f"the report draws its figures with matplotlib, which is not installed; run: "
            f"{INSTALL_HINT}"
        ) from exc


def slug(text: str) -> str:
    """A file-name-safe form of a label: ``a / b / c`` becomes ``a--b--c``."""
    text = text.replace(" / ", "--")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("_") or "x"


def build_report(
    results_dir: str | os.PathLike[str], *, pdf: bool = False, title: str | None = None
) -> Report:
    """Build the report of ``results_dir``; ``pdf`` also renders each figure as PDF."""
    require_matplotlib()
    root = Path(results_dir)
    records, problems = load_records([root])
    if not records and not problems:
        raise ConfigError(
            f"no result records in {str(root)!r} (expected {root / 'records'}/*.json); "
            "run `vaebench run --out DIR` first"
        )
    records, conflicts = tables.merge_records(records)
    report = Report(html="")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(tables.group_id(record), []).append(record)
    ordered = sorted(groups.values(), key=lambda rs: tables.canonical_json(_group_key(rs[0])))
    suites = [r[0]["suite"].get("name", "") for r in ordered]
    sections = []
    for group_records in ordered:
        several = suites.count(group_records[0]["suite"].get("name", "")) > 1
        sections.append(_group_section(group_records, several, report, pdf))
    intro = _intro(root, records, problems, conflicts)
    report.html = html.page(title or f"vaebench report: {root.resolve().name}", intro, sections)
    return report


def write_report(
    results_dir: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    figures_dir: str | os.PathLike[str] | None = None,
) -> tuple[Path, Report]:
    """Write the HTML (default ``RESULTS_DIR/report.html``) and, with ``figures_dir``, every
    figure as PNG and PDF there. Returns the HTML's path and the report."""
    report = build_report(results_dir, pdf=figures_dir is not None)
    path = Path(output) if output else Path(results_dir) / "report.html"
    try:
        _write(path, report.html.encode("utf-8"))
        if figures_dir is not None:
            folder = Path(figures_dir)
            for fig in report.figures:
                _write(folder / f"{fig.name}.png", fig.png)
                if fig.pdf is not None:
                    _write(folder / f"{fig.name}.pdf", fig.pdf)
    except OSError as exc:
        raise ConfigError(f"cannot write the report: {exc}") from exc
    return path, report


def _write(path: Path, data: bytes) -> None:
    # Files to share: an atomic write gives them the permissions a plain open() would.
    atomic_write_bytes(path, data)


def _group_key(record: Mapping[str, Any]) -> list[Any]:
    group = tables.comparability_group(record)
    return [group["suite"], group["version"], group["profile"], group["budget"], group["eval"],
            group.get("seeding", "")]  # fmt: skip


def _intro(
    root: Path, records: Sequence[Mapping[str, Any]], problems: Sequence[Any], conflicts: list[str]
) -> str:
    from vaebench import __version__

    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    ok = sum(r.get("status") == "ok" for r in records)
    parts = [
        html.paragraph(
            f"Results directory {root.resolve()}: {len(records)} run(s), {ok} successful, "
            f"{len(records) - ok} failed. Written {now} by vaebench {__version__}."
        ),
        html.missing([f"unreadable record {p}" for p in problems], "records"),
        html.missing(conflicts, "duplicates"),
    ]
    return "\n".join(p for p in parts if p)


@dataclass
class _Section:
    """What the parts of one group's section share while they are drawn."""

    report: Report
    title: str
    stem: str
    pdf: bool

    def figure(self, fig: Any, name: str, alt: str, caption: str) -> str:
        from vaebench.report import figures

        png = figures.to_bytes(fig, "png")
        pdf = figures.to_bytes(fig, "pdf") if self.pdf else None
        embedded = EmbeddedFigure(f"{self.stem}-{name}", caption, png, pdf, alt)
        self.report.figures.append(embedded)
        return html.figure(embedded)

    def missing(self, items: Sequence[Any], what: str) -> str:
        lines = [str(m) for m in items]
        self.report.missing += [f"{self.title}: {what}: {line}" for line in lines]
        return html.missing(lines, what)


def _group_section(
    records: Sequence[Mapping[str, Any]], several: bool, report: Report, pdf: bool
) -> tuple[str, str, str]:
    first = records[0]
    suite = first["suite"].get("name", "")
    group = tables.group_id(first)
    title = f"{suite} v{first['suite'].get('version', '')}, profile {first['suite'].get('profile')}"
    if several:
        title += f" (group {group})"
    section = _Section(report, title, f"{slug(suite)}-{group}", pdf)
    body = [
        html.heading(3, "Leaderboard"),
        _tables(records, section),
        html.heading(3, "Runs"),
        _runs(records),
        html.heading(3, "Learning curves"),
        *_curves(records, section),
        html.heading(3, "Posterior collapse: KL per dimension and active units"),
        *_collapse(records, section),
        html.heading(3, "Out-of-distribution detection: ROC curves"),
        *_rocs(records, section),
        html.heading(3, "Samples and reconstructions"),
        *_grids(records, section),
        html.heading(3, "Provenance"),
        html.key_value_table(figdata.provenance(records)),
    ]
    return title, section.stem, "\n".join(b for b in body if b)


def _curves(records: Sequence[Mapping[str, Any]], section: _Section) -> list[str]:
    from vaebench.report import figures

    curves, missing = figdata.learning_curves(records)
    out = []
    if curves:
        fig, cut = figures.learning_curves_figure(curves, section.title)
        every = (records[0].get("budget") or {}).get("eval_every")
        caption = (
            f"Learning curves, {section.title}: training loss (mean over the steps since the "
            "last evaluation) and validation −ELBO in nats"
            + (f", evaluated every {every} steps" if every else "")
            + "; line: mean over seeds, band: min–max over seeds. After a seed stops early the "
            "mean is over the seeds still training. Right: the same against mean wall time."
            + (" The y-axes start after the first 10% of training." if cut else "")
        )
        alt = f"learning curves, {section.title}"
        out.append(section.figure(fig, "learning-curves", alt, caption))
    return [*out, section.missing(missing, "learning curves")]


def _collapse(records: Sequence[Mapping[str, Any]], section: _Section) -> list[str]:
    from vaebench.report import figures

    bars, missing = figdata.kl_bars(records)
    out = []
    for bar in bars:
        caption = (
            f"{bar.label}: E_x KL(q(z_d|x) ‖ p(z_d)) per latent dimension (nats) and activity "
            "Var_x(E_q[z_d]) (Burda et al. 2016), dimensions ranked by KL within each seed; "
            "bars: mean over seeds, whiskers: min–max. A unit is active above the dashed "
            "threshold (log scale above it)."
        )
        fig = figures.kl_figure(bar, bar.label)
        name, alt = f"collapse-{slug(bar.label)}", f"KL and activity per dimension, {bar.label}"
        out.append(section.figure(fig, name, alt, caption))
    return [*out, section.missing(missing, "collapse figures")]


def _rocs(records: Sequence[Mapping[str, Any]], section: _Section) -> list[str]:
    from vaebench.report import figures

    rocs, missing = figdata.roc_curves(records)
    out = []
    for (ood_set, score), curves in rocs.items():
        caption = (
            f"ROC of telling {ood_set!r} (positive) from the test split (negative) by the score "
            f"{score!r}, per combination: true-positive rate averaged over seeds at fixed "
            "false-positive rates; legend: AUROC mean ± std over seeds."
        )
        fig = figures.roc_figure(curves, ood_set, score, section.title)
        name, alt = f"roc-{slug(ood_set)}-{slug(score)}", f"ROC curves, {ood_set} by {score}"
        out.append(section.figure(fig, name, alt, caption))
        off = [
            f"{c.label} seed {s.seed}: the scores give AUROC {s.auroc:.4f}, the record "
            f"{s.recorded_auroc:.4f}"
            for c in curves
            for s in c.disagreements
        ]
        out.append(html.notice(off, "Check: scores disagree with the recorded AUROC"))
    return [*out, section.missing(missing, "ROC curves")]


def _grids(records: Sequence[Mapping[str, Any]], section: _Section) -> list[str]:
    from vaebench.report import figures

    grids, missing = figdata.image_grids(records)
    out = []
    for grid in grids:
        try:
            fig = figures.grids_figure(grid.samples, grid.recon, f"{grid.label}, seed {grid.seed}")
        except (OSError, ValueError, SyntaxError) as exc:  # a PNG damaged past its signature
            missing.append(figdata.Missing("images", grid.label, f"unreadable grid ({exc})"))
            continue
        caption = (
            f"{grid.label}, seed {grid.seed}: decoder means at prior samples, and test images "
            "each beside its reconstruction (decoder mean at the posterior mean); grey levels "
            "scaled to [0, 1]."
        )
        name, alt = f"images-{slug(grid.label)}", f"samples and reconstructions, {grid.label}"
        out.append(section.figure(fig, name, alt, caption))
    return [*out, section.missing(missing, "image grids")]


def _tables(records: Sequence[Mapping[str, Any]], section: _Section) -> str:
    """The group's tables, section by section as the metrics declare them (the same tables
    ``vaebench run`` prints)."""
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        return section.missing(["every run of this group failed; see Runs"], "leaderboard")
    drawn = tables.section_tables(ok)
    parts = []
    for table in drawn:
        parts.append(html.heading(4, table.title))
        try:
            boards = table.boards(records)
        except ConfigError as exc:  # no metric with a direction to rank by
            parts.append(section.missing([str(exc)], "table"))
            continue
        # Several tables share a group here: the id starts with the table's own key.
        parts.append(tables.to_html(boards, id_prefix=f"{slug(table.key)}-"))
    shown = {t.section for t in drawn}
    if tables.sections.COLLAPSE not in shown:
        parts.append(section.missing(["no collapse metrics recorded"], "collapse table"))
    if tables.sections.OOD not in shown:
        parts.append(section.missing(["no OOD metrics recorded"], "OOD table"))
    return "\n".join(parts)


def _runs(records: Sequence[Mapping[str, Any]]) -> str:
    statuses = figdata.run_statuses(records)
    return html.table(
        ["combination", "seed", "status", "detail"],
        [[s.label, str(s.seed), s.status, s.detail] for s in statuses],
        [s.status != "ok" for s in statuses],
    )


__all__ = ["Report", "build_report", "require_matplotlib", "write_report"]
