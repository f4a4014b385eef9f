"""Downloads refuse what they cannot vouch for: plain HTTP (also by redirect), more bytes than
a file can have, a checksum cache entry whose file may have changed since it was hashed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from vaebench.data import download
from vaebench.data.download import (
    DATASETS,
    VERIFIED_FILE,
    DatasetSpec,
    digests_uncompressed,
    download_file,
    ensure_dataset,
    resolve_mirrors,
)
from vaebench.errors import ConfigError, DataError
from vaebench.results import plain_file_mode

LABELS = "t10k-labels-idx1-ubyte.gz"
MD5 = DATASETS["mnist"].md5["test_labels"]
SHA256 = DATASETS["mnist"].sha256["test_labels"]


def test_plain_http_is_refused_before_any_connection(tmp_path: Path, shared_data: Path, serve):  # type: ignore[no-untyped-def]
    url = serve(shared_data / "mnist", tls=False)
    assert url.startswith("http://")
    with pytest.raises(ConfigError, match="not an HTTPS URL") as info:
        download_file(url + LABELS, tmp_path / LABELS, MD5, progress=False)
    assert url + LABELS in str(info.value)
    with pytest.raises(ConfigError, match="HTTPS only"):
        ensure_dataset("mnist", tmp_path, mirrors=[url], progress=False)
    with pytest.raises(ConfigError, match="not an HTTPS URL"):
        resolve_mirrors("mnist", ["ftp://mirror/"])
    assert not (tmp_path / LABELS).exists() and not (tmp_path / "mnist").exists()


def test_the_same_file_over_https_arrives(tmp_path: Path, mnist_url: str) -> None:
    assert mnist_url.startswith("https://")
    dest = download_file(mnist_url + LABELS, tmp_path / LABELS, sha256=SHA256, progress=False)
    assert digests_uncompressed(dest) == {"md5": MD5, "sha256": SHA256}


def test_a_redirect_to_plain_http_is_refused(tmp_path: Path, shared_data: Path, serve) -> None:  # type: ignore[no-untyped-def]
    plain = serve(shared_data / "mnist", tls=False)
    redirecting = serve(tmp_path, redirect=plain)
    with pytest.raises(DataError, match="not HTTPS") as info:
        download_file(redirecting + LABELS, tmp_path / "out" / LABELS, MD5, progress=False)
    assert plain + LABELS in str(info.value)
    assert not (tmp_path / "out" / LABELS).exists()
    # A redirect to another HTTPS server is followed.
    https = serve(shared_data / "mnist")
    onward = serve(tmp_path, redirect=https)
    assert download_file(onward + LABELS, tmp_path / "ok" / LABELS, MD5, progress=False).is_file()


def test_an_untrusted_certificate_is_refused(
    tmp_path: Path, mnist_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The system's store does not hold the test authority: verification stays on.
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(DataError, match="CERTIFICATE_VERIFY_FAILED"):
        download_file(mnist_url + LABELS, tmp_path / LABELS, MD5, progress=False)


def test_a_file_over_the_byte_cap_is_refused(tmp_path: Path, mnist_url: str) -> None:
    with pytest.raises(DataError, match="announces .* bytes, over the 100-byte cap"):
        download_file(mnist_url + LABELS, tmp_path / LABELS, MD5, progress=False, max_bytes=100)
    assert list(tmp_path.iterdir()) == []


def test_an_endless_body_stops_at_the_cap(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    url = serve(tmp_path, mode="endless")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="more than the 1048576-byte cap"):
        download_file(url + LABELS, out / LABELS, MD5, progress=False, max_bytes=1 << 20)
    assert list(out.iterdir()) == []


def test_the_default_cap_holds_every_real_file_and_is_enforced_for_mirrors(
    tmp_path: Path, shared_data: Path, serve, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    largest = max(p.stat().st_size for p in shared_data.glob("*/*.gz"))
    assert largest < download.MAX_DOWNLOAD_BYTES
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 1000)
    with pytest.raises(DataError, match="over the 1000-byte cap"):
        ensure_dataset("mnist", tmp_path, mirrors=[serve(shared_data / "mnist")], progress=False)


def test_sha256_is_checked_beside_md5(tmp_path: Path, mnist_url: str, link) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="sha256 of uncompressed content"):
        download_file(mnist_url + LABELS, tmp_path / LABELS, MD5, sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="give md5_uncompressed, sha256 or both"):
        download_file(mnist_url + LABELS, tmp_path / LABELS, progress=False)
    # A present file whose md5 matches but whose SHA-256 does not is rejected too.
    spec = DATASETS["mnist"]
    bad = DatasetSpec("mnist", spec.md5, spec.mirrors, {**spec.sha256, "test_labels": "0" * 64})
    link(tmp_path / "root", "mnist")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(DATASETS, "mnist", bad)
        with pytest.raises(DataError, match="wrong checksum .*sha256"):
            ensure_dataset("mnist", tmp_path / "root", progress=False)


def test_the_cache_file_has_the_permissions_of_other_files(tmp_path: Path, mnist_url: str) -> None:
    ensure_dataset("mnist", tmp_path, mirrors=[mnist_url], progress=False)
    for path in (tmp_path / "mnist").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == plain_file_mode(), path.name
    assert (tmp_path / "mnist" / VERIFIED_FILE).is_file()


def _age(path: Path, seconds: float) -> None:
    """Set ``path``'s times into the past, as for a file written long ago."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_a_rewrite_that_keeps_size_and_mtime_is_hashed_again(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "mnist"
    directory.mkdir()
    for f in shared_data.glob("mnist/*.gz"):
        shutil.copyfile(f, directory / f.name)
        _age(directory / f.name, 3600)
    time.sleep(0.01)  # copies' ctimes now lie behind the verification below
    monkeypatch.setattr(download, "RACY_NS", 0)  # a fresh copy counts as settled here
    ensure_dataset("mnist", tmp_path, progress=False)
    target = directory / LABELS
    before = target.stat()
    # Same length, other bytes, the old mtime put back: only ctime and content tell.
    data = bytearray(target.read_bytes())
    data[-8] ^= 0xFF  # the gzip trailer's CRC: the file no longer verifies
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    monkeypatch.setattr(download, "_digest_memo", {})
    with pytest.raises(DataError, match=str(target)):
        ensure_dataset("mnist", tmp_path, progress=False)


def test_an_entry_hashed_within_the_racy_window_is_hashed_again(
    tmp_path: Path, link, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    directory = link(tmp_path, "mnist")
    ensure_dataset("mnist", tmp_path, progress=False)
    cache = json.loads((directory / VERIFIED_FILE).read_text())
    hashed: list[str] = []

    def counting(path: Path) -> dict[str, str]:
        hashed.append(Path(path).name)
        return digests_uncompressed(path)

    monkeypatch.setattr(download, "_digest_memo", {})
    monkeypatch.setattr(download, "digests_uncompressed", counting)
    # The real files are old: their entries vouch for them, nothing is read.
    ensure_dataset("mnist", tmp_path, progress=False)
    assert hashed == []
    # An entry claiming a hash taken in the same second the file last changed does not.
    entry = cache[LABELS]
    entry["verified_ns"] = entry["mtime_ns"] + 1
    cache[LABELS] = entry
    (directory / VERIFIED_FILE).write_text(json.dumps(cache))
    ensure_dataset("mnist", tmp_path, progress=False)
    assert hashed == [LABELS]
