from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from vaebench.data import download
from vaebench.data.download import (
    DATASETS,
    FILES,
    VERIFIED_FILE,
    digests_uncompressed,
    download_file,
    ensure_dataset,
    md5_uncompressed,
    resolve_mirrors,
)
from vaebench.data.idx import read_idx
from vaebench.errors import ConfigError, DataError

LABELS = "t10k-labels-idx1-ubyte.gz"
LABELS_MD5 = DATASETS["mnist"].md5["test_labels"]
LABELS_SHA256 = DATASETS["mnist"].sha256["test_labels"]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_table_matches_the_real_files(shared_data: Path) -> None:
    # md5s are the official lists'; the SHA-256s were computed from the same uncompressed bytes.
    for name, spec in DATASETS.items():
        assert set(spec.md5) == set(spec.sha256) == set(FILES)
        for role, fname in FILES.items():
            found = digests_uncompressed(shared_data / name / fname)
            assert found == {"md5": spec.md5[role], "sha256": spec.sha256[role]}, fname


def test_default_mirrors_are_https() -> None:
    for spec in DATASETS.values():
        assert spec.mirrors and all(m.startswith("https://") for m in spec.mirrors)


def test_download_file(tmp_path: Path, mnist_url: str) -> None:
    dest = tmp_path / "sub" / LABELS
    assert download_file(mnist_url + LABELS, dest, LABELS_MD5, progress=True) == dest
    assert md5_uncompressed(dest) == LABELS_MD5
    assert leftovers(dest.parent) == [LABELS]
    from vaebench.results import plain_file_mode

    assert dest.stat().st_mode & 0o777 == plain_file_mode()  # readable like any new file


def test_wrong_checksum_leaves_nothing(tmp_path: Path, mnist_url: str) -> None:
    dest = tmp_path / LABELS
    with pytest.raises(DataError, match="checksum mismatch") as info:
        download_file(mnist_url + LABELS, dest, "0" * 32, progress=False)
    assert mnist_url + LABELS in str(info.value)
    assert leftovers(tmp_path) == []


def test_corrupt_content_served(tmp_path: Path, shared_data: Path, serve) -> None:
    served = tmp_path / "served"
    served.mkdir()
    data = bytearray((shared_data / "mnist" / LABELS).read_bytes())
    data[100:110] = bytes(b ^ 0xFF for b in data[100:110])
    (served / LABELS).write_bytes(data)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="Could not download"):
        ensure_dataset("mnist", out, mirrors=[serve(served)], progress=False)
    assert leftovers(out / "mnist") == []


def test_interrupted_download_leaves_nothing(tmp_path: Path, shared_data: Path, serve) -> None:
    url = serve(shared_data / "mnist", truncate=True)
    with pytest.raises(DataError, match="closed after") as info:
        download_file(url + LABELS, tmp_path / LABELS, LABELS_MD5, progress=False)
    assert url + LABELS in str(info.value)
    assert leftovers(tmp_path) == []


def test_unreachable_mirror(tmp_path: Path, closed_url: str) -> None:
    with pytest.raises(DataError) as info:
        ensure_dataset("mnist", tmp_path, mirrors=[closed_url], progress=False)
    message = str(info.value)
    assert closed_url + "train-images-idx3-ubyte.gz" in message
    assert "unreachable" in message and "VAEBENCH_MIRRORS" in message
    assert leftovers(tmp_path / "mnist") == []


def test_full_mnist_then_offline(tmp_path: Path, mnist_url: str, closed_url: str) -> None:
    paths = ensure_dataset("mnist", tmp_path, mirrors=[mnist_url], progress=False)
    assert paths == {role: tmp_path / "mnist" / f for role, f in FILES.items()}
    assert leftovers(tmp_path / "mnist") == sorted([*FILES.values(), VERIFIED_FILE])
    cache = json.loads((tmp_path / "mnist" / VERIFIED_FILE).read_text())
    assert {f: e["md5"] for f, e in cache.items()} == {
        FILES[r]: m for r, m in DATASETS["mnist"].md5.items()
    }
    images = read_idx(paths["train_images"])
    assert images.shape == (60_000, 28, 28) and int(images[0].sum()) == 27525
    # Present files: no network at all (the only mirror is a closed port).
    assert ensure_dataset("mnist", tmp_path, mirrors=[closed_url], progress=False) == paths


def test_mirror_fallback_and_only_missing(
    tmp_path: Path, mnist_url: str, serve, link, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    link(tmp_path / "root", "mnist", roles=("train_images", "test_images"))
    monkeypatch.setenv("VAEBENCH_MIRRORS", f"{serve(empty)}, ,{mnist_url}")
    paths = ensure_dataset("mnist", tmp_path / "root", progress=False)
    assert not paths["train_labels"].is_symlink() and paths["train_images"].is_symlink()
    assert torch.bincount(read_idx(paths["train_labels"]).long()).tolist()[:2] == [5923, 6742]


def test_all_mirrors_fail_lists_each(tmp_path: Path, serve, closed_url: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = serve(empty)
    with pytest.raises(DataError) as info:
        ensure_dataset("mnist", tmp_path / "root", mirrors=[bad, closed_url], progress=False)
    assert (
        "HTTP 404" in str(info.value) and bad in str(info.value) and closed_url in str(info.value)
    )


def test_present_file_with_wrong_checksum(tmp_path: Path, shared_data: Path, link) -> None:
    directory = link(tmp_path, "mnist", roles=("train_images", "test_images", "train_labels"))
    shutil.copyfile(shared_data / "fashion-mnist" / LABELS, directory / LABELS)
    with pytest.raises(DataError) as info:
        ensure_dataset("mnist", tmp_path, progress=False)
    message = str(info.value)
    assert str(directory / LABELS) in message
    assert LABELS_MD5 in message and DATASETS["fashion-mnist"].md5["test_labels"] in message
    assert "delete" in message and "VAEBENCH_DATA" in message


def test_sidecar_makes_repeat_checks_cheap(
    tmp_path: Path, shared_data: Path, link, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = link(tmp_path, "mnist")
    ensure_dataset("mnist", tmp_path, progress=False)
    assert (directory / VERIFIED_FILE).is_file()

    def fail(path: object) -> str:
        raise AssertionError(f"re-hashed {path}")

    monkeypatch.setattr(download, "_digest_memo", {})
    monkeypatch.setattr(download, "digests_uncompressed", fail)
    ensure_dataset("mnist", tmp_path, progress=False)
    # A file replaced after verification (new size and mtime) is checked again.
    monkeypatch.setattr(download, "digests_uncompressed", digests_uncompressed)
    (directory / LABELS).unlink()
    shutil.copyfile(shared_data / "fashion-mnist" / LABELS, directory / LABELS)
    with pytest.raises(DataError, match="wrong checksum"):
        ensure_dataset("mnist", tmp_path, progress=False)


def test_read_only_directory_skips_sidecar(tmp_path: Path, link) -> None:
    directory = link(tmp_path, "mnist")
    directory.chmod(0o555)
    try:
        paths = ensure_dataset("mnist", tmp_path, progress=False)
        assert all(p.is_file() for p in paths.values())
        assert not (directory / VERIFIED_FILE).exists()
    finally:
        directory.chmod(0o755)


def test_no_download_when_disabled(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing from"):
        ensure_dataset("mnist", tmp_path, download=False)


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fashion-mnist"):
        ensure_dataset("cifar", tmp_path)


def test_resolve_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAEBENCH_MIRRORS")
    assert resolve_mirrors("mnist") == ["https://ossci-datasets.s3.amazonaws.com/mnist/"]
    monkeypatch.setenv("VAEBENCH_MIRRORS", "https://a/x, HTTPS://b/{name}/ ,")
    assert resolve_mirrors("fashion-mnist") == ["https://a/x/", "HTTPS://b/fashion-mnist/"]
    assert resolve_mirrors("mnist", ["https://c"]) == ["https://c/"]
    with pytest.raises(ConfigError):
        resolve_mirrors("mnist", [" "])
