"""Where datasets live: the user's data directory first, then system-wide copies.

Order: ``--data-dir`` (the ``data_dir`` argument), else ``VAEBENCH_DATA``, else the platform's
user cache directory; then :data:`SYSTEM_ROOTS` (Debian's ``dataset-fashion-mnist`` package
installs ``/usr/share/datasets/fashion-mnist/``). A dataset lives in ``<root>/<name>/``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from vaebench.data.download import FILES, ensure_dataset, is_writable_dir
from vaebench.errors import DataError

DATA_ENV = "VAEBENCH_DATA"
SYSTEM_ROOTS: tuple[Path, ...] = (Path("/usr/share/datasets"),)


def default_data_dir() -> Path:
    """``VAEBENCH_DATA`` if set, else the platform's user cache directory for vaebench."""
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", "").strip()
        return (Path(local) if local else home / "AppData" / "Local") / "vaebench" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "vaebench"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    # The XDG spec says to ignore a relative path.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".cache"
    return base / "vaebench"


def candidate_roots(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Roots to search, in order: the user's one (explicit or default), then system ones."""
    first = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    roots = [first]
    roots += [r for r in SYSTEM_ROOTS if r not in roots]
    return roots


def find_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[Path, dict[str, Path]]:
    """The first root holding all four files of ``name`` (verified), else download them.

    Downloads go only into the user's root, never into a system location. Returns the root
    used, so callers can record where the data came from.
    """
    roots = candidate_roots(data_dir)
    for root in roots:
        if all((root / name / f).is_file() for f in FILES.values()):
            return root, ensure_dataset(name, root, download=False, progress=progress)
    target = roots[0]
    searched = ", ".join(str(r / name) for r in roots)
    if not download:
        raise DataError(
            f"No complete copy of {name} found (searched {searched}); allow downloading, or "
            f"place its four IDX .gz files in one of those directories (--data-dir / "
            f"VAEBENCH_DATA choose the first)."
        )
    require_writable(target / name, name)
    paths = ensure_dataset(name, target, mirrors=mirrors, download=True, progress=progress)
    return target, paths


def require_writable(directory: Path, name: str) -> None:
    """Create ``directory`` for downloading dataset ``name`` into, or say why it cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"Cannot create {directory} to download {name} into ({e}); point --data-dir or "
            f"VAEBENCH_DATA at a writable directory."
        ) from e
    if not is_writable_dir(directory):
        raise DataError(
            f"Cannot download {name} into {directory}: the directory is read-only; point "
            f"--data-dir or VAEBENCH_DATA at a writable directory, or place the files there."
        )
