"""GPU throughput: one eager model against S seeds trained as one vectorised model, and IW-NLL.

Usage::

    python benchmarks/bench_gpu.py                        # CUDA when present, a few minutes
    python benchmarks/bench_gpu.py --quick --device cpu   # smoke run with tiny sizes

The model is the MNIST MLP VAE of the issue (784-256-256-16, Bernoulli decoder, standard
normal prior, batch 128) on random binary data (throughput does not depend on the pixels, and
no download is needed). Training goes through the real trainers, ``train.fit`` for the eager
model and ``batched.fit_batched`` for S seeds, with validation only at the last step;
samples/s counts every seed's samples. IW-NLL is ``estimators.likelihood_stats`` with K
importance samples per point (fp32): importance samples/s = points x K / seconds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from tabulate import tabulate

from vaebench.batched import NotVectorizable, fit_batched
from vaebench.components.mlp import BernoulliMLPDecoder, GaussianMLPEncoder
from vaebench.components.priors import StandardNormalPrior
from vaebench.contracts import Budget, DataSpec, SuiteData
from vaebench.environment import device_name
from vaebench.estimators import likelihood_stats
from vaebench.model import VAE
from vaebench.pipeline import resolve_device
from vaebench.train import fit


def synthetic(n: int, dim: int, device: torch.device) -> SuiteData:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, dim, generator=g) < 0.3).float().to(device)
    return SuiteData(DataSpec(dim, 2, (28, 28)), x, x[: max(1, n // 10)], x[: max(1, n // 10)])


def model(seed: int, dim: int, hidden: int, latent: int, device: torch.device) -> VAE:
    torch.manual_seed(seed)
    encoder = GaussianMLPEncoder(dim, 2, hidden, latent)
    return VAE(encoder, BernoulliMLPDecoder(latent, hidden, dim), StandardNormalPrior(latent)).to(
        device
    )


def timed(device: torch.device, work: Callable[[], object]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 16, 128])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--k", type=int, default=5000, help="importance samples for IW-NLL")
    parser.add_argument("--iw-points", type=int, default=1000)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args()
    dim, hidden, latent, n = 784, 256, 16, 20_000
    if args.quick:
        args.seeds, args.steps, args.k, args.iw_points = [1, 2], 4, 20, 16
        dim, hidden, latent, n = 64, 32, 4, 512
    device = resolve_device(args.device)
    data = synthetic(n, dim, device)
    budget = Budget(
        steps=args.steps, batch_size=args.batch_size, eval_every=args.steps, patience=None
    )
    warm = Budget(steps=3, batch_size=args.batch_size, eval_every=3, patience=None)
    fit(model(0, dim, hidden, latent, device), data, warm, 0, device=device)
    try:
        fit_batched(
            [model(s, dim, hidden, latent, device) for s in (0, 1)],
            data,
            warm,
            [0, 1],
            device=device,
        )
        blocker = None
    except NotVectorizable as exc:  # the components cannot run under vmap: say so, go on
        blocker = str(exc)

    rows = []
    samples = args.steps * args.batch_size
    eager = timed(
        device,
        lambda: fit(
            model(0, dim, hidden, latent, device),
            data,
            budget,
            0,
            device=device,
            precision=args.precision,
        ),
    )
    rows.append(["one model, eager (train.fit)", 1, f"{samples / eager:,.0f}", "1.00x"])
    for s in args.seeds if blocker is None else []:
        models = [model(seed, dim, hidden, latent, device) for seed in range(s)]
        seconds = timed(
            device,
            lambda models=models, s=s: fit_batched(
                models, data, budget, list(range(s)), device=device, precision=args.precision
            ),
        )
        rate = s * samples / seconds
        rows.append(
            [
                f"{s} seeds batched (fit_batched)",
                s,
                f"{rate:,.0f}",
                f"{rate * eager / samples:.2f}x",
            ]
        )
    if blocker is not None:
        rows.append(["seeds batched (fit_batched)", "-", f"not vectorizable: {blocker}", "-"])
    iw_model = model(0, dim, hidden, latent, device).eval()
    x = data.test[: args.iw_points]
    seconds = timed(device, lambda: likelihood_stats(iw_model, x, args.k))
    iw_rate = x.shape[0] * args.k / seconds
    print(
        f"{device_name(device)} ({device}), torch {torch.__version__}, model "
        f"{dim}-{hidden}-{hidden}-{latent} Bernoulli, batch {args.batch_size}, {args.steps} steps, "
        f"training precision {args.precision}"
    )
    print(
        tabulate(
            rows,
            headers=["training", "seeds", "samples/s (all seeds)", "vs eager"],
            tablefmt="github",
        )
    )
    print(f"\nIW-NLL, K = {args.k}, {x.shape[0]} points, fp32: {iw_rate:,.0f} importance samples/s")


if __name__ == "__main__":
    main()
