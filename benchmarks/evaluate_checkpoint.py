"""The test likelihood of a training run not yet finished: its best state so far, read from its
checkpoint, evaluated exactly as the run will evaluate it when it stops.

Usage::

    python benchmarks/evaluate_checkpoint.py RESULTS_DIR --profile tomczak2018 \\
        --row standard-normal [--seed 0] [--suite mnist]

The profile is planned as ``vaebench run --suite SUITE --budget PROFILE --seeds SEED`` plans it;
``--row`` picks the combination whose prior or objective label it names (``vamp``,
``iwae(k=50)``). The checkpoint's best state on validation is loaded into the unit's model and
the suite's ``likelihood`` metric runs on it with the profile's evaluation settings and seed
(K, chunking, noise): the number the record will hold if training stops at that state. It is
a provisional number: the run goes on and may find a better state. Nothing is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from vaebench.commands.run import add_suite_option_argument
from vaebench.evaluate import evaluate
from vaebench.pipeline import build_unit_model, load_suite_data, resolve_device
from vaebench.plugins import default_host
from vaebench.runner import RunRequest, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--suite", default="mnist")
    parser.add_argument("--profile", default="tomczak2018")
    add_suite_option_argument(parser)
    parser.add_argument("--row", required=True, help="a prior or objective label of the profile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("-k", type=int, help="importance samples (default: the profile's)")
    args = parser.parse_args()
    host = default_host()
    request = RunRequest(
        suite=args.suite,
        profile=args.profile,
        seeds=[args.seed],
        out=args.root,
        suite_options=dict(args.suite_options),
        progress=False,
    )
    units = plan(request, host)
    chosen = [
        u
        for u in units
        if args.row in u.label.split(" / ")[2:]
        or args.row in (p.split("(")[0] for p in u.label.split(" / ")[2:])
    ]
    if len(chosen) != 1:
        labels = "\n  ".join(u.label for u in units)
        raise SystemExit(f"--row {args.row!r} names {len(chosen)} rows of these:\n  {labels}")
    (unit,) = chosen
    path = unit.checkpoint(Path(args.root), 0)
    if not path.is_file():
        raise SystemExit(f"no checkpoint at {path}: the row has not started, or it has finished")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload["states"][0]
    per_epoch = unit.budget.steps_per_epoch(50_000)
    device = resolve_device(args.device)
    suite = host.get("suite", unit.suite)
    data = load_suite_data(suite, {**unit.suite_options, "data_dir": unit.data_dir}, host)
    model = build_unit_model(host, unit, data.spec).to(device)
    model.load_state_dict(state["best_state"])
    settings = dataclasses.replace(unit.eval, k=args.k) if args.k else unit.eval
    started = time.perf_counter()
    values, _ = evaluate(
        model, data, settings, [host.get("metric", "likelihood")], device, unit.latent_dim
    )
    seconds = time.perf_counter() - started
    iw, elbo = values["iw_nll"], values["neg_elbo"]
    print(f"{unit.label}, seed {args.seed}")
    print(
        f"best state: epoch {state['best_step'] / per_epoch:.0f} of "
        f"{payload['step'] / per_epoch:.0f} trained (validation -ELBO {state['best_val']:.2f})"
    )
    print(
        f"test IW-NLL (K = {settings.k}): {iw.value:.2f} ± {iw.stderr:.2f} nats; "
        f"-ELBO {elbo.value:.2f}; evaluated in {seconds / 60:.1f} min (provisional: training "
        "goes on)"
    )


if __name__ == "__main__":
    main()
