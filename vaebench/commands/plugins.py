"""``vaebench plugins``: every loaded plugin, its version, hooks and components."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("plugins", help="list loaded plugins and what they register")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaebench.plugins import default_host

    infos = default_host().plugins()
    if args.json:
        payload = [
            {
                "name": i.name,
                "version": i.version,
                "distribution": i.distribution,
                "hooks": sorted(set(i.hooks)),
                "registered": i.registered,
            }
            for i in infos
        ]
        print(json.dumps(payload, indent=2))
        return 0
    from tabulate import tabulate

    rows = []
    for info in infos:
        parts = [f"{kind}s: {', '.join(names)}" for kind, names in sorted(info.registered.items())]
        rows.append([info.name, info.version, info.distribution or "-", "\n".join(parts) or "-"])
    print(tabulate(rows, headers=["plugin", "version", "package", "registers"], tablefmt="simple"))
    return 0
