"""Seeds trained together (vaebench.batched) against the same seeds trained alone."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tests.small_runs import tiny_digits
from vaebench import plugins, results
from vaebench.api import run
from vaebench.batched import NotVectorizable, fit_batched
from vaebench.components.mlp import GaussianMLPEncoder
from vaebench.components.priors import StandardNormalPrior
from vaebench.contracts import Budget, ComponentSpec, EvalSettings
from vaebench.environment import segment
from vaebench.errors import TrainingError
from vaebench.evaluate import evaluate
from vaebench.hookspecs import hookimpl
from vaebench.pipeline import build_model, load_suite_data
from vaebench.train import TrainResult, fit

COMBO = {"encoder": "mlp-gaussian", "decoder": "mlp-categorical"}
SMALL = tiny_digits()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return load_suite_data(plugins.default_host().get("suite", "digits"), {"limit": 200})


def build(host, prior, seed, data, encoder="mlp-gaussian"):  # type: ignore[no-untyped-def]
    """A small model (latent 4, hidden 32) built under ``seed``, as the pipeline does."""
    torch.manual_seed(seed)
    combination = {**COMBO, "encoder": encoder, "prior": prior}
    return build_model(host, combination, {}, data.spec, 4, 32)


def assert_same_training(alone: TrainResult, batched: TrainResult) -> None:
    assert (alone.steps_done, alone.best_step, alone.stopped_early) == (
        batched.steps_done,
        batched.best_step,
        batched.stopped_early,
    )
    assert math.isclose(alone.best_val, batched.best_val, rel_tol=1e-5)
    assert [p["step"] for p in alone.curve] == [p["step"] for p in batched.curve]
    for a, b in zip(alone.curve, batched.curve, strict=True):
        assert math.isclose(a["val_neg_elbo"], b["val_neg_elbo"], rel_tol=1e-5)
        assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["standard-normal", "mog", "vamp"])
def test_each_batched_seed_equals_the_seed_alone(prior: str, data) -> None:  # type: ignore[no-untyped-def]
    host = plugins.default_host()
    # A high learning rate and patience 1 make some seeds stop early and others not.
    budget = Budget(steps=40, batch_size=50, lr=0.01, eval_every=4, patience=1)
    seeds = [0, 1, 2]
    alone = []
    for seed in seeds:
        model = build(host, prior, seed, data)
        alone.append((model, fit(model, data, budget, seed)))
    together = [build(host, prior, seed, data) for seed in seeds]
    results_ = fit_batched(together, data, budget, seeds)
    assert any(r.stopped_early for _, r in alone), "want seeds that stop early"
    if prior == "standard-normal":  # and here, seeds that stop at different steps
        assert len({r.steps_done for _, r in alone}) > 1
    settings = EvalSettings(k=10, k_ood=2)
    metric = [host.get("metric", "likelihood")]
    for (model, result), model_b, result_b in zip(alone, together, results_, strict=True):
        assert isinstance(result_b, TrainResult)
        assert_same_training(result, result_b)
        for p, q in zip(model.parameters(), model_b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
        a, _ = evaluate(model, data, settings, metric, torch.device("cpu"), 4)
        b, _ = evaluate(model_b, data, settings, metric, torch.device("cpu"), 4)
        for name in ("iw_nll", "neg_elbo", "kl"):
            assert math.isclose(a[name].value, b[name].value, rel_tol=1e-5), name


class DriftingPrior(StandardNormalPrior):
    """Turns NaN once its weight, pushed down or up by a per-seed sign, goes negative."""

    def __init__(self, latent: int) -> None:
        super().__init__(latent)
        self.weight = nn.Parameter(torch.tensor(0.004))
        self.register_buffer("sign", torch.randn(()).sign())

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return super().log_prob(z) + 100 * self.sign * self.weight + 0 * self.weight.log()


class NoisyEncoder(GaussianMLPEncoder):
    """Draws dropout noise in training: random numbers vmap refuses."""

    def forward(self, x: torch.Tensor):  # type: ignore[no-untyped-def]
        return super().forward(nn.functional.dropout(x, 0.1, self.training))


def plugin_host(fresh: None) -> plugins.PluginHost:
    def encoders(register):  # type: ignore[no-untyped-def]
        register(
            ComponentSpec(
                "noisy",
                "encoder",
                lambda c: NoisyEncoder(c.data.dim, c.data.levels, c.hidden_dim, c.latent_dim),
            )
        )

    def priors(register):  # type: ignore[no-untyped-def]
        register(ComponentSpec("drifting", "prior", lambda c: DriftingPrior(c.latent_dim)))
        register(
            ComponentSpec(
                "opaque",
                "prior",
                lambda c: StandardNormalPrior(c.latent_dim),
                vectorizable=False,
            )
        )

    plugin = SimpleNamespace(
        vaebench_register_encoders=hookimpl(encoders),
        vaebench_register_priors=hookimpl(priors),
        __version__="1",
    )
    return plugins.PluginHost(extra_plugins={"test": plugin}, entry_points=False)


@pytest.fixture
def test_host(fresh_default_host: None) -> Iterator[plugins.PluginHost]:
    with plugins.use_host(plugin_host(fresh_default_host)) as host:
        yield host


def test_a_seed_that_diverges_fails_alone_and_the_others_go_on(test_host, data) -> None:  # type: ignore[no-untyped-def]
    signs = {s: float(build(test_host, "drifting", s, data).prior.sign) for s in range(12)}
    seeds = [next(s for s, v in signs.items() if v < 0), next(s for s, v in signs.items() if v > 0)]
    budget = Budget(steps=12, batch_size=50, lr=1e-3, eval_every=4, patience=None)
    models = [build(test_host, "drifting", s, data) for s in seeds]
    bad, good = fit_batched(models, data, budget, seeds)
    with pytest.raises(TrainingError, match="non-finite training loss") as alone:
        fit(build(test_host, "drifting", seeds[0], data), data, budget, seeds[0])
    assert isinstance(bad, TrainingError) and str(bad) == str(alone.value)
    model = build(test_host, "drifting", seeds[1], data)
    assert_same_training(fit(model, data, budget, seeds[1]), good)


def test_components_vmap_cannot_run_fall_back_to_one_seed_at_a_time(
    tmp_path: Path, test_host, data
) -> None:  # type: ignore[no-untyped-def]
    budget = Budget(steps=4, batch_size=50, eval_every=2)
    models = [build(test_host, "standard-normal", s, data, encoder="noisy") for s in (0, 1)]
    with pytest.raises(NotVectorizable, match="random"):
        fit_batched(models, data, budget, [0, 1])
    for encoder, prior, why in (
        ("noisy", "standard-normal", "random operation"),
        ("mlp-gaussian", "opaque", "prior 'opaque' is marked not vectorizable"),
    ):
        summary = run(
            **{**SMALL, "encoders": [encoder]},
            priors=[prior],
            seeds=[0, 1],
            out=str(tmp_path / prior),
        )
        assert summary.failed == 0 and len(summary.records) == 2
        for record in summary.records:
            training = record["training"]
            assert training["vectorized"] is False and training["seed_batch"] == 1
            assert why in training["vectorize_reason"]


class Killed(Exception):
    """A run "killed" just after writing its first checkpoint."""


def write_then_die(target: Path, payload: bytes) -> None:
    """Write a checkpoint as the runner does, then stop the run as a kill would."""
    results.atomic_write_bytes(target, payload)
    raise Killed


def without_seconds(curve: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in point.items() if k != "seconds"} for point in curve]


def test_a_killed_batched_run_resumes_from_its_checkpoint(tmp_path: Path, data) -> None:  # type: ignore[no-untyped-def]
    host = plugins.default_host()
    budget = Budget(steps=24, batch_size=50, eval_every=4, patience=None, checkpoint_every=8)
    seeds = [3, 4]
    path = tmp_path / "batch.pt"

    whole = fit_batched([build(host, "vamp", s, data) for s in seeds], data, budget, seeds)
    with pytest.raises(Killed):
        models = [build(host, "vamp", s, data) for s in seeds]
        fit_batched(models, data, budget, seeds, checkpoint=path, write_bytes=write_then_die)
    models = [build(host, "vamp", s, data) for s in seeds]
    resumed = fit_batched(
        models, data, budget, seeds, checkpoint=path, write_bytes=results.atomic_write_bytes
    )
    for a, b in zip(whole, resumed, strict=True):
        assert isinstance(a, TrainResult) and isinstance(b, TrainResult)
        assert b.resumed_from == 8
        assert without_seconds(a.curve) == without_seconds(b.curve)
    # A sequential run of one of these seeds ignores the batch's checkpoint.
    single = fit(build(host, "vamp", 3, data), data, budget, 3, checkpoint=path)
    assert single.resumed_from is None


def test_seeds_batched_or_not_share_keys_and_resume_per_seed(tmp_path: Path) -> None:
    batched = run(**SMALL, priors=["standard-normal"], seeds=[0, 1, 2], out=str(tmp_path / "a"))
    assert [len(u.seeds) for u in batched.units] == [3]
    assert all(
        r["training"]["vectorized"] and r["training"]["seed_batch"] == 3 for r in batched.records
    )
    alone = run(
        **SMALL, priors=["standard-normal"], seeds=[0, 1, 2], seed_batch=1, out=str(tmp_path / "b")
    )
    assert [len(u.seeds) for u in alone.units] == [1, 1, 1]
    for a, b in zip(batched.records, alone.records, strict=True):
        assert a["key"] == b["key"] and a["stem"] == b["stem"]
        for name in ("iw_nll", "neg_elbo"):
            assert math.isclose(
                a["metrics"][name]["value"], b["metrics"][name]["value"], rel_tol=1e-5
            )
    # Lose one seed's record: the next run trains that seed only.
    (tmp_path / "a" / "records" / f"{batched.records[1]['stem']}.json").unlink()
    again = run(**SMALL, priors=["standard-normal"], seeds=[0, 1, 2], out=str(tmp_path / "a"))
    assert (again.ran, again.skipped) == (1, 2)
    assert again.records[1]["training"]["seed_batch"] == 1
    assert math.isclose(
        again.records[1]["metrics"]["iw_nll"]["value"],
        batched.records[1]["metrics"]["iw_nll"]["value"],
        rel_tol=1e-5,
    )


def test_seed_batch_is_checked() -> None:
    from vaebench.errors import ConfigError
    from vaebench.runner import resolve_seed_batch

    assert resolve_seed_batch("auto", "cpu", 3) == 3
    assert resolve_seed_batch("auto", "cpu", 3, parallel=True) == 1
    assert resolve_seed_batch(2, "cpu", 5) == 2
    with pytest.raises(ConfigError, match="seed batch must be a positive whole number or 'auto'"):
        resolve_seed_batch(0, "cpu", 2)


def _one_change_at_a_time() -> list[dict[str, str]]:
    """Every built-in component that fits digits, each in the reference combination."""
    host = plugins.PluginHost(entry_points=False).load()
    spec = load_suite_data(host.get("suite", "digits"), {"limit": 200}).spec
    reference = {
        "encoder": "mlp-gaussian",
        "decoder": "mlp-categorical",
        "prior": "standard-normal",
    }
    out = [reference]
    for kind in reference:
        for entry in host.registry(kind):
            if entry.obj.fits(spec) and entry.obj.name != reference[kind]:
                out.append({**reference, kind: entry.obj.name})
    return out


@pytest.mark.parametrize("combination", _one_change_at_a_time(), ids=lambda c: "-".join(c.values()))
def test_every_component_vectorizes_exactly_or_says_why_not(combination, host, data) -> None:  # type: ignore[no-untyped-def]
    budget = Budget(steps=8, batch_size=50, lr=3e-3, eval_every=4, patience=None)
    options = {"encoder": {"hidden": 32}, "decoder": {"hidden": 32}}

    def model(seed: int):  # type: ignore[no-untyped-def]
        torch.manual_seed(seed)
        return build_model(host, combination, options, data.spec, 4, 32)

    try:
        together = fit_batched([model(0), model(1)], data, budget, [0, 1])
    except NotVectorizable as exc:
        assert str(exc)  # the reason the record will carry
        return
    for seed, result in zip((0, 1), together, strict=True):
        assert isinstance(result, TrainResult)
        assert_same_training(fit(model(seed), data, budget, seed), result)


@pytest.mark.parametrize("seeds", [[3], [3, 4]], ids=["single", "batched"])
def test_a_checkpoint_written_on_another_kind_of_device_resumes_with_fresh_device_streams(
    tmp_path: Path, data, seeds: list[int]
) -> None:  # type: ignore[no-untyped-def]
    """A CUDA generator's state does not fit a CPU generator (nor the reverse): a run that moves
    between kinds of device at a resume continues its data order exactly, restarts its noise and
    binarization streams from (seed, "moved at step N"), and says where it trained."""
    host = plugins.default_host()
    budget = Budget(steps=24, batch_size=50, eval_every=4, patience=None, checkpoint_every=8)
    path = tmp_path / "run.pt"

    def train(**kwargs):  # type: ignore[no-untyped-def]
        models = [build(host, "vamp", s, data) for s in seeds]
        if len(seeds) == 1:
            return [fit(models[0], data, budget, seeds[0], **kwargs)]
        return fit_batched(models, data, budget, seeds, **kwargs)

    whole = train()
    with pytest.raises(Killed):
        train(checkpoint=path, write_bytes=write_then_die)
    saved = torch.load(path, weights_only=True)
    here = segment("cpu")
    assert saved["segments"] == [{"step": 0, **here}]
    # As if written on a GPU: its history says so and its device generators hold Philox states
    # (16 bytes), which a CPU generator would refuse.
    saved["segments"] = [{"step": 0, **here, "device": "cuda", "device_name": "NVIDIA H200"}]
    noise = saved["width"]["noise"]
    if "generators" in noise:
        noise["generators"] = [torch.zeros(16, dtype=torch.uint8) for _ in seeds]
    else:
        noise["generator"] = torch.zeros(16, dtype=torch.uint8)
    saved["transform_rngs"] = [torch.zeros(16, dtype=torch.uint8) for _ in seeds]
    moved = [tmp_path / "a.pt", tmp_path / "b.pt"]
    for target in moved:
        torch.save(saved, target)
    first, second = (train(checkpoint=p, write_bytes=results.atomic_write_bytes) for p in moved)
    for a, b, c in zip(whole, first, second, strict=True):
        assert isinstance(a, TrainResult) and isinstance(b, TrainResult)
        assert isinstance(c, TrainResult)
        assert b.resumed_from == 8
        assert [(s["step"], s["device"]) for s in b.segments] == [(0, "cuda"), (8, "cpu")]
        assert b.segments[1] == {"step": 8, **here}
        assert without_seconds(b.curve) == without_seconds(c.curve)  # fresh, not arbitrary
        before = [p for p in without_seconds(b.curve) if p["step"] <= 8]
        assert before == [p for p in without_seconds(a.curve) if p["step"] <= 8]
        after_b = [p["train_loss"] for p in b.curve if p["step"] > 8]
        after_a = [p["train_loss"] for p in a.curve if p["step"] > 8]
        assert after_b != after_a  # other noise from step 8 on
    # Resumed on the kind of device that wrote it, a run continues every stream exactly.
    with pytest.raises(Killed):
        train(checkpoint=path.with_name("same.pt"), write_bytes=write_then_die)
    same = train(checkpoint=path.with_name("same.pt"), write_bytes=results.atomic_write_bytes)
    for a, b in zip(whole, same, strict=True):
        assert isinstance(a, TrainResult) and isinstance(b, TrainResult)
        assert b.segments == [{"step": 0, **here}]  # nothing changed: one segment
        assert without_seconds(a.curve) == without_seconds(b.curve)


def test_a_run_resumed_under_another_version_records_from_which_step(tmp_path: Path, data) -> None:  # type: ignore[no-untyped-def]
    """A checkpoint written by another vaebench (or one written before segments were kept)
    resumes exactly, and the record says from which step the current code trained."""
    host = plugins.default_host()
    budget = Budget(steps=16, batch_size=50, eval_every=4, patience=None, checkpoint_every=8)
    path = tmp_path / "run.pt"

    whole = fit(build(host, "standard-normal", 5, data), data, budget, 5)
    with pytest.raises(Killed):
        fit(build(host, "standard-normal", 5, data), data, budget, 5, checkpoint=path,
            write_bytes=write_then_die)  # fmt: skip
    saved = torch.load(path, weights_only=True)
    for older in ({**saved["segments"][0], "vaebench": "0.0.9"}, None):
        if older is None:
            del saved["segments"]  # a checkpoint from before segments were kept
        else:
            saved["segments"] = [older]
        torch.save(saved, path)
        resumed = fit(build(host, "standard-normal", 5, data), data, budget, 5, checkpoint=path)
        assert without_seconds(resumed.curve) == without_seconds(whole.curve)  # exactly
        assert resumed.segments[-1] == {"step": 8, **segment("cpu")}
        assert resumed.segments[0]["step"] == 0 and len(resumed.segments) == 2
