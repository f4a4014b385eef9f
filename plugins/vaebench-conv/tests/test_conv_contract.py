"""The conv plugin as vaebench sees it: installed through its entry point, listed by
``vaebench plugins``, held to the component contract by vaebench's kit, and run in the mnist
suite's grid."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import vaebench_conv

from vaebench import cli
from vaebench.runner import RunRequest, plan
from vaebench.testing import (
    BINARY_IMAGE_SPEC,
    DIGITS_SPEC,
    ContractSuite,
    build_harness,
    check_gradients,
    check_shapes,
    check_train_evaluate,
    every_installed_plugin,
    real_data,
    run_in_grid,
)

DECODERS = ["conv-bernoulli", "conv-categorical", "conv-logistic-mixture", "pixelcnn"]


class TestConvContract(ContractSuite):
    """Each component on the first of these it fits: sampling a 28x28 PixelCNN takes 784
    network passes, so its sampling is checked on 8x8 digits and its rest on 28x28 below."""

    plugin = "vaebench-conv"
    data_specs = (DIGITS_SPEC, BINARY_IMAGE_SPEC)

    @pytest.mark.slow
    def test_densities_are_normalised(self, case) -> None:
        super().test_densities_are_normalised(case)

    @pytest.mark.slow  # pixelcnn samples pixel by pixel
    def test_sampling(self, case) -> None:
        super().test_sampling(case)

    @pytest.mark.slow
    def test_tiny_train_and_evaluate(self, case) -> None:
        super().test_tiny_train_and_evaluate(case)


@pytest.mark.slow
def test_pixelcnn_on_28x28_binary_images() -> None:
    for check in (check_shapes, check_gradients, check_train_evaluate):
        check(build_harness("decoder", "pixelcnn", BINARY_IMAGE_SPEC))


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
    ours = listed["vaebench-conv"]
    assert ours["distribution"] == "vaebench-conv"
    assert ours["version"] == vaebench_conv.__version__
    assert ours["registered"] == {"encoder": ["conv-gaussian"], "decoder": DECODERS}


@pytest.mark.slow
def test_runs_in_the_mnist_grid(default_host: None, mnist_dir: Path, tmp_path: Path) -> None:
    options = {"limit": 40, "ood_size": 8}
    request = RunRequest(
        suite="mnist", suite_options=options, data_dir=str(mnist_dir), metrics=["likelihood"]
    )
    everything = plan(request)
    assert "conv-gaussian" in {u.combination["encoder"] for u in everything}
    # Binary MNIST: the Bernoulli conv decoder fits, the categorical one not; the PixelCNN fits
    # but stays out of the default grid (hours of its quarter-hour) and runs when named.
    decoders = {u.combination["decoder"] for u in everything}
    assert "conv-bernoulli" in decoders and "conv-categorical" not in decoders
    assert "pixelcnn" not in decoders
    named = plan(dataclasses.replace(request, decoders=["pixelcnn"]))
    assert {u.combination["decoder"] for u in named} == {"pixelcnn"}
    summary = run_in_grid(
        tmp_path / "results",
        suite="mnist",
        encoders=["conv-gaussian"],
        decoders=["conv-bernoulli", "pixelcnn"],
        priors=["standard-normal"],
        suite_options=options,
        data_dir=str(mnist_dir),
        steps=3,
        k=2,
        metrics=["likelihood"],
    )
    assert len(summary.records) == 2
    for record in summary.records:
        assert record["components"]["decoder"]["plugin"] == "vaebench-conv"
        assert record["components"]["encoder"]["version"] == vaebench_conv.__version__
