"""The ``caltech101-silhouettes`` suite: Marlin et al. 2010's 28x28 binary silhouettes, split 1,
as Tomczak & Welling 2018 use them.

* Split: the file's own: 4,100 train, 2,264 validation, 2,307 test images.
* The data are binary already (silhouette = 1, background = 0): no binarization.
* OOD sets: the ones the ``mnist`` suite builds from its own test images (noise, pixel-permuted,
  inverted, rotated, flipped); noise is uniform random bits, the others stay binary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vaebench import streams
from vaebench.contracts import DataSpec, Grid, Suite, SuiteData
from vaebench.suites.mnist import binary_profiles, dataset, self_ood

SIDE = 28
OOD_SEED = 2024


def load(options: dict[str, Any], datasets: Callable[..., Any] | None = None) -> SuiteData:
    from vaebench.data import static_binarize

    limit = options.get("limit")
    own = dataset(datasets, "caltech101-silhouettes", options.get("data_dir"))
    splits = {k: v.reshape(-1, SIDE * SIDE).to(torch.float32) for k, v in own.images.items()}
    if limit:
        splits = {k: v[: int(limit)] for k, v in splits.items()}
    n_ood = int(options.get("ood_size") or splits["test"].shape[0])
    # Bernoulli draws of values that are already 0 or 1 return them unchanged: only the noise
    # set (uniform grey levels) is made random bits by this.
    ood = {
        k: static_binarize(v[:n_ood], streams.split_binarization(OOD_SEED, f"ood/{k}"))
        for k, v in self_ood(splits["test"]).items()
    }
    return SuiteData(
        spec=DataSpec(dim=SIDE * SIDE, levels=2, image_shape=(SIDE, SIDE)),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        ood=ood,
        provenance={
            "dataset": "caltech101-silhouettes",
            "root": str(own.root),
            "files": own.files,
            "md5": own.checksums,
            "split": "the file's split 1: 4,100 train, 2,264 validation, 2,307 test",
            "preprocessing": "pixels transposed to row-major and inverted (object = 1)",
            "limit": limit,
            "ood_size": n_ood,
            "ood_seed": OOD_SEED,
        },
    )


CALTECH = Suite(
    name="caltech101-silhouettes",
    version="1",
    load=load,
    description="Caltech-101 Silhouettes 28x28, binary, split 1 (Tomczak & Welling 2018)",
    latent_dim=16,
    hidden_dim=256,
    profiles=binary_profiles(6000, 500, 50, "15"),
    grid=Grid(plugins=("vaebench",)),
    seeds=(0, 1),
    metrics=("likelihood", "collapse", "holes", "ood"),
    options={"limit": None, "ood_size": 2000},
)
