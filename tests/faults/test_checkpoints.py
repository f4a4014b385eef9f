"""A checkpoint that cannot be read is set aside with one warning and its unit starts from
scratch, instead of failing that unit at every rerun."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest
import torch

from vaebench.checkpoints import CheckpointWarning, read_checkpoint


def payload(kind: str = "single") -> dict:
    """What a training checkpoint holds: model and optimizer states, RNG states, counters."""
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 8)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 16)).sum().backward()
    optimizer.step()
    return {
        "kind": kind,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "step": 40,
        "best_val": 123.5,
        "curve": [{"step": 20.0, "val": 130.0}],
    }


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "unit.ckpt"
    torch.save(payload(), path)
    return path


def aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


def test_a_good_checkpoint_is_read(saved: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        state = read_checkpoint(saved, "single", required=("model", "optimizer", "step"))
    assert state is not None and state["step"] == 40
    torch.testing.assert_close(state["model"]["weight"], payload()["model"]["weight"])
    assert read_checkpoint(saved.with_name("absent.ckpt"), "single") is None
    assert read_checkpoint(None, "single") is None


@pytest.mark.parametrize("keep", [0, 1, 100, 0.5, -10])
def test_a_truncated_checkpoint_is_set_aside_with_one_warning(saved: Path, keep: float) -> None:
    data = saved.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    saved.write_bytes(data[:cut])
    with pytest.warns(CheckpointWarning) as caught:
        assert read_checkpoint(saved, "single") is None
    [warning] = caught.list
    message = str(warning.message)
    assert "\n" not in message and str(saved) in message and "training from scratch" in message
    [moved] = aside(saved)
    assert not saved.exists() and str(moved) in message
    assert moved.read_bytes() == data[:cut]  # kept as it was, for inspection
    # The next run finds no checkpoint, so the unit trains from scratch, and no second warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        assert read_checkpoint(saved, "single") is None


# torch notes the protocol of a pickle it did not write; the refusal is what is tested.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_would_run_code_is_refused_and_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "unit.ckpt"
    path.write_bytes(pickle.dumps(Path("/etc")))  # not a plain-data payload
    with pytest.warns(CheckpointWarning, match="cannot be loaded .*UnpicklingError"):
        assert read_checkpoint(path, "single") is None
    assert len(aside(path)) == 1


def test_a_payload_of_the_wrong_structure_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "unit.ckpt"
    torch.save([1, 2, 3], path)
    with pytest.warns(CheckpointWarning, match="holds a list, not a checkpoint payload"):
        assert read_checkpoint(path, "single") is None
    torch.save({k: v for k, v in payload().items() if k != "optimizer"}, path)
    with pytest.warns(CheckpointWarning, match="single payload lacks optimizer"):
        assert read_checkpoint(path, "single", required=("model", "optimizer")) is None
    assert len(aside(path)) == 2  # two files set aside, neither over the other


def test_a_checkpoint_of_another_kind_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "unit.ckpt"
    torch.save(payload("batched"), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        assert read_checkpoint(path, "single") is None
    assert path.exists() and aside(path) == []
    assert read_checkpoint(path, "batched")["step"] == 40  # type: ignore[index]
