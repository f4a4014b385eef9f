"""A real plugin package, installed in the test environment: plugins/vaebench-example
(distribution ``vaebench-example``) registers the ``student-t`` prior through the ``vaebench``
entry point. vaebench must discover it, list it with its version, and run it in a grid."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from vaebench import api, cli, plugins
from vaebench.runner import RunRequest, plan

DISTRIBUTION = "vaebench-example"


@pytest.fixture
def example_installed(monkeypatch: pytest.MonkeyPatch, fresh_default_host: None) -> str:
    """The example's installed version; every entry point loads."""
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pytest.fail(
            f"{DISTRIBUTION} is not installed; run `pip install -e plugins/vaebench-example`",
            pytrace=False,
        )
    monkeypatch.delenv(plugins.ENV_PLUGINS, raising=False)
    plugins.reset_default_host()
    return version


def test_discovered_through_its_entry_point(example_installed: str) -> None:
    entry = plugins.default_host().entry("prior", "student-t")
    assert (entry.plugin, entry.version) == (DISTRIBUTION, example_installed)
    assert plugins.default_host().info[DISTRIBUTION].distribution == DISTRIBUTION


def test_listed_by_vaebench_plugins(example_installed: str, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed[DISTRIBUTION]["version"] == example_installed
    assert listed[DISTRIBUTION]["distribution"] == DISTRIBUTION
    assert listed[DISTRIBUTION]["hooks"] == ["vaebench_register_priors"]
    assert listed[DISTRIBUTION]["registered"] == {"prior": ["student-t"]}


def test_blocked_by_vaebench_plugins_none(
    example_installed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plugins.ENV_PLUGINS, "none")
    plugins.reset_default_host()
    assert "student-t" not in plugins.default_host().registry("prior")


@pytest.mark.slow
def test_joins_the_mnist_default_grid_not_the_builtin_only_digits_grid(
    example_installed: str, real_data_dir: Path
) -> None:
    shared = str(real_data_dir)
    mnist = plan(
        RunRequest(
            suite="mnist",
            profile="tiny",
            metrics=["likelihood"],
            suite_options={"limit": 50, "ood_size": 50},
            data_dir=shared,
        )
    )
    assert "student-t" in {u.combination["prior"] for u in mnist}
    digits = plan(RunRequest(suite="digits", profile="tiny", metrics=["likelihood"]))
    assert "student-t" not in {u.combination["prior"] for u in digits}


@pytest.mark.slow
def test_runs_in_a_grid(example_installed: str, tmp_path: Path) -> None:
    summary = api.run(
        suite="digits",
        profile="tiny",
        encoders=["mlp-gaussian"],
        decoders=["mlp-categorical"],
        priors=["student-t"],
        seeds=[0],
        metrics=["likelihood"],
        out=str(tmp_path),
    )
    (record,) = summary.records
    assert record["status"] == "ok", record.get("error")
    assert record["components"]["prior"] == {
        "name": "student-t",
        "plugin": DISTRIBUTION,
        "version": example_installed,
        "options": {"df": 5.0},
        "defaults": {"df": 5.0},
    }
    values = {name: m["value"] for name, m in record["metrics"].items()}
    # The record's -ELBO is its two terms' sum (IW-NLL <= -ELBO would hold for any numbers).
    assert values["neg_elbo"] == pytest.approx(values["recon"] + values["kl"])
