"""Wall time of the digits default grid under the ``local``, ``process`` and ``ray`` executors.

Usage::

    python benchmarks/bench_executors.py                  # default grid and profile
    python benchmarks/bench_executors.py --steps 300      # a shorter budget
    python benchmarks/bench_executors.py --quick          # smoke run (tiny profile)

Every configuration trains the same keys into a fresh directory (so nothing is skipped) and
its wall time includes everything a user waits for: starting workers or the Ray cluster,
training, evaluation and writing records. ``process`` and ``ray`` use ``--jobs`` workers
(default 2), each with the CPUs split between them. ``local`` uses torch's default threads, or
``--local-threads`` (one thread is the sequential baseline: what a single worker sees). By default
the grid is the MLP encoder and decoder with every prior; ``--full-grid`` takes every
component that fits.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import torch
from tabulate import tabulate

from vaebench.api import run

# Seed batch 1 (every seed its own unit) and 2 (the digits suite's two seeds trained together):
# what ``--seed-batch auto`` chooses per executor on a CPU follows from this table.
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("local (T threads), seed batch 1", {"executor": "local", "seed_batch": 1}),
    ("local (T threads), seed batch 2", {"executor": "local", "seed_batch": 2}),
    ("process --jobs J, seed batch 1", {"executor": "process", "seed_batch": 1}),
    ("process --jobs J, seed batch 2", {"executor": "process", "seed_batch": 2}),
    ("ray (J CPUs, local cluster), seed batch 1", {"executor": "ray", "seed_batch": 1}),
    ("ray (J CPUs, local cluster), seed batch 2", {"executor": "ray", "seed_batch": 2}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--metrics", nargs="+", default=None, help="default: the suite's")
    parser.add_argument("--only", nargs="+", default=None, help="executors to time")
    parser.add_argument(
        "--local-threads", type=int, default=None, help="torch threads of local (default: torch's)"
    )
    parser.add_argument("--full-grid", action="store_true", help="every encoder and decoder too")
    parser.add_argument("--quick", action="store_true", help="tiny profile: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.profile = "tiny"
    base: dict[str, Any] = {
        "suite": "digits",
        "profile": args.profile,
        "steps": args.steps,
        "metrics": args.metrics,
        "encoders": None if args.full_grid else ["mlp-gaussian"],
        "decoders": None if args.full_grid else ["mlp-categorical"],
        "progress": False,
    }
    rows = []
    first: float | None = None
    load_before = os.getloadavg()[0]
    threads = args.local_threads or torch.get_num_threads()
    default_threads = torch.get_num_threads()
    for label, config in CONFIGS:
        if args.only and config["executor"] not in args.only:
            continue
        options = {} if config["executor"] == "local" else {"jobs": args.jobs}
        torch.set_num_threads(threads if config["executor"] == "local" else default_threads)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            summary = run(**base, **config, executor_options=options, out=out)
            seconds = time.perf_counter() - start
        torch.set_num_threads(default_threads)
        first = first or seconds
        rows.append(
            [
                label.replace("J", str(args.jobs)).replace("T", str(threads)),
                len(summary.units),
                summary.ran,
                summary.failed,
                f"{seconds:.1f}",
                f"{first / seconds:.2f}x",
            ]
        )
    grid = "every component" if args.full_grid else "mlp-gaussian x mlp-categorical x every prior"
    print(
        f"digits grid ({grid}, the suite's seeds), profile "
        f"{args.profile}, steps {args.steps or 'of the profile'}, {os.cpu_count()} CPUs, "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(
        tabulate(
            rows,
            headers=["executor", "units", "seeds run", "failed", "wall s", "vs first row"],
            tablefmt="github",
        )
    )


if __name__ == "__main__":
    main()
