"""Flow posteriors against the plain Gaussian on the digits suite, at the suite's budget.

Every encoder is trained with the same decoder, prior, budget and seeds; the table gives -ELBO
and IW-NLL on the test split (nats, mean over seeds, with the spread between seeds) and the
training time. A tighter posterior shows as a lower -ELBO and a smaller gap to the IW-NLL.

    python plugins/vaebench-flows/benchmarks/compare_elbo.py [--profile default] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import defaultdict

from tabulate import tabulate

from vaebench.api import run

ENCODERS = ["mlp-gaussian", "householder", "iaf", "sylvester"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--encoders", nargs="+", default=ENCODERS)
    parser.add_argument("--out", help="results directory (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="vaebench-flows-")
    summary = run(
        suite="digits",
        profile=args.profile,
        encoders=args.encoders,
        decoders=["mlp-categorical"],
        priors=["standard-normal"],
        seeds=args.seeds,
        metrics=["likelihood"],
        out=out,
    )
    by_encoder: dict[str, list[dict]] = defaultdict(list)
    for record in summary.records:
        if record["status"] != "ok":
            raise SystemExit(f"{record['combination']} failed: {record['error']}")
        by_encoder[record["combination"]["encoder"]].append(record)
    rows = []
    for encoder in args.encoders:
        records = by_encoder[encoder]

        def values(name: str, rs: list[dict] = records) -> list[float]:
            return [r["metrics"][name]["value"] for r in rs]

        def cell(name: str) -> str:
            vs = values(name)
            spread = f" ± {statistics.stdev(vs):.2f}" if len(vs) > 1 else ""
            return f"{statistics.mean(vs):.2f}{spread}"

        rows.append(
            [
                encoder,
                cell("neg_elbo"),
                cell("iw_nll"),
                cell("kl"),
                f"{statistics.mean(values('neg_elbo')) - statistics.mean(values('iw_nll')):.2f}",
                f"{statistics.mean(r['training']['seconds'] for r in records):.0f}",
                records[0].get("n_params", "?"),
            ]
        )
    headers = ["encoder", "-ELBO", "IW-NLL", "KL", "-ELBO - IW-NLL", "train s", "params"]
    print(f"digits, profile {args.profile!r}, seeds {args.seeds}, results in {out}")
    print(tabulate(rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
