"""Runs killed with SIGKILL at many moments, then started again, end with exactly one complete
record per key; a training resumed from its checkpoint ends with an uninterrupted run's numbers;
two runs into one directory do not corrupt each other."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vaebench import results

CLI = [sys.executable, "-m", "vaebench.cli"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["VAEBENCH_PLUGINS"] = "none"  # built-ins only: the test must not depend on plugins
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run_cmd(out: Path, *extra: str) -> list[str]:
    return [
        *CLI,
        "run",
        "--suite",
        "digits",
        "--budget",
        "tiny",
        "--out",
        str(out),
        "--no-progress",
        "--format",
        "csv",
        *extra,
    ]


def _start(cmd: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen[bytes], condition, timeout: float = 120.0) -> bool:  # type: ignore[no-untyped-def]
    """SIGKILL ``proc`` as soon as ``condition()`` holds; False if it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if condition():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the run neither finished nor reached the kill point in time")


def _records(out: Path) -> list[dict]:
    records, problems = results.load_records([out])
    assert problems == [], problems
    return records


@pytest.mark.slow
def test_a_training_resumed_from_its_checkpoint_ends_like_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    args = (
        "--priors",
        "standard-normal",
        "--seeds",
        "0",
        "--steps",
        "400",
        "--eval-every",
        "20",
        "--checkpoint-every",
        "20",
        "--patience",
        "1000",
    )
    straight = tmp_path / "straight"
    subprocess.run(_run_cmd(straight, *args), env=_env(), check=True, capture_output=True)

    resumed = tmp_path / "resumed"
    checkpoints = resumed / "checkpoints"
    proc = _start(_run_cmd(resumed, *args))
    killed = _kill_when(proc, lambda: any(checkpoints.glob("*.pt")))
    assert killed, "the run finished before its first checkpoint"
    assert not any((resumed / "records").glob("*.json"))
    subprocess.run(_run_cmd(resumed, *args), env=_env(), check=True, capture_output=True)

    (a,), (b,) = _records(straight), _records(resumed)
    assert b["training"]["resumed_from"] is not None and b["training"]["resumed_from"] > 0
    assert a["training"]["resumed_from"] is None
    assert a["key"] == b["key"]
    assert a["metrics"] == b["metrics"]
    assert a["training"]["best_step"] == b["training"]["best_step"]
    assert not any(checkpoints.glob("*.pt")), "a finished key keeps no checkpoint"


@pytest.mark.slow
def test_killed_at_many_moments_then_finished_leaves_one_complete_record_per_key(
    tmp_path: Path,
) -> None:
    out = tmp_path / "grid"
    args = ("--seeds", "0", "1", "--steps", "60", "-k", "200", "--checkpoint-every", "10")
    # Kill points: on the first checkpoint (training), on the n-th record (between units,
    # right after a write) and by time (anywhere, evaluation and writes included).
    kill_points = [
        lambda: any((out / "checkpoints").glob("*.pt")),
        lambda: len(list((out / "records").glob("*.json"))) >= 1,
        lambda: len(list((out / "records").glob("*.json"))) >= 3,
    ]
    for condition in kill_points:
        _kill_when(_start(_run_cmd(out, *args)), condition)
    for delay in (0.3, 0.7, 1.1):
        proc = _start(_run_cmd(out, *args))
        time.sleep(4.0 + delay)  # past start-up, into the work
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = subprocess.run(_run_cmd(out, *args), env=_env(), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    records = _records(out)
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 6  # 3 priors x 2 seeds
    assert all(r["status"] == "ok" for r in records)
    leftovers = [p.name for p in (out / "records").iterdir() if not p.name.endswith(".json")]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers)
    assert not any((out / "checkpoints").glob("*.pt"))


WRITER = """
import sys
from pathlib import Path
from vaebench import results
root = results.prepare_dir(sys.argv[1])
payload = "x" * 200_000
i = 0
while True:
    key = results.make_key({"i": i % 5})
    record = {"schema_version": 1, "key": key, "stem": f"w-{key[:12]}", "status": "ok",
              "suite": {}, "combination": {}, "seed": 0, "metrics": {}, "pad": payload, "i": i}
    results.write_record(root, record)
    i += 1
"""


@pytest.mark.slow
def test_a_write_killed_midway_never_leaves_a_truncated_record(tmp_path: Path) -> None:
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
        time.sleep(1.0 + 0.37 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for path in (tmp_path / "records").glob("*.json"):
            record = json.loads(path.read_text())  # never partial
            assert len(record["pad"]) == 200_000


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    # 0666 less the umask, as open() gives, not the 0600 of the temporary file.
    plain = tmp_path / "plain.json"
    plain.write_bytes(b"{}")
    results.atomic_write_bytes(tmp_path / "atomic.json", b"{}")
    mode = (tmp_path / "atomic.json").stat().st_mode & 0o777
    assert mode == plain.stat().st_mode & 0o777 == results.plain_file_mode()
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_two_runs_into_one_directory_do_not_corrupt_each_other(tmp_path: Path) -> None:
    out = tmp_path / "shared"
    args = ("--seeds", "0", "1", "--steps", "40")
    procs = [_start(_run_cmd(out, *args)) for _ in range(2)]
    for proc in procs:
        # 3: this run left seeds to the other one (its own tables were incomplete)
        assert proc.wait(timeout=300) in (0, 3), proc.stderr.read().decode() if proc.stderr else ""
    records = _records(out)
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 6
    assert all(r["status"] == "ok" for r in records)


def test_a_checkpoint_left_beside_a_finished_record_is_removed_by_the_next_run(
    tmp_path: Path,
) -> None:
    """A run killed between writing a seed's record and removing its checkpoint leaves both;
    the next run skips the finished seed and removes the checkpoint nothing would resume."""
    import torch

    from vaebench import plugins
    from vaebench.runner import RunRequest, plan, run

    request = RunRequest(
        suite="digits", profile="tiny", seeds=[0], priors=["standard-normal"], out=str(tmp_path),
        metrics=["likelihood"], k=2, suite_options={"limit": 100}, progress=False,
    )  # fmt: skip
    with plugins.use_host(plugins.PluginHost(entry_points=False)) as host:
        run(request, host)
        (unit,) = plan(request, host)
        left = results.checkpoint_path(tmp_path, unit.stems[0])
        torch.save({"kind": "single", "step": 10}, left)
        again = run(request, host)
    assert (again.ran, again.skipped) == (0, 1)
    assert not left.exists()


@pytest.mark.slow
def test_a_checkpoint_under_its_former_stem_is_resumed(tmp_path: Path) -> None:
    """A training begun while checkpoint_every was part of the key left its checkpoint under
    that key's stem: the plan says it resumes, the run continues it, and the record ends with
    an uninterrupted run's numbers under the key of today."""
    from vaebench import plugins
    from vaebench.runner import RunRequest, plan, seed_states

    args = ("--priors", "standard-normal", "--seeds", "0", "--steps", "400", "--eval-every",
            "20", "--checkpoint-every", "20", "--patience", "1000")  # fmt: skip
    straight = tmp_path / "straight"
    subprocess.run(_run_cmd(straight, *args), env=_env(), check=True, capture_output=True)

    resumed = tmp_path / "resumed"
    checkpoints = resumed / "checkpoints"
    proc = _start(_run_cmd(resumed, *args))
    assert _kill_when(proc, lambda: any(checkpoints.glob("*.pt"))), "finished before a checkpoint"
    request = RunRequest(
        suite="digits", profile="tiny", seeds=[0], priors=["standard-normal"], steps=400,
        eval_every=20, checkpoint_every=20, patience=1000, out=str(resumed), progress=False,
    )  # fmt: skip
    with plugins.use_host(plugins.PluginHost(entry_points=False)) as host:
        (unit,) = plan(request, host)
    (left,) = checkpoints.glob("*.pt")
    assert left.stem == unit.stems[0]  # the request above is the command's
    former = unit.former_stem(0)
    assert former is not None
    left.rename(results.checkpoint_path(resumed, former))
    state = seed_states(request, [unit])[unit.stems[0]]
    assert state.status == "resumes" and state.step is not None and state.step > 0

    subprocess.run(_run_cmd(resumed, *args), env=_env(), check=True, capture_output=True)
    (a,), (b,) = _records(straight), _records(resumed)
    assert b["training"]["resumed_from"] == state.step
    assert a["key"] == b["key"] == unit.keys[0]
    assert a["metrics"] == b["metrics"]
    assert not any(checkpoints.glob("*.pt"))
