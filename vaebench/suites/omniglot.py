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

from vaebench.contracts import Grid, Suite, SuiteData
from vaebench.suites.mnist import (
    binarization_options,
    binarized_suite_data,
    binary_profiles,
    dataset,
)

BINARIZATIONS = ("dynamic", "static")
SIDE = 28
N_VALIDATION, SHUFFLE_SEED = 1345, 123  # Burda et al.'s n_validation and shuffle_seed


def burda_split(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) as Burda et al.'s ``DatasetTheano(..., shuffle=True)`` cuts them."""
    order = torch.from_numpy(np.random.RandomState(SHUFFLE_SEED).permutation(train.shape[0]))
    shuffled = train[order]
    return shuffled[:-N_VALIDATION], shuffled[-N_VALIDATION:]


def load(options: dict[str, Any], datasets: Callable[..., Any] | None = None) -> SuiteData:
    from vaebench.data import to_unit_interval

    mode, seed = binarization_options("omniglot", options, BINARIZATIONS)
    data_dir = options.get("data_dir")
    own = dataset(datasets, "omniglot", data_dir)
    mnist = dataset(datasets, "mnist", data_dir)
    train, val = burda_split(own.images["train"])
    grey = {"train": train, "val": val, "test": own.images["test"]}
    grey = {k: v.reshape(-1, SIDE * SIDE) for k, v in grey.items()}
    ood_grey = {"mnist": to_unit_interval(mnist.test_images).reshape(-1, SIDE * SIDE)}
    return binarized_suite_data(
        grey,
        ood_grey,
        options,
        mode,
        seed,
        {
            "dataset": "omniglot",
            "root": str(own.root),
            "files": own.files,
            "md5": own.checksums,
            "ood_dataset": "mnist",
            "ood_root": str(mnist.root),
            "split": "Burda et al. 2015: train shuffled by RandomState(123), last 1,345 "
            "validation, other 23,000 train; test = the 8,070 test images",
        },
    )


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
