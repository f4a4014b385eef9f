"""What a result was computed with: versions, git hash, hardware."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

#: Set to 0 to leave the C allocator's settings alone (see :func:`keep_freed_memory`).
ENV_MALLOC = "VAEBENCH_MALLOC"
#: glibc's own variables for the same settings: where one is set, the user's choice stands.
GLIBC_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h


def segment(device: Any) -> dict[str, Any]:
    """What a stretch of training ran on and with: the kind of device and its name, vaebench's
    version and commit, torch's version. A resumed run appends one where any of these changed
    (``training.segments`` in the record)."""
    import torch

    from vaebench import __version__

    return {
        "device": torch.device(device).type,
        "device_name": device_name(device),
        "vaebench": __version__,
        "git": git_hash(),
        "torch": str(torch.__version__),  # a plain str: checkpoints load with weights_only
    }


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


@functools.cache
def keep_freed_memory() -> str:
    """Have glibc's allocator keep freed blocks of up to 32 MiB for reuse; say what was done.

    torch's CPU allocator does not cache: every operator's output is a fresh ``malloc``, and
    glibc serves a block above its mmap threshold (128 KiB at first, raised as such blocks are
    freed) with a new mapping that is unmapped again on ``free``, and trims its heap when more
    than twice that threshold lies free at the top. Each output of a few MB then costs one
    page fault per 4 KiB page on first touch; in a VM those faults took about as long as the
    arithmetic itself (IW-NLL on the MNIST-sized model ran 1.7x faster with the settings
    below; benchmarks/README.md). This sets ``M_MMAP_THRESHOLD`` to 32 MiB and
    ``M_TRIM_THRESHOLD`` to 128 MiB with ``mallopt``, once per process, so freed blocks stay
    mapped and are reused; memory above that is still returned to the system.

    Called by every unit of work (:func:`vaebench.pipeline.run_unit`), in whatever process runs
    it. Does nothing where the C library is not glibc, where ``VAEBENCH_MALLOC=0``, or where
    one of glibc's ``MALLOC_*_`` variables already sets these. The answer goes into every
    record's ``environment.malloc``.
    """
    if os.environ.get(ENV_MALLOC, "").strip().lower() in ("0", "false", "no", "off"):
        return f"unchanged ({ENV_MALLOC}=0)"
    if any(os.environ.get(name) for name in GLIBC_MALLOC_ENV):
        return "unchanged (set by MALLOC_*_ variables)"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "unchanged (not glibc)"
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return "unchanged (no mallopt)"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if not (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    ):
        return "unchanged (mallopt refused)"
    mib = MMAP_THRESHOLD >> 20, TRIM_THRESHOLD >> 20
    return "glibc mmap threshold {} MiB, trim threshold {} MiB".format(*mib)


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
        "malloc": keep_freed_memory(),
        "device": str(device),
        "device_name": device_name(device),
        "git": git_hash(),
        "plugins": dict(plugins),
    }
