"""What a result was computed with: versions, git hash, hardware."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


@functools.cache
def git_hash() -> str | None:
    """The commit of the vaebench checkout in use, if it is one (with ``-dirty`` if modified)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@functools.cache
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where they cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def native_bf16(flags: frozenset[str] | None = None) -> bool | None:
    """Whether the CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX-BF16); None
    where its flags are unknown. Without it torch emulates bf16 matrix products in fp32."""
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return None
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def device_name(device: Any) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return cpu_name()
    return device.type


def environment(device: Any, plugins: dict[str, str]) -> dict[str, Any]:
    import torch

    from vaebench import __version__

    return {
        "vaebench": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": native_bf16(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": device_name(device),
        "git": git_hash(),
        "plugins": dict(plugins),
    }
