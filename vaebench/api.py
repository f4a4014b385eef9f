"""The Python API: the same engine the CLI drives.

Example (in a notebook)::

    from vaebench.api import run, load
    summary = run(suite="digits", priors=["standard-normal", "vamp"], steps=500, seeds=[0, 1])
    frame = load(summary.out_dir)          # one pandas row per (combination, seed)
"""

from __future__ import annotations

import os
from typing import Any

from vaebench.runner import RunRequest, RunSummary
from vaebench.runner import run as _run


def run(request: RunRequest | None = None, **options: Any) -> RunSummary:
    """Run a suite's grid. Takes a :class:`RunRequest` or its fields as keywords."""
    if request is None:
        options.setdefault("progress", False)
        request = RunRequest(**options)
    elif options:
        raise TypeError("give a RunRequest or keyword options, not both")
    return _run(request)


def load(*paths: str | os.PathLike[str], strict: bool = False) -> Any:
    """One pandas row per record found under the given results directories."""
    from vaebench import results, tables

    records, _ = results.load_records(paths, strict=strict)
    return tables.records_frame(records)


__all__ = ["RunRequest", "RunSummary", "load", "run"]
