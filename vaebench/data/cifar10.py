"""CIFAR-10 from its official binary distribution (Krizhevsky 2009), never the pickled one.

``cifar-10-binary.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html) holds
``cifar-10-batches-bin/data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``, each
10,000 records of 3,073 bytes: the label (0-9), then 1,024 red, 1,024 green and 1,024 blue
bytes, each plane a 32x32 image in row-major order. The archive is read as a stream, member by
member; nothing is extracted to disk. Its md5, ``c32a1d4ab5d03f1284b67883e8d87530``, is the one
the dataset's page publishes for the archive itself (torchvision checks the same archive-level
kind of digest for the Python version).
"""

from __future__ import annotations

import functools
import os
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vaebench.data.matlab import FIX
from vaebench.data.sources import LoadedImages, RemoteDataset, RemoteFile, find_files, load_cached
from vaebench.errors import DataError

ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCH = "test_batch.bin"
RECORDS_PER_BATCH = 10_000
CHANNELS, SIDE, N_CLASSES = 3, 32, 10
RECORD_BYTES = 1 + CHANNELS * SIDE * SIDE

CIFAR10 = RemoteDataset(
    "cifar10",
    {"archive": RemoteFile(ARCHIVE, 170_052_171, "c32a1d4ab5d03f1284b67883e8d87530", "archive")},
    ("https://www.cs.toronto.edu/~kriz/",),
    "Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html (binary version)",
)


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> LoadedImages:
    """Find (or fetch) the archive and load 50,000 train and 10,000 test images, uint8
    ``[N, 3, 32, 32]``; train keeps the batches' order (batch 5 is the last 10,000)."""
    root, paths = find_files(CIFAR10, data_dir, download, mirrors, progress)
    return load_cached(_load, CIFAR10, root, paths)


@functools.lru_cache(maxsize=2)
def _load(root: Path, key: tuple[tuple[str, str, int], ...]) -> LoadedImages:
    path = Path(key[0][1])
    batches = read_batches(path)
    train = [batches[name] for name in TRAIN_BATCHES]
    images = {
        "train": torch.cat([b[0] for b in train]),
        "test": batches[TEST_BATCH][0],
    }
    labels = {"train": torch.cat([b[1] for b in train]), "test": batches[TEST_BATCH][1]}
    return LoadedImages(
        name="cifar10",
        root=root,
        files={"archive": str(path)},
        checksums=CIFAR10.checksums(),
        images=images,
        labels=labels,
    )


def read_batches(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{batch file name: (images uint8 [N, 3, 32, 32], labels int64 [N])}`` for the six
    batches of the archive at ``path``."""
    wanted = {f"{FOLDER}/{name}": name for name in (*TRAIN_BATCHES, TEST_BATCH)}
    found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    fix = FIX
    try:
        with tarfile.open(path, mode="r|gz") as archive:  # a stream: one pass, no seeking
            for member in archive:
                name = wanted.get(member.name)
                if name is None or not member.isfile():
                    continue
                stream = archive.extractfile(member)
                if stream is not None:  # None only for members that are not regular files
                    found[name] = parse_batch(stream.read(), f"{path}:{member.name}", fix)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"CIFAR-10 archive {path} is truncated or not a tar.gz ({e}); {fix}."
        ) from e
    missing = [m for m, name in wanted.items() if name not in found]
    if missing:
        raise DataError(f"CIFAR-10 archive {path} lacks {', '.join(missing)}; {fix}.")
    return found


def parse_batch(raw: bytes, where: str, fix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file's bytes as (images, labels), checking its size and labels."""
    expected = RECORDS_PER_BATCH * RECORD_BYTES
    if len(raw) != expected:
        raise DataError(
            f"CIFAR-10 batch {where} holds {len(raw)} bytes, expected {expected} "
            f"({RECORDS_PER_BATCH} records of {RECORD_BYTES}); {fix}."
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(RECORDS_PER_BATCH, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= N_CLASSES:
        raise DataError(
            f"CIFAR-10 batch {where} holds label {int(labels.max())}, expected 0-{N_CLASSES - 1}; "
            f"{fix}."
        )
    images = records[:, 1:].reshape(RECORDS_PER_BATCH, CHANNELS, SIDE, SIDE).copy()
    return torch.from_numpy(images), torch.from_numpy(labels)
