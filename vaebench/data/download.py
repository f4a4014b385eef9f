"""Checksummed downloads of the MNIST-family files, over HTTPS only.

Checksums are of the *uncompressed* IDX bytes (SHA-256, and md5 as the official lists give
it), so a mirror that recompresses the ``.gz`` still verifies. A file only ever appears under
its final name after it passed the check: it is streamed into a hidden ``.part`` file beside
it, fsynced, verified, then renamed atomically. A download is refused unless its URL and every
redirect are HTTPS, and stops at :data:`MAX_DOWNLOAD_BYTES` (the largest file is 26 MB).
Certificates are verified against the system's store; ``SSL_CERT_FILE`` points Python at
another one (an intranet mirror's CA, or a test's own).

Mirrors: the ``mirrors`` argument, else ``VAEBENCH_MIRRORS`` (comma-separated base URLs), else
the dataset's defaults, tried in order. Each file's name is appended to the base URL; the
dataset name is not (write ``{name}`` in a base URL to have it substituted), e.g.
``VAEBENCH_MIRRORS=https://intranet/mnist/,https://ossci-datasets.s3.amazonaws.com/mnist/``.

Files already present are verified once and remembered in ``.verified.json`` beside them; an
entry vouches for a file only while its size, modification and change times and inode are
those seen when it was hashed, and only if it was hashed well after its last modification
(a file written in the same clock tick as the hash could change without its times moving).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from vaebench.atomic import plain_file_mode
from vaebench.errors import ConfigError, DataError

GZIP_MAGIC = b"\x1f\x8b"
MIRRORS_ENV = "VAEBENCH_MIRRORS"
VERIFIED_FILE = ".verified.json"
TIMEOUT_S = 30.0
# Per file: the largest MNIST-family file is 26 MB; a mirror sending more is not sending it.
MAX_DOWNLOAD_BYTES = 64 << 20
# A cache entry is trusted only for a file last modified this long before it was hashed.
RACY_NS = 2_000_000_000
DIGESTS = ("md5", "sha256")
_CHUNK = 1 << 20

# Role -> file name; the roles are the keys of every path/digest dict this package returns.
FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable dataset: md5 and SHA-256 of each file's uncompressed content, keyed by
    role (either table may be empty; a role needs at least one), and its HTTPS mirrors."""

    name: str
    md5: dict[str, str]
    mirrors: tuple[str, ...]
    sha256: dict[str, str] = field(default_factory=dict)

    def expected(self, role: str) -> dict[str, str]:
        """The digests a file of ``role`` must have, by algorithm."""
        found = {"md5": self.md5.get(role), "sha256": self.sha256.get(role)}
        digests = {algo: value for algo, value in found.items() if value}
        if not digests:
            raise ConfigError(f"dataset {self.name!r} gives no checksum for {role!r}")
        return digests


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
        {
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        {
            "train_images": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train_labels": "9018921c3c673c538a1fc5bad174d6f9",
            "test_images": "8181f5470baa50b63fa0f6fddb340f0a",
            "test_labels": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        # The project's S3 bucket through its HTTPS (REST) endpoint (the website endpoint the
        # project's README links is plain HTTP only), then the copy in its GitHub repository.
        (
            "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        {
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    ),
}

# stat identity -> digests, so a read-only directory (no cache file) is hashed once per process.
_digest_memo: dict[tuple[Any, ...], dict[str, Any]] = {}


class _FetchError(Exception):
    """One mirror failed for one file; the message is a short reason."""


def dataset_spec(name: str) -> DatasetSpec:
    """The table entry for ``name``; an unknown name is a configuration error."""
    if name not in DATASETS:
        raise ConfigError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    return DATASETS[name]


def require_https(url: str) -> None:
    """Raise ConfigError unless ``url`` is an ``https://`` URL."""
    if urllib.parse.urlsplit(url).scheme.lower() != "https":
        raise ConfigError(
            f"{url} is not an HTTPS URL; vaebench downloads over HTTPS only: give an https:// "
            f"mirror (in {MIRRORS_ENV} or the mirrors argument), or place the file yourself."
        )


def resolve_mirrors(name: str, mirrors: Sequence[str] | None = None) -> list[str]:
    """Base URLs to try for ``name``: the argument, else VAEBENCH_MIRRORS, else the defaults."""
    if mirrors is None:
        env = os.environ.get(MIRRORS_ENV, "")
        mirrors = env.split(",") if env.strip() else dataset_spec(name).mirrors
    bases = [m.strip().replace("{name}", name) for m in mirrors if m.strip()]
    if not bases:
        raise ConfigError(f"No mirrors given for {name}; pass at least one base URL.")
    for base in bases:
        require_https(base)
    return [b if b.endswith("/") else b + "/" for b in bases]


def open_uncompressed(path: str | os.PathLike[str]) -> io.BufferedIOBase:
    """Open for reading, decompressing if the file starts with the gzip magic (not by name)."""
    with open(path, "rb") as f:
        compressed = f.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def digests_uncompressed(path: str | os.PathLike[str]) -> dict[str, str]:
    """md5 and SHA-256 of the file's content after gzip decompression (if it is gzip), in one
    pass."""
    hashes = {algo: hashlib.new(algo) for algo in DIGESTS}
    with open_uncompressed(path) as f:
        while chunk := f.read(_CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return {algo: h.hexdigest() for algo, h in hashes.items()}


def digests_of_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """md5 and SHA-256 of the file's bytes as stored (an archive whose published checksum is of
    the compressed file), in one pass."""
    hashes = {algo: hashlib.new(algo) for algo in DIGESTS}
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return {algo: h.hexdigest() for algo, h in hashes.items()}


def md5_uncompressed(path: str | os.PathLike[str]) -> str:
    """md5 of the file's content after gzip decompression (if it is gzip)."""
    return digests_uncompressed(path)["md5"]


def sha256_uncompressed(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the file's content after gzip decompression (if it is gzip)."""
    return digests_uncompressed(path)["sha256"]


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    md5_uncompressed: str | None = None,
    progress: bool = True,
    *,
    sha256: str | None = None,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    checksum_of: str = "content",
) -> Path:
    """Download ``url`` (HTTPS) to ``dest``; it appears there only if its checksums are right.

    Give the md5, the SHA-256 or both, of the uncompressed content (``checksum_of="content"``,
    as the MNIST lists give them) or of the file as served (``"file"``: CIFAR-10's archive); at
    most ``max_bytes`` are received.
    """
    dest = Path(dest)
    given = {"md5": md5_uncompressed, "sha256": sha256}
    expected = {algo: value for algo, value in given.items() if value}
    if not expected:
        raise ConfigError(f"download_file({url!r}): give md5_uncompressed, sha256 or both.")
    if checksum_of not in ("content", "file"):
        raise ConfigError(
            f"download_file: checksum_of must be 'content' or 'file', not {checksum_of!r}"
        )
    require_https(url)
    try:
        _fetch(url, dest, expected, progress, max_bytes, checksum_of)
    except _FetchError as e:
        raise DataError(
            f"Could not download {url} to {dest}: {e}; check the URL, set {MIRRORS_ENV} to a "
            f"working mirror, or place the file at {dest} yourself."
        ) from e
    return dest


def _fetch(
    url: str,
    dest: Path,
    expected: Mapping[str, str],
    progress: bool,
    max_bytes: int,
    checksum_of: str = "content",
) -> dict[str, Any]:
    """Raise _FetchError for what another mirror might fix, DataError for a local problem.
    Returns the digests of what was stored (with ``verified_ns``, when they were taken)."""
    part: Path | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            delete=False, dir=dest.parent, prefix="." + dest.name, suffix=".part"
        ) as tmp:
            part = Path(tmp.name)
            _stream(url, tmp, dest.name, progress, max_bytes)
            tmp.flush()
            os.fsync(tmp.fileno())
        found = _check_digests(part, expected, checksum_of)
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
    return found


def _mismatch(
    found: Mapping[str, str], expected: Mapping[str, str], checksum_of: str = "content"
) -> str | None:
    """A short description of the first digest that differs, or None."""
    what = "uncompressed content" if checksum_of == "content" else "file"
    for algo, value in expected.items():
        if found.get(algo) != value:
            return f"{algo} of {what} {found.get(algo)}, expected {value}"
    return None


def _check_digests(
    path: Path, expected: Mapping[str, str], checksum_of: str = "content"
) -> dict[str, Any]:
    if checksum_of == "file":
        found: dict[str, Any] = digests_of_file(path)
        wrong = _mismatch(found, expected, checksum_of)
        if wrong:
            raise _FetchError(f"checksum mismatch ({wrong})")
        return found
    try:
        found = _hash(path)
    except (EOFError, zlib.error, OSError) as e:
        raise _FetchError(f"the file received is not valid gzip data ({e})") from e
    wrong = _mismatch(found, expected, checksum_of)
    if wrong:
        raise _FetchError(f"checksum mismatch ({wrong})")
    return found


class _HttpsRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to HTTPS URLs: a mirror must not downgrade the transport."""

    def redirect_request(  # type: ignore[no-untyped-def]
        self, req, fp, code, msg, headers, newurl
    ):
        if urllib.parse.urlsplit(newurl).scheme.lower() != "https":
            raise _FetchError(f"redirected to {newurl}, which is not HTTPS")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _stream(url: str, out: IO[bytes], label: str, progress: bool, max_bytes: int) -> None:
    """Copy the response into ``out``; network failures become _FetchError, write errors don't."""
    try:
        # A new opener per download: Python 3.12+ fixes an HTTPS handler's certificate store
        # when the handler is made, and SSL_CERT_FILE may have changed since.
        resp = urllib.request.build_opener(_HttpsRedirects).open(url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise _FetchError(f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise _FetchError(f"unreachable ({e.reason})") from e
    except (OSError, http.client.HTTPException) as e:
        raise _FetchError(f"connection failed ({type(e).__name__}: {e})") from e
    length = resp.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    if total is not None and total > max_bytes:
        resp.close()
        raise _FetchError(f"the server announces {total} bytes, over the {max_bytes}-byte cap")
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
            received += len(chunk)
            if received > max_bytes:
                raise _FetchError(f"the server sent more than the {max_bytes}-byte cap")
            out.write(chunk)
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
            changed |= _verify(path, spec.expected(role), cache)
    if missing and not download:
        names = ", ".join(FILES[r] for r in missing)
        raise DataError(
            f"{name} files missing from {directory}: {names}; allow downloading, or place the "
            f"files there (or point --data-dir / VAEBENCH_DATA at a directory holding them)."
        )
    for role in missing:
        found = _download_any(name, paths[role], spec.expected(role), mirrors, progress)
        _remember(paths[role], found, cache)
        changed = True
    if changed:
        _write_cache(directory, cache)
    return paths


def _download_any(
    name: str,
    dest: Path,
    expected: Mapping[str, str],
    mirrors: Sequence[str] | None,
    progress: bool,
) -> dict[str, Any]:
    failures = []
    for base in resolve_mirrors(name, mirrors):
        url = base + dest.name
        try:
            return _fetch(url, dest, expected, progress, MAX_DOWNLOAD_BYTES)
        except _FetchError as e:
            failures.append(f"{url} ({e})")
    raise DataError(
        f"Could not download {dest.name} for {name}; tried {'; '.join(failures)}. Set "
        f"{MIRRORS_ENV} to comma-separated https:// base URLs the file name is appended to, or "
        f"place the file at {dest} yourself."
    )


def _stat_key(path: Path) -> dict[str, Any]:
    """What identifies a file's content without reading it: a rewrite moves ctime even when
    size and mtime are put back, and a replacement gets another inode."""
    st = path.stat()
    return {
        "path": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "ino": st.st_ino,
        "dev": st.st_dev,
    }


def _memo_key(key: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(key[k] for k in ("path", "size", "mtime_ns", "ctime_ns", "ino", "dev"))


def _vouches(entry: object, key: Mapping[str, Any], expected: Mapping[str, str]) -> bool:
    """Whether a cache entry still stands for the file: same identity, hashed well after the
    file's last change, with the expected digests."""
    if not isinstance(entry, dict):
        return False
    same = all(entry.get(k) == key[k] for k in ("size", "mtime_ns", "ctime_ns", "ino"))
    verified = entry.get("verified_ns")
    settled = isinstance(verified, int) and max(key["mtime_ns"], key["ctime_ns"]) < (
        verified - RACY_NS
    )
    return same and settled and _mismatch(entry, expected) is None


def _verify(path: Path, expected: Mapping[str, str], cache: dict) -> bool:
    """Raise DataError on a bad checksum; return True when the sidecar cache changed."""
    key = _stat_key(path)
    if _vouches(cache.get(path.name), key, expected):
        return False
    found = _digest_memo.get(_memo_key(key))
    if found is None:
        try:
            found = _hash(path)
        except (EOFError, zlib.error, OSError) as e:
            raise DataError(
                f"Data file {path} is truncated or not valid gzip ({e}); delete it and rerun to "
                f"download it again, or point --data-dir / VAEBENCH_DATA at a good copy."
            ) from e
    wrong = _mismatch(found, expected)
    if wrong:
        raise DataError(
            f"Data file {path} has the wrong checksum ({wrong}); delete it and rerun to "
            f"download it again, or point --data-dir / VAEBENCH_DATA at a good copy."
        )
    _remember(path, found, cache)
    return True


def _hash(path: Path) -> dict[str, str]:
    """The file's digests and ``verified_ns``: when hashing began, so a change during the
    hash is later than it."""
    began = time.time_ns()
    return {**digests_uncompressed(path), "verified_ns": began}  # type: ignore[dict-item]


def _remember(path: Path, found: Mapping[str, Any], cache: dict) -> None:
    key = _stat_key(path)
    _digest_memo[_memo_key(key)] = dict(found)
    entry = {k: key[k] for k in ("size", "mtime_ns", "ctime_ns", "ino")}
    cache[path.name] = {**entry, **found}


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
        os.chmod(tmp.name, plain_file_mode())  # like the data files, not the temporary's 0600
        os.replace(tmp.name, directory / VERIFIED_FILE)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)
