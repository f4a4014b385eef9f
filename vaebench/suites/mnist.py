"""The ``mnist`` and ``fashion-mnist`` suites, set up as the VAE literature does.

* Split: train = first 50,000 of the 60,000 training images, validation = last 10,000,
  test = the 10,000 test images.
* Binarization (option ``binarization``): ``dynamic`` (default; a fresh Bernoulli sample of
  each training image every time it is drawn, validation/test/OOD sets binarized once with
  ``binarization_seed``), ``static`` (every split binarized once from ``binarization_seed``), or
  ``none`` (8-bit grey levels, for the 256-level categorical decoder).
* OOD sets: the other dataset's test split (Fashion-MNIST for ``mnist`` and MNIST for
  ``fashion-mnist``, the pair where likelihood ranks the OOD set higher: Nalisnick et al. 2019)
  and sets built from the suite's own test images (noise, pixel-permuted, inverted, rotated,
  flipped), each processed exactly like the test split.
"""

from __future__ import annotations

from typing import Any

import torch

from vaebench.contracts import Budget, DataSpec, EvalSettings, Grid, Profile, Suite, SuiteData
from vaebench.errors import ConfigError

BINARIZATIONS = ("dynamic", "static", "none")
OOD_SEED = 2024
SIDE = 28


def _dataset(name: str, data_dir: str | None) -> Any:
    """The registered dataset ``name`` (found locally, else downloaded and checksummed)."""
    from vaebench.plugins import default_host

    return default_host().get("dataset", name).load(data_dir=data_dir)


def _self_ood(test_grey: torch.Tensor) -> dict[str, torch.Tensor]:
    """OOD sets built from the suite's own test images, as grey levels in [0, 1]."""
    g = torch.Generator().manual_seed(OOD_SEED)
    n = test_grey.shape[0]
    flat = test_grey.reshape(n, -1)
    images = test_grey.reshape(n, SIDE, SIDE)
    return {
        "noise": torch.rand(flat.shape, generator=g),
        "permuted": flat[:, torch.randperm(flat.shape[1], generator=g)],
        "inverted": 1.0 - flat,
        "rotated": torch.rot90(images, 1, dims=(1, 2)).reshape(n, -1),
        "flipped": torch.flip(images, dims=(2,)).reshape(n, -1),
    }


def dynamic_transform(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A fresh binarization of grey levels in [0, 1] from the training generator."""
    device = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=device).to(x.device)
    return (u < x).to(x.dtype)


def make_loader(name: str, other: str):  # type: ignore[no-untyped-def]
    def load(options: dict[str, Any]) -> SuiteData:
        from vaebench.data import classic_split, static_binarize, to_unit_interval

        mode = options.get("binarization", "dynamic")
        if mode not in BINARIZATIONS:
            raise ConfigError(
                f"suite {name!r}: binarization {mode!r} is not one of {', '.join(BINARIZATIONS)}"
            )
        seed = int(options.get("binarization_seed", 0))
        limit = options.get("limit")
        ood_size = options.get("ood_size")
        data_dir = options.get("data_dir")
        own = _dataset(name, data_dir)
        ood_source = _dataset(other, data_dir)

        (train_u8, _), (val_u8, _) = classic_split(own.train_images, own.train_labels)
        grey = {
            "train": to_unit_interval(train_u8).reshape(-1, SIDE * SIDE),
            "val": to_unit_interval(val_u8).reshape(-1, SIDE * SIDE),
            "test": to_unit_interval(own.test_images).reshape(-1, SIDE * SIDE),
        }
        if limit:
            grey = {k: v[: int(limit)] for k, v in grey.items()}
        n_ood = int(ood_size or grey["test"].shape[0])
        ood_grey = {other: to_unit_interval(ood_source.test_images).reshape(-1, SIDE * SIDE)}
        ood_grey.update(_self_ood(grey["test"]))
        ood_grey = {k: v[:n_ood] for k, v in ood_grey.items()}

        def fixed(x: torch.Tensor, offset: int) -> torch.Tensor:
            if mode == "none":
                return (x * 255).round()
            return static_binarize(x, seed + offset)

        train_transform = None
        if mode == "dynamic":
            train, train_transform = grey["train"], dynamic_transform
        else:
            train = fixed(grey["train"], 0)
        ood = {k: fixed(v, 10 + i) for i, (k, v) in enumerate(ood_grey.items())}
        return SuiteData(
            spec=DataSpec(
                dim=SIDE * SIDE, levels=256 if mode == "none" else 2, image_shape=(SIDE, SIDE)
            ),
            train=train,
            val=fixed(grey["val"], 1),
            test=fixed(grey["test"], 2),
            ood=ood,
            train_transform=train_transform,
            provenance={
                "dataset": name,
                "root": str(own.root),
                "files": own.files,
                "md5": own.md5,
                "ood_dataset": other,
                "ood_root": str(ood_source.root),
                "split": "train = first 50,000 training images, validation = last 10,000, "
                "test = the 10,000 test images",
                "binarization": mode,
                "binarization_seed": seed,
                "limit": limit,
                "ood_size": n_ood,
                "ood_seed": OOD_SEED,
            },
        )

    return load


def _profiles() -> dict[str, Profile]:
    return {
        "default": Profile(
            Budget(steps=6000, batch_size=128, lr=1e-3, eval_every=500, patience=5),
            EvalSettings(k=500, k_ood=50),
            "the default grid, evaluation included, in about 15 minutes on 2 CPU cores",
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


def make_suite(name: str, other: str, description: str) -> Suite:
    return Suite(
        name=name,
        version="1",
        load=make_loader(name, other),
        description=description,
        latent_dim=16,
        hidden_dim=256,
        profiles=_profiles(),
        grid=Grid(encoders=None, decoders=None, priors=None),
        seeds=(0, 1),
        metrics=("likelihood", "collapse", "holes", "ood"),
        options={
            "binarization": "dynamic",
            "binarization_seed": 0,
            "limit": None,
            "ood_size": 2000,
        },
    )


MNIST = make_suite("mnist", "fashion-mnist", "MNIST 28x28, dynamically binarized, classic split")
FASHION_MNIST = make_suite(
    "fashion-mnist", "mnist", "Fashion-MNIST 28x28, dynamically binarized; MNIST as OOD"
)
