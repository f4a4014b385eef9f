"""Small files in the exact layout of the official CIFAR-10, SVHN, Omniglot and Caltech-101
Silhouettes distributions (same container, same byte layout, fewer images), with the pixel
values each reader must recover from them.

Every image is made from its index, so a test can say which pixel must land where:
``pattern(n, shape)[i] = (n * 37 + i * 11) % 256`` over the image's pixels in the reader's
output order (channel, row, column).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
from scipy.io import savemat

CIFAR_FOLDER = "cifar-10-batches-bin"
CIFAR_BATCHES = (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin")


def pattern(n: int, shape: tuple[int, ...], levels: int = 256) -> np.ndarray:
    """Image number ``n`` of ``shape`` (the reader's output layout), values below ``levels``."""
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    return ((n * 37 + i * 11) % levels).reshape(shape).astype(np.uint8)


def cifar_batch(first: int, records: int) -> bytes:
    """A batch file: per record the label byte, then the red, green and blue 32x32 planes."""
    out = bytearray()
    for n in range(first, first + records):
        out.append(n % 10)
        out += pattern(n, (3, 32, 32)).tobytes()  # channel planes, each row-major
    return bytes(out)


def write_cifar_archive(path: Path, records: int, drop: str | None = None) -> Path:
    """``cifar-10-binary.tar.gz`` with ``records`` per batch: batch b holds images
    ``b * records ..``; ``drop`` leaves one member out. The official archive also holds
    ``batches.meta.txt`` and ``readme.html``, written here too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, f"{CIFAR_FOLDER}/", None)
        for b, name in enumerate(CIFAR_BATCHES):
            if name != drop:
                _add(tar, f"{CIFAR_FOLDER}/{name}", cifar_batch(b * records, records))
        _add(tar, f"{CIFAR_FOLDER}/batches.meta.txt", b"airplane\nautomobile\n")
        _add(tar, f"{CIFAR_FOLDER}/readme.html", b"<html></html>\n")
    path.write_bytes(gzip.compress(buffer.getvalue()))
    return path


def _add(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name.rstrip("/"))
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def svhn_arrays(count: int, first: int = 0) -> dict[str, np.ndarray]:
    """``X`` uint8 ``[32, 32, 3, N]`` (row, column, channel, image) and ``y`` ``[N, 1]`` in
    1-10 (10 for the digit 0), as the official files store them. Image n's label is the digit
    ``n % 10``."""
    images = np.stack([pattern(first + n, (3, 32, 32)) for n in range(count)])
    x = np.ascontiguousarray(images.transpose(2, 3, 1, 0))
    digits = (np.arange(first, first + count) % 10).astype(np.uint8)
    y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
    return {"X": x, "y": y}


def write_mat(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A MATLAB 5 ``.mat`` file with compressed variables, as the official files are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, arrays, format="5", do_compression=True)
    return path


def omniglot_arrays(train: int, test: int) -> dict[str, np.ndarray]:
    """``data`` ``[784, N]`` and ``testdata``: one image per column in MATLAB's column-major
    pixel order, grey levels in [0, 1]; with the one-hot ``target`` matrices the file holds."""

    def columns(first: int, count: int) -> np.ndarray:
        grey = [pattern(first + n, (28, 28)) / 255.0 for n in range(count)]
        return np.stack([g.T.reshape(-1) for g in grey], axis=1)  # column-major, one per column

    def one_hot(count: int) -> np.ndarray:
        out = np.zeros((50, count))
        out[np.arange(count) % 50, np.arange(count)] = 1
        return out

    return {
        "data": columns(0, train),
        "testdata": columns(train, test),
        "target": one_hot(train),
        "testtarget": one_hot(test),
    }


def caltech_arrays(counts: dict[str, int]) -> dict[str, np.ndarray]:
    """``train_data``, ``val_data``, ``test_data``: ``[N, 784]``, one binary image per row in
    column-major pixel order, silhouette 0 on background 1; labels ``[N, 1]`` in 1-101."""
    out: dict[str, np.ndarray] = {}
    first = 0
    for split, count in counts.items():
        objects = [pattern(first + n, (28, 28), levels=2) for n in range(count)]
        out[f"{split}_data"] = np.stack([(1 - o).T.reshape(-1) for o in objects]).astype(float)
        out[f"{split}_labels"] = (np.arange(count)[:, None] % 101 + 1).astype(float)
        first += count
    return out
