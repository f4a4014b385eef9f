"""``vaebench leaderboard``: ranked tables of results, one per comparability group."""

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
from vaebench.formats import FORMATS, format_for


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "leaderboard",
        help="rank combinations per suite, with mean ± std over seeds and significance marks",
        description=(
            "Rank the combinations of every suite by a metric. Only comparable results (same "
            "suite version and options, profile, budget, eval settings and random-stream "
            "scheme) share a table. Cells show mean ± "
            "std over seeds; the best is bold and rows not significantly worse than it (Welch's "
            "one-sided t-test, alpha 0.05) carry a dagger."
        ),
    )
    add_results_args(parser)
    add_metric_arg(parser, "neg_elbo and iw_nll")
    parser.add_argument(
        "--rank-by", metavar="M", help="the metric to rank by (default: iw_nll when shown)"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (default: from the -o suffix, else md)",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    add_section_arg(parser)
    add_input_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaebench import tables

    records, problems = tables.load_results(args.paths, strict=args.strict)
    report_skipped(problems)
    records, conflicts = tables.merge_records(records)
    warn(conflicts)
    fmt = format_for(args.output, args.format, "md")
    sections = sections_asked(args)
    if sections is not None:
        emit(tables.render_sections(records, fmt, args.decimals, sections), args.output)
        return 0
    metrics = metric_list(args.metrics) or tables.default_metrics(records)
    boards = tables.leaderboard(records, metrics, args.rank_by)
    emit(tables.render(boards, fmt, args.decimals), args.output)
    return 0
