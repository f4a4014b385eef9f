"""Throughput of vaebench's hot paths, as a fraction of the matmul bound of their own GEMMs.

Usage::

    python benchmarks/bench_throughput.py            # full measurement (a few minutes)
    python benchmarks/bench_throughput.py --quick    # smoke run (well under a minute)
    python benchmarks/bench_throughput.py --grid     # also time the default digits grid
    python benchmarks/bench_throughput.py --cpu-time # one thread, CPU time: for a busy machine
    python benchmarks/bench_throughput.py --batches 512 2048 --compile  # the two experiments

Everything runs through vaebench's real code paths: models built by the registered factories
(:func:`vaebench.pipeline.build_model`), the training step of :func:`vaebench.train.fit`
(``model.loss(x)``, ``zero_grad``, ``backward``, Adam ``step``) and
:func:`vaebench.estimators.likelihood_stats` with the arguments :class:`EvalContext` passes.

**Matmul bound.** While one step (or one IW-NLL call) runs, every GEMM it issues (``aten::mm``,
``addmm``, ``bmm``, ``baddbmm``, forward and backward) is recorded with its shapes and strides.
The bound is the throughput the workload would reach if it did nothing but those GEMMs: they are
replayed in a row (as many of each as the call issued, into preallocated outputs) and timed, and
``bound = items per call / their time``; equivalently the GEMM rate measured at these layer
shapes divided by the workload's GEMM FLOPs per item. Calls and replays take turns, and the
fraction reported is the median over rounds of (replay time / call time), so that load from other
processes hits both alike. A second column uses the peak rate of one 2048 x 2048 fp32 GEMM
instead of the rate at the exact shapes.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tabulate import tabulate
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
GEMM_OPS = (aten.mm, aten.addmm, aten.bmm, aten.baddbmm)
TRAIN_TARGET, IW_TARGET, GRID_TARGET_S = 0.50, 0.70, 120.0

BOUND_DEFINITION = (
    "bound = items per call / time of the call's own GEMMs (forward and backward, recorded with "
    "their shapes and strides, replayed in a row); 'of bound' = median over rounds of GEMM time "
    "/ call time, measured side by side; 'of peak' uses the 2048^2 GEMM rate instead."
)


# -- GEMM recording and replay ----------------------------------------------------------------


@dataclass(frozen=True)
class Gemm:
    """One GEMM as issued: the aten overload, its tensor layouts and its scalar arguments."""

    op: Any
    layouts: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    scalars: tuple[tuple[str, Any], ...]
    dtype: torch.dtype

    @property
    def flops(self) -> int:
        *_, a, b = (shape for shape, _ in self.layouts)
        batch = a[0] if len(a) == 3 else 1
        return 2 * batch * a[-2] * a[-1] * b[-1]


class GemmRecorder(TorchDispatchMode):
    """Records every GEMM dispatched inside the ``with`` block (counts per distinct GEMM)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[Gemm, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func.overloadpacket in GEMM_OPS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            gemm = Gemm(
                func.overloadpacket,
                tuple((tuple(t.shape), tuple(t.stride())) for t in tensors),
                tuple(sorted(kwargs.items())),
                tensors[-1].dtype,
            )
            self.counts[gemm] = self.counts.get(gemm, 0) + 1
        return func(*args, **kwargs)


def _strided_random(shape: tuple[int, ...], stride: tuple[int, ...], dtype: torch.dtype):  # type: ignore[no-untyped-def]
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True) if n > 0)
    return torch.randn(extent, dtype=dtype).as_strided(shape, stride)


def replay(counts: dict[Gemm, int]) -> Callable[[], None]:
    """One call's GEMMs, each as often as the call issued it, into preallocated outputs."""
    calls: list[Callable[[], Any]] = []
    for gemm, n in counts.items():
        inputs = [_strided_random(shape, stride, gemm.dtype) for shape, stride in gemm.layouts]
        kwargs = dict(gemm.scalars)
        out = gemm.op.default(*inputs, **kwargs)
        calls += [functools.partial(gemm.op.out, *inputs, **kwargs, out=out)] * n

    def run() -> None:
        for call in calls:
            call()

    return run


# -- timing -------------------------------------------------------------------------------------


# Wall time by default; --cpu-time switches to this process's CPU time (with one thread), which
# other processes on a shared machine disturb far less.
clock: Callable[[], float] = time.perf_counter


def _batch_size(fn: Callable[[], Any], min_time: float, warmup: int) -> int:
    for _ in range(warmup):
        fn()
    start = clock()
    fn()
    return max(1, int(min_time / max(clock() - start, 1e-7)))


def median_seconds(fn: Callable[[], Any], min_time: float, repeats: int, warmup: int = 2) -> float:
    """Median over ``repeats`` timed batches of per-call seconds; each batch lasts >= min_time."""
    return statistics.median(interleaved([fn], min_time, repeats, warmup)[0])


def interleaved(
    fns: list[Callable[[], Any]], min_time: float, repeats: int, warmup: int = 1
) -> list[list[float]]:
    """Per-call seconds of each function over ``repeats`` rounds, the functions taking turns
    within a round, so that a change of machine load hits all of them alike."""
    inner = [_batch_size(fn, min_time, warmup) for fn in fns]
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, n, times in zip(fns, inner, out, strict=True):
            start = clock()
            for _ in range(n):
                fn()
            times.append((clock() - start) / n)
    return out


def matmul_gflops(n: int, repeats: int) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    seconds = median_seconds(lambda: torch.mm(a, b, out=out), min_time=0.3, repeats=repeats)
    return 2 * n**3 / seconds / 1e9


# -- workloads ----------------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    kind: str  # "train" or "iw"
    items: int  # samples (train) or importance samples (iw) per call
    call: Callable[[], Any]
    note: str = ""


def build(combination: dict[str, str], spec: Any, latent: int, hidden: int, seed: int = 0):  # type: ignore[no-untyped-def]
    from vaebench.pipeline import build_model
    from vaebench.plugins import default_host

    torch.manual_seed(seed)
    return build_model(default_host(), combination, {}, spec, latent, hidden)


def train_workload(
    name: str,
    model: Any,
    train: torch.Tensor,
    batch: int,
    lr: float,
    compiled: bool = False,
    **adam: Any,
) -> Workload:
    """The body of fit's loop: draw a batch, loss, zero_grad, backward, Adam step. Without
    ``adam`` options the optimizer is the trainer's own (``train.make_adam``: fused on a CPU);
    with them, ``torch.optim.Adam(**adam)`` for comparison. ``compiled`` runs the loss and its
    backward through ``torch.compile`` (a measurement only: the trainer runs eagerly)."""
    from vaebench.train import make_adam

    model.train()
    if compiled:
        model.loss = torch.compile(model.loss)
    if adam:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, **adam)
    else:
        optimizer = make_adam(list(model.parameters()), lr, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, train.shape[0], (batch,), generator=gen)
        loss = model.loss(train[idx])
        if not torch.isfinite(loss):
            raise RuntimeError("non-finite loss in the benchmark")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())

    options = ", ".join(f"{k}={v}" for k, v in adam.items())
    setting = f"Adam({options})" if adam else "the trainer's Adam (fused)"
    if compiled:
        setting += ", loss under torch.compile"
    return Workload(name, "train", batch, step, f"batch {batch}, {setting}")


def iw_workload(name: str, model: Any, data: Any, x: torch.Tensor, k: int) -> Workload:
    """likelihood_stats exactly as EvalContext.likelihood calls it (memory cap, cost)."""
    from vaebench.contracts import EvalSettings
    from vaebench.estimators import chunk_sizes, likelihood_stats
    from vaebench.evaluate import EvalContext

    model.eval()
    settings = EvalSettings()
    ctx = EvalContext(model, data, settings, torch.device("cpu"), 0)
    cost = ctx.cost_per_sample()

    def call() -> None:
        likelihood_stats(model, x, k, max_elements=settings.max_elements, cost_per_sample=cost)

    points, k_chunk = chunk_sizes(x.shape[0], k, cost, settings.max_elements)
    note = f"{x.shape[0]} points x k={k}, chunks of {points} points x {k_chunk} samples"
    return Workload(name, "iw", x.shape[0] * k, call, note)


def workloads(quick: bool, sweep: tuple[int, ...] = (), compiled: bool = False) -> list[Workload]:
    from vaebench.contracts import DataSpec, SuiteData
    from vaebench.pipeline import load_suite_data
    from vaebench.plugins import default_host

    out: list[Workload] = []
    suite = default_host().get("suite", "digits")
    digits = load_suite_data(suite, {**suite.options, "data_dir": None})
    budget = suite.profile("default").budget
    k = 100 if quick else suite.profile("default").eval.k
    test = digits.test[: 32 if quick else 128]
    priors = ("standard-normal",) if quick else ("standard-normal", "mog", "vamp")
    for prior in priors:
        combo = {"encoder": "mlp-gaussian", "decoder": "mlp-categorical", "prior": prior}
        args = (digits.spec, suite.latent_dim, suite.hidden_dim)
        label = f"digits {prior}"
        batches = (digits.train, budget.batch_size, budget.lr)
        out.append(train_workload(label, build(combo, *args), *batches))
        if prior == "standard-normal" and not quick:
            out.append(train_workload(label, build(combo, *args), *batches, fused=False))
        if prior == "standard-normal" and compiled:
            out.append(train_workload(label, build(combo, *args), *batches, compiled=True))
        out.append(iw_workload(label, build(combo, *args), digits, test, k))

    # An MNIST-sized MLP VAE on random binary data: 784-256-256-16, Bernoulli pixels.
    spec = DataSpec(dim=784, levels=2, image_shape=(28, 28))
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(1024, 784, generator=gen) < 0.5).float()
    mnist = SuiteData(spec=spec, train=x, val=x[:128], test=x[:128])
    combo = {"encoder": "mlp-gaussian", "decoder": "mlp-bernoulli", "prior": "standard-normal"}
    variants: list[dict[str, Any]] = [{}]
    if not quick:
        variants += [{"fused": False}, {"foreach": True}]
    for adam in variants:
        model = build(combo, spec, 16, 256)
        out.append(train_workload("mnist-mlp", model, x, 128, 1e-3, **adam))
    if compiled:
        model = build(combo, spec, 16, 256)
        out.append(train_workload("mnist-mlp", model, x, 128, 1e-3, compiled=True))
    for batch in sweep:  # larger batches: how much of a step is a fixed cost
        big = (torch.rand(max(batch, 1024), 784, generator=gen) < 0.5).float()
        model = build(combo, spec, 16, 256)
        out.append(train_workload("mnist-mlp", model, big, batch, 1e-3))
    out.append(iw_workload("mnist-mlp", build(combo, spec, 16, 256), mnist, x[:128], k))
    return out


# -- the table ----------------------------------------------------------------------------------


@dataclass
class Row:
    workload: Workload
    seconds: float  # median per call
    bound_s: float  # median per call of the call's GEMMs alone
    fraction: float  # median over rounds of (GEMMs alone / call), measured side by side
    flops: int
    peak_gflops: float

    def cells(self) -> list[Any]:
        w = self.workload
        rate = w.items / self.seconds
        peak_bound = w.items / (self.flops / (self.peak_gflops * 1e9))
        target = TRAIN_TARGET if w.kind == "train" else IW_TARGET
        return [
            w.name,
            "train" if w.kind == "train" else "IW-NLL",
            f"{rate:,.0f}",
            f"{self.flops / w.items / 1e6:.3f}",
            f"{self.flops / self.seconds / 1e9:.1f}",
            f"{self.flops / self.bound_s / 1e9:.1f}",
            f"{w.items / self.bound_s:,.0f}",
            f"{self.fraction:.1%}",
            f"{rate / peak_bound:.0%}",
            f">= {target:.0%}: {'yes' if self.fraction >= target else 'NO'}",
            w.note,
        ]


HEADERS = [
    "workload",
    "path",
    "items/s",
    "MFLOP/item",
    "GFLOP/s",
    "GEMM GFLOP/s at shapes",
    "bound items/s",
    "of bound",
    "of peak",
    "target",
    "setting",
]


def measure(w: Workload, repeats: int, min_time: float, peak: float) -> Row:
    w.call()  # warm-up (allocator, MKL kernels)
    recorder = GemmRecorder()
    with recorder:
        w.call()
    flops = sum(n * g.flops for g, n in recorder.counts.items())
    calls, gemms = interleaved([w.call, replay(recorder.counts)], min_time, repeats)
    fraction = statistics.median(g / c for c, g in zip(calls, gemms, strict=True))
    return Row(w, statistics.median(calls), statistics.median(gemms), fraction, flops, peak)


def grid_seconds() -> tuple[float, float, int, float, float]:
    """Wall and CPU seconds of the default digits grid, its record count, and the records'
    training and evaluation seconds summed."""
    from vaebench import api

    with tempfile.TemporaryDirectory() as out:
        wall, cpu = time.perf_counter(), time.process_time()
        summary = api.run(suite="digits", out=out, progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    train = sum(r.get("training", {}).get("seconds", 0.0) for r in summary.records)
    evaluate = sum(r.get("eval", {}).get("seconds", 0.0) for r in summary.records)
    return wall, cpu, len(summary.records), train, evaluate


def machine() -> str:
    from vaebench.environment import cpu_name

    return (
        f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}), "
        f"timed by {'CPU time' if clock is time.process_time else 'wall clock'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: fewer, shorter")
    parser.add_argument("--grid", action="store_true", help="also time the default digits grid")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with this process's CPU time on one thread (for a machine others are using)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed batches per median")
    parser.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=(),
        help="also train the MNIST-sized model at these batch sizes",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also train with the loss under torch.compile (needs a C++ compiler)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        global clock
        clock = time.process_time
        torch.set_num_threads(1)
    repeats = args.repeats or (3 if args.quick else 7)
    min_time = 0.1 if args.quick else 0.5

    from vaebench.environment import keep_freed_memory

    malloc = keep_freed_memory()  # as every unit of a run does (pipeline.run_unit)
    load_before = os.getloadavg()[0]
    peak = matmul_gflops(512 if args.quick else 2048, repeats)
    print(f"machine: {machine()}")
    print(f"malloc: {malloc}")
    print(f"matmul: {peak:.1f} GFLOP/s (fp32 {512 if args.quick else 2048}^2, median)")
    print(f"bound: {BOUND_DEFINITION}\n")
    chosen = workloads(args.quick, tuple(args.batches), args.compile)
    rows = [measure(w, repeats, min_time, peak) for w in chosen]
    print(tabulate([r.cells() for r in rows], headers=HEADERS, tablefmt="github"))
    if args.grid:
        wall, cpu, records, train, evaluate = grid_seconds()
        verdict = "yes" if wall <= GRID_TARGET_S else "NO"
        print(
            f"\ndefault digits grid: {wall:.1f} s wall, {cpu:.1f} s CPU, {records} records "
            f"(training {train:.1f} s, evaluation {evaluate:.1f} s, summed over records); "
            f"target <= {GRID_TARGET_S:.0f} s wall: {verdict}"
        )
    load_after = os.getloadavg()[0]
    print(f"\nload average (1 min): {load_before:.2f} before, {load_after:.2f} after")
    # The benchmark itself loads as many CPUs as it has threads, so only the load it started
    # under says whether other processes were competing.
    if load_before > 0.5 * (os.cpu_count() or 1):
        print("warning: other processes were using the CPUs; the numbers above are pessimistic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
