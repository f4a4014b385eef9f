"""The ``ray`` executor: every unit a Ray task (``pip install 'vaebench[ray]'``).

It joins the cluster at ``address`` (or ``$RAY_ADDRESS``) when given, else starts a local one
for the run (``jobs`` CPUs if given) and stops it at the end. Each task asks for ``cpus`` CPUs
(its torch threads) and ``gpus`` GPUs (default: one where the cluster has GPUs, else none).
Ray retries a task whose worker or node died up to ``retries`` times; after that the unit is
reported lost with Ray's reason. Results come back to this process, which alone writes records.

Units run as tasks, never as actors, so nothing of vaebench outlives the driver: a killed
driver's local cluster goes down with it (Ray ties it to the driver's life) and takes the
running tasks' workers with it (tests/faults/test_workers.py kills a driver mid-unit); on a
cluster joined by address, Ray ends a dead driver's tasks as it ends its job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from vaebench.contracts import ExecutorSpec
from vaebench.errors import ConfigError
from vaebench.executors.process import WorkerLost

INSTALL_HINT = "pip install 'vaebench[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            f"the ray executor needs Ray, which is not installed: {INSTALL_HINT}"
        ) from exc
    return ray


def _in_threads(fn: Callable[[Any], Any], threads: int) -> Callable[[Any], Any]:
    """``fn`` run with torch using ``threads`` threads: a Ray worker may have imported torch
    before Ray set its thread variables, and more threads than CPUs asked for oversubscribe."""

    def call(unit: Any) -> Any:
        import torch

        torch.set_num_threads(threads)
        return fn(unit)

    return call


class RayExecutor:
    """Run units as Ray tasks.

    :param address: a running cluster's address (default: ``$RAY_ADDRESS``, else a local one).
    :param jobs: CPUs of the local cluster started when no address is given.
    :param cpus: CPUs per task (default 1).
    :param gpus: GPUs per task (default: 1 where the cluster has GPUs, else 0).
    :param retries: retries of a task whose worker or node died (default 2).
    """

    def __init__(
        self,
        address: str | None = None,
        jobs: int | None = None,
        cpus: float = 1,
        gpus: float | None = None,
        retries: int = 2,
    ) -> None:
        if not isinstance(retries, int) or retries < 0:
            raise ConfigError("ray executor: retries must be a whole number >= 0")
        if not cpus > 0 or (gpus is not None and gpus < 0):
            raise ConfigError("ray executor: cpus must be > 0 and gpus >= 0")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.jobs = jobs
        self.cpus = cpus
        self.gpus = gpus
        self.retries = retries

    def map(self, units: Iterable[Any], fn: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
        units = list(units)
        if not units:
            return
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.jobs, include_dashboard=False, log_to_driver=False)
        try:
            gpus = self.gpus
            if gpus is None:
                gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
            task = ray.remote(_in_threads(fn, max(1, int(self.cpus)))).options(
                num_cpus=self.cpus, num_gpus=gpus, max_retries=self.retries
            )
            pending = {task.remote(unit): unit for unit in units}
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                for ref in finished:
                    unit = pending.pop(ref)
                    yield unit, self._result(ray, ref)
        finally:
            if started_here:
                ray.shutdown()

    def _result(self, ray: Any, ref: Any) -> Any:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the unit's own code raised
            cause = exc.cause if isinstance(exc.cause, BaseException) else None
            return cause or RuntimeError(str(exc))
        except ray.exceptions.RayError as exc:  # the worker, its node or the object was lost
            return WorkerLost(
                f"Ray lost the task after {self.retries} retries: {type(exc).__name__}: {exc}"
            )


SPEC = ExecutorSpec(
    "ray",
    RayExecutor,
    "units as Ray tasks on a local or existing cluster (--ray-address); needs vaebench[ray]",
)
