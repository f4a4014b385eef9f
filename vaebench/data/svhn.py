"""SVHN, the cropped-digits format (Netzer et al. 2011): ``train_32x32.mat``,
``test_32x32.mat`` and, optionally, ``extra_32x32.mat`` from
http://ufldl.stanford.edu/housenumbers/.

Each file holds ``X``, uint8 ``[32, 32, 3, N]`` (row, column, channel, image), and ``y``,
``[N, 1]`` labels 1-10 where 10 stands for the digit 0. The md5 checksums are the ones
torchvision's ``SVHN`` dataset lists for these files.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vaebench.data.matlab import FIX, check_range, check_shape, read_mat
from vaebench.data.sources import LoadedImages, RemoteDataset, RemoteFile, find_files, load_cached
from vaebench.errors import DataError

SIDE, CHANNELS = 32, 3
# Images per split in the official files; the reader insists on them.
COUNTS = {"train": 73_257, "test": 26_032, "extra": 531_131}

SVHN = RemoteDataset(
    "svhn",
    {
        "train": RemoteFile("train_32x32.mat", None, "e26dedcc434d2e4c54c9b2d4a06d8373"),
        "test": RemoteFile("test_32x32.mat", None, "eb5a983be6a315427106f1b164d9cef3"),
        "extra": RemoteFile("extra_32x32.mat", None, "a93ce644f1a588dc4d68dda5feec44a7"),
    },
    ("https://ufldl.stanford.edu/housenumbers/",),
    "Netzer et al. 2011, http://ufldl.stanford.edu/housenumbers/ (format 2, cropped digits)",
)


def load_svhn(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    extra: bool = False,
) -> LoadedImages:
    """Find (or download) and load SVHN: uint8 images ``[N, 3, 32, 32]`` and labels 0-9 for
    ``train`` and ``test`` (and ``extra`` when asked: 531,131 more images, 1.3 GB)."""
    roles = ("train", "test", "extra") if extra else ("train", "test")
    root, paths = find_files(SVHN, data_dir, download, mirrors, progress, roles)
    return load_cached(_load, SVHN, root, paths)


@functools.lru_cache(maxsize=2)
def _load(root: Path, key: tuple[tuple[str, str, int], ...]) -> LoadedImages:
    files = {role: path for role, path, _ in key}
    images, labels = {}, {}
    for role, path in files.items():
        images[role], labels[role] = read_split(Path(path), COUNTS[role])
    return LoadedImages(
        name="svhn",
        root=root,
        files=files,
        checksums={role: SVHN.files[role].md5 for role in files},
        images=images,
        labels=labels,
    )


def read_split(path: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``*_32x32.mat`` file as (uint8 images ``[N, 3, 32, 32]``, int64 labels 0-9)."""
    what = "SVHN"
    data = read_mat(path, ("X", "y"), what)
    x, y = data["X"], data["y"]
    check_shape(x, (SIDE, SIDE, CHANNELS, count), path, what, "X")
    check_shape(y, (count, 1), path, what, "y")
    if x.dtype != np.uint8:
        raise DataError(f"{what} file {path}: X has dtype {x.dtype}, expected uint8; {FIX}.")
    check_range(y, 1, 10, path, what, "y")
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # -> image, channel, row, column
    labels = y[:, 0].astype(np.int64) % 10  # the file's 10 is the digit 0
    return torch.from_numpy(images), torch.from_numpy(labels)
