"""The figure data, apart from drawing: curves over seeds, ROC points, KL bars, images, runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from vaebench.images import image_grid_png
from vaebench.metrics.ood import detection_metrics
from vaebench.report import figdata

COMBO = {"encoder": "enc", "decoder": "dec", "prior": "pri"}
LABEL = "enc / dec / pri"


def record(seed=0, status="ok", combination=COMBO, **fields):
    out = {
        "key": f"k{seed}",
        "status": status,
        "seed": seed,
        "combination": dict(combination),
        "suite": {"name": "s", "version": "1", "profile": "tiny"},
        "metrics": {},
        "artifacts": {},
    }
    out.update(fields)
    return out


def curve(steps, train, val, seconds=None):
    seconds = seconds or [0.1 * s for s in steps]
    points = zip(steps, train, val, seconds, strict=True)
    return {
        "curve": [
            {"step": s, "train_loss": t, "val_neg_elbo": v, "seconds": w} for s, t, v, w in points
        ]
    }


def test_curves_average_seeds_on_the_union_of_their_steps():
    first = record(0, training=curve([10, 30], [5.0, 3.0], [6.0, 4.0], [1.0, 3.0]))
    # Stored out of order, and it stopped early at step 20.
    second = record(1, training=curve([20, 10], [2.0, 4.0], [3.0, 5.0], [2.0, 1.0]))
    (summary,), missing = figdata.learning_curves([second, first])
    assert missing == [] and summary.label == LABEL and summary.seeds == [0, 1]
    assert summary.steps.tolist() == [10, 20, 30]
    assert summary.n.tolist() == [2, 2, 1]
    # Seed 0 at step 20 is interpolated (4.0); seed 1 is not extrapolated past step 20.
    assert summary.train_mean.tolist() == [4.5, 3.0, 3.0]
    assert summary.train_lo.tolist() == [4.0, 2.0, 3.0]
    assert summary.train_hi.tolist() == [5.0, 4.0, 3.0]
    assert summary.val_mean.tolist() == [5.5, 4.0, 4.0]
    assert summary.seconds.tolist() == [1.0, 2.0, 3.0]


def test_on_grid_leaves_steps_outside_a_seed_empty():
    out = figdata.on_grid(np.array([10.0, 20.0]), np.array([1.0, 3.0]), np.array([5, 15, 20, 25]))
    assert math.isnan(out[0]) and out[1] == 2.0 and out[2] == 3.0 and math.isnan(out[3])


def test_curves_say_what_is_missing():
    failed = record(
        0,
        status="failed",
        combination={**COMBO, "prior": "bad"},
        error={"type": "TrainingError", "message": "loss is NaN", "phase": "train"},
    )
    bare = record(0, combination={**COMBO, "prior": "bare"}, training={"steps_done": 3})
    summaries, missing = figdata.learning_curves([failed, bare])
    assert summaries == []
    text = {m.label: m.reason for m in missing}
    assert (
        text["enc / dec / bad"] == "every seed failed in phase train (TrainingError: loss is NaN)"
    )
    assert text["enc / dec / bare"] == "the records keep no curve"


def test_roc_points_match_sklearn_and_the_ood_metric():
    rng = np.random.default_rng(0)
    test, ood = rng.normal(0, 1, 300), rng.normal(-1, 1, 200)  # OOD: lower log-likelihood
    points = figdata.roc_points(test, ood, seed=3)
    labels = np.r_[np.zeros(300), np.ones(200)]
    fpr, tpr, thresholds = roc_curve(labels, -np.r_[test, ood], drop_intermediate=False)
    assert np.array_equal(points.fpr, fpr) and np.array_equal(points.tpr, tpr)
    assert np.array_equal(points.thresholds, thresholds)
    assert points.auroc == pytest.approx(roc_auc_score(labels, -np.r_[test, ood]))
    assert points.auroc == pytest.approx(detection_metrics(-test, -ood)["auroc"])
    assert points.auroc > 0.7 and points.seed == 3


def test_roc_orientation_and_vertical_average():
    perfect = figdata.roc_points(np.array([5.0, 6.0]), np.array([1.0, 2.0]))
    assert perfect.auroc == 1.0
    assert np.allclose(figdata.vertical_average([perfect]), 1.0)
    inverted = figdata.roc_points(np.array([1.0, 2.0]), np.array([5.0, 6.0]))
    assert inverted.auroc == 0.0
    tied = figdata.roc_points(np.zeros(4), np.zeros(4))  # every score tied: the diagonal
    assert tied.auroc == 0.5
    grid = np.linspace(0, 1, 11)
    assert np.allclose(figdata.vertical_average([tied], grid), grid)
    assert np.allclose(figdata.vertical_average([perfect, tied], grid), (1 + grid) / 2)


def write_scores(root, stem, arrays):
    folder = root / "artifacts" / stem
    folder.mkdir(parents=True)
    np.savez(folder / "scores.npz", **arrays)
    return f"artifacts/{stem}/scores.npz"


def test_roc_curves_come_from_each_records_scores(tmp_path):
    (tmp_path / "records").mkdir()
    rng = np.random.default_rng(1)
    records = []
    for seed in (0, 1):
        arrays = {
            "test/iw_ll": rng.normal(0, 1, 50),
            "noise/iw_ll": rng.normal(-2, 1, 40),
            "test/elbo": rng.normal(0, 1, 50),
            "noise/elbo": rng.normal(-2, 1, 40),
        }
        path = write_scores(tmp_path, f"r{seed}", arrays)
        auroc = roc_auc_score(
            np.r_[np.zeros(50), np.ones(40)], -np.r_[arrays["test/iw_ll"], arrays["noise/iw_ll"]]
        )
        metrics = {"ood/iw_ll/noise/auroc": {"value": auroc if seed == 0 else 0.123}}
        records.append(
            record(
                seed,
                artifacts={"scores": path},
                metrics=metrics,
                _path=str(tmp_path / "records" / f"r{seed}.json"),
            )
        )
        records[-1]["arrays"] = arrays
    curves, missing = figdata.roc_curves(records)
    assert missing == []
    assert sorted(curves) == [("noise", "elbo"), ("noise", "iw_ll")]
    (iw,) = curves[("noise", "iw_ll")]
    assert iw.label == LABEL and [p.seed for p in iw.seeds] == [0, 1]
    for point, rec in zip(iw.seeds, records, strict=True):
        expected = figdata.roc_points(rec["arrays"]["test/iw_ll"], rec["arrays"]["noise/iw_ll"])
        assert np.array_equal(point.fpr, expected.fpr) and point.auroc == expected.auroc
    assert iw.auroc_mean == pytest.approx(np.mean([p.auroc for p in iw.seeds]))
    assert iw.auroc_std == pytest.approx(np.std([p.auroc for p in iw.seeds], ddof=1))
    # Seed 0's recorded AUROC agrees with its scores; seed 1's (0.123) does not.
    assert [p.seed for p in iw.disagreements] == [1]
    assert np.allclose(iw.tpr, figdata.vertical_average(iw.seeds, iw.fpr))


def test_roc_curves_say_what_is_missing(tmp_path):
    only_test = write_scores(tmp_path, "t", {"test/iw_ll": np.zeros(3)})
    path = str(tmp_path / "records" / "x.json")
    no_sets = record(
        0, combination={**COMBO, "prior": "a"}, artifacts={"scores": only_test}, _path=path
    )
    gone = record(
        0,
        combination={**COMBO, "prior": "b"},
        artifacts={"scores": "artifacts/gone/scores.npz"},
        _path=path,
    )
    none = record(0, combination={**COMBO, "prior": "c"}, _path=path)
    curves, missing = figdata.roc_curves([no_sets, gone, none])
    assert curves == {}
    text = {m.label: m.reason for m in missing}
    assert text["enc / dec / a"] == "the scores hold no OOD set (the suite has none?)"
    assert text["enc / dec / b"] == "scores file artifacts/gone/scores.npz not found"
    assert text["enc / dec / c"] == "no per-example scores"
    both = write_scores(tmp_path, "d", {"test/iw_ll": np.zeros(3), "noise/iw_ll": -np.ones(3)})
    seeds = [record(0, artifacts={"scores": both}, _path=path), record(1, _path=path)]
    curves, missing = figdata.roc_curves(seeds)
    assert [p.seed for p in curves[("noise", "iw_ll")][0].seeds] == [0]
    assert [m.reason for m in missing] == ["curves leave out seed 1: no per-example scores"]


def collapse(kl, activity, active, threshold=0.01):
    return {
        "collapse/kl": {"value": float(np.sum(kl or [0])), "extra": {"per_dim": kl}},
        "collapse/active_units": {
            "value": active,
            "extra": {"per_dim": activity, "threshold": threshold, "of": len(activity)},
        },
    }


def test_kl_bars_rank_dimensions_within_each_seed():
    first = record(0, metrics=collapse([0.1, 2.0, 0.5], [0.001, 1.0, 0.2], 2))
    second = record(1, metrics=collapse([1.0, 0.2, 3.0], [0.3, 0.0, 2.0], 2))
    (bars,), missing = figdata.kl_bars([first, second])
    assert missing == [] and bars.seeds == [0, 1] and bars.active == [2, 2]
    mean, lo, hi = bars.kl
    assert np.allclose(mean, [2.5, 0.75, 0.15])
    assert np.allclose(lo, [2.0, 0.5, 0.1]) and np.allclose(hi, [3.0, 1.0, 0.2])
    # Activities follow the same per-seed order as the KL.
    assert np.allclose(bars.activity[0], [(1.0 + 2.0) / 2, (0.2 + 0.3) / 2, (0.001 + 0.0) / 2])
    assert bars.of == 3 and bars.threshold == 0.01


def test_kl_bars_without_per_dimension_kl_keep_activities_and_say_why():
    metrics = collapse(None, [0.5, 0.0], 1)
    metrics["collapse/kl"]["extra"]["note"] = "the prior has no marginals()"
    (bars,), missing = figdata.kl_bars([record(0, metrics=metrics)])
    assert bars.kl is None and np.allclose(bars.activity[0], [0.5, 0.0])
    assert "the prior has no marginals()" in missing[0].reason
    bars, missing = figdata.kl_bars([record(0)])
    assert bars == [] and "--metrics ... collapse" in missing[0].reason


def test_image_grids_pick_the_first_seed_with_grids(tmp_path):
    folder = tmp_path / "artifacts" / "a"
    folder.mkdir(parents=True)
    (folder / "samples.png").write_bytes(image_grid_png(np.zeros((1, 2, 2)), ncol=1))
    (folder / "bad.png").write_bytes(b"<html>")
    path = str(tmp_path / "records" / "a.json")
    without = record(0, _path=path)
    with_grids = record(
        1,
        artifacts={"samples": "artifacts/a/samples.png", "recon": "artifacts/a/recon.png"},
        _path=path,
    )
    (grid,), missing = figdata.image_grids([with_grids, without])
    assert grid.seed == 1 and grid.samples == (folder / "samples.png").resolve()
    assert grid.recon is None
    assert [m.reason for m in missing] == [
        "seed 1: artifacts/a/recon.png not found",
        "no reconstructions grid for seed 1",
    ]
    grids, missing = figdata.image_grids([without])
    assert grids == [] and "no sample or reconstruction grid" in missing[0].reason
    damaged = record(0, artifacts={"samples": "artifacts/a/bad.png"}, _path=path)
    grids, missing = figdata.image_grids([damaged])
    assert grids == [] and [m.reason for m in missing] == [
        "seed 0: artifacts/a/bad.png is not a PNG"
    ]


def test_damaged_curves_and_scores_are_reported_not_raised(tmp_path):
    bad_curve = record(0, training={"curve": [{"step": 1, "train_loss": "x"}]})
    assert figdata.seed_curve(bad_curve) is None
    assert math.isnan(
        figdata.seed_curve(record(0, training={"curve": [{"step": 1}]}))["seconds"][0]
    )
    folder = tmp_path / "artifacts" / "a"
    folder.mkdir(parents=True)
    (folder / "scores.npz").write_bytes(b"PK\x03\x04 not really a zip")
    damaged = record(
        0,
        artifacts={"scores": "artifacts/a/scores.npz"},
        _path=str(tmp_path / "records" / "a.json"),
    )
    curves, missing = figdata.roc_curves([damaged])
    assert curves == {} and missing[0].reason.startswith("unreadable scores file scores.npz")


def test_run_statuses_and_provenance():
    ok = record(
        0,
        training={"steps_done": 20, "seconds": 1.25, "stopped_early": True},
        environment={
            "torch": "2.9",
            "cpus": 2,
            "threads": 2,
            "device": "cpu",
            "device_name": "EPYC",
        },
        budget={"steps": 20},
        wall_seconds=2.0,
    )
    bad = record(
        1,
        status="failed",
        error={"type": "E", "message": "m", "phase": "build"},
        environment={"torch": "2.10"},
        budget={"steps": 20},
        wall_seconds=0.5,
    )
    statuses = figdata.run_statuses([bad, ok])
    assert [(s.seed, s.status) for s in statuses] == [(0, "ok"), (1, "failed")]
    assert statuses[0].detail == "20 steps, 1.2 s training, stopped early"
    assert statuses[1].detail == "in phase build (E: m)"
    rows = dict(figdata.provenance([ok, bad]))
    assert rows["torch"] == "2.9; 2.10"
    assert rows["budget"] == "steps=20"
    assert rows["runs"] == "2 (1 ok, 1 failed)"
    assert rows["suite options"] == "not recorded"
    assert rows["device"] == "cpu (EPYC)"
    assert rows["git"] == "not recorded"
    assert json.loads(json.dumps(rows))  # plain strings throughout
