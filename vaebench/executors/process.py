"""The ``process`` executor: units in ``jobs`` worker processes on this machine.

Workers are started with ``spawn`` (safe with CUDA and OpenMP), live for the whole grid and
take one unit at a time, so each pays torch's import and the data load once. The CPU's threads
are split between them and, where there are several GPUs, each worker takes one. The parent
watches every worker: one that dies (killed, out of memory) or runs past ``timeout`` is
replaced, and its unit is tried again up to ``retries`` times, then reported as lost with the
reason. Only the parent sees results, so records keep one writer.

Workers die with the parent: a worker left running after its parent was killed would go on
training and writing checkpoints for a key whose lock died with the parent, racing the next
run. On Linux the kernel kills them (``PR_SET_PDEATHSIG``) the moment the parent dies;
everywhere a watchdog thread in each worker exits it within :data:`ORPHAN_CHECK_S` seconds of
the parent's death.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

from vaebench.contracts import ExecutorSpec
from vaebench.errors import ConfigError

ORPHAN_CHECK_S = 0.5
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


class WorkerLost(RuntimeError):
    """A unit's worker died (or hung) on every attempt; the message says how."""


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (to cross a process boundary), else a RuntimeError that
    keeps its type name and message."""
    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _die_with(parent: int) -> None:
    """End this process when ``parent`` (its parent's pid when it started) is gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died before prctl took effect; and elsewhere there is no prctl.
    # An orphan is re-parented (to init or a subreaper), so its parent pid changes.

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        os._exit(1)  # no cleanup: nothing of this unit may be written after the parent died

    threading.Thread(target=watch, name="vaebench-orphan-watchdog", daemon=True).start()


def _worker_main(conn: Connection, slot: int, threads: int, parent: int | None = None) -> None:
    """A worker's loop: receive ``(fn, unit)``, send back ``(True, result)`` or
    ``(False, exception)``; ``None`` ends it. With ``parent`` (the parent's pid), the worker
    dies when the parent does."""
    if parent is not None:
        _die_with(parent)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        torch.cuda.set_device(slot % torch.cuda.device_count())  # "cuda" means this one
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent is gone
            return
        if task is None:
            return
        fn, unit = task
        try:
            reply: tuple[bool, Any] = (True, fn(unit))
        except Exception as exc:
            reply = (False, portable(exc))
        try:
            conn.send(reply)
        except Exception as exc:  # a result that cannot be pickled
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


class _Worker:
    def __init__(self, ctx: Any, slot: int, threads: int) -> None:
        self.slot = slot
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main,
            args=(child, slot, threads, os.getpid()),
            daemon=True,
            name=f"vaebench-{slot}",
        )
        self.process.start()
        child.close()
        self.task: tuple[int, Any] | None = None
        self.since = 0.0

    def give(self, index: int, unit: Any, fn: Callable[[Any], Any]) -> None:
        self.task = (index, unit)
        self.since = time.monotonic()
        self.conn.send((fn, unit))

    def stop(self, grace: float = 5.0) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _death(process: Any) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"worker process killed by {name}{hint}"
    return f"worker process exited with code {code}"


class ProcessExecutor:
    """Run units in ``jobs`` worker processes (default: one per CPU).

    :param jobs: worker processes.
    :param threads: torch threads per worker (default: the CPUs split evenly between workers).
    :param retries: how many times a unit whose worker died is tried again.
    :param timeout: seconds a unit may run before its worker is killed (default: no limit).
    """

    def __init__(
        self,
        jobs: int | None = None,
        threads: int | None = None,
        retries: int = 2,
        timeout: float | None = None,
    ) -> None:
        for name, value in (("jobs", jobs), ("threads", threads)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"process executor: {name} must be a positive integer")
        if not isinstance(retries, int) or retries < 0:
            raise ConfigError("process executor: retries must be a whole number >= 0")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ConfigError(f"process executor: timeout must be seconds > 0, got {timeout!r}")
        self.jobs = jobs or usable_cpus()
        self.threads = threads
        self.retries = retries
        self.timeout = timeout

    def map(self, units: Iterable[Any], fn: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
        todo = deque(enumerate(units))
        if not todo:
            return
        ctx = mp.get_context("spawn")
        jobs = min(self.jobs, len(todo))
        threads = self.threads or max(1, usable_cpus() // jobs)
        workers = [_Worker(ctx, slot, threads) for slot in range(jobs)]
        failures: dict[int, list[str]] = {}
        try:
            while todo or any(w.task for w in workers):
                for worker in workers:
                    if worker.task is None and todo:
                        worker.give(*todo.popleft(), fn)
                busy = [w for w in workers if w.task is not None]
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
                for i, worker in enumerate(workers):
                    if worker.task is None:
                        continue
                    index, unit = worker.task
                    reply, lost = self._poll(worker)
                    if reply is not None:
                        worker.task = None
                        yield unit, reply[1]
                        continue
                    if lost is None:
                        continue
                    worker.stop(grace=0)
                    workers[i] = _Worker(ctx, worker.slot, threads)
                    reasons = failures.setdefault(index, [])
                    reasons.append(lost)
                    if len(reasons) <= self.retries:
                        todo.appendleft((index, unit))
                    else:
                        yield (
                            unit,
                            WorkerLost(f"{len(reasons)} attempt(s) failed: " + "; ".join(reasons)),
                        )
        finally:
            for worker in workers:
                worker.stop()

    def _poll(self, worker: _Worker) -> tuple[tuple[bool, Any] | None, str | None]:
        """``(reply, None)`` when the unit finished, ``(None, reason)`` when its worker was
        lost, ``(None, None)`` while it runs."""
        try:
            if worker.conn.poll():
                return worker.conn.recv(), None
        except (EOFError, OSError):
            worker.process.join(5)
            return None, _death(worker.process)
        if not worker.process.is_alive():
            return None, _death(worker.process)
        if self.timeout is not None and time.monotonic() - worker.since > self.timeout:
            worker.process.kill()
            worker.process.join()
            return None, f"unit ran past the {self.timeout} s timeout; its worker was killed"
        return None, None


SPEC = ExecutorSpec(
    "process",
    ProcessExecutor,
    "units in worker processes on this machine (--jobs N); dead workers' units are retried",
)
