"""Executors: process and Ray give the records local gives; dead workers are retried."""

from __future__ import annotations

import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.small_runs import tiny_digits
from vaebench.api import run
from vaebench.executors.process import ProcessExecutor, WorkerLost

GRID = tiny_digits(priors=["standard-normal", "vamp"], seeds=[0, 1])


pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # worker processes


def die_once(marker: str) -> str:
    """Kill this worker the first time (as the OOM killer would), succeed the next."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return f"done in {os.getpid()}"


def always_die(_: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def raise_value_error(unit: Any) -> None:
    raise ValueError(f"bad unit {unit}")


def same_records(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert [r["key"] for r in a] == [r["key"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x["status"] == y["status"] == "ok"
        assert x["training"]["steps_done"] == y["training"]["steps_done"]
        assert set(x["metrics"]) == set(y["metrics"])
        for name, value in x["metrics"].items():
            # Seeds trained together or alone agree to float rounding: relative 1e-5, or 1e-6
            # nats for values near zero (the KL of a collapsed tiny model).
            other = y["metrics"][name]["value"]
            assert math.isclose(value["value"], other, rel_tol=1e-5, abs_tol=1e-6), name


@pytest.fixture(scope="module")
def local_records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return run(**GRID, out=str(tmp_path_factory.mktemp("local"))).records


def test_process_executor_gives_the_records_local_gives(
    tmp_path: Path, local_records: list[dict[str, Any]]
) -> None:
    summary = run(
        **GRID, executor="process", executor_options={"jobs": 2}, seed_batch=1, out=str(tmp_path)
    )
    assert summary.ran == 4 and summary.failed == 0
    same_records(local_records, summary.records)
    again = run(**GRID, executor="process", executor_options={"jobs": 2}, out=str(tmp_path))
    assert (again.ran, again.skipped) == (0, 4)


def test_a_killed_worker_is_replaced_and_its_unit_retried(tmp_path: Path) -> None:
    markers = [str(tmp_path / f"m{i}") for i in range(3)]
    out = dict(ProcessExecutor(jobs=2, retries=1).map(markers, die_once))
    assert set(out) == set(markers)
    assert all(isinstance(v, str) and v.startswith("done") for v in out.values())


def test_a_unit_whose_worker_always_dies_is_reported_lost_and_others_finish(
    tmp_path: Path,
) -> None:
    out = list(ProcessExecutor(jobs=1, retries=1).map(["x"], always_die))
    assert len(out) == 1 and isinstance(out[0][1], WorkerLost)
    assert "2 attempt(s) failed" in str(out[0][1]) and "SIGKILL" in str(out[0][1])
    # An exception of the unit's own code is returned at once, not retried.
    [(unit, outcome)] = ProcessExecutor(jobs=1).map([7], raise_value_error)
    assert isinstance(outcome, ValueError) and str(outcome) == "bad unit 7"


def test_a_lost_unit_is_recorded_failed_with_the_reason(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import vaebench.pipeline

    monkeypatch.setattr(vaebench.pipeline, "run_unit", always_die)
    summary = run(
        **{**GRID, "priors": ["standard-normal"], "seeds": [0]},
        executor="process",
        executor_options={"jobs": 1, "retries": 0},
        out=str(tmp_path),
    )
    [record] = summary.records
    assert record["status"] == "failed" and record["error"]["phase"] == "worker"
    assert record["error"]["type"] == "WorkerLost" and "SIGKILL" in record["error"]["message"]


@pytest.fixture(scope="module")
def ray_cluster():  # type: ignore[no-untyped-def]
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed: pip install 'vaebench[ray]' to test the ray executor"
    )
    # Test helpers travel by value: Ray's workers cannot import this test module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_executor_gives_the_records_local_gives(
    ray_cluster, tmp_path: Path, local_records: list[dict[str, Any]]
) -> None:  # type: ignore[no-untyped-def]
    summary = run(**GRID, executor="ray", out=str(tmp_path))
    assert summary.ran == 4 and summary.failed == 0
    same_records(local_records, summary.records)


def test_ray_retries_a_task_whose_worker_died(ray_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from vaebench.executors.ray import RayExecutor

    marker = str(tmp_path / "m")
    [(unit, outcome)] = RayExecutor(retries=1).map([marker], die_once)
    assert unit == marker and outcome.startswith("done")
    [(_, lost)] = RayExecutor(retries=0).map([marker + "x"], always_die)
    assert isinstance(lost, WorkerLost) and "WorkerCrashedError" in str(lost)
