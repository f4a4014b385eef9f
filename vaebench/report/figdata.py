"""The numbers behind every report figure, taken from records alone (no drawing here).

* learning curves: each seed's curve put on the union of the seeds' evaluation steps by linear
  interpolation (never extrapolated past a seed's last step), then the mean and the min-max
  band over the seeds present at each step;
* ROC curves: per seed from the per-example scores (OOD set = positive class), AUROC per seed,
  and the seeds' curves averaged vertically (true-positive rate at fixed false-positive rates,
  Fawcett 2006, section 7.1);
* KL and activity per latent dimension, ranked per seed by KL (latent dimensions of different
  seeds are not the same unit, so bars average ranks, not indices);
* image grids, provenance and the status of every run.

Anything a figure needs but a record lacks becomes a :class:`Missing` line for the report.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaebench.results import RecordError, artifact_file
from vaebench.tables import record_label

TEST_SPLIT = "test"
ROC_GRID = np.linspace(0.0, 1.0, 201)


@dataclass(frozen=True)
class Missing:
    """A figure part the records cannot give, and why."""

    part: str
    label: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.label}: " if self.label else ""
        return f"{where}{self.reason}"


def label_of(record: Mapping[str, Any]) -> str:
    return record_label(record)


def by_combination(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records per combination label (sorted), each list ordered by seed."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(label_of(record), []).append(record)
    return {k: sorted(groups[k], key=lambda r: int(r["seed"])) for k in sorted(groups)}


def _error_text(error: Any) -> str:
    """``in phase P (Type: message)`` of a failed record's error, as much as it says."""
    if not isinstance(error, Mapping) or not error:
        return ""
    phase = f"in phase {error['phase']} " if error.get("phase") else ""
    return f"{phase}({error.get('type') or 'error'}: {error.get('message', '')})"


def _failure(runs: Sequence[Mapping[str, Any]]) -> str:
    error = next((r.get("error") for r in runs if r.get("error")), None)
    return f"every seed failed {_error_text(error)}".rstrip()


def _ok(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in runs if r.get("status") == "ok"]


def artifact_path(record: Mapping[str, Any], name: str) -> Path | None:
    """The file of artifact ``name`` of a record, if the record names one; ValueError when it
    is missing or outside the results directory (:func:`vaebench.results.artifact_file`)."""
    try:
        return artifact_file(record, name)
    except RecordError as exc:
        raise ValueError(str(exc)) from exc


# ---------------------------------------------------------------- learning curves


@dataclass
class CurveSummary:
    """One combination's learning curves over seeds on a common step grid.

    ``*_mean`` average the seeds that reached a step (``n`` of them); ``*_lo``/``*_hi`` are their
    minimum and maximum. ``seconds`` is the mean wall time at each step.
    """

    label: str
    seeds: list[int]
    steps: np.ndarray
    n: np.ndarray
    seconds: np.ndarray
    train_mean: np.ndarray
    train_lo: np.ndarray
    train_hi: np.ndarray
    val_mean: np.ndarray
    val_lo: np.ndarray
    val_hi: np.ndarray


CURVE_FIELDS = ("train_loss", "val_neg_elbo", "seconds")


def seed_curve(record: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """A record's curve as arrays ``step``, ``train_loss``, ``val_neg_elbo``, ``seconds``
    (sorted by step), or None if the record keeps none."""
    points = (record.get("training") or {}).get("curve") or []
    points = [p for p in points if isinstance(p, Mapping) and "step" in p]
    if not points:
        return None
    try:
        points = sorted(points, key=lambda p: float(p["step"]))
        out = {"step": np.array([float(p["step"]) for p in points])}
        for name in CURVE_FIELDS:
            out[name] = np.array([_number(p.get(name)) for p in points])
    except (TypeError, ValueError):
        return None  # a curve edited into nonsense is reported as absent
    return out


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def on_grid(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``values`` at ``steps`` interpolated linearly onto ``grid``; NaN outside the seed's steps."""
    keep = np.isfinite(values)
    steps, values = steps[keep], values[keep]
    out = np.full(grid.shape, math.nan)
    if len(steps) == 0:
        return out
    inside = (grid >= steps[0]) & (grid <= steps[-1])
    out[inside] = np.interp(grid[inside], steps, values)
    return out


def _spread(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Columns where no seed reached the step stay NaN, without a warning per column.
    with np.errstate(all="ignore"):
        present = np.isfinite(stack).any(axis=0)
        mean = np.full(stack.shape[1], math.nan)
        lo, hi = mean.copy(), mean.copy()
        mean[present] = np.nanmean(stack[:, present], axis=0)
        lo[present] = np.nanmin(stack[:, present], axis=0)
        hi[present] = np.nanmax(stack[:, present], axis=0)
    return mean, lo, hi


def aggregate_curves(
    label: str, seeds: Sequence[int], curves: Sequence[Mapping[str, np.ndarray]]
) -> CurveSummary:
    """One :class:`CurveSummary` from per-seed curves (see :func:`seed_curve`)."""
    grid = np.unique(np.concatenate([c["step"] for c in curves]))
    stacks = {
        name: np.stack([on_grid(c["step"], c[name], grid) for c in curves]) for name in CURVE_FIELDS
    }
    train, val = _spread(stacks["train_loss"]), _spread(stacks["val_neg_elbo"])
    return CurveSummary(
        label=label,
        seeds=list(seeds),
        steps=grid,
        n=np.isfinite(stacks["val_neg_elbo"]).sum(axis=0),
        seconds=_spread(stacks["seconds"])[0],
        train_mean=train[0],
        train_lo=train[1],
        train_hi=train[2],
        val_mean=val[0],
        val_lo=val[1],
        val_hi=val[2],
    )


def learning_curves(
    records: Iterable[Mapping[str, Any]],
) -> tuple[list[CurveSummary], list[Missing]]:
    """A :class:`CurveSummary` per combination with at least one successful, curved seed."""
    summaries, missing = [], []
    for label, runs in by_combination(records).items():
        ok = _ok(runs)
        if not ok:
            missing.append(Missing("learning curves", label, _failure(runs)))
            continue
        curves = [(int(r["seed"]), seed_curve(r)) for r in ok]
        present = [(s, c) for s, c in curves if c is not None]
        if not present:
            missing.append(Missing("learning curves", label, "the records keep no curve"))
            continue
        summaries.append(aggregate_curves(label, [s for s, _ in present], [c for _, c in present]))
    return summaries, missing


# ---------------------------------------------------------------- ROC curves


@dataclass
class RocPoints:
    """One seed's ROC: the OOD set is the positive class, the test split the negative one."""

    seed: int
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auroc: float
    recorded_auroc: float | None = None


@dataclass
class RocCurve:
    """One combination's ROC for one OOD set and score: seeds, and their vertical average."""

    label: str
    ood_set: str
    score: str
    seeds: list[RocPoints]
    fpr: np.ndarray
    tpr: np.ndarray

    @property
    def auroc_mean(self) -> float:
        return float(np.mean([s.auroc for s in self.seeds]))

    @property
    def auroc_std(self) -> float:
        values = [s.auroc for s in self.seeds]
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan

    @property
    def disagreements(self) -> list[RocPoints]:
        """Seeds whose recorded AUROC differs from the one the scores give."""
        return [
            s
            for s in self.seeds
            if s.recorded_auroc is not None
            and not math.isclose(s.auroc, s.recorded_auroc, abs_tol=1e-6)
        ]


def roc_points(test_scores: np.ndarray, ood_scores: np.ndarray, seed: int = 0) -> RocPoints:
    """ROC of telling ``ood_scores`` (positive) from ``test_scores`` (negative) by
    :func:`sklearn.metrics.roc_curve`, every threshold kept.

    Stored scores follow :mod:`vaebench.metrics.ood`'s convention, higher = more
    in-distribution, so the anomaly score is the negated stored score, as in that module.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    test = np.asarray(test_scores, dtype=np.float64).ravel()
    ood = np.asarray(ood_scores, dtype=np.float64).ravel()
    labels = np.concatenate([np.zeros(len(test)), np.ones(len(ood))])
    anomaly = -np.concatenate([test, ood])
    fpr, tpr, thresholds = roc_curve(labels, anomaly, drop_intermediate=False)
    return RocPoints(seed, fpr, tpr, thresholds, float(roc_auc_score(labels, anomaly)))


def vertical_average(points: Sequence[RocPoints], grid: np.ndarray = ROC_GRID) -> np.ndarray:
    """Mean true-positive rate over seeds at each false-positive rate of ``grid``."""
    rows = []
    for p in points:
        # Keep the highest TPR at each FPR, so the step up at a tied FPR is not lost.
        fpr, first = np.unique(p.fpr[::-1], return_index=True)
        tpr = p.tpr[::-1][first]
        rows.append(np.interp(grid, fpr, tpr))
    return np.mean(rows, axis=0)


def load_scores(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The per-example scores of a record (``"<split>/<score>"`` arrays); ValueError if none."""
    try:
        path = artifact_path(record, "scores")
    except ValueError as exc:
        raise ValueError(f"scores file {exc}") from exc
    if path is None:
        raise ValueError("no per-example scores")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with data:
            return {name: np.asarray(data[name], dtype=np.float64) for name in data.files}
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"unreadable scores file {path.name} ({exc})") from exc


def _recorded_auroc(record: Mapping[str, Any], score: str, ood_set: str) -> float | None:
    metric = record.get("metrics", {}).get(f"ood/{score}/{ood_set}/auroc")
    return float(metric["value"]) if isinstance(metric, Mapping) else None


def roc_curves(
    records: Iterable[Mapping[str, Any]],
) -> tuple[dict[tuple[str, str], list[RocCurve]], list[Missing]]:
    """ROC curves keyed by (OOD set, score), one per combination with scores for them."""
    curves: dict[tuple[str, str], list[RocCurve]] = {}
    missing = []
    for label, runs in by_combination(records).items():
        ok = _ok(runs)
        if not ok:
            missing.append(Missing("ROC", label, _failure(runs)))
            continue
        per_key: dict[tuple[str, str], list[RocPoints]] = {}
        reasons: dict[int, str] = {}
        for record in ok:
            try:
                scores = load_scores(record)
            except ValueError as exc:
                reasons[int(record["seed"])] = str(exc)
                continue
            for name, values in scores.items():
                split, _, score = name.partition("/")
                test = scores.get(f"{TEST_SPLIT}/{score}")
                if split == TEST_SPLIT or not score or test is None:
                    continue
                point = roc_points(test, values, int(record["seed"]))
                point.recorded_auroc = _recorded_auroc(record, score, split)
                per_key.setdefault((split, score), []).append(point)
        if not per_key:
            missing.append(Missing("ROC", label, _seed_reasons(reasons, len(ok))))
            continue
        if reasons:
            why = _seed_reasons(reasons, len(ok))
            missing.append(Missing("ROC", label, f"curves leave out {why}"))
        for (ood_set, score), points in per_key.items():
            curve = RocCurve(label, ood_set, score, points, ROC_GRID, vertical_average(points))
            curves.setdefault((ood_set, score), []).append(curve)
    return dict(sorted(curves.items())), missing


def _seed_reasons(reasons: Mapping[int, str], n_seeds: int) -> str:
    if not reasons:
        return "the scores hold no OOD set (the suite has none?)"
    if len(reasons) == n_seeds and len(set(reasons.values())) == 1:
        return next(iter(reasons.values()))
    return "; ".join(f"seed {seed}: {why}" for seed, why in sorted(reasons.items()))


# ---------------------------------------------------------------- KL and active units


@dataclass
class KlBars:
    """Per-dimension KL (nats) and activity, ranked by KL per seed; mean and min-max over seeds.

    Where only activities were recorded, the ranking is by activity. ``active`` holds each
    seed's count of active units out of ``of``.
    """

    label: str
    seeds: list[int]
    kl: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    activity: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    active: list[float]
    of: int | None
    threshold: float | None
    notes: list[str] = field(default_factory=list)


def _ranked(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    stack = np.full((len(rows), width), math.nan)
    for i, row in enumerate(rows):
        stack[i, : len(row)] = row
    return _spread(stack)


def _vector(extra: Any) -> np.ndarray | None:
    values = extra.get("per_dim") if isinstance(extra, Mapping) else None
    if not isinstance(values, list) or not values:
        return None
    try:
        return np.array([_number(v) for v in values])
    except (TypeError, ValueError):
        return None


def kl_bars(records: Iterable[Mapping[str, Any]]) -> tuple[list[KlBars], list[Missing]]:
    """A :class:`KlBars` per combination whose records hold collapse metrics."""
    bars, missing = [], []
    for label, runs in by_combination(records).items():
        ok = _ok(runs)
        if not ok:
            missing.append(Missing("collapse", label, _failure(runs)))
            continue
        kl_rows, act_rows, active, seeds, notes = [], [], [], [], []
        of = threshold = None
        for record in ok:
            metrics = record.get("metrics", {})
            kl_metric = metrics.get("collapse/kl") or {}
            au_metric = metrics.get("collapse/active_units") or {}
            kl = _vector(kl_metric.get("extra"))
            activity = _vector(au_metric.get("extra"))
            if kl is None and activity is None:
                continue
            note = (kl_metric.get("extra") or {}).get("note")
            if kl is None and note and note not in notes:
                notes.append(note)
            basis = kl if kl is not None else activity
            assert basis is not None  # both None was skipped above
            order = np.argsort(-basis, kind="stable")
            if kl is not None:
                kl_rows.append(kl[order])
            if activity is not None:
                act_rows.append(activity[order])
                active.append(float(au_metric["value"]))
                extra = au_metric.get("extra") or {}
                of = extra.get("of", of)
                threshold = extra.get("threshold", threshold)
            seeds.append(int(record["seed"]))
        if not seeds:
            missing.append(
                Missing(
                    "collapse",
                    label,
                    "no per-dimension KL or activities recorded "
                    "(add the collapse metric: vaebench run --metrics ... collapse)",
                )
            )
            continue
        if not kl_rows:
            missing.append(
                Missing(
                    "collapse",
                    label,
                    "no per-dimension KL: " + ("; ".join(notes) or "not recorded"),
                )
            )
        bars.append(
            KlBars(
                label=label,
                seeds=seeds,
                kl=_ranked(kl_rows) if kl_rows else None,
                activity=_ranked(act_rows) if act_rows else None,
                active=active,
                of=int(of) if of is not None else None,
                threshold=float(threshold) if threshold is not None else None,
                notes=notes,
            )
        )
    return bars, missing


# ---------------------------------------------------------------- images, runs, provenance


@dataclass
class ImageGrids:
    """The sample and reconstruction grids of one combination (its lowest successful seed)."""

    label: str
    seed: int
    samples: Path | None
    recon: Path | None


def image_grids(records: Iterable[Mapping[str, Any]]) -> tuple[list[ImageGrids], list[Missing]]:
    grids, missing = [], []
    for label, runs in by_combination(records).items():
        ok = _ok(runs)
        if not ok:
            missing.append(Missing("images", label, _failure(runs)))
            continue
        found, problems = None, []
        for record in ok:
            (samples, bad_samples), (recon, bad_recon) = (
                _png(record, "samples"),
                _png(record, "recon"),
            )
            problems += [f"seed {record['seed']}: {p}" for p in (bad_samples, bad_recon) if p]
            if samples or recon:
                found = ImageGrids(label, int(record["seed"]), samples, recon)
                break
        missing += [Missing("images", label, p) for p in problems]
        if found is None:
            if not problems:
                missing.append(
                    Missing(
                        "images",
                        label,
                        "no sample or reconstruction grid was saved (a suite without image "
                        "shape, or results from before grids were saved)",
                    )
                )
            continue
        for part, path in (("samples", found.samples), ("reconstructions", found.recon)):
            if path is None:
                missing.append(Missing("images", label, f"no {part} grid for seed {found.seed}"))
        grids.append(found)
    return grids, missing


def _png(record: Mapping[str, Any], name: str) -> tuple[Path | None, str | None]:
    """An image artifact's path if it is there and a PNG, else None and what is wrong."""
    named = (record.get("artifacts") or {}).get(name)
    if not named:
        return None, None
    try:
        path = artifact_path(record, name)
    except ValueError as exc:
        return None, str(exc)
    if path is None:
        return None, f"{named} not found"
    try:
        with open(path, "rb") as handle:
            signature = handle.read(8)
    except OSError as exc:
        return None, f"{named} unreadable ({exc})"
    return (path, None) if signature == b"\x89PNG\r\n\x1a\n" else (None, f"{named} is not a PNG")


@dataclass(frozen=True)
class RunStatus:
    label: str
    seed: int
    status: str
    detail: str


def run_statuses(records: Iterable[Mapping[str, Any]]) -> list[RunStatus]:
    """Every run with its status: steps and time for successes, phase and error for failures."""
    out = []
    for label, runs in by_combination(records).items():
        for r in runs:
            training = r.get("training") or {}
            if r.get("status") == "ok":
                steps, secs = training.get("steps_done"), training.get("seconds")
                detail = ", ".join(
                    part
                    for part in (
                        f"{steps} steps" if steps is not None else "",
                        f"{secs:.1f} s training" if isinstance(secs, int | float) else "",
                        "stopped early" if training.get("stopped_early") else "",
                    )
                    if part
                )
            else:
                detail = _error_text(r.get("error"))
            out.append(RunStatus(label, int(r["seed"]), str(r.get("status")), detail))
    return out


def _distinct(values: Iterable[Any]) -> str:
    seen = [v for v in dict.fromkeys(_as_text(v) for v in values) if v]
    return "; ".join(seen) if seen else "not recorded"


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "(none)"
    return str(value)


def provenance(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """What the runs were computed with, as (field, value) rows; differing values are joined."""
    from vaebench.tables import BUDGET_ORDER, EVAL_ORDER, settings_summary

    def env(key: str) -> str:
        return _distinct((r.get("environment") or {}).get(key) for r in records)

    def suite(key: str) -> str:
        return _distinct((r.get("suite") or {}).get(key) for r in records)

    def data(key: str) -> str:
        return _distinct((r.get("data") or {}).get(key) for r in records)

    ok = sum(r.get("status") == "ok" for r in records)
    started = sorted(str(r["started"]) for r in records if r.get("started"))
    created = sorted(str(r["created"]) for r in records if r.get("created"))
    evals = [{k: v for k, v in (r.get("eval") or {}).items() if k != "seconds"} for r in records]
    return [
        ("suite", suite("name")),
        ("suite version", suite("version")),
        ("profile", suite("profile")),
        ("suite options", suite("options")),
        ("data", data("source")),
        ("data split", data("split")),
        (
            "budget",
            _distinct(settings_summary(r.get("budget") or {}, BUDGET_ORDER) for r in records),
        ),
        ("evaluation", _distinct(settings_summary(e, EVAL_ORDER) for e in evals)),
        ("precision", _distinct(r.get("precision") for r in records)),
        ("runs", f"{len(records)} ({ok} ok, {len(records) - ok} failed)"),
        (
            "run between",
            f"{started[0]} and {created[-1]}" if started and created else "not recorded",
        ),
        ("vaebench", env("vaebench")),
        ("git", env("git")),
        ("plugins", env("plugins")),
        ("torch", env("torch")),
        ("python", env("python")),
        ("platform", env("platform")),
        (
            "device",
            _distinct(
                f"{e.get('device')} ({e.get('device_name')})" if e.get("device") else None
                for e in (r.get("environment") or {} for r in records)
            ),
        ),
        ("CPU", env("cpu")),
        (
            "CPU cores / torch threads",
            _distinct(
                f"{e.get('cpus')} / {e.get('threads')}" if e.get("cpus") else None
                for e in (r.get("environment") or {} for r in records)
            ),
        ),
    ]
