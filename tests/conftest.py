"""Shared fixtures: a private plugin host, and a clean process-wide host around env changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vaebench import plugins


@pytest.fixture
def host() -> plugins.PluginHost:
    """A host with the built-in plugin only: no entry points, so installed plugins cannot
    change what a test sees. Not loaded yet."""
    return plugins.PluginHost(entry_points=False)


@pytest.fixture
def fresh_default_host() -> Iterator[None]:
    """Forget the process-wide host before and after a test that changes ``VAEBENCH_PLUGINS``
    (or the entry points), so neither that test nor the next sees a stale one."""
    plugins.reset_default_host()
    yield
    plugins.reset_default_host()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Train tiny models on one torch thread: at their size a second thread only adds waiting
    (on a loaded machine, a lot)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
