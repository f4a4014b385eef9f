"""Checksummed downloads of the MNIST-family files.

Checksums are md5 of the *uncompressed* IDX bytes, so a mirror that recompresses the ``.gz``
still verifies. A file only ever appears under its final name after it passed the check: it is
streamed into a hidden ``.part`` file beside it, fsynced, verified, then renamed atomically.

Mirrors: the ``mirrors`` argument, else ``VAEBENCH_MIRRORS`` (comma-separated base URLs), else
the dataset's defaults, tried in order. Each file's name is appended to the base URL; the
dataset name is not (write ``{name}`` in a base URL to have it substituted), e.g.
``VAEBENCH_MIRRORS=http://intranet/mnist/,https://ossci-datasets.s3.amazonaws.com/mnist/``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import os
import stat
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from vaebench.errors import ConfigError, DataError
from vaebench.atomic import plain_file_mode

GZIP_MAGIC = b"\x1f\x8b"
MIRRORS_ENV = "VAEBENCH_MIRRORS"
VERIFIED_FILE = ".verified.json"
TIMEOUT_S = 30.0
_CHUNK = 1 << 20

# Role -> file name; the roles are the keys of every path/md5 dict this package returns.
FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable dataset: md5 of each file's uncompressed content, keyed by role."""

    name: str
    md5: dict[str, str]
    mirrors: tuple[str, ...]


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist",
        {
            "train_images": "6bbc9ace898e44ae57da46a324031adb",
            "train_labels": "a25bea736e30d166cdddb491f175f624",
            "test_images": "2646ac647ad5339dbf082846283269ea",
            "test_labels": "27ae3e4e09519cfbb04c329615203637",
        },
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",),
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        {
            "train_images": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train_labels": "9018921c3c673c538a1fc5bad174d6f9",
            "test_images": "8181f5470baa50b63fa0f6fddb340f0a",
            "test_labels": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
}

# (resolved path, size, mtime_ns) -> md5, so a read-only directory is hashed once per process.
_md5_memo: dict[tuple[str, int, int], str] = {}


class _FetchError(Exception):
    """One mirror failed for one file; the message is a short reason."""


def dataset_spec(name: str) -> DatasetSpec:
    """The table entry for ``name``; an unknown name is a configuration error."""
    if name not in DATASETS:
        raise ConfigError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    return DATASETS[name]


def resolve_mirrors(name: str, mirrors: Sequence[str] | None = None) -> list[str]:
    """Base URLs to try for ``name``: the argument, else VAEBENCH_MIRRORS, else the defaults."""
    if mirrors is None:
        env = os.environ.get(MIRRORS_ENV, "")
        mirrors = env.split(",") if env.strip() else dataset_spec(name).mirrors
    bases = [m.strip().replace("{name}", name) for m in mirrors if m.strip()]
    if not bases:
        raise ConfigError(f"No mirrors given for {name}; pass at least one base URL.")
    return [b if b.endswith("/") else b + "/" for b in bases]


def open_uncompressed(path: str | os.PathLike[str]) -> BinaryIO:
    """Open for reading, decompressing if the file starts with the gzip magic (not by name)."""
    with open(path, "rb") as f:
        compressed = f.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def md5_uncompressed(path: str | os.PathLike[str]) -> str:
    """md5 of the file's content after gzip decompression (if it is gzip)."""
    digest = hashlib.md5()
    with open_uncompressed(path) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str, dest: str | os.PathLike[str], md5_uncompressed: str, progress: bool = True
) -> Path:
    """Download ``url`` to ``dest``; it appears there only if its checksum is right."""
    dest = Path(dest)
    try:
        _fetch(url, dest, md5_uncompressed, progress)
    except _FetchError as e:
        raise DataError(
            f"Could not download {url} to {dest}: {e}; check the URL, set {MIRRORS_ENV} to a "
            f"working mirror, or place the file at {dest} yourself."
        ) from e
    return dest


def _fetch(url: str, dest: Path, expected_md5: str, progress: bool) -> None:
    """Raise _FetchError for what another mirror might fix, DataError for a local problem."""
    part: Path | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            delete=False, dir=dest.parent, prefix="." + dest.name, suffix=".part"
        ) as tmp:
            part = Path(tmp.name)
            _stream(url, tmp, dest.name, progress)
            tmp.flush()
            os.fsync(tmp.fileno())
        _check_md5(part, expected_md5)
        os.chmod(part, plain_file_mode())  # the temporary file's 0600 would hide it from others
        os.replace(part, dest)
        part = None
    except OSError as e:
        raise DataError(
            f"Could not write {dest} ({e}); make {dest.parent} writable or point --data-dir / "
            f"VAEBENCH_DATA at a writable directory."
        ) from e
    finally:
        if part is not None:
            with contextlib.suppress(OSError):
                part.unlink()
    _fsync_dir(dest.parent)


def _check_md5(path: Path, expected: str) -> None:
    try:
        found = md5_uncompressed(path)
    except (EOFError, zlib.error, OSError) as e:
        raise _FetchError(f"the file received is not valid gzip data ({e})") from e
    if found != expected:
        raise _FetchError(
            f"checksum mismatch (md5 of uncompressed content {found}, expected {expected})"
        )


def _stream(url: str, out: BinaryIO, label: str, progress: bool) -> None:
    """Copy the response into ``out``; network failures become _FetchError, write errors don't."""
    try:
        resp = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise _FetchError(f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise _FetchError(f"unreachable ({e.reason})") from e
    except (OSError, http.client.HTTPException) as e:
        raise _FetchError(f"connection failed ({type(e).__name__}: {e})") from e
    length = resp.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    received = 0
    bar = tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        disable=not progress,
        leave=False,
    )
    with resp, bar:
        while True:
            try:
                chunk = resp.read(_CHUNK)
            except TimeoutError as e:
                raise _FetchError(f"timed out after {TIMEOUT_S:g} s") from e
            except (OSError, http.client.HTTPException) as e:
                raise _FetchError(f"connection failed ({type(e).__name__}: {e})") from e
            if not chunk:
                break
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    # http.client returns b"" on an early close instead of raising, so count the bytes.
    if total is not None and received != total:
        raise _FetchError(f"connection closed after {received} of {total} bytes")


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; not possible on every platform, so best effort."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def is_writable_dir(directory: Path) -> bool:
    """Writable for us, and not marked read-only for everyone (root ignores mode bits)."""
    try:
        mode = directory.stat().st_mode
    except OSError:
        return False
    return os.access(directory, os.W_OK) and bool(
        mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    )


def ensure_dataset(
    name: str,
    root: str | os.PathLike[str],
    mirrors: Sequence[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> dict[str, Path]:
    """Verified paths of the four files under ``root/<name>/``, downloading only missing ones.

    Files already present are checksummed (cheaply, via ``.verified.json``) and never fetched.
    """
    spec = dataset_spec(name)
    directory = Path(root) / name
    paths = {role: directory / FILES[role] for role in FILES}
    cache = _read_cache(directory)
    changed = False
    missing = [role for role, p in paths.items() if not p.is_file()]
    for role, path in paths.items():
        if role not in missing:
            changed |= _verify(path, spec.md5[role], cache)
    if missing and not download:
        names = ", ".join(FILES[r] for r in missing)
        raise DataError(
            f"{name} files missing from {directory}: {names}; allow downloading, or place the "
            f"files there (or point --data-dir / VAEBENCH_DATA at a directory holding them)."
        )
    for role in missing:
        _download_any(name, paths[role], spec.md5[role], mirrors, progress)
        _remember(paths[role], spec.md5[role], cache)
        changed = True
    if changed:
        _write_cache(directory, cache)
    return paths


def _download_any(
    name: str, dest: Path, md5: str, mirrors: Sequence[str] | None, progress: bool
) -> None:
    failures = []
    for base in resolve_mirrors(name, mirrors):
        url = base + dest.name
        try:
            _fetch(url, dest, md5, progress)
            return
        except _FetchError as e:
            failures.append(f"{url} ({e})")
    raise DataError(
        f"Could not download {dest.name} for {name}; tried {'; '.join(failures)}. Set "
        f"{MIRRORS_ENV} to comma-separated base URLs the file name is appended to, or place "
        f"the file at {dest} yourself."
    )


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _verify(path: Path, expected: str, cache: dict) -> bool:
    """Raise DataError on a bad checksum; return True when the sidecar cache gained an entry."""
    key = _stat_key(path)
    entry = cache.get(path.name)
    if entry == {"size": key[1], "mtime_ns": key[2], "md5": expected}:
        return False
    if key not in _md5_memo:
        try:
            _md5_memo[key] = md5_uncompressed(path)
        except (EOFError, zlib.error, OSError) as e:
            raise DataError(
                f"Data file {path} is truncated or not valid gzip ({e}); delete it and rerun to "
                f"download it again, or point --data-dir / VAEBENCH_DATA at a good copy."
            ) from e
    found = _md5_memo[key]
    if found != expected:
        raise DataError(
            f"Data file {path} has the wrong checksum (md5 of uncompressed content: expected "
            f"{expected}, found {found}); delete it and rerun to download it again, or point "
            f"--data-dir / VAEBENCH_DATA at a good copy."
        )
    _remember(path, expected, cache)
    return True


def _remember(path: Path, md5: str, cache: dict) -> None:
    key = _stat_key(path)
    _md5_memo[key] = md5
    cache[path.name] = {"size": key[1], "mtime_ns": key[2], "md5": md5}


def _read_cache(directory: Path) -> dict:
    try:
        data = json.loads((directory / VERIFIED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(directory: Path, cache: dict) -> None:
    """Best effort: a read-only directory (a shared copy) just means re-hashing next run."""
    if not is_writable_dir(directory):
        return
    tmp = None
    try:
        with tempfile.NamedTemporaryFile(
            "w", delete=False, dir=directory, prefix=VERIFIED_FILE, suffix=".part"
        ) as tmp:
            json.dump(cache, tmp, indent=1, sort_keys=True)
        os.replace(tmp.name, directory / VERIFIED_FILE)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)
