"""The reproduction table of a literature profile's run: finished rows from their records,
rows still training from their last checkpoint (its curve so far).

Usage::

    python benchmarks/reproduction_table.py RESULTS_DIR --paper standard-normal=88.56 \\
        vamp=85.57 [--curves results/reproductions/tomczak2018]

Prints one Markdown row per combination and seed: the paper's number, ours (the test IW-NLL
with its standard error, once evaluated; else the best validation -ELBO so far, an upper bound
that is not the paper's measure), epochs trained, wall time, status. With ``--curves`` each
row's validation curve is written as CSV (step, epoch, train loss, validation -ELBO, seconds).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from vaebench import results


def _curve_rows(curve: list[dict[str, float]], per_epoch: int) -> list[list[float]]:
    return [
        [p["step"], p["step"] / per_epoch, p["train_loss"], p["val_neg_elbo"], p["seconds"]]
        for p in curve
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--paper", nargs="*", default=[], metavar="PRIOR=NATS")
    parser.add_argument("--curves", type=Path)
    args = parser.parse_args()
    paper = dict(item.split("=", 1) for item in args.paper)
    rows = []
    finished = set()
    records, _ = results.load_records([args.root])
    for record in records:
        if record["status"] != "ok":
            continue
        finished.add(record["stem"])
        budget = record["budget"]
        per_epoch = -(-50_000 // budget["batch_size"])
        training = record["training"]
        metric = record["metrics"]["iw_nll"]
        prior = record["combination"]["prior"]
        rows.append(
            [
                prior,
                paper.get(prior, "-"),
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
        if path.stem in finished:
            continue
        payload = torch.load(path, map_location="cpu", weights_only=True)
        state = payload["states"][0]
        per_epoch = 500  # batch 100 over the 50,000 training images
        stem = path.stem
        prior = next((p for p in paper if f"-{p}-s" in stem), stem)
        rows.append(
            [
                prior,
                paper.get(prior, "-"),
                f"training: best validation -ELBO {state['best_val']:.2f}",
                f"{payload['step'] / per_epoch:.0f} (best {state['best_step'] / per_epoch:.0f})",
                f"{payload['elapsed'] / 3600:.1f} h",
                f"not finished ({state['bad']} epochs without improvement)",
            ]
        )
        if args.curves:
            _write(args.curves, stem, _curve_rows(state["curve"], per_epoch))
    print("| prior | paper (nats) | ours: test IW-NLL ± s.e. (nats) | epochs | wall | status |")
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
