from __future__ import annotations

from pathlib import Path

import pytest

from vaebench.data import locate
from vaebench.data.download import FILES
from vaebench.data.locate import candidate_roots, default_data_dir, find_dataset
from vaebench.errors import DataError


def test_default_data_dir_env_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAEBENCH_DATA", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"


def test_default_data_dir_linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locate.sys, "platform", "linux")
    assert default_data_dir() == tmp_path / "xdg-cache" / "vaebench"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for xdg in ("", "relative/ignored"):
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert default_data_dir() == tmp_path / "home" / ".cache" / "vaebench"


def test_default_data_dir_other_platforms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(locate.sys, "platform", "darwin")
    assert default_data_dir() == tmp_path / "Library" / "Caches" / "vaebench"
    monkeypatch.setattr(locate.sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert default_data_dir() == tmp_path / "Local" / "vaebench" / "Cache"


def test_candidate_roots_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "system"
    monkeypatch.setattr(locate, "SYSTEM_ROOTS", (system,))
    assert candidate_roots() == [tmp_path / "xdg-cache" / "vaebench", system]
    monkeypatch.setenv("VAEBENCH_DATA", str(tmp_path / "env"))
    assert candidate_roots() == [tmp_path / "env", system]
    assert candidate_roots(tmp_path / "explicit") == [tmp_path / "explicit", system]
    assert candidate_roots(system) == [system]


def test_explicit_dir_beats_env(tmp_path: Path, link, monkeypatch: pytest.MonkeyPatch) -> None:
    link(tmp_path / "env", "mnist")
    link(tmp_path / "explicit", "mnist")
    monkeypatch.setenv("VAEBENCH_DATA", str(tmp_path / "env"))
    assert find_dataset("mnist", progress=False)[0] == tmp_path / "env"
    root, paths = find_dataset("mnist", data_dir=tmp_path / "explicit", progress=False)
    assert root == tmp_path / "explicit"
    assert paths["test_labels"] == root / "mnist" / FILES["test_labels"]


def test_env_beats_user_cache(tmp_path: Path, link, monkeypatch: pytest.MonkeyPatch) -> None:
    link(tmp_path / "xdg-cache" / "vaebench", "mnist")
    assert find_dataset("mnist", progress=False)[0] == tmp_path / "xdg-cache" / "vaebench"
    link(tmp_path / "env", "mnist")
    monkeypatch.setenv("VAEBENCH_DATA", str(tmp_path / "env"))
    assert find_dataset("mnist", progress=False)[0] == tmp_path / "env"


def test_system_dir_fallback(tmp_path: Path, link, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "usr-share-datasets"
    link(system, "fashion-mnist")
    link(tmp_path / "user", "fashion-mnist", roles=("test_labels",))  # incomplete: skipped
    monkeypatch.setattr(locate, "SYSTEM_ROOTS", (system,))
    root, paths = find_dataset("fashion-mnist", data_dir=tmp_path / "user", download=False)
    assert root == system
    assert paths["train_images"] == system / "fashion-mnist" / FILES["train_images"]


def test_downloads_missing_into_user_root_only(
    tmp_path: Path, link, serve, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "system"
    (system / "mnist").mkdir(parents=True)
    monkeypatch.setattr(locate, "SYSTEM_ROOTS", (system,))
    user = tmp_path / "user"
    link(user, "mnist", roles=("train_images", "test_images"))
    url = serve(shared_data / "mnist")
    root, paths = find_dataset("mnist", data_dir=user, mirrors=[url], progress=False)
    assert root == user and all(p.is_file() for p in paths.values())
    assert list((system / "mnist").iterdir()) == []


def test_nothing_found_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="No complete copy of mnist") as info:
        find_dataset("mnist", data_dir=tmp_path / "nowhere", download=False)
    assert str(tmp_path / "nowhere" / "mnist") in str(info.value)
    assert not (tmp_path / "nowhere").exists()


def test_read_only_target(tmp_path: Path) -> None:
    (tmp_path / "ro" / "mnist").mkdir(parents=True)
    (tmp_path / "ro" / "mnist").chmod(0o555)
    try:
        with pytest.raises(DataError, match="read-only"):
            find_dataset("mnist", data_dir=tmp_path / "ro", progress=False)
    finally:
        (tmp_path / "ro" / "mnist").chmod(0o755)
