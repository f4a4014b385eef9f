"""The reproduction table of a literature profile's run: finished rows from their records,
rows still training from their last checkpoint (its curve so far).

Usage::

    python benchmarks/reproduction_table.py RESULTS_DIR --profile tomczak2018 \\
        --paper standard-normal=88.56 vamp=85.57 [--curves results/reproductions/tomczak2018]
    python benchmarks/reproduction_table.py RESULTS_DIR --profile burda2015 \\
        --paper elbo=86.76 "iwae(k=50)=84.78"

The profile is planned (as ``vaebench run --suite SUITE --budget PROFILE --seeds ...`` plans
it) to name each row by what varies in it (prior and objective, with their options) and to
count its epochs. ``--paper`` gives the paper's number by a row's prior or objective label.
Prints one Markdown row per combination and seed (named with the suite options given by
``--option``): the paper's number, ours (the test IW-NLL with its standard error, once
evaluated; else the best validation -ELBO so far, an upper bound that is not the paper's
measure), epochs trained, wall time, status. With ``--curves`` each row's validation curve is
written as CSV (step, epoch, train loss, validation -ELBO, seconds).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from vaebench import results
from vaebench.commands.run import add_suite_option_argument
from vaebench.runner import RunRequest, Unit, plan


def _curve_rows(curve: list[dict[str, float]], per_epoch: int) -> list[list[float]]:
    return [
        [p["step"], p["step"] / per_epoch, p["train_loss"], p["val_neg_elbo"], p["seconds"]]
        for p in curve
    ]


def _row_names(units: list[Unit]) -> dict[str, str]:
    """Each unit's prior and objective (by unit key), with the options that set it apart only
    where the profile runs one name with several options (``iwae`` and ``iwae(k=50)``)."""
    parts = {u.keys[0]: u.label.split(" / ")[2:] for u in units}
    bare = {key: [p.split("(")[0] for p in ps] for key, ps in parts.items()}
    names = {}
    for key, ps in parts.items():
        shown = []
        for i, part in enumerate(ps):
            variants = {qs[i] for k, qs in parts.items() if bare[k][i] == bare[key][i]}
            shown.append(part if len(variants) > 1 else bare[key][i])
        names[key] = " / ".join(shown)
    return names


def _paper(paper: dict[str, str], unit: Unit, name: str) -> str:
    parts = unit.label.split(" / ")[2:]
    names = {name, *name.split(" / "), *parts, *(p.split("(")[0] for p in parts)}
    return next((nats for key, nats in paper.items() if key in names), "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--suite", default="mnist")
    parser.add_argument("--profile", default="tomczak2018")
    add_suite_option_argument(parser)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--paper", nargs="*", default=[], metavar="NAME=NATS")
    parser.add_argument("--curves", type=Path)
    args = parser.parse_args()
    paper = dict(item.rsplit("=", 1) for item in args.paper)  # a name may hold "=": k=50
    request = RunRequest(
        suite=args.suite,
        profile=args.profile,
        seeds=args.seeds,
        out=str(args.root),
        suite_options=dict(args.suite_options),
    )
    planned = plan(request)
    # A seed's files are under its stem, or under its former stem if written while
    # checkpoint_every was part of the key.
    seats = {
        name: (unit, index)
        for unit in planned
        for index, stem in enumerate(unit.stems)
        for name in (stem, unit.former_stem(index))
        if name
    }
    names = _row_names(planned)

    options = "".join(f", {key}={value}" for key, value in args.suite_options)

    def label(unit: Unit, index: int) -> str:  # the suite options and seed too, where given
        seed = unit.seeds[index]
        return names[unit.keys[0]] + options + (f", seed {seed}" if len(args.seeds) > 1 else "")

    rows = []
    finished = set()
    records, _ = results.load_records([args.root])
    for record in records:
        if record["status"] != "ok" or record["stem"] not in seats:
            continue
        unit, index = seats[record["stem"]]
        finished.add(unit.stems[index])
        per_epoch = unit.budget.steps_per_epoch(50_000)
        training = record["training"]
        metric = record["metrics"]["iw_nll"]
        rows.append(
            [
                label(unit, index),
                _paper(paper, unit, names[unit.keys[0]]),
                f"**{metric['value']:.2f}** ± {metric.get('stderr', float('nan')):.2f}",
                f"{training['steps_done'] / per_epoch:.0f} "
                f"(best {training['best_step'] / per_epoch:.0f})",
                f"{training['seconds'] / 3600:.1f} h",
                "early stop" if training["stopped_early"] else "budget end",
            ]
        )
        if args.curves:
            _write(args.curves, record["stem"], _curve_rows(training["curve"], per_epoch))
    for path in sorted((args.root / results.CHECKPOINTS).glob("*.pt")):
        if path.stem not in seats:
            continue
        unit, index = seats[path.stem]
        if unit.stems[index] in finished:
            continue
        payload = torch.load(path, map_location="cpu", weights_only=True)
        state = payload["states"][0]
        per_epoch = unit.budget.steps_per_epoch(50_000)
        rows.append(
            [
                label(unit, index),
                _paper(paper, unit, names[unit.keys[0]]),
                f"training: best validation -ELBO {state['best_val']:.2f}",
                f"{payload['step'] / per_epoch:.0f} (best {state['best_step'] / per_epoch:.0f})",
                f"{payload['elapsed'] / 3600:.1f} h",
                f"not finished ({state['bad']} epoch{'' if state['bad'] == 1 else 's'} without "
                "improvement)",
            ]
        )
        if args.curves:
            _write(args.curves, path.stem, _curve_rows(state["curve"], per_epoch))
    print("| row | paper (nats) | ours: test IW-NLL ± s.e. (nats) | epochs | wall | status |")
    print("|---|--:|--:|--:|--:|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def _write(folder: Path, stem: str, rows: list[list[float]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{stem}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "epoch", "train_loss", "val_neg_elbo", "seconds"])
        writer.writerows(rows)


if __name__ == "__main__":
    main()
