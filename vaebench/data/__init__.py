"""Datasets: the IDX reader, checksummed downloads, locating data, MNIST-family loading and
binarization.

Names are imported on first use, so ``vaebench.data.locate`` or ``.download`` (used by the CLI
to report or fetch data) do not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the submodule defining it.
_MODULE_OF = {
    "dynamic_binarize": "binarize",
    "static_binarize": "binarize",
    "to_unit_interval": "binarize",
    "DATASETS": "download",
    "MIRRORS_ENV": "download",
    "DatasetSpec": "download",
    "download_file": "download",
    "ensure_dataset": "download",
    "md5_uncompressed": "download",
    "resolve_mirrors": "download",
    "read_idx": "idx",
    "DATA_ENV": "locate",
    "candidate_roots": "locate",
    "default_data_dir": "locate",
    "find_dataset": "locate",
    "MnistFamily": "mnist",
    "classic_split": "mnist",
    "load_mnist_family": "mnist",
}
__all__ = [
    "DATASETS",
    "DATA_ENV",
    "MIRRORS_ENV",
    "DatasetSpec",
    "MnistFamily",
    "candidate_roots",
    "classic_split",
    "default_data_dir",
    "download_file",
    "dynamic_binarize",
    "ensure_dataset",
    "find_dataset",
    "load_mnist_family",
    "md5_uncompressed",
    "read_idx",
    "resolve_mirrors",
    "static_binarize",
    "to_unit_interval",
]

if TYPE_CHECKING:
    from vaebench.data.binarize import dynamic_binarize, static_binarize, to_unit_interval
    from vaebench.data.download import (
        DATASETS,
        MIRRORS_ENV,
        DatasetSpec,
        download_file,
        ensure_dataset,
        md5_uncompressed,
        resolve_mirrors,
    )
    from vaebench.data.idx import read_idx
    from vaebench.data.locate import DATA_ENV, candidate_roots, default_data_dir, find_dataset
    from vaebench.data.mnist import MnistFamily, classic_split, load_mnist_family


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
