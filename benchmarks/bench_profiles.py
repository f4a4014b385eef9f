"""What one epoch of each literature set-up costs: the training step of every combination a
profile plans, timed side by side.

Usage::

    python benchmarks/bench_profiles.py                          # mnist tomczak2018 and burda2015
    python benchmarks/bench_profiles.py --profiles tomczak2018 --priors standard-normal vamp
    python benchmarks/bench_profiles.py --threads 1 2            # one core against two
    python benchmarks/bench_profiles.py --quick                  # smoke run
    python benchmarks/bench_profiles.py --device cuda            # on a GPU

Each combination is built from the profile exactly as ``vaebench run`` plans it (sizes,
component and objective options, optimiser) and steps through the trainer's own width
(:class:`vaebench.train.SingleWidth`: the objective's loss, backward, gradient normalisation
where the budget asks for it, Adam). Steps are timed in rounds that visit every combination in
turn (and, with several ``--threads``, every thread count in turn), and the best round counts,
so that a shared machine's load changes all of them alike.
s/epoch = ms/step x steps per epoch; the full run is the profile's largest number of epochs
(early stopping ends most runs sooner). Validation (once per epoch at most) is not included.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from tabulate import tabulate

from vaebench.contracts import Progress
from vaebench.environment import device_name
from vaebench.pipeline import build_objective, build_unit_model, load_suite_data, resolve_device
from vaebench.plugins import default_host
from vaebench.runner import RunRequest, plan
from vaebench.train import SingleWidth


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="mnist")
    parser.add_argument("--profiles", nargs="+", default=["tomczak2018", "burda2015"])
    parser.add_argument("--priors", nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None, help="torch threads (default: all)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--quick", action="store_true", help="2 steps, 1 round")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.quick:
        args.steps, args.rounds = 2, 1
    threads = args.threads or [torch.get_num_threads()]
    host = default_host()
    suite = host.get("suite", args.suite)
    cases = []
    for profile in args.profiles:
        request = RunRequest(
            suite=args.suite, profile=profile, priors=args.priors, seeds=[0], progress=False
        )
        for unit in plan(request, host):
            data = load_suite_data(suite, {**unit.suite_options, "data_dir": None})
            torch.manual_seed(0)
            model = build_unit_model(host, unit, data.spec).to(device)
            objective = build_objective(host, unit)
            width = SingleWidth(model, unit.budget, 0, objective, device)
            n = data.train.shape[0]
            x = data.train[: unit.budget.batch_size].to(device)
            if data.train_transform is not None:
                x = data.train_transform(x, torch.Generator(device).manual_seed(0))
            cases.append((profile, unit, width, x[None], unit.budget.steps_per_epoch(n)))
    best = {(i, n): float("inf") for i in range(len(cases)) for n in threads}
    for _ in range(args.rounds):
        for i, (_, _unit, width, x, per_epoch) in enumerate(cases):
            for n in threads:
                torch.set_num_threads(n)
                progress = Progress(0, per_epoch)
                active = torch.ones(1, dtype=torch.bool, device=device)
                width.step(width.losses(x, progress).sum(), active, 1e-4)
                synchronize(device)
                started = time.perf_counter()
                for _ in range(args.steps):
                    width.step(width.losses(x, progress).sum(), active, 1e-4)
                synchronize(device)
                best[i, n] = min(best[i, n], (time.perf_counter() - started) / args.steps)
    rows = []
    for (i, n), seconds in best.items():
        profile, unit, _, _, per_epoch = cases[i]
        epoch = seconds * per_epoch
        epochs = unit.budget.epochs or unit.budget.total_steps(per_epoch) // per_epoch
        rows.append(
            [
                profile,
                n,
                " / ".join(
                    f"{unit.combination[k]}({unit.variants[k]})"
                    if k == "objective" and k in unit.variants
                    else unit.combination[k]
                    for k in ("encoder", "decoder", "prior", "objective")
                ),
                f"{seconds * 1000:.1f}",
                per_epoch,
                f"{epoch:.1f}",
                f"{epochs:,}",
                _duration(epoch * epochs),
            ]
        )
    print(
        tabulate(
            rows,
            headers=[
                "profile",
                "threads",
                "combination",
                "ms/step",
                "steps/epoch",
                "s/epoch",
                "max epochs",
                "max run",
            ],
        )
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    where = device_name(device)
    print(
        f"\n{where}, torch {torch.__version__}, {'/'.join(map(str, threads))} thread(s), load "
        f"average {load:.2f}; best of {args.rounds} round(s) of {args.steps} steps"
    )


if __name__ == "__main__":
    main()
