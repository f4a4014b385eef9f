"""CIFAR-10, SVHN, Omniglot and Caltech-101 Silhouettes readers, on small files written in the
official layouts (tests/data/official_files.py); the download path through the local HTTPS
server."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.official_files import (
    caltech_arrays,
    omniglot_arrays,
    pattern,
    svhn_arrays,
    write_cifar_archive,
    write_mat,
)
from vaebench.data import caltech, cifar10, omniglot, svhn
from vaebench.data.sources import md5_of_file
from vaebench.errors import DataError

RECORDS = 6  # per CIFAR-10 batch
SVHN_COUNTS = {"train": 30, "test": 12, "extra": 20}
OMNIGLOT_COUNTS = {"train": 40, "test": 10}
CALTECH_COUNTS = {"train": 12, "val": 5, "test": 7}


def with_md5(dataset, **md5: str):  # type: ignore[no-untyped-def]
    """``dataset`` with the given roles' checksums replaced (the official ones cannot match a
    file a test writes)."""
    files = {r: dataclasses.replace(f, md5=md5.get(r, f.md5)) for r, f in dataset.files.items()}
    return dataclasses.replace(dataset, files=files)


@pytest.fixture
def small_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The readers insist on the official image counts; these tests' files are smaller."""
    monkeypatch.setattr(cifar10, "RECORDS_PER_BATCH", RECORDS)
    for module, counts in ((svhn, SVHN_COUNTS), (omniglot, OMNIGLOT_COUNTS),
                           (caltech, CALTECH_COUNTS)):  # fmt: skip
        for split, n in counts.items():
            monkeypatch.setitem(module.COUNTS, split, n)


def cifar_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    archive = write_cifar_archive(root / "cifar10" / cifar10.ARCHIVE, RECORDS)
    monkeypatch.setattr(cifar10, "CIFAR10", with_md5(cifar10.CIFAR10, archive=md5_of_file(archive)))
    return archive


def svhn_files(directory: Path, roles=("train", "test")) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    first, out = 0, {}
    for role in roles:
        name = svhn.SVHN.files[role].name
        out[role] = write_mat(directory / name, svhn_arrays(SVHN_COUNTS[role], first))
        first += SVHN_COUNTS[role]
    return out


def patch_svhn_md5(monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]) -> None:
    md5 = {role: md5_of_file(p) for role, p in files.items()}
    monkeypatch.setattr(svhn, "SVHN", with_md5(svhn.SVHN, **md5))


# -- CIFAR-10 -----------------------------------------------------------------------------------
def test_cifar10_reads_the_binary_layout(
    tmp_path: Path, small_counts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cifar_root(tmp_path, monkeypatch)
    data = cifar10.load_cifar10(data_dir=tmp_path, progress=False)
    train, test = data.images["train"], data.images["test"]
    assert train.shape == (5 * RECORDS, 3, 32, 32) and train.dtype == torch.uint8
    assert test.shape == (RECORDS, 3, 32, 32)
    # batch b holds images b * RECORDS ..: train keeps the batches' order, test is batch 6
    for n in (0, RECORDS + 1, 5 * RECORDS - 1):
        assert np.array_equal(train[n].numpy(), pattern(n, (3, 32, 32)))
    assert np.array_equal(test[2].numpy(), pattern(5 * RECORDS + 2, (3, 32, 32)))
    # red plane, row 1, column 0 is byte 1 + 32 of the record (after the label byte)
    record = (tmp_path / "cifar10").glob("*.tar.gz")
    assert next(record).name == cifar10.ARCHIVE
    assert int(train[0, 0, 1, 0]) == (32 * 11) % 256
    assert data.labels["train"].tolist() == [n % 10 for n in range(5 * RECORDS)]
    assert data.checksums == {"archive": md5_of_file(tmp_path / "cifar10" / cifar10.ARCHIVE)}


def test_cifar10_official_checksum_is_of_the_archive() -> None:
    archive = cifar10.CIFAR10.files["archive"]
    assert (archive.md5, archive.checksum_of) == ("c32a1d4ab5d03f1284b67883e8d87530", "archive")
    assert archive.size == 170_052_171


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "is truncated or not a tar.gz"),
        ("drop", "lacks cifar-10-batches-bin/test_batch.bin"),
        ("records", "holds 18438 bytes, expected 21511"),
    ],
)
def test_cifar10_damaged_archive_one_line(
    tmp_path: Path, small_counts: None, monkeypatch: pytest.MonkeyPatch, damage: str, message: str
) -> None:
    path = tmp_path / "cifar10" / cifar10.ARCHIVE
    if damage == "truncate":
        write_cifar_archive(path, RECORDS)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "drop":
        write_cifar_archive(path, RECORDS, drop="test_batch.bin")
    else:
        write_cifar_archive(path, RECORDS)
        monkeypatch.setattr(cifar10, "RECORDS_PER_BATCH", 7)
    monkeypatch.setattr(cifar10, "CIFAR10", with_md5(cifar10.CIFAR10, archive=md5_of_file(path)))
    with pytest.raises(DataError, match=message) as info:
        cifar10.load_cifar10(data_dir=tmp_path, progress=False)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_cifar10_wrong_checksum(tmp_path: Path, small_counts: None) -> None:
    write_cifar_archive(tmp_path / "cifar10" / cifar10.ARCHIVE, RECORDS)
    with pytest.raises(DataError, match="wrong checksum .*expected c32a1d4ab5d03f1284b67883e8d"):
        cifar10.load_cifar10(data_dir=tmp_path, progress=False)


def test_cifar10_missing_and_unreachable_says_where_to_get_it(tmp_path: Path) -> None:
    mirror = "https://127.0.0.1:9/"  # nothing listens on the discard port: refused at once
    with pytest.raises(DataError) as info:
        cifar10.load_cifar10(data_dir=tmp_path, progress=False, mirrors=[mirror])
    text = str(info.value)
    assert f"{mirror}cifar-10-binary.tar.gz" in text
    assert str(tmp_path / "cifar10" / cifar10.ARCHIVE) in text
    assert not (tmp_path / "cifar10" / cifar10.ARCHIVE).exists()


def test_cifar10_downloads_through_https_checked_by_the_archive_md5(
    tmp_path: Path, small_counts: None, monkeypatch: pytest.MonkeyPatch, serve
) -> None:
    archive = cifar_root(tmp_path / "served", monkeypatch)
    url = serve(archive.parent)
    data = cifar10.load_cifar10(data_dir=tmp_path / "out", mirrors=[url], progress=False)
    assert (tmp_path / "out" / "cifar10" / cifar10.ARCHIVE).read_bytes() == archive.read_bytes()
    assert data.images["train"].shape[0] == 5 * RECORDS
    # A served archive whose bytes differ from the published md5 never lands.
    raw = bytearray(archive.read_bytes())
    raw[-5] ^= 0xFF
    archive.write_bytes(raw)
    with pytest.raises(DataError, match="checksum mismatch .md5 of file"):
        cifar10.load_cifar10(data_dir=tmp_path / "other", mirrors=[url], progress=False)
    assert not (tmp_path / "other" / "cifar10" / cifar10.ARCHIVE).exists()


def test_cifar10_without_download_lists_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"No complete copy of cifar10 found .*{tmp_path}"):
        cifar10.load_cifar10(data_dir=tmp_path, download=False)


# -- SVHN ---------------------------------------------------------------------------------------
def test_svhn_reads_the_mat_layout(
    tmp_path: Path, small_counts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = svhn_files(tmp_path / "svhn", ("train", "test", "extra"))
    patch_svhn_md5(monkeypatch, files)
    data = svhn.load_svhn(data_dir=tmp_path, progress=False, extra=True)
    for split, first in (("train", 0), ("test", 30), ("extra", 42)):
        images = data.images[split]
        assert images.shape == (SVHN_COUNTS[split], 3, 32, 32) and images.dtype == torch.uint8
        for n in (0, SVHN_COUNTS[split] - 1):
            assert np.array_equal(images[n].numpy(), pattern(first + n, (3, 32, 32)))
        # the file's label 10 is the digit 0
        assert data.labels[split].tolist() == [(first + n) % 10 for n in range(len(images))]
    assert set(data.files) == {"train", "test", "extra"}


def test_svhn_without_extra_reads_two_files(
    tmp_path: Path, small_counts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch_svhn_md5(monkeypatch, svhn_files(tmp_path / "svhn"))
    data = svhn.load_svhn(data_dir=tmp_path, progress=False)
    assert set(data.images) == {"train", "test"}


def test_svhn_official_checksums() -> None:
    assert svhn.SVHN.checksums() == {
        "train": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test": "eb5a983be6a315427106f1b164d9cef3",
        "extra": "a93ce644f1a588dc4d68dda5feec44a7",
    }


def test_svhn_downloads_through_https(
    tmp_path: Path, small_counts: None, monkeypatch: pytest.MonkeyPatch, serve
) -> None:
    served = svhn_files(tmp_path / "served")
    patch_svhn_md5(monkeypatch, served)
    url = serve(tmp_path / "served")
    out = tmp_path / "out"
    data = svhn.load_svhn(data_dir=out, mirrors=[url], progress=False)
    assert data.images["train"].shape[0] == SVHN_COUNTS["train"]
    assert sorted(p.name for p in (out / "svhn").iterdir()) == ["test_32x32.mat", "train_32x32.mat"]
    for path in served.values():
        assert (out / "svhn" / path.name).read_bytes() == path.read_bytes()


def test_svhn_corrupt_download_leaves_nothing(
    tmp_path: Path, small_counts: None, monkeypatch: pytest.MonkeyPatch, serve
) -> None:
    served = svhn_files(tmp_path / "served")
    patch_svhn_md5(monkeypatch, served)
    raw = bytearray(served["train"].read_bytes())
    raw[300:310] = bytes(b ^ 0xFF for b in raw[300:310])
    served["train"].write_bytes(raw)
    url = serve(tmp_path / "served")
    with pytest.raises(DataError, match="Could not download train_32x32.mat for svhn") as info:
        svhn.load_svhn(data_dir=tmp_path / "out", mirrors=[url], progress=False)
    assert "checksum mismatch" in str(info.value) and "\n" not in str(info.value)
    assert not any(p.name.startswith(".train") or p.name.startswith("train")
                   for p in (tmp_path / "out" / "svhn").iterdir())  # fmt: skip


def test_svhn_truncated_file_one_line(
    tmp_path: Path, small_counts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = svhn_files(tmp_path / "svhn")
    path = files["train"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    patch_svhn_md5(monkeypatch, files)
    with pytest.raises(DataError, match="SVHN file .* is truncated or not a valid .mat") as info:
        svhn.load_svhn(data_dir=tmp_path, progress=False)
    assert "\n" not in str(info.value)


def test_svhn_wrong_checksum(tmp_path: Path, small_counts: None) -> None:
    svhn_files(tmp_path / "svhn")
    with pytest.raises(DataError, match="wrong checksum .*expected e26dedcc434d2e4c54c9b2d4a06"):
        svhn.load_svhn(data_dir=tmp_path, progress=False)


# -- Omniglot -----------------------------------------------------------------------------------
def test_omniglot_reads_burdas_file(tmp_path: Path, small_counts: None) -> None:
    write_mat(tmp_path / "omniglot" / "chardata.mat", omniglot_arrays(40, 10))
    data = omniglot.load_omniglot(data_dir=tmp_path, progress=False)
    train, test = data.images["train"], data.images["test"]
    assert train.shape == (40, 28, 28) and train.dtype == torch.float32
    # each column is one image in column-major order: the reader turns it back into rows
    assert torch.allclose(train[3], torch.from_numpy(pattern(3, (28, 28)) / 255.0).float())
    assert torch.allclose(test[9], torch.from_numpy(pattern(49, (28, 28)) / 255.0).float())
    assert data.checksums == {"chardata": None}


def test_omniglot_checks_shape_and_range(tmp_path: Path, small_counts: None) -> None:
    arrays = omniglot_arrays(40, 10)
    arrays["testdata"] = arrays["testdata"] * 2
    path = write_mat(tmp_path / "omniglot" / "chardata.mat", arrays)
    with pytest.raises(DataError, match=r"testdata holds values in \[0.0, 2.0\], expected"):
        omniglot.load_omniglot(data_dir=tmp_path, progress=False)
    write_mat(path, omniglot_arrays(39, 10))
    with pytest.raises(DataError, match=r"data has shape \[784, 39\], expected \[784, 40\]"):
        omniglot.load_omniglot(data_dir=tmp_path, progress=False)


def test_omniglot_missing_has_no_published_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAEBENCH_MIRRORS")  # the default source, named in the message only
    with pytest.raises(DataError, match="no checksum is published for it") as info:
        omniglot.load_omniglot(data_dir=tmp_path, progress=False)
    url = "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/chardata.mat"
    assert url in str(info.value)


def test_omniglot_truncated_one_line(tmp_path: Path, small_counts: None) -> None:
    path = write_mat(tmp_path / "omniglot" / "chardata.mat", omniglot_arrays(40, 10))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="Omniglot file .* is truncated or not a valid") as info:
        omniglot.load_omniglot(data_dir=tmp_path, progress=False)
    assert "\n" not in str(info.value)


# -- Caltech-101 Silhouettes --------------------------------------------------------------------
def test_caltech_reads_marlins_file(tmp_path: Path, small_counts: None) -> None:
    name = caltech.CALTECH.files["split1"].name
    write_mat(tmp_path / "caltech101-silhouettes" / name, caltech_arrays(CALTECH_COUNTS))
    data = caltech.load_caltech_silhouettes(data_dir=tmp_path, progress=False)
    first = 0
    for split, n in CALTECH_COUNTS.items():
        images = data.images[split]
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        # rows of column-major pixels, silhouette 0: transposed back and inverted to object = 1
        assert np.array_equal(images[n - 1].numpy(), pattern(first + n - 1, (28, 28), levels=2))
        first += n


def test_caltech_rejects_grey_values(tmp_path: Path, small_counts: None) -> None:
    arrays = caltech_arrays(CALTECH_COUNTS)
    arrays["val_data"][0, 0] = 0.5
    name = caltech.CALTECH.files["split1"].name
    write_mat(tmp_path / "caltech101-silhouettes" / name, arrays)
    with pytest.raises(DataError, match="val_data holds values other than 0 and 1"):
        caltech.load_caltech_silhouettes(data_dir=tmp_path, progress=False)
