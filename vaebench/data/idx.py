"""Reader for the IDX format that MNIST-family files use (plain or gzip-compressed).

Layout: two zero bytes, a dtype byte (0x08 = uint8, the only one these datasets use), a byte
with the number of dimensions, one big-endian uint32 per dimension, then the values.
"""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from vaebench.data.download import open_uncompressed
from vaebench.errors import DataError

_UINT8 = 0x08
_MAX_NDIM = 4


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an IDX file of uint8 values into a tensor shaped as its header says."""
    path = Path(path)
    fix = "delete it so it is downloaded again, or check the data directory"
    try:
        with open_uncompressed(path) as f:
            return _parse(f, path, fix)
    except FileNotFoundError:
        raise DataError(
            f"IDX file {path} does not exist; check the data directory or let vaebench download it."
        ) from None
    except (EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"IDX file {path} is truncated or not a valid gzip/IDX file ({e}); {fix}."
        ) from e


def _parse(f: io.BufferedIOBase, path: Path, fix: str) -> torch.Tensor:
    head = f.read(4)
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] != _UINT8 or not 1 <= head[3] <= _MAX_NDIM:
        raise DataError(
            f"IDX file {path} has header bytes {head.hex() or '(none)'}, expected 0000 08 then "
            f"1-{_MAX_NDIM} dimensions (uint8 IDX); {fix}."
        )
    ndim = head[3]
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"IDX file {path} ends inside its header; {fix}.")
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    size = int(np.prod(dims, dtype=np.int64))
    buf = bytearray(size)  # writable, so torch.from_numpy shares it without a warning or copy
    view = memoryview(buf)
    got = 0
    while got < size:
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    extra = len(f.read(1))  # also reads to the end, so gzip checks its CRC and length
    if got != size or extra:
        found = f"{got} bytes" if got != size else "more bytes than that"
        raise DataError(
            f"IDX file {path} declares shape {list(dims)} ({size} bytes of data) but holds "
            f"{found}; {fix}."
        )
    return torch.from_numpy(np.frombuffer(buf, dtype=np.uint8).reshape(dims))
