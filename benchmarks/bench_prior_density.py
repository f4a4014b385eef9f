"""What a mixture prior's log-density costs, in training and in evaluation: the centred form
against the expanded float64 form, and the VampPrior's pseudo-inputs encoded per evaluation slice
against once per batch (``fixed_components``).

Usage::

    python benchmarks/bench_prior_density.py               # mnist tomczak2018, VampPrior 500
    python benchmarks/bench_prior_density.py --quick       # smoke run

The model is the one ``vaebench run --suite mnist --budget tomczak2018 --priors vamp`` builds
(gated MLP 300-300, latent 40, 500 pseudo-inputs). Rows:

- *density*: ``log p(z)`` alone on one evaluation slice (1024 rows of z against the 500
  components): the centred form, ``(z - mu) / s`` on ``[1024, 500, 40]`` temporaries in float32,
  against :func:`vaebench.components.priors.diagonal_gaussian_log_probs` (two matrix products in
  float64), with the largest difference from a float64 reference;
- *evaluation*: ``log_weights`` of 2 test points x 5000 samples (the chunk the IW-NLL with
  K = 5000 evaluates at a time; 10 slices of 1024 rows), per 1024 rows, with the centred density
  and the pseudo-inputs encoded per slice, against the expanded density with them encoded once;
- *training*: one Adam step of the profile (batch 100, loss, backward, gradient normalisation),
  centred against expanded.

Timed in rounds that alternate the two forms, best round counts (the machine may be shared).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Callable, Iterator

import torch
from tabulate import tabulate

from vaebench.components import priors
from vaebench.contracts import Progress
from vaebench.pipeline import build_objective, build_unit_model, load_suite_data
from vaebench.plugins import default_host
from vaebench.runner import RunRequest, plan
from vaebench.train import SingleWidth

# the centred form, as the prior computes it where there is no float64
centred_log_probs = priors.centred_diagonal_gaussian_log_probs


@contextlib.contextmanager
def centred(prior: torch.nn.Module) -> Iterator[None]:
    """The centred density, and (for the VampPrior) no shared components across slices."""
    saved = priors.diagonal_gaussian_log_probs
    priors.diagonal_gaussian_log_probs = centred_log_probs
    hidden = getattr(type(prior), "fixed_components", None)
    if hidden is not None:
        del type(prior).fixed_components  # the model then encodes per slice
    try:
        yield
    finally:
        priors.diagonal_gaussian_log_probs = saved
        if hidden is not None:
            type(prior).fixed_components = hidden  # type: ignore[attr-defined]


def best_of(rounds: int, cases: dict[str, Callable[[], None]], repeat: int) -> dict[str, float]:
    best = dict.fromkeys(cases, math.inf)
    for fn in cases.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in cases.items():
            started = time.perf_counter()
            for _ in range(repeat):
                fn()
            best[name] = min(best[name], (time.perf_counter() - started) / repeat)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds, repeat = (1, 1) if args.quick else (args.rounds, 3)

    host = default_host()
    request = RunRequest(
        suite="mnist", profile="tomczak2018", priors=["vamp"], seeds=[0], out="/tmp/unused"
    )
    (unit,) = plan(request, host)
    data = load_suite_data(
        host.get("suite", "mnist"), {**unit.suite_options, "data_dir": unit.data_dir}, host
    )
    torch.manual_seed(0)
    model = build_unit_model(host, unit, data.spec)
    prior = model.prior

    rows = []
    # density on one evaluation slice
    with torch.no_grad():
        q = prior.components()
        loc, scale = q.base_dist.loc, q.base_dist.scale
        z = 2.0 * torch.randn(1024, loc.shape[-1])
        reference = centred_log_probs(z.double(), loc.double(), scale=scale.double())
        errors = {
            "centred float32": (centred_log_probs(z, loc, scale=scale).double() - reference),
            "expanded float64": (
                priors.diagonal_gaussian_log_probs(z, loc, scale=scale).double() - reference
            ),
        }
        times = best_of(
            rounds,
            {
                "centred float32": lambda: centred_log_probs(z, loc, scale=scale),
                "expanded float64": lambda: priors.diagonal_gaussian_log_probs(z, loc, scale=scale),
            },
            repeat,
        )
    for name, seconds in times.items():
        rows.append(["density, 1024 rows", name, seconds * 1e3, float(errors[name].abs().max())])

    # evaluation: the IW chunk of K = 5000
    x = data.test[:2]
    model.eval()

    def evaluate() -> None:
        with torch.no_grad():
            model.log_weights(x, 5000)

    def evaluate_centred() -> None:
        with centred(prior):
            evaluate()

    times = best_of(rounds, {"centred, encoded per slice": evaluate_centred,
                             "expanded, encoded once": evaluate}, 1)  # fmt: skip
    for name, seconds in times.items():
        rows.append(["evaluation, per 1024 rows", name, seconds * 1e3 * 1024 / 10_000, ""])

    # training step
    model.train()
    objective = build_objective(host, unit)
    width = SingleWidth(model, unit.budget, 0, objective, torch.device("cpu"))
    batch = data.train[: unit.budget.batch_size]
    if data.train_transform is not None:
        batch = data.train_transform(batch, torch.Generator().manual_seed(0))
    progress = Progress(0, unit.budget.steps_per_epoch(data.train.shape[0]))
    active = torch.ones(1, dtype=torch.bool)

    def step() -> None:
        width.step(width.losses(batch[None], progress).sum(), active, unit.budget.lr)

    def step_centred() -> None:
        with centred(prior):
            step()

    times = best_of(rounds, {"centred": step_centred, "expanded float64": step}, repeat)
    for name, seconds in times.items():
        rows.append(["training step, batch 100", name, seconds * 1e3, ""])

    print(
        f"mnist tomczak2018 VampPrior (500 pseudo-inputs, latent 40), {args.threads} thread(s), "
        f"best of {rounds} rounds"
    )
    print(
        tabulate(
            rows,
            headers=["what", "form", "ms", "max |error| (nats)"],
            tablefmt="github",
            floatfmt=".3g",
        )
    )


if __name__ == "__main__":
    main()
