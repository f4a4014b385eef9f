"""Hand-made result records for the tests of tables, compare and the reporting commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaebench import results

# unit and direction of the metrics the tests use, as vaebench's metrics declare them
META: dict[str, tuple[str, bool | None]] = {
    "neg_elbo": ("nats", False),
    "iw_nll": ("nats", False),
    "kl": ("nats", None),
    "collapse/active_units": ("dims", True),
}
COMBOS = {
    "a": ("mlp-gaussian", "mlp-bernoulli", "standard-normal"),
    "b": ("mlp-gaussian", "mlp-bernoulli", "vamp_prior"),
    "c": ("conv-gaussian", "conv-bernoulli", "standard-normal"),
    "d": ("conv-gaussian", "conv-bernoulli", "vamp_prior"),
}


def make_record(
    combo: str = "a",
    seed: int = 0,
    metrics: dict[str, float] | None = None,
    *,
    suite: str = "digits",
    version: str = "1",
    profile: str = "default",
    steps: int = 2000,
    status: str = "ok",
    stderr: float | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete record; ``metrics`` maps names to values (unit and direction from META)."""
    encoder, decoder, prior = COMBOS[combo]
    combination = {"encoder": encoder, "decoder": decoder, "prior": prior}
    budget = {
        "steps": steps,
        "epochs": None,
        "max_seconds": None,
        "batch_size": 100,
        "lr": 0.001,
        "eval_every": 100,
        "patience": 10,
        "checkpoint_every": None,
    }
    evaluation = {
        "k": 1000,
        "k_ood": 100,
        "seed": 1234,
        "max_elements": 33554432,
        "metrics": ["likelihood"],
    }
    suite_block = {
        "name": suite, "version": version, "profile": profile, "options": dict(options or {})
    }  # fmt: skip
    key = results.make_key(
        {
            "suite": suite_block,
            "combination": combination,
            "seed": seed,
            "budget": budget,
            "eval": evaluation,
        }
    )
    metric_block: dict[str, Any] = {}
    for name, value in (metrics or {}).items():
        unit, higher = META[name]
        metric_block[name] = {"value": value, "unit": unit, "higher_is_better": higher}
        if stderr is not None:
            metric_block[name]["stderr"] = stderr
    failed = status == "failed"
    return {
        # The three-part records of schema 1 (before objectives): tables read them as trained
        # with elbo under the legacy seeding; tests of schema 2 add the fourth part themselves.
        "schema_version": 1,
        "key": key,
        "stem": results.stem(suite, combination, seed, key),
        "status": status,
        "error": {
            "type": "TrainingError",
            "message": "loss is nan",
            "traceback": "",
            "phase": "train",
        }
        if failed
        else None,
        "suite": suite_block,
        "combination": combination,
        "components": {},
        "seed": seed,
        "budget": budget,
        "training": {
            "steps_done": steps,
            "best_step": steps,
            "stopped_early": False,
            "cap_hit": False,
            "seconds": 10.0,
            "curve": [],
        },
        "eval": {**evaluation, "seconds": 1.5 + seed},
        "metrics": {} if failed else metric_block,
        "n_params": 1000,
        "environment": {"vaebench": "0.1.0"},
        "data": {},
        "artifacts": {},
        "created": "2026-11-29T22:00:00+00:00",
        "wall_seconds": 11.5 + seed,
    }


def write(root: Path, *records: dict[str, Any]) -> Path:
    """Write records into a results directory (created if needed); returns the directory."""
    results.prepare_dir(root)
    for record in records:
        results.write_record(root, record)
    return root
