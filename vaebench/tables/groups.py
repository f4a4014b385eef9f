"""Which records share a table (comparability groups) and how a combination is labelled."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from vaebench.results import canonical_json, neutral_budget

BUDGET_ORDER = ("steps", "epochs", "max_seconds", "batch_size", "lr")
EVAL_ORDER = ("k", "k_ood", "seed", "max_elements", "metrics")
# A group made only of schema-1 records keeps the id it always had: their seeding is implied.
LEGACY_SEEDING = "legacy"


def text(value: Any) -> str:
    return "" if value is None else str(value)


def _options_text(component: Mapping[str, Any]) -> str:
    """``(k=5)``: the options a component ran with that differ from its recorded defaults."""
    options, defaults = component.get("options") or {}, component.get("defaults")
    if defaults is None:
        return ""
    changed = {k: v for k, v in sorted(options.items()) if k not in defaults or defaults[k] != v}
    return f"({', '.join(f'{k}={show(v)}' for k, v in changed.items())})" if changed else ""


def combination_label(
    combination: Mapping[str, str],
    components: Mapping[str, Mapping[str, Any]] | None = None,
    schema_version: int = 1,
) -> str:
    """``encoder / decoder / prior``, and from schema 2 on ``/ objective``; each part followed
    by the options that differ from its defaults, where the record keeps both
    (``... / vamp(components=20) / iwae(k=5)``). Schema-1 records all trained the ELBO and
    keep the three-part label they were published under."""
    kinds = ["encoder", "decoder", "prior"]
    if schema_version >= 2 and combination.get("objective"):
        kinds.append("objective")
    parts = []
    for kind in kinds:
        component = (components or {}).get(kind)
        suffix = _options_text(component) if isinstance(component, Mapping) else ""
        parts.append(combination[kind] + suffix)
    return " / ".join(parts)


def record_label(record: Mapping[str, Any]) -> str:
    """The label of a record's combination (:func:`combination_label`)."""
    return combination_label(
        record["combination"], record.get("components"), int(record.get("schema_version", 1))
    )


def eval_identity(record: Mapping[str, Any]) -> dict[str, Any]:
    # How long evaluation took says nothing about what was measured.
    return {k: v for k, v in (record.get("eval") or {}).items() if k != "seconds"}


def seeding(record: Mapping[str, Any]) -> str:
    return text(record.get("seeding")) or LEGACY_SEEDING


def suite_options(record: Mapping[str, Any]) -> dict[str, Any]:
    """The suite options a record's data was loaded with (``binarization``, ``limit``...),
    those left unset (None) left out."""
    options = (record.get("suite") or {}).get("options")
    if not isinstance(options, Mapping):
        return {}
    return {name: value for name, value in options.items() if value is not None}


def comparability_group(record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields two records must share to appear in one table: suite, its options (the data:
    ``binarization=static`` is another data set than ``dynamic``), profile, budget (less the
    fields that do not change a result, such as ``checkpoint_every``), evaluation settings,
    and the random-stream scheme (seeds of different schemes are different samples, so their
    means are not averaged together)."""
    suite = record.get("suite") or {}
    group = {
        "suite": text(suite.get("name")),
        "version": text(suite.get("version")),
        "profile": text(suite.get("profile")),
        "budget": neutral_budget(record.get("budget") or {}),
        "eval": eval_identity(record),
    }
    if seeding(record) != LEGACY_SEEDING:
        group["seeding"] = seeding(record)
    if options := suite_options(record):  # different data: statically binarized MNIST...
        group["options"] = options
    return group


def group_id(record: Mapping[str, Any]) -> str:
    """Short name of a record's comparability group."""
    return hashlib.sha256(canonical_json(comparability_group(record)).encode()).hexdigest()[:8]


def show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return value if isinstance(value, str) else canonical_json(value)


def settings_summary(settings: Mapping[str, Any], order: Sequence[str] = ()) -> str:
    """``k=v, ...`` for the set (non-null) fields, the usual ones first."""
    keys = [k for k in order if k in settings] + sorted(k for k in settings if k not in order)
    return ", ".join(f"{k}={show(settings[k])}" for k in keys if settings[k] is not None)


def group_fields(
    version: str,
    profile: str,
    budget: Mapping[str, Any],
    eval_: Mapping[str, Any],
    seeding: str = LEGACY_SEEDING,
    options: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """A group's settings flattened to ``field -> shown value`` to spell out differences."""
    fields = {"version": version, "profile": profile, "seeding": seeding}
    fields.update({f"option.{k}": show(v) for k, v in (options or {}).items()})
    fields.update({f"budget.{k}": show(v) for k, v in budget.items()})
    fields.update({f"eval.{k}": show(v) for k, v in eval_.items()})
    return fields


def differing_fields(groups: Sequence[Mapping[str, str]]) -> list[str]:
    """Fields whose values are not the same in every group (a missing field counts as null)."""
    names = sorted({k for g in groups for k in g})
    return [k for k in names if len({g.get(k, "null") for g in groups}) > 1]
