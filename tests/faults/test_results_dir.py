"""Results directories that cannot be written, and artifact paths that leave their directory."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.table_records import make_record, write
from vaebench import atomic, cli, results
from vaebench.errors import ConfigError
from vaebench.images import PNG_SIGNATURE
from vaebench.report import figdata


@pytest.fixture
def read_only(monkeypatch):
    """Make ``records/`` of any results directory unwritable: by its mode for a normal user,
    and for root (whom modes do not stop) by failing file creation there as the kernel would."""
    made: list[Path] = []
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own name
        if dir is not None and Path(dir).name == results.RECORDS:
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def make(root: Path) -> Path:
        (root / results.RECORDS).mkdir(parents=True)
        (root / results.RECORDS).chmod(0o555)
        made.append(root / results.RECORDS)
        return root

    if os.geteuid() == 0:
        monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    yield make
    for folder in made:
        folder.chmod(0o755)


def test_prepare_dir_refuses_a_directory_it_cannot_write(tmp_path, read_only):
    root = read_only(tmp_path / "r")
    with pytest.raises(ConfigError) as info:
        results.prepare_dir(root)
    message = str(info.value)
    assert "\n" not in message and str(root / "records") in message
    assert "Permission denied" in message and "--out" in message


def test_run_into_a_read_only_directory_stops_before_training(tmp_path, read_only, capsys):
    import vaebench.pipeline

    root = read_only(tmp_path / "r")
    trained = []
    original = vaebench.pipeline.run_unit
    vaebench.pipeline.run_unit = lambda *a, **k: trained.append(a) or original(*a, **k)
    try:
        code = cli.main(
            ["run", "--suite", "digits", "--budget", "tiny", "--seeds", "0", "--out", str(root),
             "--no-progress", "--priors", "standard-normal"]
        )  # fmt: skip
    finally:
        vaebench.pipeline.run_unit = original
    err = capsys.readouterr().err
    assert code == 2 and trained == []
    assert "vaebench: error: cannot write into results directory" in err
    assert "Traceback" not in err


def test_a_failed_record_write_is_a_one_line_error(tmp_path, read_only):
    root = read_only(tmp_path / "r")
    with pytest.raises(ConfigError, match=r"^cannot write record .*Permission denied"):
        results.write_record(root, make_record("a", 0, {"iw_nll": 1.0}))


def _record_with_artifacts(root: Path, artifacts: dict[str, str]) -> dict:
    record = make_record("a", 0, {"iw_nll": 1.0})
    record["artifacts"] = artifacts
    write(root, record)
    loaded, problems = results.load_records([root])
    assert problems == []
    return loaded[0]


def test_an_artifact_outside_the_results_directory_is_never_read(tmp_path):
    secret = tmp_path / "private.png"
    secret.write_bytes(PNG_SIGNATURE + b"not for sharing")
    scores = tmp_path / "scores.npz"
    np.savez(scores, **{"test/iw_ll": np.zeros(3), "noise/iw_ll": np.ones(3)})
    root = tmp_path / "results"
    record = _record_with_artifacts(
        root, {"samples": "../private.png", "recon": str(secret), "scores": "../scores.npz"}
    )
    grids, missing = figdata.image_grids([record])
    assert grids == []
    reasons = " ".join(str(m) for m in missing)
    assert "../private.png is outside the results directory" in reasons
    assert f"{secret} is outside the results directory" in reasons
    with pytest.raises(ValueError, match="outside the results directory"):
        figdata.load_scores(record)
    rocs, missing = figdata.roc_curves([record])
    assert rocs == {} and "outside the results directory" in str(missing[0])


def test_an_artifact_inside_the_results_directory_is_read(tmp_path):
    root = tmp_path / "results"
    folder = root / "artifacts" / "x"
    folder.mkdir(parents=True)
    (folder / "samples.png").write_bytes(PNG_SIGNATURE + b"grid")
    record = _record_with_artifacts(root, {"samples": "artifacts/x/samples.png"})
    grids, _ = figdata.image_grids([record])
    assert grids[0].samples == (folder / "samples.png").resolve()
    assert json.loads(Path(record["_path"]).read_text())["artifacts"]["samples"]
