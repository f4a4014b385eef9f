"""Argument and output helpers shared by the reporting commands (leaderboard, export, compare)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from vaebench.errors import ConfigError


def add_results_args(parser: argparse.ArgumentParser) -> None:
    """The results to read: directories of records, or per-seed CSV exports."""
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a results directory, or a CSV written by `vaebench export --per-seed`",
    )


def add_input_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first unreadable or hand-edited record instead of skipping it",
    )
    parser.add_argument(
        "--decimals", type=_decimals, default=2, metavar="N", help="decimal places (default: 2)"
    )


def _decimals(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def add_metric_arg(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--metric",
        action="append",
        dest="metrics",
        metavar="M",
        help=f"a metric to show; repeat or separate by commas (default: {default})",
    )


def metric_list(values: Iterable[str] | None) -> list[str]:
    """``--metric a,b --metric c`` -> ``[a, b, c]``."""
    return [m.strip() for v in values or () for m in v.split(",") if m.strip()]


def warn(lines: Iterable[object]) -> None:
    for line in lines:
        print(f"vaebench: {line}", file=sys.stderr)


def report_skipped(problems: Iterable[object]) -> None:
    warn(f"skipped bad record {p}" for p in problems)


def emit(text: str, output: str | None) -> None:
    """Print ``text``, or write it to ``output`` and say so on stderr."""
    text = text.rstrip("\n") + "\n"
    if not output:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {output!r}: {exc}") from exc
    warn([f"wrote {output}"])


SECTION_CHOICES = ("likelihood", "collapse", "ood", "other", "all")


def add_section_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--section",
        action="append",
        choices=SECTION_CHOICES,
        metavar="S",
        help="print the tables of a section as `vaebench run` and the report draw them, from "
        f"what each metric declares: {', '.join(SECTION_CHOICES)} (repeatable; not with "
        "--metric or --rank-by)",
    )


def sections_asked(args: argparse.Namespace) -> list[str] | None:
    """The sections of ``--section`` (None: not asked; every section for ``all``)."""
    if not args.section:
        return None
    if args.metrics or args.rank_by:
        raise ConfigError("--section draws its own metrics; give --section or --metric/--rank-by")
    if "all" in args.section:
        return list(SECTION_CHOICES[:-1])
    return list(dict.fromkeys(args.section))
