"""Result records: their type, keys, layout, atomic writes, per-key locks and validated loading.

A results directory holds::

    records/<stem>.json        one record per (combination, seed): the commit marker
    artifacts/<stem>/...       per-example scores (scores.npz), image grids
    checkpoints/<stem>.pt      training checkpoints of unfinished work
    locks/<stem>.lock          held while a key is being computed

``<stem>`` is ``<suite>-<encoder>-<decoder>-<prior>-s<seed>-<key[:12]>``. A record is written
to a temporary file, flushed, fsynced and renamed over its final name, so a reader sees either
no record or a complete one. Only this module writes into a results directory.

:class:`Record` is the one definition of a record's fields. :func:`check_record` holds a
record to it before it is written, :func:`validate_record` when it is read: a record with a
missing field or a field of the wrong type is skipped with a message naming the file and the
field. Records of schema 1 (before the objective was part of a combination) are read as
trained with the ``elbo`` objective under the ``legacy`` seeding, so they never share a table
group with newer ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from vaebench.atomic import atomic_write_bytes, check_writable, plain_file_mode
from vaebench.errors import ConfigError, VaebenchError

# What the writers write. 2 adds the objective to the combination and the seeding scheme.
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
# How schema-1 records are read: they predate objectives and random streams.
LEGACY_OBJECTIVE = "elbo"
LEGACY_SEEDING = "legacy"
COMBINATION_KINDS = ("encoder", "decoder", "prior")
RECORDS = "records"
ARTIFACTS = "artifacts"
CHECKPOINTS = "checkpoints"
LOCKS = "locks"
# Budget fields that do not change a result: checkpointing writes state without drawing from any
# random stream, and a resume continues exactly, so a result's key, and the table it lands in,
# do not depend on how often its training saved. Records written before this was so carry
# ``checkpoint_every`` in their key; :func:`result_key` gives them the key they have now.
RESULT_NEUTRAL_BUDGET = ("checkpoint_every",)

__all__ = [
    "ARTIFACTS",
    "CHECKPOINTS",
    "LOCKS",
    "RECORDS",
    "RESULT_NEUTRAL_BUDGET",
    "SCHEMA_VERSION",
    "LoadProblem",
    "Record",
    "RecordError",
    "artifact_dir",
    "artifact_file",
    "atomic_write_bytes",
    "check_record",
    "checkpoint_path",
    "load_records",
    "make_key",
    "neutral_budget",
    "plain_file_mode",
    "prepare_dir",
    "read_record",
    "result_key",
    "validate_record",
    "write_record",
]


class SuiteInfo(TypedDict):
    name: str
    version: str
    profile: NotRequired[str | None]
    options: NotRequired[dict[str, Any]]


class ComponentInfo(TypedDict):
    """A component or objective as run: ``options`` are the effective ones (defaults merged
    under the user's); ``defaults``, when recorded, lets a label show only what was changed."""

    name: str
    plugin: NotRequired[str]
    version: NotRequired[str]
    options: NotRequired[dict[str, Any]]
    defaults: NotRequired[dict[str, Any]]


class MetricEntry(TypedDict):
    value: float
    unit: NotRequired[str]
    higher_is_better: NotRequired[bool | None]
    stderr: NotRequired[float | None]
    extra: NotRequired[dict[str, Any]]


class ErrorInfo(TypedDict):
    type: str | None
    message: str
    phase: NotRequired[str]
    traceback: NotRequired[str]


class Record(TypedDict):
    """One result: a (combination, seed) of a suite under one budget, and what it measured.

    ``combination`` maps encoder, decoder, prior and (schema 2) objective to names;
    ``components`` maps the same kinds to :class:`ComponentInfo`. Artifact paths are relative
    to the results directory. ``_path`` is set when a record is read: the file it came from.
    """

    schema_version: int
    key: str
    status: Literal["ok", "failed"]
    suite: SuiteInfo
    combination: dict[str, str]
    seed: int
    metrics: dict[str, MetricEntry]
    seeding: NotRequired[str]
    stem: NotRequired[str]
    identity: NotRequired[dict[str, Any]]
    components: NotRequired[dict[str, ComponentInfo]]
    budget: NotRequired[dict[str, Any] | None]
    eval: NotRequired[dict[str, Any] | None]
    training: NotRequired[dict[str, Any] | None]
    precision: NotRequired[str]
    n_params: NotRequired[int | None]
    error: NotRequired[ErrorInfo | str | None]
    artifacts: NotRequired[dict[str, str] | None]
    environment: NotRequired[dict[str, Any] | None]
    data: NotRequired[dict[str, Any] | None]
    started: NotRequired[str]
    created: NotRequired[str]
    wall_seconds: NotRequired[float]
    _path: NotRequired[str]


class RecordError(VaebenchError, ValueError):
    """A record that breaks :class:`Record`: the message names the field and what is wrong."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def make_key(identity: Mapping[str, Any]) -> str:
    """The hash of everything that determines a result (see :func:`vaebench.runner.identity`)."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


def neutral_budget(budget: Mapping[str, Any]) -> dict[str, Any]:
    """``budget`` with the fields that do not change a result (:data:`RESULT_NEUTRAL_BUDGET`)
    cleared to ``None``, as keys and table groups see it."""
    return {**budget, **{name: None for name in RESULT_NEUTRAL_BUDGET if name in budget}}


def result_key(record: Mapping[str, Any]) -> str:
    """The key of a record's result as it is computed now: the record's ``key``, except for a
    record written while ``checkpoint_every`` was part of the key, whose stored identity is
    hashed again with that field cleared. Resumes and merges compare this key, so such a record
    stands for the same result as one computed now."""
    identity = record.get("identity")
    budget = identity.get("budget") if isinstance(identity, Mapping) else None
    if not isinstance(budget, Mapping) or neutral_budget(budget) == dict(budget):
        return str(record["key"])
    return make_key({**identity, "budget": neutral_budget(budget)})  # type: ignore[dict-item]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def stem(suite: str, combination: Mapping[str, str], seed: int, key: str) -> str:
    parts = [suite, *(combination[kind] for kind in COMBINATION_KINDS)]
    return "-".join(_slug(p) for p in parts) + f"-s{seed}-{key[:12]}"


def prepare_dir(path: str | os.PathLike[str]) -> Path:
    """Create a results directory (and its sub-folders) and check that each can be written,
    before anything is trained: a path that is a file, or a folder that cannot be created or
    written, is a one-line :class:`ConfigError`."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"output path {str(root)!r} is a file; give a directory as the output")
    for sub in (RECORDS, ARTIFACTS, CHECKPOINTS, LOCKS):
        folder = root / sub
        try:
            folder.mkdir(parents=True, exist_ok=True)
            check_writable(folder)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise ConfigError(
                f"cannot write into results directory {str(folder)!r} ({why}); fix its "
                "permissions or give another directory with --out"
            ) from exc
    return root


# ---------------------------------------------------------------- the record's fields


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _need(ok: bool, field: str, expected: str, value: Any) -> None:
    if not ok:
        raise RecordError(f"field {field!r} must be {expected}, not {_kind(value)}")


def _optional_object(record: Mapping[str, Any], field: str) -> None:
    value = record.get(field)
    _need(value is None or isinstance(value, dict), field, "an object or null", value)


def _check_fields(record: Any, schema: int | None = None) -> int:
    """Check every field :class:`Record` types; returns the schema version."""
    if not isinstance(record, dict):
        raise RecordError(f"not a JSON object but {type(record).__name__}")
    required = ("schema_version", "key", "status", "suite", "combination", "seed", "metrics")
    missing = [f for f in required if f not in record]
    if missing:
        raise RecordError(f"missing fields: {', '.join(missing)}")
    version = record["schema_version"]
    if schema is not None and version != schema:
        raise RecordError(f"field 'schema_version' is {version!r}; writers write {schema}")
    if version not in READABLE_SCHEMAS or not _is_int(version):
        readable = ", ".join(map(str, READABLE_SCHEMAS))
        newer = _is_int(version) and version > max(READABLE_SCHEMAS)
        fix = "; upgrade vaebench to read it" if newer else ""
        raise RecordError(
            f"schema_version {version!r} is not one this vaebench reads ({readable}){fix}"
        )
    _need(isinstance(record["key"], str) and record["key"] != "", "key", "a string", record["key"])
    if record["status"] not in ("ok", "failed"):
        raise RecordError(f"field 'status' must be 'ok' or 'failed', not {_kind(record['status'])}")
    suite = record["suite"]
    _need(isinstance(suite, dict), "suite", "an object", suite)
    _need(isinstance(suite.get("name"), str), "suite.name", "a string", suite.get("name"))
    for name in ("version", "profile"):
        value = suite.get(name)
        _need(value is None or isinstance(value, str), f"suite.{name}", "a string", value)
    combination = record["combination"]
    _need(isinstance(combination, dict), "combination", "an object", combination)
    kinds = (*COMBINATION_KINDS, "objective") if version >= 2 else COMBINATION_KINDS
    for kind in kinds:
        value = combination.get(kind)
        _need(isinstance(value, str) and value != "", f"combination.{kind}", "a name", value)
    for kind, value in combination.items():
        _need(isinstance(value, str), f"combination.{kind}", "a name", value)
    _need(_is_int(record["seed"]), "seed", "a whole number", record["seed"])
    if version >= 2:
        seeding = record.get("seeding", (record.get("identity") or {}).get("seeding"))
        _need(isinstance(seeding, str) and seeding != "", "seeding", "a scheme name", seeding)
    metrics = record["metrics"]
    _need(isinstance(metrics, dict), "metrics", "an object", metrics)
    for name, metric in metrics.items():
        where = f"metrics.{name}"
        _need(isinstance(metric, dict), where, "an object", metric)
        _need(_is_number(metric.get("value")), f"{where}.value", "a number", metric.get("value"))
        direction = metric.get("higher_is_better")
        _need(direction in (True, False, None), f"{where}.higher_is_better", "a bool", direction)
        stderr = metric.get("stderr")
        _need(stderr is None or _is_number(stderr), f"{where}.stderr", "a number", stderr)
        unit = metric.get("unit", "")
        _need(isinstance(unit, str), f"{where}.unit", "a string", unit)
        extra = metric.get("extra")
        _need(extra is None or isinstance(extra, dict), f"{where}.extra", "an object", extra)
    for name in ("budget", "eval", "training", "environment", "data", "identity"):
        _optional_object(record, name)
    components = record.get("components")
    _need(components is None or isinstance(components, dict), "components", "an object", components)
    for kind, component in (components or {}).items():
        _need(isinstance(component, dict), f"components.{kind}", "an object", component)
        for name in ("options", "defaults"):
            value = component.get(name)
            _need(value is None or isinstance(value, dict), f"components.{kind}.{name}",
                  "an object", value)  # fmt: skip
    artifacts = record.get("artifacts")
    _need(artifacts is None or isinstance(artifacts, dict), "artifacts", "an object", artifacts)
    for name, relative in (artifacts or {}).items():
        _need(isinstance(relative, str), f"artifacts.{name}", "a relative path", relative)
    n_params = record.get("n_params")
    _need(n_params is None or _is_int(n_params), "n_params", "a whole number", n_params)
    error = record.get("error")
    _need(error is None or isinstance(error, dict | str), "error", "an object", error)
    return version


def check_record(record: Mapping[str, Any]) -> None:
    """Hold a record about to be written to :class:`Record` (schema :data:`SCHEMA_VERSION`);
    raises :class:`RecordError` naming the field, so no writer leaves a record that readers
    would skip."""
    _check_fields(dict(record), SCHEMA_VERSION)
    if not isinstance(record.get("stem"), str) or not record["stem"]:
        raise RecordError(f"field 'stem' must be a string, not {_kind(record.get('stem'))}")


def validate_record(data: Any) -> Record:
    """A record read from anywhere, checked field by field and brought to the newest schema's
    shape: a schema-1 record gets ``combination.objective`` ``elbo`` and ``seeding``
    ``legacy``. Raises :class:`RecordError` naming the field that is wrong."""
    version = _check_fields(data)
    record: dict[str, Any] = dict(data)
    if version == 1:
        record["combination"] = {**record["combination"], "objective": LEGACY_OBJECTIVE}
        record["seeding"] = LEGACY_SEEDING
    elif "seeding" not in record:
        record["seeding"] = record["identity"]["seeding"]
    return record  # type: ignore[return-value]


def write_record(root: Path, record: Mapping[str, Any]) -> Path:
    """Write one record atomically; returns its path. A failed write is a one-line
    :class:`ConfigError` naming the file. Writers hold the record to :class:`Record` with
    :func:`check_record` first (before its artifacts are written)."""
    path = root / RECORDS / f"{record['stem']}.json"
    text = json.dumps(record, indent=1, sort_keys=True, default=_json_default, allow_nan=True)
    try:
        atomic_write_bytes(path, text.encode())
    except OSError as exc:
        raise ConfigError(f"cannot write record {str(path)!r}: {exc.strerror or exc}") from exc
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


def read_record(path: Path) -> Record:
    """Read and validate one record (:func:`validate_record`); raises :class:`RecordError`
    (a ValueError) saying what is wrong."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"not a readable JSON record ({exc})") from exc
    record = validate_record(data)
    if not str(path.name).endswith(f"{record['key'][:12]}.json"):
        raise RecordError("the key in the file does not match its file name (edited by hand?)")
    record["_path"] = str(path)
    return record


def record_root(record: Mapping[str, Any]) -> Path | None:
    """The results directory a record was read from (``<root>/records/<stem>.json``), or None
    for a record that was not read from a records folder (a CSV row, a fresh dict)."""
    path = record.get("_path")
    if not path or not str(path).endswith(".json") or Path(path).parent.name != RECORDS:
        return None
    return Path(path).resolve().parent.parent


def artifact_file(record: Mapping[str, Any], name: str) -> Path | None:
    """The file of artifact ``name`` of a record read from a results directory; None when the
    record names none. Raises :class:`RecordError` when the named file is missing or lies
    outside the results directory (a record must not point a report at any file)."""
    relative = (record.get("artifacts") or {}).get(name)
    root = record_root(record)
    if not relative or root is None:
        return None
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise RecordError(f"{relative} is outside the results directory {root}; not read")
    if not path.is_file():
        raise RecordError(f"{relative} not found")
    return path


def record_files(root: Path) -> list[Path]:
    folder = root / RECORDS
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def load_records(
    paths: Iterable[str | os.PathLike[str]], strict: bool = False
) -> tuple[list[Record], list[LoadProblem]]:
    """Load and validate every record under the given results directories (or single record
    files).

    A bad file (unreadable, or a field missing or of the wrong type) is reported as a
    :class:`LoadProblem` naming the file and the field, and skipped, or raises under ``strict``.
    """
    records: list[Record] = []
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
            except RecordError as exc:
                problem = LoadProblem(path, str(exc))
                if strict:
                    raise VaebenchError(
                        f"bad record {problem} (run without --strict to skip it)"
                    ) from exc
                problems.append(problem)
    return records, problems


def finished_keys(root: Path) -> dict[str, str]:
    """key (:func:`result_key`) -> status of every readable record in a results directory."""
    out: dict[str, str] = {}
    for path in record_files(root):
        try:
            record = read_record(path)
        except RecordError:
            continue
        key = result_key(record)
        if out.get(key) != "ok":  # a result written both before and after a key change
            out[key] = record["status"]
    return out


def remove_checkpoint(root: Path, record_stem: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        checkpoint_path(root, record_stem).unlink()


def remove_superseded(root: Path, record_stem: str) -> None:
    """Remove the record, artifacts and checkpoint under ``record_stem``: the files of a result
    whose record was just written again under another stem (:func:`result_key` is the same)."""
    import shutil

    with contextlib.suppress(FileNotFoundError):
        (root / RECORDS / f"{record_stem}.json").unlink()
    shutil.rmtree(root / ARTIFACTS / record_stem, ignore_errors=True)
    remove_checkpoint(root, record_stem)


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
