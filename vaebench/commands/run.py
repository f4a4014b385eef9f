"""``vaebench run``: train and evaluate a suite's grid, print its table."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from vaebench.errors import ConfigError
from vaebench.formats import FORMATS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value}")
    return value


def _seed_batch(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line: the value read as JSON where it is JSON
    (``k=50``, ``flag=true``, ``bounds=[-6, 2]``), else kept as text."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def add_suite_option_argument(parser: Any) -> None:
    """``--option KEY=VALUE`` (repeatable) into ``suite_options``: a list of (key, value)."""
    parser.add_argument(
        "--option",
        dest="suite_options",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="suite option, e.g. --option binarization=static (repeatable)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train and evaluate a suite's grid")
    what = p.add_argument_group("what to train")
    what.add_argument("--suite", default="digits", help="suite name (default: digits)")
    what.add_argument("--encoders", "--encoder", nargs="+", metavar="NAME")
    what.add_argument("--decoders", "--decoder", nargs="+", metavar="NAME")
    what.add_argument("--priors", "--prior", nargs="+", metavar="NAME")
    what.add_argument(
        "--objectives",
        "--objective",
        nargs="+",
        metavar="NAME",
        help="training objectives: elbo, iwae, beta... (default: the profile's, else elbo)",
    )
    what.add_argument(
        "--grid",
        default="ofat",
        choices=["ofat", "full"],
        help="ofat: vary one part at a time around the suite's baseline combination; full: "
        "every encoder x decoder x prior x objective (default: ofat)",
    )
    what.add_argument("--seeds", nargs="+", type=int, metavar="N")
    what.add_argument("--latent-dim", type=_positive_int)
    what.add_argument("--hidden-dim", type=_positive_int, help="hidden width of the MLPs")
    add_suite_option_argument(what)
    what.add_argument(
        "--component-option",
        dest="component_options",
        action="append",
        default=[],
        metavar="PART.KEY=VALUE",
        help="option of a part (encoder, decoder, prior, objective), e.g. prior.components=20 "
        "or objective.k=50 (repeatable)",
    )
    what.add_argument("--data-dir", help="where datasets live (default: $VAEBENCH_DATA or cache)")

    budget = p.add_argument_group("budget (overrides the profile)")
    budget.add_argument(
        "--budget",
        "--profile",
        dest="profile",
        default="default",
        help="the suite's profile: default, paper, tiny, a paper's set-up... (default: default)",
    )
    budget.add_argument("--steps", type=_positive_int, help="gradient steps")
    budget.add_argument("--epochs", type=_positive_int, help="epochs instead of steps")
    budget.add_argument("--max-seconds", type=_positive_float, help="wall-clock cap per training")
    budget.add_argument("--batch-size", type=_positive_int)
    budget.add_argument("--lr", type=_positive_float)
    budget.add_argument("--patience", type=_positive_int, help="early-stopping patience")
    budget.add_argument("--eval-every", type=_positive_int, help="validate every N steps")
    budget.add_argument("--checkpoint-every", type=_positive_int, help="checkpoint every N steps")

    evaluation = p.add_argument_group("evaluation")
    evaluation.add_argument(
        "-k", "--k", type=_positive_int, dest="k", help="importance samples for IW-NLL"
    )
    evaluation.add_argument("--k-ood", type=_positive_int, help="importance samples for OOD")
    evaluation.add_argument("--metrics", nargs="+", metavar="NAME", help="default: the suite's")

    execution = p.add_argument_group("execution")
    execution.add_argument("--executor", default="local", help="local, process, ray...")
    execution.add_argument(
        "--jobs",
        type=_positive_int,
        help="worker processes (process executor) or CPUs of the local cluster (ray executor)",
    )
    execution.add_argument(
        "--ray-address",
        help="join this Ray cluster (ray executor; default: $RAY_ADDRESS, else start a local one)",
    )
    execution.add_argument(
        "--executor-option",
        dest="executor_options",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="executor option, e.g. retries=3, timeout=600, cpus=2, gpus=1 (repeatable)",
    )
    execution.add_argument(
        "--device",
        default="auto",
        help="auto (a GPU when there is one), cpu, cuda, cuda:N, mps (default: auto)",
    )
    execution.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="training precision (bf16 autocast); evaluation is fp32 (default: fp32)",
    )
    execution.add_argument(
        "--seed-batch",
        type=_seed_batch,
        default="auto",
        metavar="N|auto",
        help="seeds of a combination trained together as one vectorised model (default: auto)",
    )
    execution.add_argument("--force", action="store_true", help="retrain finished keys")
    execution.add_argument(
        "--no-retry-failed",
        dest="retry_failed",
        action="store_false",
        help="keep failed records instead of running them again",
    )

    output = p.add_argument_group("output")
    output.add_argument("--out", help="results directory (default: results/SUITE)")
    output.add_argument("--csv", metavar="PATH", help="also write the per-seed results as CSV")
    output.add_argument(
        "--format",
        default="md",
        choices=FORMATS,
        help="table format printed at the end (default: md)",
    )
    output.add_argument("--no-progress", dest="progress", action="store_false")
    output.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (combinations, seeds, a time estimate from a measured step, "
        "which seeds are finished or resume from a checkpoint) and train nothing",
    )
    p.set_defaults(func=run)


def _component_options(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        head, _, _ = item.partition("=")
        kind, dot, _ = head.partition(".")
        if not dot or kind not in ("encoder", "decoder", "prior", "objective"):
            raise ConfigError(
                f"--component-option {item!r} must look like encoder.KEY=VALUE, "
                "decoder.KEY=VALUE, prior.KEY=VALUE or objective.KEY=VALUE"
            )
        key, value = key_value(item.split(".", 1)[1])
        out.setdefault(kind, {})[key] = value
    return out


def request_from_args(args: argparse.Namespace) -> Any:
    """The run's :class:`~vaebench.runner.RunRequest`: the repeatable KEY=VALUE flags become
    mappings and the executor's own flags its options; every check of the values is the
    engine's (the request's and the plan's), so the API and the CLI say the same."""
    from vaebench.runner import RunRequest

    executor_options: dict[str, Any] = dict(args.executor_options)
    if args.jobs is not None:
        if args.executor == "local":
            raise ConfigError("--jobs needs a parallel executor; add --executor process")
        executor_options["jobs"] = args.jobs
    if args.ray_address is not None:
        if args.executor != "ray":
            raise ConfigError("--ray-address needs the ray executor; add --executor ray")
        executor_options["address"] = args.ray_address
    values = dict(vars(args))
    values.update(
        suite_options=dict(args.suite_options),
        component_options=_component_options(args.component_options),
        executor_options=executor_options,
    )
    return RunRequest.from_args(values)


def bf16_warning(precision: str, device: str) -> str | None:
    """A warning for bf16 training on a CPU that has no bf16 hardware, else None."""
    from vaebench.environment import cpu_name, native_bf16
    from vaebench.pipeline import resolve_device

    if precision != "bf16" or resolve_device(device).type != "cpu" or native_bf16() is not False:
        return None
    return (
        f"--precision bf16 on this CPU ({cpu_name()}) is emulated: it has neither AVX512-BF16 nor "
        "AMX, so bf16 matrix products run slower than fp32 (14x slower training on the digits "
        "suite measured on such a CPU; benchmarks/README.md). Use --precision fp32 here."
    )


# Exit status of a run that left seeds to another run holding their keys: its tables are
# incomplete, so a script doing `run && compare` must not go on as if they were finished.
EXIT_BUSY = 3


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe_plan(
    request: Any,
    units: list[Any],
    estimates: dict[int, Any] | None = None,
    states: dict[str, Any] | None = None,
) -> str:
    """What a run will do: its combinations and seeds, the budget, (with ``estimates``, by
    unit index) the time each combination's measured step and evaluation chunk add up to, and
    (with ``states``, by stem: :class:`vaebench.runner.SeedState`) which seeds are finished or
    resume from a checkpoint; the estimate then counts only what is left to do."""
    combos: dict[str, list[int]] = {}
    for index, unit in enumerate(units):
        combos.setdefault(unit.label, []).append(index)
    seeds = sorted({s for unit in units for s in unit.seeds})
    unit = units[0]
    budget = unit.budget
    length = f"{budget.steps:,} steps" if budget.steps else f"{budget.epochs:,} epochs"
    stop = (
        f", early stop after {budget.patience} validations without improvement"
        if budget.patience
        else ""
    )
    lines = [
        f"plan: suite {unit.suite}, profile {unit.profile}, grid {request.grid}: "
        f"{len(combos)} combination(s) x {len(seeds)} seed(s) ({', '.join(map(str, seeds))})",
        f"  budget: up to {length} of batch {budget.batch_size}{stop}; evaluation K = "
        f"{unit.eval.k}, OOD K = {unit.eval.k_ood}",
    ]
    total = 0.0
    for label, indices in combos.items():
        line = f"  {label}"
        if estimates is not None:
            found = [(i, estimates[i]) for i in indices if i in estimates]
            if found:
                train = evaluation = 0.0
                for i, e in found:
                    unit = units[i]
                    for stem in unit.stems:
                        state = states.get(stem) if states else None
                        if state is not None and not state.todo:
                            continue
                        left = 1.0 - (state.step / e.steps_per_seed if state else 0.0)
                        train += max(0.0, left) * e.train_seconds / len(unit.seeds)
                        evaluation += e.eval_seconds / len(unit.seeds)
                total += train + evaluation
                line += (
                    f": training up to {_duration(train)} ({found[0][1].step_seconds * 1000:.0f}"
                    f" ms/step measured), evaluation about {_duration(evaluation)}"
                )
        lines.append(line)
        if states is not None:
            said = [
                f"seed {seed} {states[stem]}"
                for i in indices
                for seed, stem in zip(units[i].seeds, units[i].stems, strict=True)
                if stem in states and states[stem].status != "new"
            ]
            if said:
                lines.append(f"    {'; '.join(said)}")
    if estimates:
        lines.append(
            f"  estimate: about {_duration(total)} in all for what is left of the full budget, one "
            "unit after another (early stopping and vectorised seeds make it shorter; "
            "validation, not counted, longer)"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import sys

    from vaebench.api import run as api_run
    from vaebench.pipeline import estimate_unit
    from vaebench.runner import plan, seed_states
    from vaebench.tables import render_run

    request = request_from_args(args)
    warning = bf16_warning(request.precision, request.device)
    if warning:
        print(f"vaebench: {warning}", file=sys.stderr)
    units = plan(request)
    states = seed_states(request, units)
    estimates = None
    if request.progress or args.dry_run:  # a person is watching: measure a step per combination
        estimates = {
            i: estimate_unit(unit)
            for i, unit in enumerate(units)
            if any(states[stem].todo for stem in unit.stems)
        }
    print(describe_plan(request, units, estimates, states), file=sys.stderr)
    if args.dry_run:
        print(f"dry run: nothing trained; results would go to {request.out_dir()}", file=sys.stderr)
        return 0
    summary = api_run(request)
    print(
        f"{len(summary.records)} result(s) in {summary.out_dir}: {summary.ran} trained now, "
        f"{summary.skipped} already finished (skipped), {summary.failed} failed",
        file=sys.stderr,
    )
    for record in summary.records:
        if record["status"] != "ok":
            err = record.get("error") or {}
            print(
                f"  failed: {' / '.join(record['combination'].values())} seed {record['seed']}: "
                f"{err.get('type')}: {err.get('message')}",
                file=sys.stderr,
            )
    print(render_run(summary.records, args.format))
    if args.csv:
        from vaebench.tables import write_per_seed_csv

        write_per_seed_csv(summary.records, args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    if summary.busy:
        print(
            f"vaebench: {summary.busy} seed(s) were left to another run that holds their keys; "
            f"these results are incomplete (exit status {EXIT_BUSY}): run again when it ends",
            file=sys.stderr,
        )
        return EXIT_BUSY
    return 1 if summary.failed and summary.failed == len(summary.records) else 0
