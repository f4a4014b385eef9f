"""The ``cifar10`` and ``svhn`` suites: 8-bit colour images, 32x32x3, each the other's OOD set.

* Data: every pixel's three channels as integer levels 0-255, flat ``[N, 3072]`` in channel,
  row, column order (``image_shape = (3, 32, 32)``); no dequantisation, no rescaling: the
  decoders are discrete (the discretized logistic mixture), so -ELBO and IW-NLL are in nats of
  the 8-bit data and bits/dim divide by 3072 ln 2.
* Split, ``cifar10``: train = ``data_batch_1`` to ``data_batch_4`` (40,000 images), validation =
  ``data_batch_5`` (10,000; the batches are in random order, so this is a random tenth, as in
  Tomczak & Welling's reference code, which cuts 40,000 / 10,000 from a shuffle), test = the
  10,000 test images.
* Split, ``svhn``: validation = the last 400 training images of each class (4,000), as Sermanet
  et al. 2012 and Goodfellow et al. 2013 hold out 400 per class from train; train = the other
  69,257; test = the 26,032 test images. With ``--option extra=true`` the 531,131 ``extra``
  images join train, less the last 200 of each class, which join validation (as those papers
  do); that needs about 8 GB of memory for the training tensor.
* OOD sets: the other suite's test images and sets made from the suite's own test images:
  ``noise`` (uniform levels), ``permuted`` (pixel positions shuffled, one permutation for all),
  ``inverted`` (255 - x), ``rotated`` (90 degrees), ``flipped`` (upside down: a left-right flip
  is the standard augmentation of these datasets, so in distribution) and ``grey`` (every
  channel set to the pixel's mean level). CIFAR-10 against SVHN is the pair where likelihood
  ranks the OOD set higher (Nalisnick et al. 2019).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vaebench.contracts import Budget, DataSpec, EvalSettings, Grid, Profile, Suite, SuiteData
from vaebench.errors import ConfigError
from vaebench.suites.mnist import TINY, dataset, paper_profile

CHANNELS, SIDE, LEVELS = 3, 32, 256
DIM = CHANNELS * SIDE * SIDE
OOD_SEED = 2024
SVHN_VAL_PER_CLASS, SVHN_EXTRA_VAL_PER_CLASS = 400, 200


def flat_levels(images: torch.Tensor) -> torch.Tensor:
    """uint8 images ``[N, 3, 32, 32]`` as float32 levels ``[N, 3072]``."""
    return images.reshape(images.shape[0], -1).to(torch.float32)


def last_per_class(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """A mask of the last ``per_class`` indices of every class, in the data's order."""
    mask = torch.zeros(labels.shape[0], dtype=torch.bool)
    for c in labels.unique().tolist():
        where = (labels == c).nonzero().flatten()
        mask[where[-per_class:]] = True
    return mask


def colour_ood(test: torch.Tensor, seed: int = OOD_SEED) -> dict[str, torch.Tensor]:
    """OOD sets made from flat colour test images (levels 0-255), each of the same size."""
    g = torch.Generator().manual_seed(seed)
    n = test.shape[0]
    images = test.reshape(n, CHANNELS, SIDE, SIDE)
    positions = torch.randperm(SIDE * SIDE, generator=g)
    grey = images.mean(1, keepdim=True).round().expand(-1, CHANNELS, -1, -1)
    return {
        "noise": torch.randint(0, LEVELS, test.shape, generator=g).to(test.dtype),
        "permuted": images.flatten(2)[:, :, positions].reshape(n, -1),
        "inverted": (LEVELS - 1) - test,
        "rotated": torch.rot90(images, 1, dims=(2, 3)).reshape(n, -1),
        "flipped": torch.flip(images, dims=(2,)).reshape(n, -1),
        "grey": grey.reshape(n, -1),
    }


def _split_cifar10(own: Any, options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, str]:
    train = own.images["train"]
    cut = train.shape[0] - train.shape[0] // 5  # data_batch_5 is the last fifth
    how = "train = data_batch_1-4 (40,000), validation = data_batch_5 (10,000), test = test_batch"
    return train[:cut], train[cut:], how


def _split_svhn(own: Any, options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, str]:
    held = last_per_class(own.labels["train"], SVHN_VAL_PER_CLASS)
    train, val = [own.images["train"][~held]], [own.images["train"][held]]
    how = "validation = last 400 training images per class (4,000), train = the rest"
    if options.get("extra"):
        held_extra = last_per_class(own.labels["extra"], SVHN_EXTRA_VAL_PER_CLASS)
        train.append(own.images["extra"][~held_extra])
        val.append(own.images["extra"][held_extra])
        how += "; extra joins train less its last 200 images per class, which join validation"
    return torch.cat(train), torch.cat(val), how + "; test = the 26,032 test images"


SPLITS = {"cifar10": _split_cifar10, "svhn": _split_svhn}


def make_loader(name: str, other: str):  # type: ignore[no-untyped-def]
    def load(options: dict[str, Any], datasets: Callable[..., Any] | None = None) -> SuiteData:
        limit = options.get("limit")
        data_dir = options.get("data_dir")
        extra = options.get("extra", False)
        if not isinstance(extra, bool):
            raise ConfigError(f"suite {name!r}: option extra must be true or false, got {extra!r}")
        own = dataset(datasets, name, data_dir, **({"extra": True} if extra else {}))
        ood_source = dataset(datasets, other, data_dir)
        train_u8, val_u8, split = SPLITS[name](own, options)
        if limit:
            train_u8, val_u8 = train_u8[: int(limit)], val_u8[: int(limit)]
        test_u8 = own.images["test"][: int(limit)] if limit else own.images["test"]
        test = flat_levels(test_u8)
        n_ood = int(options.get("ood_size") or test.shape[0])
        ood = {other: flat_levels(ood_source.images["test"][:n_ood])}
        ood.update(colour_ood(test))
        ood = {k: v[:n_ood] for k, v in ood.items()}
        return SuiteData(
            spec=DataSpec(dim=DIM, levels=LEVELS, image_shape=(CHANNELS, SIDE, SIDE)),
            train=flat_levels(train_u8),
            val=flat_levels(val_u8),
            test=test,
            ood=ood,
            provenance={
                "dataset": name,
                "root": str(own.root),
                "files": own.files,
                "md5": own.checksums,
                "ood_dataset": other,
                "ood_root": str(ood_source.root),
                "split": split,
                "preprocessing": "none: 8-bit levels 0-255 per channel, flat (channel, row, col)",
                "extra": extra,
                "limit": limit,
                "ood_size": n_ood,
                "ood_seed": OOD_SEED,
            },
        )

    return load


def _profiles() -> dict[str, Profile]:
    return {
        # Sized from training steps and IW passes timed on random data of this shape: six
        # trainings (3 priors x 2 seeds) of 1000 steps, K = 10 on the test images and K = 5
        # on the OOD sets take about 15 minutes (README, "Suites beyond MNIST").
        "default": Profile(
            Budget(steps=1000, batch_size=64, lr=1e-3, eval_every=500, patience=None),
            EvalSettings(k=10, k_ood=5),
            "the default grid, evaluation included, in about 15 minutes on 2 CPU cores "
            "(one logistic per channel, 1000 steps, K = 10)",
            options={"mlp-logistic-mixture": {"mixtures": 1}},
        ),
        "paper": paper_profile(
            "the mnist suite's literature set-up on colour data: long training with early "
            "stopping, K = 5000",
            eval_every=2000,
        ),
        "tiny": TINY,
    }


def make_suite(name: str, other: str, description: str) -> Suite:
    options: dict[str, Any] = {"limit": None, "ood_size": 2000}
    if name == "svhn":
        options["extra"] = False
    return Suite(
        name=name,
        version="1",
        load=make_loader(name, other),
        description=description,
        latent_dim=32,
        hidden_dim=256,
        profiles=_profiles(),
        # The built-in MLP pair with the 8-bit colour decoder: a 256-way categorical per
        # channel would be a 786,432-wide output layer. Plugin components join on request.
        grid=Grid(decoders=("mlp-logistic-mixture",), plugins=("vaebench",)),
        seeds=(0, 1),
        metrics=("likelihood", "collapse", "holes", "ood"),
        options=options,
    )


CIFAR10 = make_suite("cifar10", "svhn", "CIFAR-10 32x32x3, 8-bit colour; SVHN as OOD")
SVHN = make_suite("svhn", "cifar10", "SVHN cropped digits 32x32x3, 8-bit colour; CIFAR-10 as OOD")
