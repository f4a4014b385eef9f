"""Datasets beyond the MNIST family: their files, where they are found, how they are verified and
fetched, and the loaded result.

Each dataset is one or a few files in ``<root>/<name>/``, searched in the roots MNIST uses
(:func:`vaebench.data.locate.candidate_roots`: ``--data-dir``, ``VAEBENCH_DATA``, the user
cache, then system copies). Downloads go through :func:`vaebench.data.download.download_file`
(HTTPS only, a byte cap, streamed to a hidden file, checked, then renamed atomically) into the
first root; mirrors come from the ``mirrors`` argument, ``VAEBENCH_MIRRORS`` or the dataset's
defaults, each base URL followed by the file name, as for MNIST.

A file's published checksum is of one of two things, and :attr:`RemoteFile.checksum_of` says
which: ``"content"`` (what :mod:`vaebench.data.download` verifies: the bytes after gzip
decompression, which for a file that is not gzip are the file's bytes), or ``"archive"`` (the
bytes of a ``.tar.gz`` as served: CIFAR-10's md5). Some files have no published checksum at
all (``None``); for those vaebench checks what it reads (shapes, value ranges, sizes) and says
so. A download is verified against whichever checksum is published; a file with none is never
downloaded unchecked: when it is missing, the error says where to fetch it and where to put
it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vaebench.data.download import MIRRORS_ENV, download_file, md5_uncompressed
from vaebench.data.locate import candidate_roots, require_writable
from vaebench.errors import ConfigError, DataError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset, as its publisher serves it.

    :param name: the file name, appended to every mirror's base URL and kept locally.
    :param size: its size in bytes as served (the download's byte cap), if published.
    :param md5: the published md5, or None where none is published.
    :param checksum_of: what ``md5`` is the digest of (see the module docstring).
    """

    name: str
    size: int | None
    md5: str | None
    checksum_of: Literal["content", "archive"] = "content"


@dataclass(frozen=True)
class RemoteDataset:
    """A dataset's files by role, its default HTTPS mirrors and the source to cite."""

    name: str
    files: Mapping[str, RemoteFile]
    mirrors: tuple[str, ...]
    source: str

    def checksums(self) -> dict[str, str | None]:
        return {role: f.md5 for role, f in self.files.items()}


@dataclass(frozen=True, eq=False)  # eq on tensors is ambiguous; identity is what matters
class LoadedImages:
    """A loaded dataset, shared through a cache: treat it as read-only.

    ``images[split]`` are tensors ``[N, H, W]`` (grey) or ``[N, C, H, W]`` (colour), ``labels``
    the matching class indices; ``files`` the paths read and ``checksums`` their published md5
    (None: none published).
    """

    name: str
    root: Path
    files: dict[str, str]
    checksums: dict[str, str | None]
    images: dict[str, Any]
    labels: dict[str, Any] = field(default_factory=dict)


# resolved path, size, mtime_ns -> md5 already checked in this process (files of 100s of MB).
_checked: dict[tuple[str, int, int], str] = {}


def md5_of_file(path: str | os.PathLike[str]) -> str:
    """md5 of the file's bytes as stored (no decompression)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, spec: RemoteFile) -> None:
    """Raise DataError unless ``path`` has the published checksum (nothing to check without
    one: the reader checks what it reads)."""
    if spec.md5 is None:
        return
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if _checked.get(key) == spec.md5:
        return
    hashing = md5_of_file if spec.checksum_of == "archive" else md5_uncompressed
    try:
        found = hashing(path)
    except (EOFError, OSError) as e:
        raise DataError(
            f"Data file {path} cannot be read ({e}); delete it and rerun, or point --data-dir / "
            f"VAEBENCH_DATA at a good copy."
        ) from e
    if found != spec.md5:
        raise DataError(
            f"Data file {path} has the wrong checksum (md5 {found}, expected {spec.md5}); it is "
            f"corrupt or truncated: delete it and rerun, or point --data-dir / VAEBENCH_DATA at a "
            f"good copy."
        )
    _checked[key] = spec.md5


def find_files(
    dataset: RemoteDataset,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    roles: Sequence[str] | None = None,
) -> tuple[Path, dict[str, Path]]:
    """The first root holding every file of ``roles`` (all roles by default), verified, else
    the missing files downloaded into the user's root. Returns the root and the paths."""
    wanted = list(roles if roles is not None else dataset.files)
    unknown = [r for r in wanted if r not in dataset.files]
    if unknown:
        raise ConfigError(f"{dataset.name} has no file for {', '.join(unknown)}")
    files = {role: dataset.files[role] for role in wanted}
    roots = candidate_roots(data_dir)
    for root in roots:
        paths = {role: root / dataset.name / f.name for role, f in files.items()}
        if all(p.is_file() for p in paths.values()):
            for role, path in paths.items():
                verify(path, files[role])
            return root, paths
    target = roots[0]
    directory = target / dataset.name
    paths = {role: directory / f.name for role, f in files.items()}
    missing = [role for role, p in paths.items() if not p.is_file()]
    if not download:
        searched = ", ".join(str(r / dataset.name) for r in roots)
        names = ", ".join(files[r].name for r in missing)
        raise DataError(
            f"No complete copy of {dataset.name} found (searched {searched}; missing {names}); "
            f"allow downloading, or place the files in one of those directories (--data-dir / "
            f"VAEBENCH_DATA choose the first)."
        )
    require_writable(directory, dataset.name)
    for role, path in paths.items():
        if role in missing:
            _download(dataset, files[role], path, mirrors, progress)
        verify(path, files[role])
    return target, paths


def mirror_bases(dataset: RemoteDataset, mirrors: Sequence[str] | None) -> list[str]:
    """Base URLs to try: the argument, else ``VAEBENCH_MIRRORS``, else the dataset's own."""
    if mirrors is None:
        env = os.environ.get(MIRRORS_ENV, "")
        mirrors = env.split(",") if env.strip() else dataset.mirrors
    bases = [m.strip().replace("{name}", dataset.name) for m in mirrors if m.strip()]
    if not bases:
        raise ConfigError(f"No mirrors given for {dataset.name}; pass at least one base URL.")
    return [b if b.endswith("/") else b + "/" for b in bases]


def _download(
    dataset: RemoteDataset,
    spec: RemoteFile,
    dest: Path,
    mirrors: Sequence[str] | None,
    progress: bool,
) -> None:
    bases = mirror_bases(dataset, mirrors)
    if spec.md5 is None:
        # An unchecked download is not something vaebench does.
        raise DataError(
            f"{dataset.name}: {spec.name} is missing and vaebench cannot verify a download of it "
            f"(no checksum is published for it); download {bases[-1]}{spec.name} yourself and "
            f"place it at {dest}."
        )
    checksum_of = "file" if spec.checksum_of == "archive" else "content"
    failures = []
    for base in bases:
        url = base + spec.name
        try:
            download_file(
                url, dest, spec.md5, progress, max_bytes=_cap(spec.size), checksum_of=checksum_of
            )
            return
        except DataError as e:
            message = str(e)
            if not message.startswith("Could not download"):
                raise  # a local problem (an unwritable directory): no mirror fixes it
            reason = message.partition(f"{dest}: ")[2].partition("; check the URL")[0]
            failures.append(f"{url} ({reason or message})")
    raise DataError(
        f"Could not download {spec.name} for {dataset.name}; tried {'; '.join(failures)}. Set "
        f"{MIRRORS_ENV} to comma-separated base URLs the file name is appended to, or place the "
        f"file at {dest} yourself."
    )


def _cap(size: int | None) -> int:
    """The byte cap of a download: the published size (a server sending more is not sending
    this file), else 2 GiB."""
    return size if size is not None else 2 << 30


def load_cached(
    cache: Callable[..., LoadedImages], dataset: RemoteDataset, root: Path, paths: dict[str, Path]
) -> LoadedImages:
    """Call the dataset's cached reader with a key that changes when a file does."""
    key = tuple((role, str(p.resolve()), p.stat().st_mtime_ns) for role, p in paths.items())
    return cache(root.resolve(), key)
