"""The runner end to end on the digits suite with tiny budgets: records, resume, failures."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from vaebench import plugins, results
from vaebench.api import run
from vaebench.components.priors import StandardNormalPrior
from vaebench.contracts import ComponentSpec
from vaebench.environment import keep_freed_memory
from vaebench.errors import ConfigError, PluginError
from vaebench.hookspecs import hookimpl

TINY = {"suite": "digits", "profile": "tiny", "progress": False}


@pytest.mark.slow
def test_records_hold_what_a_result_needs(tmp_path: Path) -> None:
    summary = run(**TINY, priors=["standard-normal", "vamp"], seeds=[0, 1], out=str(tmp_path))
    assert summary.ran == 4 and summary.failed == 0 and len(summary.records) == 4
    files = sorted((tmp_path / "records").glob("*.json"))
    assert len(files) == 4
    for path in files:
        record = json.loads(path.read_text())
        assert path.name.endswith(record["key"][:12] + ".json")
        assert record["status"] == "ok"
        assert record["suite"] == {
            "name": "digits",
            "version": "1",
            "profile": "tiny",
            "options": {"limit": None},
        }
        assert record["budget"]["steps"] == 20 and record["training"]["steps_done"] <= 20
        assert record["eval"]["k"] == 20
        env = record["environment"]
        assert env["torch"] == torch.__version__ and env["plugins"]["vaebench"]
        assert env["malloc"] == keep_freed_memory()
        assert record["components"]["encoder"]["plugin"] == "vaebench"
        metrics = record["metrics"]
        assert (
            metrics["iw_nll"]["unit"] == "nats" and metrics["iw_nll"]["higher_is_better"] is False
        )
        # IW-NLL <= -ELBO holds per point, hence on the mean.
        assert metrics["iw_nll"]["value"] <= metrics["neg_elbo"]["value"] + 1e-9
        assert math.isclose(
            metrics["neg_elbo"]["value"],
            metrics["recon"]["value"] + metrics["kl"]["value"],
            rel_tol=1e-9,
        )
        assert (tmp_path / record["artifacts"]["scores"]).is_file()
    assert not list((tmp_path / "checkpoints").glob("*.pt"))


@pytest.mark.slow
def test_same_command_again_skips_finished_keys_and_force_retrains(tmp_path: Path) -> None:
    first = run(**TINY, priors=["standard-normal"], seeds=[0], out=str(tmp_path))
    again = run(**TINY, priors=["standard-normal"], seeds=[0], out=str(tmp_path))
    assert (again.ran, again.skipped) == (0, 1)
    assert again.records[0]["key"] == first.records[0]["key"]
    assert again.records[0]["metrics"] == first.records[0]["metrics"]
    forced = run(**TINY, priors=["standard-normal"], seeds=[0], out=str(tmp_path), force=True)
    assert (forced.ran, forced.skipped) == (1, 0)
    assert len(list((tmp_path / "records").glob("*.json"))) == 1
    # Reproducible on the same machine: retraining gives the same numbers.
    assert forced.records[0]["metrics"] == first.records[0]["metrics"]


@pytest.mark.slow
def test_a_different_budget_is_a_different_key(tmp_path: Path) -> None:
    a = run(**TINY, priors=["standard-normal"], seeds=[0], out=str(tmp_path))
    b = run(**TINY, priors=["standard-normal"], seeds=[0], out=str(tmp_path), steps=10)
    assert a.records[0]["key"] != b.records[0]["key"]
    assert len(list((tmp_path / "records").glob("*.json"))) == 2


class ExplodingPrior(StandardNormalPrior):
    """A prior whose log-density turns NaN after a few training steps."""

    def __init__(self, latent: int) -> None:
        super().__init__(latent)
        self.calls = 0

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = super().log_prob(z)
        return out * math.nan if self.calls > 5 else out


@pytest.fixture
def exploding_host(fresh_default_host: None) -> Iterator[plugins.PluginHost]:
    plugin = SimpleNamespace(
        vaebench_register_priors=hookimpl(
            lambda register: register(
                ComponentSpec("exploding", "prior", lambda ctx: ExplodingPrior(ctx.latent_dim))
            )
        ),
        __version__="9.9",
    )
    with plugins.use_host(
        plugins.PluginHost(extra_plugins={"boom": plugin}, entry_points=False)
    ) as host:
        yield host


@pytest.mark.slow
def test_a_failing_combination_is_recorded_and_the_grid_goes_on(
    tmp_path: Path, exploding_host: plugins.PluginHost
) -> None:
    summary = run(**TINY, priors=["exploding", "standard-normal"], seeds=[0], out=str(tmp_path))
    by_prior = {r["combination"]["prior"]: r for r in summary.records}
    assert by_prior["standard-normal"]["status"] == "ok"
    failed = by_prior["exploding"]
    assert failed["status"] == "failed" and failed["metrics"] == {}
    assert failed["error"]["phase"] == "train"
    assert "non-finite training loss" in failed["error"]["message"]
    assert failed["components"]["prior"] == {
        "name": "exploding",
        "plugin": "boom",
        "version": "9.9",
        "options": {},
        "defaults": {},
    }
    # Failed keys run again by default, and are kept with retry_failed=False.
    again = run(**TINY, priors=["exploding", "standard-normal"], seeds=[0], out=str(tmp_path))
    assert (again.ran, again.skipped, again.failed) == (1, 1, 1)
    kept = run(**TINY, priors=["exploding"], seeds=[0], out=str(tmp_path), retry_failed=False)
    assert (kept.ran, kept.skipped) == (0, 1)


def test_bad_requests_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="unknown prior 'vampp'.*closest first: vamp"):
        run(**TINY, priors=["vampp"], out=str(tmp_path))
    with pytest.raises(ConfigError, match="decoder 'mlp-bernoulli' does not fit suite 'digits'"):
        run(**TINY, decoders=["mlp-bernoulli"], out=str(tmp_path))
    with pytest.raises(PluginError, match="unknown suite 'digit'"):
        run(suite="digit", out=str(tmp_path))
    with pytest.raises(ConfigError, match="budget steps must be a positive integer"):
        run(**TINY, steps=0, out=str(tmp_path))
    with pytest.raises(ConfigError, match="has no budget profile 'huge'"):
        run(suite="digits", profile="huge", out=str(tmp_path))
    with pytest.raises(ConfigError, match="has no option"):
        run(**TINY, suite_options={"binarise": True}, out=str(tmp_path))
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        run(**TINY, priors=["standard-normal"], seeds=[0], out=str(a_file))


@pytest.mark.slow
def test_loading_skips_and_reports_bad_records(tmp_path: Path) -> None:
    run(**TINY, priors=["standard-normal"], seeds=[0, 1], out=str(tmp_path))
    files = sorted((tmp_path / "records").glob("*.json"))
    files[0].write_text(files[0].read_text()[:50])
    records, problems = results.load_records([tmp_path])
    assert len(records) == 1 and len(problems) == 1 and problems[0].path == files[0]
    # A truncated record counts as unfinished: the next run computes that key again.
    again = run(**TINY, priors=["standard-normal"], seeds=[0, 1], out=str(tmp_path))
    assert (again.ran, again.skipped) == (1, 1)
    assert results.load_records([tmp_path])[1] == []
