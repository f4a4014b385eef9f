"""``vaebench export``: results as one table file, per seed or aggregated over seeds.

The aggregated export is the leaderboard of every metric (the same table model and
formatters); ``--per-seed`` writes one row per record, and its CSV can be read back by
``vaebench leaderboard`` and ``vaebench compare``.
"""

from __future__ import annotations

import argparse
from typing import Any

from vaebench.commands._shared import (
    add_input_args,
    add_metric_arg,
    add_results_args,
    add_section_arg,
    emit,
    metric_list,
    report_skipped,
    sections_asked,
    warn,
)
from vaebench.errors import ConfigError
from vaebench.formats import FORMATS, format_for


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write results as CSV, Markdown, LaTeX, JSON or HTML",
        description=(
            "Export results: aggregated over seeds (one row per combination and comparability "
            "group, every metric) or, with --per-seed, one row per run."
        ),
    )
    add_results_args(parser)
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    parser.add_argument(
        "--format", choices=FORMATS, help="output format (default: from the -o suffix, else csv)"
    )
    parser.add_argument(
        "--per-seed", action="store_true", help="one row per record instead of per combination"
    )
    add_metric_arg(parser, "every metric")
    parser.add_argument(
        "--rank-by", metavar="M", help="the metric rows are ordered by (default: iw_nll)"
    )
    add_section_arg(parser)
    add_input_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaebench import tables

    records, problems = tables.load_results(args.paths, strict=args.strict)
    report_skipped(problems)
    records, conflicts = tables.merge_records(records)
    warn(conflicts)
    fmt = format_for(args.output, args.format, "csv")
    metrics = metric_list(args.metrics)
    sections = sections_asked(args)
    if sections is not None:
        if args.per_seed:
            raise ConfigError("--section tables are aggregated over seeds; drop --per-seed")
        emit(tables.render_sections(records, fmt, args.decimals, sections), args.output)
        return 0
    if args.per_seed:
        frame = tables.records_frame(records)
        if metrics:
            tables.check_metrics(metrics, tables.metric_names(records))
            others = [m for m in tables.metric_names(records) if m not in metrics]
            frame = frame.drop(
                columns=[c for c in frame if c.removesuffix(tables.STDERR_SUFFIX) in others]
            )
        table: Any = frame
    else:
        table = tables.leaderboard(records, metrics or tables.metric_names(records), args.rank_by)
    emit(tables.render(table, fmt, args.decimals), args.output)
    return 0
