"""The process settings vaebench makes for speed, and what records say about them."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys

import pytest

from vaebench import environment

# Three 6 MiB blocks, written and freed, twice, through the C allocator itself. With glibc's
# defaults they are mmapped and unmapped on free, so the second round faults every page in
# again; with the setting they stay in the heap. (torch's own allocations take the same paths,
# but whether its freed outputs are given back depends on the order of earlier allocations, so
# an IW-NLL call with the defaults faults on every call in some processes and not in others.)
CHURN = """
import ctypes, resource, sys
from vaebench.environment import keep_freed_memory
print(keep_freed_memory(), file=sys.stderr)
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Mallinfo2
size = 6 << 20
def churn():
    blocks = [libc.malloc(size) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in blocks:
        libc.free(block)
churn()
kept = libc.mallinfo2().fordblks
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _churn(**env: str) -> tuple[int, int]:
    """Bytes the allocator kept after the first round, page faults of the second."""
    out = subprocess.run(
        [sys.executable, "-c", CHURN],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    kept, faults = out.stdout.split()
    return int(kept), int(faults)


def _has_mallinfo2() -> bool:
    """glibc 2.33 or later (without applying the setting in this process)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc's allocator (2.33 or later) only")
def test_freed_blocks_stay_mapped_for_reuse_instead_of_being_faulted_in_again() -> None:
    kept, faults = _churn()
    assert kept >= 3 * (6 << 20) and faults < 100
    kept, faults = _churn(VAEBENCH_MALLOC="0")  # glibc's defaults
    assert kept < 6 << 20 and faults > 3 * (6 << 20) // 4096 // 2


def test_the_setting_can_be_turned_off_and_yields_to_glibc_variables(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(environment.ENV_MALLOC, "0")
    environment.keep_freed_memory.cache_clear()
    assert environment.keep_freed_memory() == "unchanged (VAEBENCH_MALLOC=0)"
    monkeypatch.delenv(environment.ENV_MALLOC)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    environment.keep_freed_memory.cache_clear()
    assert environment.keep_freed_memory() == "unchanged (set by MALLOC_*_ variables)"
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setattr(environment.platform, "libc_ver", lambda: ("musl", "1.2"))
    environment.keep_freed_memory.cache_clear()
    assert environment.keep_freed_memory() == "unchanged (not glibc)"
    environment.keep_freed_memory.cache_clear()
