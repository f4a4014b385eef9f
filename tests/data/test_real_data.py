"""The tests' one way to real data (vaebench.testing.find_real_data): where vaebench looks,
then ``../shared/data``, then the system folder; a download when nothing is found; one line
naming the variable to set when neither works."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vaebench.data import locate
from vaebench.data.download import FILES, VERIFIED_FILE
from vaebench.errors import DataError
from vaebench.testing import find_real_data, real_data


def test_vaebench_data_comes_first(tmp_path: Path, link, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    link(tmp_path / "env", "mnist")
    link(tmp_path / "checkout-parent" / "shared" / "data", "mnist")
    near = tmp_path / "checkout-parent" / "repo" / "tests"
    near.mkdir(parents=True)
    assert find_real_data(["mnist"], near=near) == {
        "mnist": tmp_path / "checkout-parent" / "shared" / "data" / "mnist"
    }
    monkeypatch.setenv("VAEBENCH_DATA", str(tmp_path / "env"))
    assert find_real_data(["mnist"], near=near) == {"mnist": tmp_path / "env" / "mnist"}


def test_user_cache_then_shared_then_system(
    tmp_path: Path, link, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    system = tmp_path / "usr-share-datasets"
    link(system, "fashion-mnist")
    monkeypatch.setattr(locate, "SYSTEM_ROOTS", (system,))
    near = tmp_path / "elsewhere"
    near.mkdir()
    assert find_real_data(["fashion-mnist"], near=near) == {
        "fashion-mnist": system / "fashion-mnist"
    }
    link(tmp_path / "shared" / "data", "fashion-mnist")
    found = find_real_data(["fashion-mnist"], near=near)
    assert found == {"fashion-mnist": tmp_path / "shared" / "data" / "fashion-mnist"}
    cache = tmp_path / "xdg-cache" / "vaebench"  # the user cache under the hermetic XDG
    link(cache, "fashion-mnist")
    assert find_real_data(["fashion-mnist"], near=near) == {
        "fashion-mnist": cache / "fashion-mnist"
    }


def test_missing_data_is_downloaded_into_the_user_root(
    tmp_path: Path, mnist_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAEBENCH_MIRRORS", mnist_url)
    monkeypatch.setenv("VAEBENCH_DATA", str(tmp_path / "env"))
    found = find_real_data(["mnist"], near=tmp_path)
    assert found == {"mnist": tmp_path / "env" / "mnist"}
    names = sorted(p.name for p in found["mnist"].iterdir())
    assert names == sorted([*FILES.values(), VERIFIED_FILE])
    with real_data(tmp_path / "linked", ["mnist"], near=tmp_path) as root:
        assert os.environ["VAEBENCH_MIRRORS"].startswith("https://127.0.0.1:9/")
        assert (root / "mnist" / FILES["train_images"]).resolve() == (
            found["mnist"] / FILES["train_images"]
        )


def test_neither_data_nor_network_says_which_variable_to_set(
    tmp_path: Path, closed_url: str
) -> None:
    with pytest.raises(DataError) as info:
        find_real_data(["mnist"], near=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "set VAEBENCH_DATA to a folder holding mnist/" in message
    assert "download failed" in message and "unreachable" in message
    with pytest.raises(DataError, match="No real mnist data for the tests in .*set VAEBENCH_DATA"):
        find_real_data(["mnist"], near=tmp_path, download=False)


def test_the_repository_tests_find_the_same_files_vaebench_would(real_data_dir: Path) -> None:
    for name in ("mnist", "fashion-mnist"):
        for fname in FILES.values():
            assert (real_data_dir / name / fname).is_file()
