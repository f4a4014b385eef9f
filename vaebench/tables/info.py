"""What the records say about each metric: its unit, its better direction, its name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vaebench.errors import ConfigError

DEFAULT_METRICS = ("neg_elbo", "iw_nll")


@dataclass(frozen=True)
class MetricInfo:
    """What the records say about a metric: its unit and which direction is better."""

    name: str
    unit: str = ""
    higher_is_better: bool | None = None

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓", None: ""}[self.higher_is_better]

    @property
    def header(self) -> str:
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.name}{unit} {self.arrow}".rstrip()


def metric_info(records: Iterable[Mapping[str, Any]]) -> dict[str, MetricInfo]:
    """Unit and direction of every metric in the records, by name (sorted)."""
    units: dict[str, str] = {}
    directions: dict[str, bool | None] = {}
    for record in records:
        for name, metric in record.get("metrics", {}).items():
            if not units.get(name):
                units[name] = str(metric.get("unit") or "")
            if directions.get(name) is None:
                directions[name] = metric.get("higher_is_better")
    return {n: MetricInfo(n, units[n], directions[n]) for n in sorted(units)}


def metric_names(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every metric name found in the records, sorted."""
    return list(metric_info(records))


def default_metrics(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """neg_elbo and iw_nll where present, else every metric the records hold."""
    names = metric_names(records)
    if not names:
        raise ConfigError("the records hold no metrics (did every run fail?)")
    return [m for m in DEFAULT_METRICS if m in names] or names


def check_metrics(wanted: Iterable[str], known: Iterable[str]) -> None:
    """Raise a one-line error naming unknown metrics and listing those that exist."""
    known = sorted(known)
    unknown = [m for m in wanted if m not in known]
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"unknown metric {', '.join(map(repr, unknown))}{hint}; "
        f"the records have: {', '.join(known) or 'none'}"
    )
