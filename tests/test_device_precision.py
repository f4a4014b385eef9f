"""Devices, precision and the command-line plumbing of seed batches and executors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.small_runs import tiny_digits
from vaebench.api import run
from vaebench.cli import build_parser
from vaebench.commands.run import request_from_args
from vaebench.errors import ConfigError
from vaebench.pipeline import data_on, resolve_device

ROOT = Path(__file__).resolve().parent.parent
SMALL = tiny_digits(priors=["standard-normal"], suite_options={"limit": 100})


pytestmark = pytest.mark.usefixtures("one_thread")


def test_devices_resolve_or_say_what_to_use() -> None:
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ConfigError, match="sees no CUDA GPU; use device cpu"):
            resolve_device("cuda:1")


def test_data_moves_to_the_device_once(tmp_path: Path) -> None:
    from vaebench.pipeline import load_suite_data
    from vaebench.plugins import default_host

    data = load_suite_data(default_host().get("suite", "digits"), {"limit": 100})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    first = data_on(data, device)
    assert data_on(data, device) is first and first.train.device.type == device.type


@pytest.mark.slow
def test_precision_and_device_go_into_every_record_and_bf16_is_its_own_key(
    tmp_path: Path,
) -> None:
    fp32 = run(**SMALL, seeds=[0, 1], device="cpu", out=str(tmp_path))
    bf16 = run(**SMALL, seeds=[0, 1], device="cpu", precision="bf16", out=str(tmp_path))
    assert bf16.failed == 0 and {r["precision"] for r in bf16.records} == {"bf16"}
    assert {r["key"] for r in fp32.records}.isdisjoint(r["key"] for r in bf16.records)
    for record in fp32.records + bf16.records:
        env = record["environment"]
        assert env["device"] == "cpu" and env["device_name"]
        assert record["training"]["vectorized"] is True and record["training"]["seed_batch"] == 2
    # Evaluation stays fp32 whatever the training precision: the metrics are finite floats of
    # an fp32 model either way.
    assert all(r["metrics"]["iw_nll"]["value"] > 0 for r in bf16.records)


def test_run_command_passes_seed_batch_device_and_executor_options() -> None:
    parse = build_parser().parse_args
    args = parse(
        [
            "run",
            "--seed-batch",
            "4",
            "--executor",
            "ray",
            "--ray-address",
            "auto",
            "--jobs",
            "3",
            "--device",
            "cpu",
            "--precision",
            "bf16",
            "--executor-option",
            "retries=5",
        ]
    )
    request = request_from_args(args)
    assert request.seed_batch == 4 and request.device == "cpu" and request.precision == "bf16"
    assert request.executor_options == {"retries": 5, "jobs": 3, "address": "auto"}
    assert request_from_args(parse(["run"])).seed_batch == "auto"
    assert request_from_args(parse(["run"])).device == "auto"
    with pytest.raises(ConfigError, match="--ray-address needs the ray executor"):
        request_from_args(parse(["run", "--ray-address", "auto"]))
    with pytest.raises(SystemExit):
        parse(["run", "--seed-batch", "0"])


@pytest.mark.slow
def test_gpu_benchmark_runs_with_tiny_sizes_on_the_cpu() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--quick", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "one model, eager (train.fit)" in out and "importance samples/s" in out


def test_bf16_on_a_cpu_without_bf16_hardware_is_warned_about(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from vaebench import environment
    from vaebench.commands import run as run_command

    assert environment.native_bf16(frozenset({"avx2", "fma"})) is False
    assert environment.native_bf16(frozenset({"avx512f", "avx512_bf16"})) is True
    assert environment.native_bf16(frozenset({"amx_bf16", "amx_tile"})) is True
    monkeypatch.setattr(environment, "native_bf16", lambda flags=None: False)
    warning = run_command.bf16_warning("bf16", "cpu")
    assert warning is not None and "emulated" in warning and "--precision fp32" in warning
    assert run_command.bf16_warning("fp32", "cpu") is None
    monkeypatch.setattr(environment, "native_bf16", lambda flags=None: True)
    assert run_command.bf16_warning("bf16", "cpu") is None
    monkeypatch.setattr(environment, "native_bf16", lambda flags=None: None)
    assert run_command.bf16_warning("bf16", "cpu") is None
