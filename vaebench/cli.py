"""The ``vaebench`` command. Parsing and messages only; the work is the Python API's.

Subcommands live in :mod:`vaebench.commands`, one module each, imported when the parser is
built; none of them imports torch at module level, so ``vaebench --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

from vaebench import __version__
from vaebench.errors import VaebenchError

# Exit statuses: 0 done, 1 a verdict (every result failed; compare: a regression), 2 bad input,
# 3 incomplete (run: seeds left to another run), 4 an internal error, 128 + N stopped by
# signal N (130: SIGINT, 143: SIGTERM).
EXIT_INTERNAL = 4
COMMANDS = ("run", "plugins", "list", "export", "leaderboard", "compare", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaebench",
        description="Benchmark Variational Auto-Encoders: every encoder x decoder x prior "
        "combination of a suite, trained under one budget, evaluated the same way.",
    )
    parser.add_argument("--version", action="version", version=f"vaebench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        # A command module that does not import is a broken install: fail loudly, never list
        # fewer commands than the documentation promises.
        module = importlib.import_module(f"vaebench.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VaebenchError as exc:
        print(f"vaebench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        step = getattr(exc, "checkpoint_step", None)
        saved = f"; training saved a checkpoint at step {step:,}" if step is not None else ""
        print(
            f"vaebench: interrupted ({signal.Signals(signum).name}){saved}; finished results are "
            "kept, run the same command again to resume",
            file=sys.stderr,
        )
        return 128 + signum
    except Exception:  # a bug, not bad input: the traceback, and a status no command gives
        import traceback

        traceback.print_exc()
        print(
            f"vaebench: internal error (exit status {EXIT_INTERNAL}); finished results are kept",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
