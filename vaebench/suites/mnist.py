"""The ``mnist`` and ``fashion-mnist`` suites, set up as the VAE literature does.

* Split: train = first 50,000 of the 60,000 training images, validation = last 10,000,
  test = the 10,000 test images.
* Binarization (option ``binarization``): ``dynamic`` (default; a fresh Bernoulli sample of
  each training image every time it is drawn, from the training seed's own stream; validation,
  test and OOD sets binarized once from ``binarization_seed``, each split from its own stream
  (:func:`vaebench.streams.split_binarization`)), ``static`` (every split binarized once from
  ``binarization_seed``), or ``none`` (8-bit grey levels, for the 256-level categorical
  decoder).
* OOD sets: the other dataset's test split (Fashion-MNIST for ``mnist`` and MNIST for
  ``fashion-mnist``, the pair where likelihood ranks the OOD set higher: Nalisnick et al. 2019)
  and sets built from the suite's own test images (noise, pixel-permuted, inverted, rotated,
  flipped), each processed exactly like the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vaebench import streams
from vaebench.contracts import Budget, DataSpec, EvalSettings, Grid, Profile, Suite, SuiteData
from vaebench.errors import ConfigError

BINARIZATIONS = ("dynamic", "static", "none")
OOD_SEED = 2024
SIDE = 28


def dataset(
    datasets: Callable[..., Any] | None, name: str, data_dir: str | None, **options: Any
) -> Any:
    """The registered dataset ``name`` through the run's ``datasets`` loader (found locally,
    else downloaded and checksummed); a direct call without one uses the process-wide host."""
    from vaebench.plugins import dataset_loader

    return (datasets or dataset_loader())(name, data_dir=data_dir, **options)


def self_ood(test_grey: torch.Tensor) -> dict[str, torch.Tensor]:
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


def binarization_options(
    suite: str, options: dict[str, Any], allowed: tuple[str, ...] = BINARIZATIONS
) -> tuple[str, int]:
    """The suite's ``binarization`` mode, checked against ``allowed``, and its seed."""
    mode = options.get("binarization", "dynamic")
    if mode not in allowed:
        raise ConfigError(
            f"suite {suite!r}: binarization {mode!r} is not one of {', '.join(allowed)}"
        )
    return mode, int(options.get("binarization_seed", 0))


def binarized_suite_data(
    grey: dict[str, torch.Tensor],
    ood_grey: dict[str, torch.Tensor],
    options: dict[str, Any],
    mode: str,
    seed: int,
    provenance: dict[str, Any],
) -> SuiteData:
    """A binary-image suite's data from grey levels in [0, 1] (``train``, ``val``, ``test``
    and the other datasets' OOD sets, each ``[N, 784]``): cut to ``limit``, the sets built from
    the test images added, every OOD set cut to ``ood_size``; then each split binarized once
    from its own stream of ``seed`` (the training split too unless ``mode`` is ``dynamic``),
    or, for ``none``, kept as the 256 levels."""
    from vaebench.data import static_binarize

    limit = options.get("limit")
    if limit:
        grey = {k: v[: int(limit)] for k, v in grey.items()}
    n_ood = int(options.get("ood_size") or grey["test"].shape[0])
    ood_grey = {**ood_grey, **self_ood(grey["test"])}
    ood_grey = {k: v[:n_ood] for k, v in ood_grey.items()}

    def fixed(x: torch.Tensor, split: str) -> torch.Tensor:
        if mode == "none":
            return (x * 255).round()
        return static_binarize(x, streams.split_binarization(seed, split))

    train_transform = None
    if mode == "dynamic":
        train, train_transform = grey["train"], dynamic_transform
    else:
        train = fixed(grey["train"], "train")
    return SuiteData(
        spec=DataSpec(
            dim=SIDE * SIDE, levels=256 if mode == "none" else 2, image_shape=(SIDE, SIDE)
        ),
        train=train,
        val=fixed(grey["val"], "val"),
        test=fixed(grey["test"], "test"),
        ood={k: fixed(v, f"ood/{k}") for k, v in ood_grey.items()},
        train_transform=train_transform,
        provenance={
            **provenance,
            "binarization": mode,
            "binarization_seed": seed,
            "binarization_streams": streams.SEEDING,
            "limit": limit,
            "ood_size": n_ood,
            "ood_seed": OOD_SEED,
        },
    )


def make_loader(name: str, other: str):  # type: ignore[no-untyped-def]
    def load(options: dict[str, Any], datasets: Callable[..., Any] | None = None) -> SuiteData:
        from vaebench.data import classic_split, to_unit_interval

        mode, seed = binarization_options(name, options)
        data_dir = options.get("data_dir")
        own = dataset(datasets, name, data_dir)
        ood_source = dataset(datasets, other, data_dir)
        (train_u8, _), (val_u8, _) = classic_split(own.train_images, own.train_labels)
        grey = {
            "train": to_unit_interval(train_u8).reshape(-1, SIDE * SIDE),
            "val": to_unit_interval(val_u8).reshape(-1, SIDE * SIDE),
            "test": to_unit_interval(own.test_images).reshape(-1, SIDE * SIDE),
        }
        ood_grey = {other: to_unit_interval(ood_source.test_images).reshape(-1, SIDE * SIDE)}
        return binarized_suite_data(
            grey,
            ood_grey,
            options,
            mode,
            seed,
            {
                "dataset": name,
                "root": str(own.root),
                "files": own.files,
                "md5": own.md5,
                "ood_dataset": other,
                "ood_root": str(ood_source.root),
                "split": "train = first 50,000 training images, validation = last 10,000, "
                "test = the 10,000 test images",
            },
        )

    return load


# Tomczak & Welling 2018 ("VAE with a VampPrior"), one-layer VAE on dynamically binarized MNIST,
# as their reference code (jmtomczak/vae_vampprior) trains it: gated MLP encoder and decoder
# 300-300 with He initialisation and the encoder's log-variance bounded to [-6, 2], latent 40,
# ELBO with the KL weight warmed up over 100 epochs, Adam with per-tensor gradient
# normalisation, lr 5e-4, batch 100, at most 2000 epochs with early stopping after 50 epochs
# without improvement, K = 5000. VampPrior: 500 pseudo-inputs, hard-tanh parameterised.
TOMCZAK2018 = Profile(
    Budget(
        steps=None,
        epochs=2000,
        batch_size=100,
        lr=5e-4,
        eval_every=500,  # one epoch of the 50,000 training images
        patience=50,
        checkpoint_every=2500,
        normalize_gradients=True,
    ),
    EvalSettings(k=5000, k_ood=100),
    "Tomczak & Welling 2018: gated MLP 300-300, latent 40, warm-up 100 epochs, Adam 5e-4, "
    "early stop 50 epochs, K = 5000 (rows: standard 88.56, VampPrior 85.57 nats; the standard "
    "prior's measured with --option binarization=static)",
    latent_dim=40,
    hidden_dim=300,
    grid=Grid(
        encoders=("mlp-gaussian",),
        decoders=("mlp-bernoulli",),
        priors=("standard-normal", "vamp"),
        objectives=("elbo",),
    ),
    options={
        "mlp-gaussian": {"activation": "gated", "init": "he", "logvar_bounds": [-6.0, 2.0]},
        "mlp-bernoulli": {"activation": "gated", "init": "he"},
        "vamp": {
            "pseudo_inputs": 500,
            "pseudo_init": "hardtanh",
            "pseudo_mean": 0.05,
            "pseudo_std": 0.01,
        },
        "elbo": {"warmup_epochs": 100},
    },
    reference="Tomczak & Welling 2018, AISTATS, VAE L = 1 (88.56 and 85.57 nats; this set-up gives "
    "88.35 for the standard prior with static binarization, 84.56 with dynamic)",
)

# Burda et al. 2015 ("Importance Weighted Autoencoders"), one stochastic layer: 784-200-200
# tanh to a 50-unit latent and back, batch 20, Adam (eps 1e-4), lr 1e-3 * 10**(-i/7) for 3**i
# epochs, i = 0..7 (3280 epochs), no early stopping, K = 5000; the VAE and IWAE with k = 5 and 50.
BURDA2015 = Profile(
    Budget(
        steps=None,
        epochs=sum(3**i for i in range(8)),
        batch_size=20,
        lr=1e-3,
        eval_every=25_000,  # ten epochs of the 50,000 training images
        patience=None,
        checkpoint_every=12_500,
        adam_eps=1e-4,
        lr_schedule=tuple((3**i, 10 ** (-i / 7)) for i in range(8)),
    ),
    EvalSettings(k=5000, k_ood=100),
    "Burda et al. 2015: tanh MLP 200-200, latent 50, batch 20, 3280 epochs of Adam on a "
    "decaying schedule, K = 5000; VAE and IWAE k = 5, 50 (rows: VAE 86.76, IWAE k=50 84.78)",
    latent_dim=50,
    hidden_dim=200,
    grid=Grid(
        encoders=("mlp-gaussian",),
        decoders=("mlp-bernoulli",),
        priors=("standard-normal",),
        objectives=("elbo", "iwae"),
    ),
    options={
        "mlp-gaussian": {"activation": "tanh"},
        "mlp-bernoulli": {"activation": "tanh"},
        "iwae": ({"k": 5}, {"k": 50}),
    },
    reference="Burda et al. 2015, ICLR 2016, Table 1 (MNIST, one stochastic layer)",
)


# The test profile of the suites on 28x28 and 32x32 images.
TINY = Profile(
    Budget(steps=20, batch_size=50, lr=1e-3, eval_every=10, patience=None),
    EvalSettings(k=10, k_ood=5),
    "seconds: for tests (use with --option limit=300)",
)


def paper_profile(description: str, eval_every: int = 2500) -> Profile:
    """The long set-up on a suite's own model: up to 1000 epochs of batch 100 with early
    stopping after 20 validations without improvement, K = 5000."""
    return Profile(
        Budget(
            steps=None,
            epochs=1000,
            batch_size=100,
            lr=1e-3,
            eval_every=eval_every,
            patience=20,
            checkpoint_every=2 * eval_every,
        ),
        EvalSettings(k=5000, k_ood=1000),
        description,
    )


def binary_profiles(
    steps: int, k: int, k_ood: int, minutes: str, paper: str = ""
) -> dict[str, Profile]:
    """``default`` (``steps`` of batch 128, IW-NLL with ``k``, OOD with ``k_ood``; the default
    grid in about ``minutes``), ``paper`` and ``tiny``: the profiles of the binary suites."""
    return {
        "default": Profile(
            Budget(steps=steps, batch_size=128, lr=1e-3, eval_every=500, patience=5),
            EvalSettings(k=k, k_ood=k_ood),
            f"the default grid, evaluation included, in about {minutes} minutes on 2 CPU cores",
        ),
        "paper": paper_profile(
            paper or "the literature setup: long training with early stopping, K = 5000"
        ),  # fmt: skip
        "tiny": TINY,
    }


def _profiles() -> dict[str, Profile]:
    return {
        **binary_profiles(
            6000,
            500,
            50,
            "15",
            paper="long training with early stopping, K = 5000, on the suite's own model; for a "
            "paper's rows use its own profile (tomczak2018, burda2015)",
        ),
        "tomczak2018": TOMCZAK2018,
        "burda2015": BURDA2015,
    }


def make_suite(name: str, other: str, description: str) -> Suite:
    return Suite(
        name=name,
        version="2",
        load=make_loader(name, other),
        description=description,
        latent_dim=16,
        hidden_dim=256,
        profiles=_profiles(),
        grid=Grid(
            baseline={
                "encoder": "mlp-gaussian",
                "decoder": "mlp-bernoulli",
                "prior": "standard-normal",
                "objective": "elbo",
            }
        ),
        seeds=(0, 1),
        metrics=("likelihood", "collapse", "holes", "ood"),
        options={
            "binarization": "dynamic",
            "binarization_seed": 0,
            "limit": None,
            "ood_size": 2000,
        },
        option_types={"limit": int},
    )


MNIST = make_suite("mnist", "fashion-mnist", "MNIST 28x28, dynamically binarized, classic split")
FASHION_MNIST = make_suite(
    "fashion-mnist", "mnist", "Fashion-MNIST 28x28, dynamically binarized; MNIST as OOD"
)
