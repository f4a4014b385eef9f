"""Posterior collapse with a PixelCNN decoder, against the convolutional decoder, on MNIST.

Both decoders are trained with the same encoder, prior, data and budget; the table gives the
test -ELBO, its KL term and the collapse statistics (active units, mutual information). A
decoder that models the pixels without z drives the KL, the active units and the MI to about
zero (Bowman et al. 2016; Chen et al. 2017).

    python plugins/vaebench-conv/benchmarks/collapse.py --data-dir DIR [--steps 600] [--limit 1000]
"""

from __future__ import annotations

import argparse
import tempfile

from tabulate import tabulate

from vaebench.api import run

DECODERS = ["conv-bernoulli", "pixelcnn"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="where mnist/ and fashion-mnist/ live")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=1000, help="images per split")
    parser.add_argument("--k", type=int, default=10, help="importance samples for IW-NLL")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", help="results directory (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="vaebench-conv-")
    summary = run(
        suite="mnist",
        profile="tiny",
        encoders=["conv-gaussian"],
        decoders=DECODERS,
        priors=["standard-normal"],
        seeds=args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        eval_every=max(1, args.steps // 3),
        k=args.k,
        metrics=["likelihood", "collapse"],
        suite_options={"limit": args.limit, "ood_size": 10},
        data_dir=args.data_dir,
        out=out,
    )
    rows = []
    for record in summary.records:
        if record["status"] != "ok":
            raise SystemExit(f"{record['combination']} failed: {record['error']}")
        m = {name: v["value"] for name, v in record["metrics"].items()}
        rows.append(
            [
                record["combination"]["decoder"],
                record["seed"],
                f"{m['neg_elbo']:.1f}",
                f"{m['iw_nll']:.1f}",
                f"{m['kl']:.2f}",
                f"{m['collapse/active_units']:.0f}",
                f"{m['collapse/mi']:.3f}",
                f"{record['training']['seconds']:.0f}",
            ]
        )
    headers = ["decoder", "seed", "-ELBO", "IW-NLL", "KL", "active units", "MI", "train s"]
    print(f"mnist (binarized), {args.limit} images per split, {args.steps} steps of "
          f"{args.batch_size}, k = {args.k}; results in {out}")  # fmt: skip
    print(tabulate(rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
