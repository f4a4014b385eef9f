"""Reading MATLAB ``.mat`` files (SVHN, Omniglot, Caltech-101 Silhouettes) with scipy.io, with
one clear error for a file that is corrupt, truncated or not what its name says."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaebench.errors import DataError

# The fix every data file error ends with.
FIX = "delete it and rerun to fetch it again, or point --data-dir / VAEBENCH_DATA at a good copy"


def read_mat(path: Path, variables: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """The named variables of the ``.mat`` file at ``path`` (MATLAB 5 to 7.2 format)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        data = loadmat(path, variable_names=list(variables))
    except (MatReadError, ValueError, TypeError, EOFError, OSError, zlib.error) as e:
        raise DataError(
            f"{what} file {path} is truncated or not a valid .mat file ({e}); {FIX}."
        ) from e
    missing = [v for v in variables if v not in data]
    if missing:
        raise DataError(f"{what} file {path} lacks the variable(s) {', '.join(missing)}; {FIX}.")
    return {v: data[v] for v in variables}


def check_shape(array: Any, shape: tuple[int, ...], path: Path, what: str, name: str) -> None:
    if tuple(array.shape) != shape:
        raise DataError(
            f"{what} file {path}: {name} has shape {list(array.shape)}, expected {list(shape)}; "
            f"{FIX}."
        )


def check_range(array: np.ndarray, low: float, high: float, path: Path, what: str, name: str):  # type: ignore[no-untyped-def]
    if array.size and (not np.isfinite(array).all() or array.min() < low or array.max() > high):
        raise DataError(
            f"{what} file {path}: {name} holds values in [{array.min()}, {array.max()}], expected "
            f"[{low}, {high}]; {FIX}."
        )


def class_indices(one_hot: np.ndarray, path: Path, what: str, name: str) -> np.ndarray:
    """Class indices from a ``[classes, N]`` one-hot matrix, checking it is one."""
    if one_hot.ndim != 2 or not np.isin(one_hot, (0, 1)).all() or (one_hot.sum(0) != 1).any():
        raise DataError(f"{what} file {path}: {name} is not a one-hot [classes, N] matrix; {FIX}.")
    return one_hot.argmax(0).astype(np.int64)
