"""Omniglot at 28x28, as Burda et al. 2015 prepared it (``chardata.mat`` in their reference
code, https://github.com/yburda/iwae, ``datasets/OMNIGLOT/``), also used by Tomczak & Welling
2018: 24,345 training and 8,070 test images of handwritten characters from 50 alphabets.

The file holds ``data`` ``[784, 24345]`` and ``testdata`` ``[784, 8070]``: one image per
column, grey levels in [0, 1], each image's pixels in MATLAB's column-major order (both
reference codes flatten them in Fortran order; here each image is transposed back to rows).
No checksum of ``chardata.mat`` is published, so none is checked: the reader checks the
variables' shapes and value range instead.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vaebench.data.matlab import check_range, check_shape, read_mat
from vaebench.data.sources import LoadedImages, RemoteDataset, RemoteFile, find_files, load_cached

SIDE = 28
# Images per split in the official file; the reader insists on them.
COUNTS = {"train": 24_345, "test": 8_070}
VARIABLES = {"train": "data", "test": "testdata"}

OMNIGLOT = RemoteDataset(
    "omniglot",
    {"chardata": RemoteFile("chardata.mat", None, None)},
    ("https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/",),
    "Burda et al. 2015 (after Lake et al. 2015), https://github.com/yburda/iwae",
)


def load_omniglot(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> LoadedImages:
    """Find (or fetch) ``chardata.mat`` and load float32 grey images ``[N, 28, 28]`` in [0, 1]
    for ``train`` and ``test``, in the file's order."""
    root, paths = find_files(OMNIGLOT, data_dir, download, mirrors, progress)
    return load_cached(_load, OMNIGLOT, root, paths)


@functools.lru_cache(maxsize=2)
def _load(root: Path, key: tuple[tuple[str, str, int], ...]) -> LoadedImages:
    path = Path(key[0][1])
    what = "Omniglot"
    data = read_mat(path, tuple(VARIABLES.values()), what)
    images = {}
    for split, variable in VARIABLES.items():
        columns = data[variable]
        check_shape(columns, (SIDE * SIDE, COUNTS[split]), path, what, variable)
        check_range(columns, 0.0, 1.0, path, what, variable)
        grey = columns.T.reshape(-1, SIDE, SIDE).transpose(0, 2, 1)  # column-major pixels
        images[split] = torch.from_numpy(np.ascontiguousarray(grey, dtype=np.float32))
    return LoadedImages(
        name="omniglot",
        root=root,
        files={"chardata": str(path)},
        checksums=OMNIGLOT.checksums(),
        images=images,
    )
