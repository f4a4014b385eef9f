"""Result records: their keys, atomic writes, per-key locks and tolerant loading.

A results directory holds::

    records/<stem>.json        one record per (combination, seed): the commit marker
    artifacts/<stem>/...       per-example scores (scores.npz), image grids
    checkpoints/<stem>.pt      training checkpoints of unfinished work
    locks/<stem>.lock          held while a key is being computed

``<stem>`` is ``<suite>-<encoder>-<decoder>-<prior>-s<seed>-<key[:12]>``. A record is written
to a temporary file, flushed, fsynced and renamed over its final name, so a reader sees either
no record or a complete one. Only this module writes into a results directory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaebench.errors import ConfigError, VaebenchError

SCHEMA_VERSION = 1
RECORDS = "records"
ARTIFACTS = "artifacts"
CHECKPOINTS = "checkpoints"
LOCKS = "locks"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def make_key(identity: Mapping[str, Any]) -> str:
    """The hash of everything that determines a result (see :func:`vaebench.runner.identity`)."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def stem(suite: str, combination: Mapping[str, str], seed: int, key: str) -> str:
    parts = [suite, combination["encoder"], combination["decoder"], combination["prior"]]
    return "-".join(_slug(p) for p in parts) + f"-s{seed}-{key[:12]}"


def prepare_dir(path: str | os.PathLike[str]) -> Path:
    """Create a results directory (and its sub-folders), refusing a path that is a file."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"output path {str(root)!r} is a file; give a directory with --out")
    try:
        for sub in (RECORDS, ARTIFACTS, CHECKPOINTS, LOCKS):
            (root / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create results directory {str(root)!r}: {exc}") from exc
    return root


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


def write_record(root: Path, record: Mapping[str, Any]) -> Path:
    """Write one record atomically; returns its path."""
    path = root / RECORDS / f"{record['stem']}.json"
    text = json.dumps(record, indent=1, sort_keys=True, default=_json_default, allow_nan=True)
    atomic_write_bytes(path, text.encode())
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} into a record")


def artifact_dir(root: Path, record_stem: str) -> Path:
    path = root / ARTIFACTS / record_stem
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_path(root: Path, record_stem: str) -> Path:
    return root / CHECKPOINTS / f"{record_stem}.pt"


@dataclass
class LoadProblem:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


REQUIRED_FIELDS = ("key", "status", "suite", "combination", "seed", "metrics")


def read_record(path: Path) -> dict[str, Any]:
    """Read and validate one record; raises ValueError saying what is wrong."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a readable JSON record ({exc})") from exc
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing:
        raise ValueError(f"missing fields: {', '.join(missing)}")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"schema_version {record.get('schema_version')!r} is not {SCHEMA_VERSION}")
    if record["status"] not in ("ok", "failed"):
        raise ValueError(f"status {record['status']!r} is not 'ok' or 'failed'")
    if not isinstance(record["metrics"], dict):
        raise ValueError("metrics is not an object")
    for name, value in record["metrics"].items():
        if not isinstance(value, dict) or not isinstance(value.get("value"), int | float):
            raise ValueError(f"metric {name!r} has no numeric value")
    if not str(path.name).endswith(f"{str(record['key'])[:12]}.json"):
        raise ValueError("the key in the file does not match its file name (edited by hand?)")
    record["_path"] = str(path)
    return record


def record_files(root: Path) -> list[Path]:
    folder = root / RECORDS
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def load_records(
    paths: Iterable[str | os.PathLike[str]], strict: bool = False
) -> tuple[list[dict[str, Any]], list[LoadProblem]]:
    """Load every record under the given results directories (or single record files).

    A bad file is reported as a :class:`LoadProblem` and skipped, or raises under ``strict``.
    """
    records: list[dict[str, Any]] = []
    problems: list[LoadProblem] = []
    for given in paths:
        root = Path(given)
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = record_files(root)
            if not files and root.name != RECORDS:
                files = sorted(root.glob("*/" + RECORDS + "/*.json"))
        else:
            raise ConfigError(f"results path {str(root)!r} does not exist")
        for path in files:
            try:
                records.append(read_record(path))
            except ValueError as exc:
                problem = LoadProblem(path, str(exc))
                if strict:
                    raise VaebenchError(
                        f"bad record {problem} (run without --strict to skip it)"
                    ) from exc
                problems.append(problem)
    return records, problems


def finished_keys(root: Path) -> dict[str, str]:
    """key -> status of every readable record in a results directory."""
    out: dict[str, str] = {}
    for path in record_files(root):
        try:
            record = read_record(path)
        except ValueError:
            continue
        out[record["key"]] = record["status"]
    return out


def remove_checkpoint(root: Path, record_stem: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        checkpoint_path(root, record_stem).unlink()


@contextlib.contextmanager
def key_locks(root: Path, stems: Iterable[str]) -> Iterator[set[str]]:
    """Hold an exclusive lock per key; yields the stems whose lock this process got.

    A key locked by another process (another run into the same directory) is left out, so two
    runs never compute or write the same key at once. The locks are ``fcntl`` locks, released
    by the kernel when their holder dies: a killed run never leaves a key locked.
    """
    import fcntl

    held: dict[str, Any] = {}
    try:
        for record_stem in stems:
            path = root / LOCKS / f"{record_stem}.lock"
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")  # noqa: SIM115 - closed in finally
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            held[record_stem] = handle
        yield set(held)
    finally:
        for handle in held.values():
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()
