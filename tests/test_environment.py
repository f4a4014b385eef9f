"""The process settings vaebench makes for speed, and what records say about them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vaebench import environment

# IW-NLL on a digits-sized model: its decoder outputs are 4 MiB tensors, freed as soon as used.
CHURN = """
import resource, sys, torch
from vaebench.contracts import DataSpec
from vaebench.environment import keep_freed_memory
from vaebench.estimators import likelihood_stats
from vaebench.pipeline import build_model
from vaebench.plugins import default_host
print(keep_freed_memory(), file=sys.stderr)
torch.manual_seed(0)
spec = DataSpec(dim=64, levels=17, image_shape=(8, 8))
combo = {"encoder": "mlp-gaussian", "decoder": "mlp-categorical", "prior": "standard-normal"}
model = build_model(default_host(), combo, {}, spec, 16, 256).eval()
x = torch.randint(0, 17, (32, 64)).float()
likelihood_stats(model, x, 500)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
likelihood_stats(model, x, 500)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(**env: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHURN],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(
    environment.keep_freed_memory() == "unchanged (not glibc)", reason="glibc's allocator only"
)
def test_freed_tensors_are_reused_instead_of_faulted_in_again() -> None:
    default = _page_faults(VAEBENCH_MALLOC="0")
    kept = _page_faults()
    # glibc's defaults: the decoder's outputs are faulted in page by page on every call
    assert default > 5000
    assert kept < default / 20


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
