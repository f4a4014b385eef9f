"""The mnist suite's loader on the real files, by behaviour: the classic 50,000/10,000/10,000
split, a fresh binarization of each training batch, fixed validation/test/OOD sets, and the
``none`` mode's exact grey levels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaebench.data import load_mnist_family
from vaebench.suites.mnist import FASHION_MNIST, MNIST

OOD_SETS = {"fashion-mnist", "noise", "permuted", "inverted", "rotated", "flipped"}


@pytest.fixture
def data_dir(tmp_path: Path, link) -> str:  # type: ignore[no-untyped-def]
    link(tmp_path, "mnist")
    link(tmp_path, "fashion-mnist")
    return str(tmp_path)


def load(data_dir: str, **options: object):  # type: ignore[no-untyped-def]
    return MNIST.load({"ood_size": 2000, "data_dir": data_dir, **options})


@pytest.mark.slow
def test_none_mode_is_the_classic_split_in_exact_grey_levels(data_dir: str) -> None:
    data = load(data_dir, binarization="none")
    raw = load_mnist_family("mnist", data_dir=data_dir, progress=False)
    fashion = load_mnist_family("fashion-mnist", data_dir=data_dir, progress=False)
    assert data.spec.levels == 256 and data.spec.dim == 784 and data.train_transform is None
    flat = raw.train_images.reshape(60_000, 784).float()
    assert torch.equal(data.train, flat[:50_000])  # first 50,000 for training
    assert torch.equal(data.val, flat[50_000:])  # last 10,000 for validation
    assert torch.equal(data.test, raw.test_images.reshape(10_000, 784).float())
    assert set(data.ood) == OOD_SETS and all(v.shape == (2000, 784) for v in data.ood.values())
    fashion_test = fashion.test_images[:2000].reshape(-1, 784).float()
    assert torch.equal(data.ood["fashion-mnist"], fashion_test)
    assert torch.equal(data.ood["inverted"], 255 - data.test[:2000])
    assert int(data.train.to(torch.int64).sum()) == 1_309_089_051  # the first 50,000 images


@pytest.mark.slow
def test_dynamic_mode_binarizes_each_batch_afresh(data_dir: str) -> None:
    data = load(data_dir)
    assert data.spec.levels == 2 and data.train_transform is not None
    assert data.train.shape == (50_000, 784) and data.train.min() >= 0 and data.train.max() <= 1
    batch = data.train[:256]
    g = torch.Generator().manual_seed(0)
    first, second = data.train_transform(batch, g), data.train_transform(batch, g)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)  # the same images, binarized again
    # Pixels that are 0 or 1 in grey stay so; the rest are Bernoulli(grey): their mean over
    # many draws is the grey level.
    sure = (batch == 0) | (batch == 1)
    assert torch.equal(first[sure], batch[sure])
    draws = torch.stack([data.train_transform(batch, g) for _ in range(400)]).mean(0)
    assert (draws - batch).abs().max() < 0.12
    assert abs(float(draws.mean() - batch.mean())) < 2e-3
    # The same generator state gives the same batch: a seeded run replays.
    again = data.train_transform(batch, torch.Generator().manual_seed(0))
    assert torch.equal(again, first)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_validation_test_and_ood_sets_are_fixed(data_dir: str, mode: str) -> None:
    one, two = load(data_dir, binarization=mode), load(data_dir, binarization=mode)
    other_seed = load(data_dir, binarization=mode, binarization_seed=1)
    grey = load(data_dir, binarization="none")
    for split in ("val", "test"):
        a, b = getattr(one, split), getattr(two, split)
        assert a.shape == (10_000, 784) and torch.equal(a, b)
        assert set(a.unique().tolist()) == {0.0, 1.0}
        assert not torch.equal(a, getattr(other_seed, split))
        # A Bernoulli sample of the grey levels: the means agree to sampling noise.
        assert abs(float(a.mean() - getattr(grey, split).mean() / 255)) < 2e-3
    assert not torch.equal(one.val[:1000], one.test[:1000])
    for name in OOD_SETS:
        assert torch.equal(one.ood[name], two.ood[name])
        assert set(one.ood[name].unique().tolist()) <= {0.0, 1.0}
    if mode == "static":
        assert one.train_transform is None and torch.equal(one.train, two.train)
        assert set(one.train.unique().tolist()) == {0.0, 1.0}


def test_fashion_mnist_takes_mnist_as_its_ood_set(data_dir: str) -> None:
    data = FASHION_MNIST.load({"ood_size": 100, "data_dir": data_dir, "binarization": "none"})
    mnist = load_mnist_family("mnist", data_dir=data_dir, progress=False)
    assert set(data.ood) == (OOD_SETS - {"fashion-mnist"}) | {"mnist"}
    assert torch.equal(data.ood["mnist"], mnist.test_images[:100].reshape(-1, 784).float())
