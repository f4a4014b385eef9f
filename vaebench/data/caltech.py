"""Caltech-101 Silhouettes at 28x28, split 1 (Marlin et al. 2010), as Tomczak & Welling 2018
use it: ``caltech101_silhouettes_28_split1.mat`` from
https://people.cs.umass.edu/~marlin/data.shtml, with 4,100 training, 2,264 validation and 2,307
test images.

The file holds ``train_data``, ``val_data`` and ``test_data``, ``[N, 784]`` each: one binary
image per row, its pixels in MATLAB's column-major order and the silhouette drawn as 0 on a
background of 1. As Tomczak & Welling's reference code does, each image is transposed back to
rows and inverted, so that the object is 1. No checksum of the file is published, so none is
checked: the reader checks the variables' shapes and that every value is 0 or 1 instead.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vaebench.data.matlab import FIX, check_shape, read_mat
from vaebench.data.sources import LoadedImages, RemoteDataset, RemoteFile, find_files, load_cached
from vaebench.errors import DataError

SIDE = 28
# Images per split in the official file; the reader insists on them.
COUNTS = {"train": 4_100, "val": 2_264, "test": 2_307}
VARIABLES = {"train": "train_data", "val": "val_data", "test": "test_data"}

CALTECH = RemoteDataset(
    "caltech101-silhouettes",
    {"split1": RemoteFile("caltech101_silhouettes_28_split1.mat", None, None)},
    ("https://people.cs.umass.edu/~marlin/data/",),
    "Marlin et al. 2010, https://people.cs.umass.edu/~marlin/data.shtml (28x28, split 1)",
)


def load_caltech_silhouettes(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> LoadedImages:
    """Find (or fetch) the split-1 file and load uint8 binary images ``[N, 28, 28]`` (object =
    1) for ``train``, ``val`` and ``test``, in the file's order."""
    root, paths = find_files(CALTECH, data_dir, download, mirrors, progress)
    return load_cached(_load, CALTECH, root, paths)


@functools.lru_cache(maxsize=2)
def _load(root: Path, key: tuple[tuple[str, str, int], ...]) -> LoadedImages:
    path = Path(key[0][1])
    what = "Caltech-101 Silhouettes"
    data = read_mat(path, tuple(VARIABLES.values()), what)
    images = {}
    for split, variable in VARIABLES.items():
        rows = data[variable]
        check_shape(rows, (COUNTS[split], SIDE * SIDE), path, what, variable)
        if not np.isin(rows, (0, 1)).all():
            raise DataError(
                f"{what} file {path}: {variable} holds values other than 0 and 1; {FIX}."
            )
        pixels = rows.reshape(-1, SIDE, SIDE).transpose(0, 2, 1)  # column-major pixels
        images[split] = torch.from_numpy(np.ascontiguousarray(1 - pixels, dtype=np.uint8))
    return LoadedImages(
        name="caltech101-silhouettes",
        root=root,
        files={"split1": str(path)},
        checksums=CALTECH.checksums(),
        images=images,
    )
