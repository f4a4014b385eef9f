"""The ``omniglot`` suite: Burda et al. 2015's 28x28 Omniglot, dynamically binarized as the
``mnist`` suite is, with MNIST as the OOD set.

* Split: Burda et al.'s own: the 24,345 training images in the order of
  ``numpy.random.RandomState(123).permutation`` (their reference code's shuffle), the last 1,345
  of them validation and the other 23,000 train; test = the 8,070 test images. Tomczak & Welling
  2018 hold out 1,345 as well.
* Binarization (option ``binarization``): ``dynamic`` (default; a fresh Bernoulli sample of each
  training image every time it is drawn, validation, test and OOD sets binarized once from
  ``binarization_seed``, each split from its own stream) or ``static`` (every split binarized
  once). The file holds grey levels in [0, 1], not 8-bit levels, so there is no ``none``.
* OOD sets: MNIST's test images and the sets the ``mnist`` suite builds from its own test
  images (noise, pixel-permuted, inverted, rotated, flipped), binarized like the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vaebench import streams
from vaebench.contracts import Budget, DataSpec, EvalSettings, Grid, Profile, Suite, SuiteData
from vaebench.errors import ConfigError
from vaebench.suites.mnist import dataset, dynamic_transform, self_ood

BINARIZATIONS = ("dynamic", "static")
SIDE = 28
N_VALIDATION, SHUFFLE_SEED = 1345, 123  # Burda et al.'s n_validation and shuffle_seed


def burda_split(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) as Burda et al.'s ``DatasetTheano(..., shuffle=True)`` cuts them."""
    order = torch.from_numpy(np.random.RandomState(SHUFFLE_SEED).permutation(train.shape[0]))
    shuffled = train[order]
    return shuffled[:-N_VALIDATION], shuffled[-N_VALIDATION:]


def load(options: dict[str, Any], datasets: Callable[..., Any] | None = None) -> SuiteData:
    from vaebench.data import static_binarize, to_unit_interval

    mode = options.get("binarization", "dynamic")
    if mode not in BINARIZATIONS:
        raise ConfigError(
            f"suite 'omniglot': binarization {mode!r} is not one of {', '.join(BINARIZATIONS)}"
        )
    seed = int(options.get("binarization_seed", 0))
    limit = options.get("limit")
    data_dir = options.get("data_dir")
    own = dataset(datasets, "omniglot", data_dir)
    mnist = dataset(datasets, "mnist", data_dir)
    train, val = burda_split(own.images["train"])
    grey = {"train": train, "val": val, "test": own.images["test"]}
    grey = {k: v.reshape(-1, SIDE * SIDE) for k, v in grey.items()}
    if limit:
        grey = {k: v[: int(limit)] for k, v in grey.items()}
    n_ood = int(options.get("ood_size") or grey["test"].shape[0])
    ood_grey = {"mnist": to_unit_interval(mnist.test_images).reshape(-1, SIDE * SIDE)}
    ood_grey.update(self_ood(grey["test"]))
    ood_grey = {k: v[:n_ood] for k, v in ood_grey.items()}

    def fixed(x: torch.Tensor, split: str) -> torch.Tensor:
        return static_binarize(x, streams.split_binarization(seed, split))

    train_transform = None
    if mode == "dynamic":
        train_data, train_transform = grey["train"], dynamic_transform
    else:
        train_data = fixed(grey["train"], "train")
    return SuiteData(
        spec=DataSpec(dim=SIDE * SIDE, levels=2, image_shape=(SIDE, SIDE)),
        train=train_data,
        val=fixed(grey["val"], "val"),
        test=fixed(grey["test"], "test"),
        ood={k: fixed(v, f"ood/{k}") for k, v in ood_grey.items()},
        train_transform=train_transform,
        provenance={
            "dataset": "omniglot",
            "root": str(own.root),
            "files": own.files,
            "md5": own.checksums,
            "ood_dataset": "mnist",
            "ood_root": str(mnist.root),
            "split": "Burda et al. 2015: train shuffled by RandomState(123), last 1,345 "
            "validation, other 23,000 train; test = the 8,070 test images",
            "binarization": mode,
            "binarization_seed": seed,
            "binarization_streams": streams.SEEDING,
            "limit": limit,
            "ood_size": n_ood,
        },
    )


def binary_profiles(steps: int, k: int, k_ood: int, minutes: str) -> dict[str, Profile]:
    """The ``default`` (sized by measurement), ``paper`` and ``tiny`` profiles of a 28x28
    binary suite."""
    return {
        "default": Profile(
            Budget(steps=steps, batch_size=128, lr=1e-3, eval_every=500, patience=5),
            EvalSettings(k=k, k_ood=k_ood),
            f"the default grid, evaluation included, in about {minutes} minutes on 2 CPU cores",
        ),
        "paper": Profile(
            Budget(
                steps=None,
                epochs=1000,
                batch_size=100,
                lr=1e-3,
                eval_every=2500,
                patience=20,
                checkpoint_every=5000,
            ),
            EvalSettings(k=5000, k_ood=1000),
            "the literature setup: long training with early stopping, K = 5000",
        ),
        "tiny": Profile(
            Budget(steps=20, batch_size=50, lr=1e-3, eval_every=10, patience=None),
            EvalSettings(k=10, k_ood=5),
            "seconds: for tests (use with --option limit=300)",
        ),
    }


OMNIGLOT = Suite(
    name="omniglot",
    version="1",
    load=load,
    description="Omniglot 28x28 (Burda et al. 2015), dynamically binarized; MNIST as OOD",
    latent_dim=16,
    hidden_dim=256,
    profiles=binary_profiles(6000, 500, 50, "15"),
    grid=Grid(plugins=("vaebench",)),
    seeds=(0, 1),
    metrics=("likelihood", "collapse", "holes", "ood"),
    options={"binarization": "dynamic", "binarization_seed": 0, "limit": None, "ood_size": 2000},
)
