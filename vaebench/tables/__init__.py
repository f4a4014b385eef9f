"""One table model for every output: per-seed rows, aggregates over seeds, leaderboards.

::

    records ─ merge_records ─ records_frame ─ aggregate ─ leaderboard ─> [Leaderboard]
                                   │                          ▲               │
                          export --per-seed          section_tables      render: md / latex /
                                                  (what metrics declare)  html / csv / json

Only records of one *comparability group* share a table: same suite name, version, options
(the set ones: ``binarization=static`` is other data) and profile, same budget (less
``checkpoint_every``, which does not change a result), same evaluation settings (the eval
block less its timing) and same random-stream scheme. A group is named by the first 8 hex
digits of the hash of those fields. When one suite has several groups, each gets its own table
with a note saying which fields differ. Within a group, rows are combinations: encoder,
decoder, prior and (from schema 2) objective.

The modules: :mod:`.groups` (groups and labels), :mod:`.info` (metric units and directions),
:mod:`.frames` (records as frames, aggregates), :mod:`.board` (leaderboards, marks, Welch's
test), :mod:`.sections` (which tables the metrics' declarations make; what ``vaebench run``
prints), :mod:`.render` (the formats) and :mod:`.readback` (records from directories and
per-seed CSVs).
"""

from __future__ import annotations

from vaebench.formats import FORMATS, SUFFIX_FORMATS, format_for
from vaebench.results import canonical_json
from vaebench.tables.board import (
    ALPHA,
    BEST,
    NOT_WORSE,
    PREFERRED_RANK,
    UNTESTED,
    WORSE,
    Cell,
    Leaderboard,
    Row,
    leaderboard,
    leaderboard_frame,
)
from vaebench.tables.frames import (
    GROUP_COLUMNS,
    ID_COLUMNS,
    STDERR_SUFFIX,
    aggregate,
    merge_records,
    records_frame,
)
from vaebench.tables.groups import (
    BUDGET_ORDER,
    EVAL_ORDER,
    combination_label,
    comparability_group,
    differing_fields,
    group_fields,
    group_id,
    record_label,
    settings_summary,
)
from vaebench.tables.info import (
    DEFAULT_METRICS,
    MetricInfo,
    check_metrics,
    default_metrics,
    metric_info,
    metric_names,
)
from vaebench.tables.readback import (
    load_results,
    read_csv_records,
    write_per_seed_csv,
)
from vaebench.tables.render import (
    DEFAULT_DECIMALS,
    json_data,
    latex_escape,
    render,
    to_csv,
    to_html,
    to_json,
    to_latex,
    to_markdown,
)
from vaebench.tables.sections import (
    SECTIONS,
    TITLES,
    Placement,
    SectionTable,
    placements,
    registered_placements,
    render_run,
    render_sections,
    section_tables,
)

__all__ = [
    "ALPHA", "BEST", "BUDGET_ORDER", "DEFAULT_DECIMALS", "DEFAULT_METRICS", "EVAL_ORDER",
    "FORMATS", "GROUP_COLUMNS", "ID_COLUMNS", "NOT_WORSE", "PREFERRED_RANK", "SECTIONS",
    "STDERR_SUFFIX", "SUFFIX_FORMATS", "TITLES", "UNTESTED", "WORSE", "Cell", "Leaderboard",
    "MetricInfo", "Placement", "Row", "SectionTable", "aggregate", "canonical_json",
    "check_metrics", "combination_label", "comparability_group", "default_metrics",
    "differing_fields", "format_for", "group_fields", "group_id", "json_data", "latex_escape",
    "leaderboard", "leaderboard_frame", "load_results", "merge_records", "metric_info",
    "metric_names", "placements", "read_csv_records", "record_label", "records_frame",
    "registered_placements", "render", "render_run", "render_sections", "section_tables",
    "settings_summary", "to_csv", "to_html", "to_json", "to_latex", "to_markdown",
    "write_per_seed_csv",
]  # fmt: skip
