from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaebench.data import mnist
from vaebench.data.download import DATASETS, FILES
from vaebench.data.mnist import classic_split, load_mnist_family
from vaebench.errors import DataError

# Computed once from the real files.
EXPECTED = {
    "mnist": {
        "train_labels": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        "test_labels": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
        "train_sum": 1_567_298_545,
        "test_sum": 264_923_200,
        "first50k_sum": 1_309_089_051,
    },
    "fashion-mnist": {
        "train_labels": [6000] * 10,
        "test_labels": [1000] * 10,
        "train_sum": 3_431_114_169,
        "test_sum": 573_469_082,
        "first50k_sum": 2_853_847_097,
    },
}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_load(name: str, tmp_path: Path, link, closed_url: str) -> None:
    link(tmp_path, name)
    data = load_mnist_family(name, data_dir=tmp_path, mirrors=[closed_url], progress=False)
    expected = EXPECTED[name]
    assert data.name == name and data.root == tmp_path
    assert data.files == {r: str((tmp_path / name / f).resolve()) for r, f in FILES.items()}
    assert data.md5 == DATASETS[name].md5
    assert data.train_images.shape == (60_000, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (10_000, 28, 28) and data.test_labels.dtype == torch.uint8
    for split in ("train", "test"):
        labels = getattr(data, f"{split}_labels")
        assert torch.bincount(labels.long()).tolist() == expected[f"{split}_labels"]
        assert (
            int(getattr(data, f"{split}_images").sum(dtype=torch.int64)) == expected[f"{split}_sum"]
        )
    (train_x, train_y), (valid_x, valid_y) = classic_split(data.train_images, data.train_labels)
    assert train_x.shape[0] == train_y.shape[0] == 50_000
    assert valid_x.shape[0] == valid_y.shape[0] == 10_000
    assert int(train_x.sum(dtype=torch.int64)) == expected["first50k_sum"]
    assert torch.equal(valid_y, data.train_labels[50_000:])


def test_loaded_once_per_process(tmp_path: Path, link, monkeypatch: pytest.MonkeyPatch) -> None:
    link(tmp_path, "mnist")
    first = load_mnist_family("mnist", data_dir=tmp_path, progress=False)

    def fail(path: object) -> torch.Tensor:
        raise AssertionError("read again")

    monkeypatch.setattr(mnist, "read_idx", fail)
    assert load_mnist_family("mnist", data_dir=tmp_path, progress=False) is first


def test_wrong_shape_is_reported(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = shared_data / "mnist"
    swapped = {role: src / f for role, f in FILES.items()}
    swapped["train_images"] = src / FILES["test_images"]  # right checksum, wrong file
    monkeypatch.setattr(mnist, "find_dataset", lambda *a, **k: (tmp_path, swapped))
    with pytest.raises(DataError, match=r"shape \[10000, 28, 28\], expected \[60000, 28, 28\]"):
        load_mnist_family("mnist")


def test_classic_split_needs_train_set() -> None:
    images = torch.zeros(10_000, 28, 28, dtype=torch.uint8)
    with pytest.raises(DataError, match="60000"):
        classic_split(images, torch.zeros(10_000, dtype=torch.uint8))
