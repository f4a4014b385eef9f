"""The cifar10, svhn, omniglot and caltech101-silhouettes suites on small files in the official
layouts: their splits and OOD sets, and each ``tiny`` profile end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.official_files import (
    caltech_arrays,
    omniglot_arrays,
    pattern,
    write_mat,
)
from tests.data.test_more_datasets import (
    CALTECH_COUNTS,
    RECORDS,
    cifar_root,
    patch_svhn_md5,
    small_counts,  # noqa: F401 (a fixture)
    svhn_files,
)
from vaebench import api
from vaebench.data import caltech
from vaebench.plugins import default_host
from vaebench.suites import colour, omniglot

# The readers insist on the official image counts; these files are smaller.
pytestmark = pytest.mark.usefixtures("small_counts")


@pytest.fixture
def colour_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cifar_root(tmp_path, monkeypatch)
    monkeypatch.setattr(colour, "SVHN_VAL_PER_CLASS", 2)  # 30 training images, 3 per class
    patch_svhn_md5(monkeypatch, svhn_files(tmp_path / "svhn"))
    return tmp_path


def suite_data(name: str, root: Path, **options):  # type: ignore[no-untyped-def]
    suite = default_host().get("suite", name)
    return suite.load({**suite.options, **options, "data_dir": str(root)})


def tiny_run(name: str, root: Path, out: Path, **changes):  # type: ignore[no-untyped-def]
    settings = {
        "suite": name,
        "profile": "tiny",
        "seeds": [0],
        "data_dir": str(root),
        "out": str(out),
        "latent_dim": 4,
        "component_options": {"encoder": {"hidden": 32}, "decoder": {"hidden": 32}},
        "metrics": ["likelihood", "ood"],
    }
    settings.update(changes)
    return api.run(**settings)


def test_cifar10_split_and_ood(colour_root: Path) -> None:
    data = suite_data("cifar10", colour_root)
    assert data.spec.dim == 3072 and data.spec.levels == 256
    assert data.spec.image_shape == (3, 32, 32)
    assert data.train.shape == (4 * RECORDS, 3072) and data.train.dtype == torch.float32
    # validation is data_batch_5, test is test_batch
    assert np.array_equal(data.val[0].numpy(), pattern(4 * RECORDS, (3, 32, 32)).reshape(-1))
    assert np.array_equal(data.test[0].numpy(), pattern(5 * RECORDS, (3, 32, 32)).reshape(-1))
    assert set(data.ood) == {"svhn", "noise", "permuted", "inverted", "rotated", "flipped", "grey"}
    for name, x in data.ood.items():
        assert x.shape[1] == 3072 and (x == x.round()).all(), name
        assert x.min() >= 0 and x.max() <= 255, name
    assert torch.equal(data.ood["inverted"], 255 - data.test)
    images = data.test.reshape(-1, 3, 32, 32)
    assert torch.equal(data.ood["flipped"].reshape(-1, 3, 32, 32)[:, :, 0], images[:, :, -1])
    grey = data.ood["grey"].reshape(-1, 3, 32, 32)
    assert torch.equal(grey[:, 0], grey[:, 2])
    assert data.provenance["md5"]["archive"] is not None


def test_svhn_validation_is_the_last_per_class(colour_root: Path) -> None:
    data = suite_data("svhn", colour_root)
    # 30 training images, labels n % 10: the last two of each class are images 10..29
    assert data.val.shape[0] == 20 and data.train.shape[0] == 10
    assert np.array_equal(data.train[9].numpy(), pattern(9, (3, 32, 32)).reshape(-1))
    assert np.array_equal(data.val[0].numpy(), pattern(10, (3, 32, 32)).reshape(-1))
    assert "cifar10" in data.ood


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_colour_tiny_profile_end_to_end(
    name: str, colour_root: Path, tmp_path: Path, one_thread: None
) -> None:
    summary = tiny_run(name, colour_root, tmp_path / "results", priors=["standard-normal"])
    assert summary.ran == 1 and summary.failed == 0
    for record in summary.records:
        assert record["components"]["decoder"]["name"] == "mlp-logistic-mixture"
        metrics = record["metrics"]
        nll, bpd = metrics["iw_nll"]["value"], metrics["iw_nll_bpd"]["value"]
        assert math.isfinite(nll) and bpd == pytest.approx(nll / (3072 * math.log(2)))
        assert any(key.startswith("ood/") and "svhn" in key or "cifar10" in key
                   for key in metrics)  # fmt: skip


@pytest.fixture
def omniglot_root(tmp_path: Path, monkeypatch, link) -> Path:  # type: ignore[no-untyped-def]
    write_mat(tmp_path / "omniglot" / "chardata.mat", omniglot_arrays(40, 10))
    monkeypatch.setattr(omniglot, "N_VALIDATION", 8)
    link(tmp_path, "mnist")
    return tmp_path


def test_omniglot_split_is_burdas(omniglot_root: Path) -> None:
    data = suite_data("omniglot", omniglot_root)
    order = np.random.RandomState(123).permutation(40)
    expected_val = np.stack([pattern(n, (28, 28)).reshape(-1) / 255.0 for n in order[-8:]])
    assert data.train.shape == (32, 784) and data.val.shape == (8, 784)
    # train stays grey (binarized afresh per batch); validation is binarized once
    assert torch.allclose(data.train[0], torch.from_numpy(pattern(order[0], (28, 28)) / 255.0)
                          .float().reshape(-1))  # fmt: skip
    assert set(data.val.unique().tolist()) <= {0.0, 1.0}
    ones = data.val.mean().item()
    assert ones == pytest.approx(expected_val.mean(), abs=0.02)
    assert data.train_transform is not None and data.spec.levels == 2
    assert "mnist" in data.ood and data.ood["mnist"].shape[1] == 784


@pytest.mark.slow
def test_omniglot_tiny_profile_end_to_end(
    omniglot_root: Path, tmp_path: Path, one_thread: None
) -> None:
    summary = tiny_run("omniglot", omniglot_root, tmp_path / "results", priors=["standard-normal"])
    assert summary.ran == 1 and summary.failed == 0
    assert "ood/" in " ".join(summary.records[0]["metrics"])


@pytest.fixture
def caltech_root(tmp_path: Path) -> Path:
    name = caltech.CALTECH.files["split1"].name
    write_mat(tmp_path / "caltech101-silhouettes" / name, caltech_arrays(CALTECH_COUNTS))
    return tmp_path


def test_caltech_split_is_the_files(caltech_root: Path) -> None:
    data = suite_data("caltech101-silhouettes", caltech_root)
    assert [len(data.train), len(data.val), len(data.test)] == list(CALTECH_COUNTS.values())
    assert np.array_equal(data.val[0].numpy(), pattern(12, (28, 28), levels=2).reshape(-1))
    for x in (data.train, data.val, data.test, *data.ood.values()):
        assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(data.ood["inverted"], 1 - data.test)


@pytest.mark.slow
def test_caltech_tiny_profile_end_to_end(
    caltech_root: Path, tmp_path: Path, one_thread: None
) -> None:
    summary = tiny_run("caltech101-silhouettes", caltech_root, tmp_path / "results",
                       priors=["standard-normal"])  # fmt: skip
    assert summary.ran == 1 and summary.failed == 0
