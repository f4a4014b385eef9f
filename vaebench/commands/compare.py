"""``vaebench compare``: flag regressions of current results against a baseline.

Exit status: 0 no regression, 1 a regression, 2 no verdict (bad input or an unexpected error;
see :mod:`vaebench.compare`).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any

from vaebench.commands._shared import (
    add_input_args,
    add_metric_arg,
    emit,
    metric_list,
    report_skipped,
)
from vaebench.errors import VaebenchError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare results with a baseline; exit 1 on a regression",
        description=(
            "Compare CURRENT with BASELINE per combination. By default a metric regresses when "
            "it is worse by more than max(3 standard errors of the difference, 1% of the "
            "baseline). Exit 0: no regression; 1: regression; 2: bad input."
        ),
    )
    parser.add_argument("baseline", metavar="BASELINE", help="results directory or per-seed CSV")
    parser.add_argument("current", metavar="CURRENT", help="results directory or per-seed CSV")
    add_metric_arg(parser, "neg_elbo and iw_nll")
    tolerance = parser.add_mutually_exclusive_group()
    tolerance.add_argument(
        "--abs", type=float, metavar="X", help="regression: worse by more than X (metric unit)"
    )
    tolerance.add_argument(
        "--rel", type=float, metavar="X", help="regression: worse by more than X x |baseline|"
    )
    tolerance.add_argument(
        "--sigma", type=float, metavar="X", help="regression: worse by more than X std errors"
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE")
    add_input_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaebench.compare import EXIT_USAGE

    try:
        return _compare(args)
    except VaebenchError:
        raise
    except Exception:
        # 1 is the gate's "regression": a crash must not read as one in CI.
        traceback.print_exc()
        print(
            f"vaebench: error: compare failed unexpectedly (a bug: please report the traceback "
            f"above); exit {EXIT_USAGE}, no verdict",
            file=sys.stderr,
        )
        return EXIT_USAGE


def _compare(args: argparse.Namespace) -> int:
    from vaebench import tables
    from vaebench.compare import Tolerance, compare, exit_code, format_comparison

    tolerance = Tolerance()
    for mode in ("abs", "rel", "sigma"):
        if getattr(args, mode) is not None:
            tolerance = Tolerance(mode, getattr(args, mode))
    baseline, problems = tables.load_results([args.baseline], strict=args.strict)
    current, more = tables.load_results([args.current], strict=args.strict)
    report_skipped([*problems, *more])
    result = compare(baseline, current, metric_list(args.metrics), tolerance)
    emit(format_comparison(result, args.decimals), args.output)
    return exit_code(result)
