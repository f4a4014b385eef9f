"""``vaebench report``: one self-contained HTML page of a results directory's figures."""

from __future__ import annotations

import argparse
from typing import Any

from vaebench.commands._shared import warn


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write one self-contained HTML page of tables and figures from a results directory",
        description=(
            "Write one HTML file (figures embedded, no network, no JavaScript) with, per suite: "
            "the leaderboards, learning curves, KL per latent dimension and active units, ROC "
            "curves per OOD set and score, sample and reconstruction grids, and the runs' "
            "provenance. Parts the results lack are named where they would be. Needs "
            "matplotlib: pip install 'vaebench[report]'."
        ),
    )
    parser.add_argument("results_dir", metavar="RESULTS_DIR", help="a results directory")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the HTML file to write (default: RESULTS_DIR/report.html)",
    )
    parser.add_argument(
        "--figures",
        metavar="DIR",
        help="also write every figure as PNG and PDF into DIR (for papers)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaebench.report import require_matplotlib, write_report

    require_matplotlib()
    path, report = write_report(args.results_dir, args.output, args.figures)
    lines = [f"wrote {path} ({len(report.figures)} figures, {len(report.missing)} missing parts)"]
    if args.figures:
        lines.append(f"wrote {len(report.figures)} figures as PNG and PDF into {args.figures}")
    warn(lines)
    return 0
