from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from vaebench.data.idx import read_idx
from vaebench.errors import DataError

MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(values: bytes, dims: tuple[int, ...], dtype: int = 0x08) -> bytes:
    return bytes([0, 0, dtype, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + values


def test_reads_real_labels(shared_data: Path) -> None:
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert labels.dtype == torch.uint8 and labels.shape == (10_000,)
    assert torch.bincount(labels.long()).tolist() == MNIST_TEST_LABEL_COUNTS
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_reads_real_images(shared_data: Path) -> None:
    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    assert images.dtype == torch.uint8 and images.shape == (10_000, 28, 28)
    assert int(images[0].sum()) == 18454
    assert int(images.sum(dtype=torch.int64)) == 264_923_200


def test_detects_gzip_by_magic_not_name(tmp_path: Path) -> None:
    data = idx_bytes(bytes(range(6)), (2, 3))
    plain = tmp_path / "looks-compressed.gz"
    plain.write_bytes(data)
    packed = tmp_path / "looks-plain"
    packed.write_bytes(gzip.compress(data))
    for path in (plain, packed):
        assert read_idx(path).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_truncated_gzip_names_the_file(tmp_path: Path, shared_data: Path) -> None:
    full = (shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz") as info:
        read_idx(path)
    assert "delete" in str(info.value)


def test_corrupt_gzip_stream(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(idx_bytes(bytes(1000), (10, 100))))
    packed[20:30] = b"\xff" * 10
    path = tmp_path / "corrupt.gz"
    path.write_bytes(packed)
    with pytest.raises(DataError, match="corrupt.gz"):
        read_idx(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\0\0\0\0", "header bytes"),
        (b"PK\x03\x04junk", "header bytes"),
        (b"", "header bytes"),
        (b"\x00\x00\x08\x03\x00\x00", "ends inside its header"),
        (idx_bytes(bytes(5), (2, 3)), "holds 5 bytes"),
        (idx_bytes(bytes(7), (2, 3)), "more bytes"),
    ],
    ids=["float-dtype", "not-idx", "empty", "short-header", "short-payload", "long-payload"],
)
def test_invalid_files(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope.gz")
