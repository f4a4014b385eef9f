"""Workers die with the process that started them: a killed ``vaebench run`` must not leave
workers training and writing checkpoints for keys whose locks died with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]

UNITS = '''
import os, time
from pathlib import Path

def linger(marker):
    """Announce this worker's pid, then keep "training" (writing) far longer than the test."""
    Path(marker).write_text(str(os.getpid()))
    for _ in range(600):
        time.sleep(0.1)
        Path(marker + ".beat").write_text(str(time.time()))
    return "finished"
'''


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a reaper (a container's init may not reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def start_parent(tmp_path: Path, executor: str, markers: list[str]) -> subprocess.Popen:
    (tmp_path / "fault_units.py").write_text(UNITS)
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(REPOSITORY)!r}]
        from fault_units import linger
        from vaebench.plugins import default_host
        executor = default_host().get("executor", {executor!r}).factory(jobs=2)
        for unit, outcome in executor.map({markers!r}, linger):
            print(unit, outcome, flush=True)
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_process_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    markers = [str(tmp_path / f"unit{i}") for i in range(2)]
    parent = start_parent(tmp_path, "process", markers)
    try:
        started = wait_for(lambda: all(Path(m).exists() for m in markers), timeout=120)
        assert started, "the workers did not start their units"
        pids = [int(Path(m).read_text()) for m in markers]
        assert all(alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert wait_for(lambda: not any(alive(p) for p in pids), timeout=5), (
            f"workers {[p for p in pids if alive(p)]} outlived their killed parent"
        )
        beats = [Path(m + ".beat") for m in markers]
        last = [b.stat().st_mtime_ns for b in beats if b.exists()]
        time.sleep(0.5)
        assert [b.stat().st_mtime_ns for b in beats if b.exists()] == last  # nothing writes
    finally:
        parent.kill()
        parent.wait()
        for m in markers:
            if Path(m).exists():
                pid = int(Path(m).read_text())
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ray_task_workers_die_with_a_killed_driver(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'vaebench[ray]'")
    markers = [str(tmp_path / f"unit{i}") for i in range(2)]
    driver = start_parent(tmp_path, "ray", markers)
    try:
        started = wait_for(lambda: all(Path(m).exists() for m in markers), timeout=180)
        assert started, "the Ray tasks did not start"
        pids = [int(Path(m).read_text()) for m in markers]
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert wait_for(lambda: not any(alive(p) for p in pids), timeout=30), (
            f"Ray workers {[p for p in pids if alive(p)]} outlived their killed driver"
        )
    finally:
        driver.kill()
        driver.wait()
        for m in markers:
            if Path(m).exists():
                pid = int(Path(m).read_text())
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
