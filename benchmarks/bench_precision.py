"""Training precision fp32 against bf16: training time, -ELBO and IW-NLL per seed.

Usage::

    python benchmarks/bench_precision.py                   # digits, default profile, seeds 0-2
    python benchmarks/bench_precision.py --suite mnist --priors standard-normal --steps 1000
    python benchmarks/bench_precision.py --quick           # smoke run (tiny profile)

Each precision trains the same combination and seeds into a fresh directory, one seed at a time
(``--seed-batch 1``), in this process with torch's default threads. bf16 runs the training step
under ``torch.autocast(dtype=torch.bfloat16)``; evaluation is fp32 either way, so -ELBO and
IW-NLL compare the trained models. Whether bf16 pays depends on the CPU: with AVX512-BF16 or
AMX its matrix products run natively, without them torch emulates them in fp32 (see
``cpu_capability`` in the table's header).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from typing import Any

import torch
from tabulate import tabulate

from vaebench.api import run
from vaebench.environment import environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="digits")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--encoders", nargs="+", default=["mlp-gaussian"])
    parser.add_argument("--decoders", nargs="+", default=None, help="default: the suite's")
    parser.add_argument("--priors", nargs="+", default=["standard-normal"])
    parser.add_argument("--quick", action="store_true", help="tiny profile: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.profile = "tiny"
    rows: list[list[Any]] = []
    for precision in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as out:
            summary = run(
                suite=args.suite,
                profile=args.profile,
                steps=args.steps,
                seeds=args.seeds,
                encoders=args.encoders,
                decoders=args.decoders,
                priors=args.priors,
                metrics=["likelihood"],
                precision=precision,
                seed_batch=1,
                executor="local",
                out=out,
            )
        for record in sorted(summary.records, key=lambda r: (str(r["combination"]), r["seed"])):
            if record["status"] != "ok":
                rows.append([precision, record["seed"], "failed", "", "", "", record["error"]])
                continue
            metrics, training = record["metrics"], record["training"]
            rows.append(
                [
                    precision,
                    record["seed"],
                    f"{training['seconds']:.1f}",
                    training.get("steps_done", ""),
                    f"{metrics['neg_elbo']['value']:.2f}",
                    f"{metrics['iw_nll']['value']:.2f}",
                    "/".join(record["combination"].values()),
                ]
            )
    env = environment(torch.device("cpu"), {})
    print(
        f"{args.suite}, profile {args.profile}, steps {args.steps or 'of the profile'}; "
        f"{env.get('device_name')}, cpu_capability {env.get('cpu_capability')}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, torch {torch.__version__}"
    )
    print(
        tabulate(
            rows,
            headers=["precision", "seed", "train s", "steps", "-ELBO", "IW-NLL", "combination"],
            tablefmt="github",
        )
    )
    for precision in ("fp32", "bf16"):
        times = [float(r[2]) for r in rows if r[0] == precision and r[2] != "failed"]
        if times:
            print(f"{precision}: median train s {statistics.median(times):.1f}")


if __name__ == "__main__":
    main()
