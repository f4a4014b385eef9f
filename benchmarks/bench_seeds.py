"""Training throughput of S seeds one after the other (``train.fit``) against the same S seeds
trained together as one vectorised model (``batched.fit_batched``), on the CPU by default.

Usage::

    python benchmarks/bench_seeds.py                       # digits model, S = 1, 4, 16
    python benchmarks/bench_seeds.py --hidden 32 --latent 4   # a small model (overhead-bound)
    python benchmarks/bench_seeds.py --quick               # smoke run

Both paths are the real trainers with one budget (validation only at the last step), so the
numbers include everything a step costs there: batch indexing, noise, loss, backward, Adam.
samples/s = seeds x steps x batch size / wall seconds. The load average is printed because on a
shared machine it changes the numbers more than anything measured here.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from tabulate import tabulate

from vaebench.batched import fit_batched
from vaebench.contracts import Budget
from vaebench.pipeline import build_model, load_suite_data
from vaebench.plugins import default_host
from vaebench.train import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--prior", default="standard-normal")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N (default 3)")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time this process's CPU seconds instead of wall seconds: steadier on a loaded "
        "machine, and the same thing with --threads 1",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.hidden, args.latent, args.repeats = [1, 2], 5, 32, 4, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    host = default_host()
    data = load_suite_data(host.get("suite", "digits"), {"limit": None, "data_dir": None})
    combination = {"encoder": "mlp-gaussian", "decoder": "mlp-categorical", "prior": args.prior}
    options = {"encoder": {"hidden": args.hidden}, "decoder": {"hidden": args.hidden}}
    budget = Budget(
        steps=args.steps, batch_size=args.batch_size, eval_every=args.steps, patience=None
    )

    def build(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_model(host, combination, options, data.spec, args.latent, args.hidden)

    clock = time.process_time if args.cpu_time else time.perf_counter

    def best_of(run: object) -> float:
        times = []
        for _ in range(args.repeats):
            start = clock()
            run()  # type: ignore[operator]
            times.append(clock() - start)
        return min(times)

    fit(build(0), data, Budget(steps=3, batch_size=args.batch_size, eval_every=3), 0)  # warm-up
    load_before = os.getloadavg()[0]
    rows = []
    for n in args.seeds:
        seeds = list(range(n))
        seq = best_of(lambda seeds=seeds: [fit(build(s), data, budget, s) for s in seeds])
        vec = best_of(
            lambda seeds=seeds: fit_batched([build(s) for s in seeds], data, budget, seeds)
        )
        samples = n * args.steps * args.batch_size
        rows.append([n, f"{samples / seq:,.0f}", f"{samples / vec:,.0f}", f"{seq / vec:.2f}x"])
    print(
        f"digits model 64-{args.hidden}-{args.hidden}-{args.latent} ({args.prior}), batch "
        f"{args.batch_size}, {args.steps} steps, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, {'CPU' if args.cpu_time else 'wall'} time, best of "
        f"{args.repeats}, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(
        tabulate(
            rows,
            headers=["seeds", "sequential samples/s", "batched samples/s", "speed-up"],
            tablefmt="github",
        )
    )


if __name__ == "__main__":
    main()
