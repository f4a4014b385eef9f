"""``vaebench list KIND``: the registered components of one kind (or of every kind)."""

from __future__ import annotations

import argparse

KINDS_PLURAL = {
    "encoders": "encoder",
    "decoders": "decoder",
    "priors": "prior",
    "datasets": "dataset",
    "suites": "suite",
    "metrics": "metric",
    "executors": "executor",
    "objectives": "objective",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "list", help="list registered encoders, decoders, priors, objectives, suites..."
    )
    parser.add_argument("kind", nargs="?", choices=sorted(KINDS_PLURAL), help="default: all")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from vaebench.plugins import default_host

    host = default_host()
    kinds = [args.kind] if args.kind else list(KINDS_PLURAL)
    for plural in kinds:
        registry = host.registry(KINDS_PLURAL[plural])
        rows = [[e.obj.name, e.plugin, e.version, _describe(e.obj)] for e in registry]
        print(f"{plural} ({len(rows)})")
        print(
            tabulate(rows, headers=["name", "plugin", "version", "description"])
            if rows
            else "  (none)"
        )
        print()
    return 0


def _describe(obj: object) -> str:
    text = getattr(obj, "description", "") or ""
    if getattr(obj, "default_grid", True) is False:
        text = f"{text} [not in default grids: runs when named]"
    version = getattr(obj, "version", None)
    if getattr(obj, "profiles", None) is not None and version:
        text = f"{text} (version {version}; profiles: {', '.join(obj.profiles)})"  # type: ignore[attr-defined]
    return text
