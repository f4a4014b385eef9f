"""The benchmark scripts run end to end on the real MNIST files with tiny sizes (their numbers
are measured by hand, never asserted here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str, data: Path) -> str:
    env = {**os.environ, "VAEBENCH_DATA": str(data), "VAEBENCH_PLUGINS": "none"}
    env["OMP_NUM_THREADS"] = "2"
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env=env,
    ).stdout


@pytest.mark.slow
def test_profile_benchmark_times_every_literature_combination_per_thread_count(
    real_data_dir: Path,
) -> None:
    out = bench(
        "bench_profiles.py", "--quick", "--profiles", "tomczak2018", "--threads", "1", "2",
        data=real_data_dir,
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith("tomczak2018")]
    assert sorted((r[1], r[6]) for r in rows) == [  # threads, prior
        ("1", "standard-normal"), ("1", "vamp"), ("2", "standard-normal"), ("2", "vamp"),
    ]  # fmt: skip


@pytest.mark.slow
def test_prior_density_benchmark_compares_both_forms(real_data_dir: Path) -> None:
    out = bench("bench_prior_density.py", "--quick", data=real_data_dir)
    for what in ("density, 1024 rows", "evaluation, per 1024 rows", "training step, batch 100"):
        assert out.count(what) == 2, out
    errors = [float(line.split("|")[-2]) for line in out.splitlines() if "density, 1024" in line]
    assert max(errors) < 1e-3  # both forms agree with the float64 reference
