"""Shared fixtures: a private plugin host, a clean process-wide host around env changes, and
the real MNIST-family files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vaebench import plugins
from vaebench.errors import DataError
from vaebench.testing import find_real_data, linked_data_dir

REPOSITORY = Path(__file__).resolve().parents[1]
REAL_DATASETS = ("mnist", "fashion-mnist")


@pytest.fixture(scope="session")
def real_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only view of the real MNIST-family files: ``<root>/<name>/<file>`` links to
    wherever :func:`vaebench.testing.find_real_data` found them (``VAEBENCH_DATA``, the user
    cache, ``../shared/data``, the system dataset folder) or downloaded them. Never write into
    it: verification caches go beside the data, so tests link these files again elsewhere."""
    try:
        folders = find_real_data(REAL_DATASETS, near=REPOSITORY)
    except DataError as e:
        pytest.fail(str(e), pytrace=False)
    return linked_data_dir(folders, tmp_path_factory.mktemp("real-data"), REAL_DATASETS)


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
