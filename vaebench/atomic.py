"""Atomic file writes and a writability check: the only I/O ``results`` and ``data`` share.

Neither imports the other through this module: ``data`` downloads files and ``results`` writes
records, and both need a reader to see a whole file or none.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from pathlib import Path


@functools.cache
def plain_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the process's umask, read once (reading
    the umask means setting it, so not at every write)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file in its directory and a rename, so a reader sees
    the old file or the new one, never a part. The file gets the permissions a plain ``open``
    would give it (0666 less the umask), not the temporary file's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        os.fchmod(fd, plain_file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable(folder: Path) -> None:
    """Raise the ``OSError`` that writing into ``folder`` would meet, by creating and removing
    a temporary file there: permission bits alone do not say (root, ACLs, read-only mounts)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-check", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
