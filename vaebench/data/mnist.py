"""MNIST and Fashion-MNIST as uint8 tensors, loaded once per process."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vaebench.data.download import dataset_spec
from vaebench.data.idx import read_idx
from vaebench.data.locate import find_dataset
from vaebench.errors import DataError

N_TRAIN, N_TEST, SIDE, N_CLASSES = 60_000, 10_000, 28, 10
N_CLASSIC_TRAIN = 50_000


@dataclass(frozen=True, eq=False)  # eq on tensors is ambiguous; identity is what matters
class MnistFamily:
    """One loaded dataset. Shared by every caller through the cache: treat it as read-only."""

    name: str
    root: Path
    files: dict[str, str]
    md5: dict[str, str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def load_mnist_family(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> MnistFamily:
    """Find (or download) and load ``"mnist"`` or ``"fashion-mnist"``, checking shapes."""
    root, paths = find_dataset(
        name, data_dir=data_dir, download=download, mirrors=mirrors, progress=progress
    )
    key = tuple((role, str(p.resolve()), p.stat().st_mtime_ns) for role, p in paths.items())
    return _load(name, root.resolve(), key)


@functools.lru_cache(maxsize=4)
def _load(name: str, root: Path, key: tuple[tuple[str, str, int], ...]) -> MnistFamily:
    files = {role: path for role, path, _ in key}
    tensors = {role: read_idx(path) for role, path in files.items()}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images, labels = tensors[f"{split}_images"], tensors[f"{split}_labels"]
        _check(files[f"{split}_images"], images, (n, SIDE, SIDE))
        _check(files[f"{split}_labels"], labels, (n,))
        if int(labels.max()) >= N_CLASSES:
            raise DataError(
                f"Label file {files[f'{split}_labels']} holds label {int(labels.max())}, expected "
                f"0-{N_CLASSES - 1}; delete it so it is downloaded again."
            )
    return MnistFamily(
        name=name,
        root=root,
        files=files,
        md5=dict(dataset_spec(name).md5),
        **tensors,
    )


def _check(path: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise DataError(
            f"Data file {path} has shape {list(tensor.shape)}, expected {list(shape)}; it is not "
            f"the file its name says: delete it so it is downloaded again, or check the data "
            f"directory."
        )


def classic_split(
    images: torch.Tensor, labels: torch.Tensor
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The classic VAE split of the 60,000 training digits: first 50,000 train, last 10,000
    validation. Returns ``((train_images, train_labels), (valid_images, valid_labels))`` views.
    """
    if images.shape[0] != N_TRAIN or labels.shape[0] != N_TRAIN:
        raise DataError(
            f"classic_split expects the {N_TRAIN} training images and labels, got "
            f"{images.shape[0]} images and {labels.shape[0]} labels; pass the train split."
        )
    cut = N_CLASSIC_TRAIN
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])
