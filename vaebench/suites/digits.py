"""The ``digits`` suite: scikit-learn's 8x8 handwritten digits, embedded, no download.

1797 images of 64 pixels with 17 grey levels (0..16), split in the dataset's order into
1000 train / 350 validation / 447 test. OOD sets are built from the test digits themselves.
"""

from __future__ import annotations

from typing import Any

import torch

from vaebench.contracts import Budget, DataSpec, EvalSettings, Grid, Profile, Suite, SuiteData

LEVELS = 17
SPLIT = (1000, 350, 447)
OOD_SEED = 2024


def digits_tensor() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.as_tensor(load_digits().data, dtype=torch.float32)


def make_ood_sets(test: torch.Tensor, levels: int, seed: int = OOD_SEED) -> dict[str, torch.Tensor]:
    """Uniform noise, pixel-permuted and inverted versions of ``test`` (same size)."""
    g = torch.Generator().manual_seed(seed)
    n, d = test.shape
    noise = torch.randint(0, levels, (n, d), generator=g).float()
    permuted = test[:, torch.randperm(d, generator=g)]
    inverted = (levels - 1) - test
    return {"noise": noise, "permuted": permuted, "inverted": inverted}


def load(options: dict[str, Any]) -> SuiteData:
    x = digits_tensor()
    n_train, n_val, n_test = SPLIT
    limit = options.get("limit")
    train = x[:n_train]
    val = x[n_train : n_train + n_val]
    test = x[n_train + n_val : n_train + n_val + n_test]
    if limit:
        train, val, test = train[:limit], val[:limit], test[:limit]
    return SuiteData(
        spec=DataSpec(dim=64, levels=LEVELS, image_shape=(8, 8)),
        train=train,
        val=val,
        test=test,
        ood=make_ood_sets(test, LEVELS),
        provenance={
            "source": "sklearn.datasets.load_digits",
            "split": "1000/350/447 in the dataset's order",
            "ood_seed": OOD_SEED,
            "limit": limit,
        },
    )


SUITE = Suite(
    name="digits",
    version="1",
    load=load,
    description="8x8 digits (scikit-learn), 17 grey levels, embedded: no download",
    latent_dim=16,
    hidden_dim=256,
    profiles={
        "default": Profile(
            Budget(steps=1500, batch_size=100, lr=1e-3, eval_every=100, patience=5),
            EvalSettings(k=1000, k_ood=100),
            "runs the default grid in about a minute on 2 CPU cores",
        ),
        "paper": Profile(
            Budget(steps=50_000, batch_size=100, lr=1e-3, eval_every=500, patience=20),
            EvalSettings(k=5000, k_ood=1000),
            "long training with early stopping, K = 5000",
        ),
        "tiny": Profile(
            Budget(steps=20, batch_size=50, lr=1e-3, eval_every=10, patience=None),
            EvalSettings(k=20, k_ood=10),
            "seconds: for tests and smoke checks",
        ),
    },
    grid=Grid(
        plugins=("vaebench",),  # every built-in that fits
        baseline={"encoder": "mlp-gaussian", "prior": "standard-normal", "objective": "elbo"},
    ),
    seeds=(0, 1),
    metrics=("likelihood", "collapse", "holes", "ood"),
    options={"limit": None},
    option_types={"limit": int},
)
