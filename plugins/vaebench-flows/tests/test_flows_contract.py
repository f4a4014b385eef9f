"""The flows plugin as vaebench sees it: installed through its entry point, listed by
``vaebench plugins``, held to the component contract by vaebench's kit, and run in the mnist
suite's grid."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import vaebench_flows

from vaebench import cli
from vaebench.runner import RunRequest, plan
from vaebench.testing import (
    BINARY_VECTOR_SPEC,
    DIGITS_SPEC,
    ContractSuite,
    every_installed_plugin,
    real_data,
    run_in_grid,
    train_and_evaluate,
)

ENCODERS = ["householder", "iaf", "sylvester"]


class TestFlowsContract(ContractSuite):
    plugin = "vaebench-flows"
    data_specs = (DIGITS_SPEC, BINARY_VECTOR_SPEC)

    @pytest.mark.slow
    def test_densities_are_normalised(self, case) -> None:
        super().test_densities_are_normalised(case)

    @pytest.mark.slow
    def test_tiny_train_and_evaluate(self, case) -> None:
        super().test_tiny_train_and_evaluate(case)


@pytest.fixture
def default_host() -> Iterator[None]:
    with every_installed_plugin():
        yield


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Iterator[Path]:
    """The real MNIST files, linked into a directory the loader may write its cache into."""
    with real_data(tmp_path / "data", near=__file__) as root:
        yield root


def test_listed_with_its_version(default_host: None, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    ours = listed["vaebench-flows"]
    assert ours["distribution"] == "vaebench-flows"
    assert ours["version"] == vaebench_flows.__version__
    assert ours["registered"] == {"encoder": ENCODERS, "prior": ["realnvp"]}


@pytest.mark.slow
def test_runs_in_the_mnist_grid(default_host: None, mnist_dir: Path, tmp_path: Path) -> None:
    options = {"limit": 40, "ood_size": 8}
    request = RunRequest(
        suite="mnist", suite_options=options, data_dir=str(mnist_dir), metrics=["likelihood"]
    )
    everything = plan(request)
    assert set(ENCODERS) <= {u.combination["encoder"] for u in everything}
    assert "realnvp" in {u.combination["prior"] for u in everything}
    summary = run_in_grid(
        tmp_path / "results",
        suite="mnist",
        encoders=ENCODERS,
        decoders=["mlp-bernoulli"],
        priors=["realnvp"],
        suite_options=options,
        data_dir=str(mnist_dir),
        steps=3,
        k=4,
        metrics=["likelihood"],
    )
    assert len(summary.records) == 3
    for record in summary.records:
        assert record["components"]["encoder"]["plugin"] == "vaebench-flows"
        assert record["components"]["prior"]["version"] == vaebench_flows.__version__
        values = {name: m["value"] for name, m in record["metrics"].items()}
        # The record's -ELBO is its two terms' sum (IW-NLL <= -ELBO would hold for any numbers).
        assert values["neg_elbo"] == pytest.approx(values["recon"] + values["kl"])


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["iaf", "sylvester"])
def test_aggregate_posterior_metrics_run_on_flow_posteriors(encoder: str) -> None:
    """collapse/mi and holes/* score every draw against every point: log q by inversion (the
    iterative inverses; a reflection is its own inverse)."""
    result = train_and_evaluate(
        {"encoder": encoder, "decoder": "mlp-categorical", "prior": "realnvp"},
        steps=3,
        k=4,
        metrics=("likelihood", "collapse", "holes"),
    )
    values = {name: v.value for name, v in result.metrics.items()}
    n_test = 16  # tiny_suite_data's test split
    assert -1e-6 <= values["collapse/mi"] <= math.log(n_test)
    assert values["holes/marginal_kl"] == pytest.approx(
        values["collapse/kl"] - values["collapse/mi"]
    )
