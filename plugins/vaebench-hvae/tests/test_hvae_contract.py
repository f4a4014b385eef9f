"""The plugin as vaebench sees it: installed through its entry point, listed by ``vaebench
plugins``, held to the component contracts by vaebench's kit (with built-in partners and with
one another, in both forms), and run through the real runner: the digits grid with seeds
trained together, and the two papers' set-ups on MNIST."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import vaebench_hvae

from vaebench import cli
from vaebench.errors import ContractError
from vaebench.testing import (
    BINARY_IMAGE_SPEC,
    BINARY_VECTOR_SPEC,
    ContractSuite,
    check_component,
    every_installed_plugin,
    offline_data,
    run_in_grid,
    train_and_evaluate,
)

HVAE = {"encoder": "hvae-encoder", "decoder": "hvae-decoder", "prior": "hvae-prior"}
TOMCZAK = {"form": "tomczak", "activation": "gated", "init": "he", "logvar_bounds": [-6, 2]}
METRICS = ["likelihood", "collapse", "holes", "hvae-collapse"]


class TestHvaeContract(ContractSuite):
    plugin = "vaebench-hvae"

    @pytest.mark.slow
    def test_densities_are_normalised(self, case) -> None:
        super().test_densities_are_normalised(case)

    @pytest.mark.slow
    def test_tiny_train_and_evaluate(self, case) -> None:
        super().test_tiny_train_and_evaluate(case)


@pytest.mark.parametrize(
    ("kind", "name", "options", "partners"),
    [
        ("encoder", "hvae-encoder", TOMCZAK, {}),
        ("decoder", "hvae-decoder", {"form": "tomczak"}, {"encoder": "hvae-encoder"}),
        ("prior", "hvae-prior", {"top": "vamp", "pseudo_inputs": 5}, {}),
        ("prior", "hvae-prior", {"top": "vamp", "pseudo_inputs": 5}, {"encoder": "hvae-encoder"}),
        ("encoder", "hvae-encoder", {}, {"prior": "vamp"}),
    ],
    ids=[
        "encoder-tomczak",
        "decoder-tomczak",
        "vamp-top-mlp-encoder",
        "vamp-top-hvae-encoder",
        "builtin-vamp-over-hvae-encoder",
    ],
)
@pytest.mark.slow
def test_contract_of_each_variant(kind: str, name: str, options: dict, partners: dict) -> None:
    check_component(kind, name, BINARY_VECTOR_SPEC, options=options, partners=partners)


@pytest.mark.slow
def test_the_tomczak_model_trains_and_evaluates_with_every_metric() -> None:
    """q(z2|x) q(z1|x, z2), p(x|z1, z2), a VampPrior over the top path of the q(z2|x) network."""
    result = train_and_evaluate(
        HVAE,
        component_options={
            "encoder": TOMCZAK,
            "decoder": {**TOMCZAK, "form": "tomczak"},
            "prior": {**TOMCZAK, "top": "vamp", "pseudo_inputs": 5},
        },
        metrics=METRICS,
    )
    assert {"hvae-collapse/kl_z1", "hvae-collapse/kl_z2"} <= set(result.metrics)
    total = (
        result.metrics["hvae-collapse/kl_z1"].value + result.metrics["hvae-collapse/kl_z2"].value
    )
    assert total == pytest.approx(result.metrics["collapse/kl"].value, rel=0.25, abs=0.05)


@pytest.fixture
def default_host() -> Iterator[None]:
    with every_installed_plugin():
        yield


def test_listed_with_its_version(default_host: None, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    ours = listed["vaebench-hvae"]
    assert ours["distribution"] == "vaebench-hvae"
    assert ours["version"] == vaebench_hvae.__version__
    assert ours["registered"] == {
        "encoder": ["hvae-encoder"],
        "decoder": ["hvae-decoder"],
        "prior": ["hvae-prior"],
        "metric": ["hvae-collapse"],
    }


@pytest.mark.slow
def test_seeds_train_together_in_the_digits_grid(default_host: None, tmp_path: Path) -> None:
    summary = run_in_grid(
        tmp_path / "results",
        encoders=["hvae-encoder"],
        decoders=["hvae-decoder"],
        priors=["hvae-prior"],
        seeds=[0, 1],
        suite_options={"limit": 300},
        metrics=METRICS,
    )
    assert len(summary.records) == 2
    for record in summary.records:
        assert record["components"]["encoder"]["plugin"] == "vaebench-hvae"
        assert record["training"]["vectorized"] is True
        m = record["metrics"]
        layers = m["hvae-collapse/kl_z1"]["value"] + m["hvae-collapse/kl_z2"]["value"]
        assert layers == pytest.approx(m["collapse/kl"]["value"], rel=0.1, abs=0.05)
        units = (
            m["hvae-collapse/active_units_z1"]["value"]
            + m["hvae-collapse/active_units_z2"]["value"]
        )
        assert units == m["collapse/active_units"]["value"]
        assert m["hvae-collapse/active_units_z2"]["extra"]["of"] == 8  # 16 = 8 + 8


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Iterator[Path]:
    """The shared MNIST files, linked into a directory the loader may write its cache into."""
    shared = Path(os.environ.get("VAEBENCH_TEST_DATA") or Path(__file__).parents[4] / "shared/data")
    with offline_data(shared, tmp_path / "data") as root:
        yield root


@pytest.mark.parametrize(
    ("preset", "latent", "z1"), [("burda2015", 150, 100), ("tomczak2018", 80, 40)]
)
@pytest.mark.slow
def test_the_papers_set_ups_run_on_mnist(
    default_host: None, mnist_dir: Path, tmp_path: Path, preset: str, latent: int, z1: int
) -> None:
    """The README's commands for the two set-ups, on 40 MNIST images and 3 steps."""
    summary = run_in_grid(
        tmp_path / "results",
        suite="mnist",
        **{f"{kind}s": [name] for kind, name in HVAE.items()},
        component_options={kind: {"preset": preset} for kind in HVAE},
        latent_dim=latent,
        suite_options={"limit": 40, "ood_size": 8},
        data_dir=str(mnist_dir),
        steps=3,
        k=4,
        metrics=["likelihood", "hvae-collapse"],
    )
    (record,) = summary.records
    assert record["components"]["prior"]["options"]["preset"] == preset
    assert record["metrics"]["hvae-collapse/active_units_z1"]["extra"]["of"] == z1


def test_a_split_mismatch_fails_the_combination_with_its_fix(
    default_host: None, tmp_path: Path
) -> None:
    with pytest.raises(ContractError, match="leave this component's z1/z2 unset"):
        run_in_grid(
            tmp_path / "results",
            **{f"{kind}s": [name] for kind, name in HVAE.items()},
            component_options={"decoder": {"z2": 4}},
        )


@pytest.mark.slow
def test_binary_images_take_bernoulli_pixels() -> None:
    check_component("decoder", "hvae-decoder", BINARY_IMAGE_SPEC)
