"""Renderers: leaderboards or the per-seed frame as Markdown, LaTeX, HTML, CSV or JSON.

Every renderer draws a format-neutral :class:`_Grid` built here from the table model, so
escaping and the bold/dagger marks are decided once per format, for every table alike.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from vaebench.errors import ConfigError
from vaebench.formats import FORMATS
from vaebench.tables.board import BEST, NOT_WORSE, Leaderboard, Row, leaderboard_frame
from vaebench.tables.groups import text as _text
from vaebench.tables.info import MetricInfo

DEFAULT_DECIMALS = 2


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
            "One row per run; group: records sharing suite version and options, profile, "
            "budget, eval settings and random-stream scheme."
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


def to_html(
    tables: Sequence[Leaderboard] | pd.DataFrame,
    decimals: int = DEFAULT_DECIMALS,
    id_prefix: str = "",
) -> str:
    """A plain, escaped ``<table>`` per group (no script, no styling). Each table's id is its
    label, after ``id_prefix`` (a page holding several sets of tables gives each its own)."""
    parts = []
    seen: dict[str, int] = {}
    for grid in _grids(tables):
        # One id per table: tables of the same group (likelihood, collapse...) share a label.
        ident = id_prefix + grid.label.replace(":", "-")
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


def json_data(tables: Sequence[Leaderboard] | pd.DataFrame) -> Any:
    """JSON-ready data: a list of per-seed rows, or of leaderboards with their rows and cells."""
    if isinstance(tables, pd.DataFrame):
        data = tables.astype(object).to_dict("records")
    else:
        data = [{**asdict(board), "title": board.title} for board in tables]
    return _plain(data)


def to_json(tables: Sequence[Leaderboard] | pd.DataFrame) -> str:
    """JSON of :func:`json_data`."""
    return json.dumps(json_data(tables), indent=2, ensure_ascii=False)


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
