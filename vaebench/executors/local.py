"""The ``local`` executor: every unit in this process, one after the other."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from vaebench.contracts import ExecutorSpec


class LocalExecutor:
    # Units run in the caller's process, so the caller's signal handling reaches their training
    # loops (:mod:`vaebench.interrupts`).
    in_process = True

    def __init__(self, **_: Any) -> None:
        pass

    def map(self, units: Iterable[Any], fn: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
        for unit in units:
            try:
                outcome = fn(unit)
            except Exception as exc:  # recorded as the unit's failure by the runner
                outcome = exc
            yield unit, outcome


SPEC = ExecutorSpec("local", LocalExecutor, "run every unit in this process, in order")
