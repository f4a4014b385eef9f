"""Comparing results with a baseline: regressions, tolerances, missing and new combinations."""

from __future__ import annotations

import math

import pytest

from tests.table_records import make_record
from vaebench.compare import (
    EXIT_OK,
    EXIT_REGRESSION,
    Tolerance,
    compare,
    exit_code,
    format_comparison,
)
from vaebench.errors import ConfigError

A = "mlp-gaussian / mlp-bernoulli / standard-normal"
B = "mlp-gaussian / mlp-bernoulli / vamp_prior"
C = "conv-gaussian / conv-bernoulli / standard-normal"
SEEDS = {"a": [24.0, 24.2, 24.4], "b": [24.1, 24.3, 24.5], "c": [26.0, 26.2]}


def runs(shift: dict[str, float] | None = None, combos: str = "ab", **options) -> list[dict]:
    """Three seeds of iw_nll and neg_elbo per combination, ``shift`` added per combination."""
    shift = shift or {}
    return [
        make_record(
            combo,
            seed,
            {"iw_nll": v + shift.get(combo, 0.0), "neg_elbo": v + 1 + shift.get(combo, 0.0)},
            **options,
        )
        for combo in combos
        for seed, v in enumerate(SEEDS[combo])
    ]


def row(result, combination: str, metric: str = "iw_nll"):
    (found,) = [r for r in result.rows if r.combination == combination and r.metric == metric]
    return found


def test_identical_results_pass() -> None:
    result = compare(runs(), runs())
    assert exit_code(result) == EXIT_OK
    assert {r.verdict for r in result.rows} == {"ok"}
    assert {r.metric for r in result.rows} == {"neg_elbo", "iw_nll"}
    assert all(r.difference == 0 for r in result.rows)
    assert not (result.missing or result.new or result.mismatches)


def test_clearly_worse_results_fail_with_the_numbers_shown() -> None:
    result = compare(runs(), runs({"a": 1.0}), ["iw_nll"])
    assert exit_code(result) == EXIT_REGRESSION
    worse = row(result, A)
    se = 0.2 / math.sqrt(3)
    assert worse.verdict == "regression"
    assert worse.baseline_mean == pytest.approx(24.2) and worse.current_mean == pytest.approx(25.2)
    assert worse.difference == pytest.approx(1.0)
    assert worse.baseline_se == pytest.approx(se)
    assert worse.difference_se == pytest.approx(math.sqrt(2) * se)
    assert worse.threshold == pytest.approx(3 * math.sqrt(2) * se)  # beats 1% of 24.2
    assert row(result, B).verdict == "ok"
    text = format_comparison(result)
    assert "REGRESSION" in text and text.endswith("Result: 1 regression(s) (exit 1).")
    assert "+1.00 ± 0.16" in text and "24.20 ± 0.12 (n=3)" in text


def test_better_results_are_improvements_not_regressions() -> None:
    result = compare(runs(), runs({"b": -1.0}), ["iw_nll"])
    assert row(result, B).verdict == "improved" and exit_code(result) == EXIT_OK


@pytest.mark.parametrize(
    ("tolerance", "verdict"),
    [
        (Tolerance("abs", 0.5), "ok"),
        (Tolerance("abs", 0.2), "regression"),
        (Tolerance("rel", 0.02), "ok"),  # 0.484
        (Tolerance("rel", 0.01), "regression"),  # 0.242
        (Tolerance("sigma", 3), "ok"),  # 0.49
        (Tolerance("sigma", 1), "regression"),  # 0.163
        (Tolerance(), "ok"),  # max(0.49, 0.242)
    ],
)
def test_tolerance_modes(tolerance: Tolerance, verdict: str) -> None:
    result = compare(runs(), runs({"a": 0.3}), ["iw_nll"], tolerance)
    assert row(result, A).verdict == verdict


def test_default_tolerance_has_a_relative_floor() -> None:
    # Zero spread: 3 standard errors are 0, so only the 1% floor (0.24) protects from noise.
    base = [make_record("a", s, {"iw_nll": 24.0}) for s in range(2)]
    assert (
        row(compare(base, [make_record("a", s, {"iw_nll": 24.2}) for s in range(2)]), A).verdict
        == "ok"
    )
    assert (
        row(compare(base, [make_record("a", s, {"iw_nll": 24.3}) for s in range(2)]), A).verdict
        == "regression"
    )


def test_single_seed_uses_the_records_own_stderr() -> None:
    base = [make_record("a", 0, {"iw_nll": 24.0}, stderr=0.3)]
    close = compare(base, [make_record("a", 0, {"iw_nll": 25.0}, stderr=0.4)])
    assert row(close, A).difference_se == pytest.approx(0.5)
    assert row(close, A).verdict == "ok"  # 1.0 < 3 * 0.5
    far = compare(base, [make_record("a", 0, {"iw_nll": 26.0}, stderr=0.4)])
    assert row(far, A).verdict == "regression"


def test_direction_comes_from_higher_is_better() -> None:
    def units(value: int) -> list[dict]:
        return [make_record("a", s, {"collapse/active_units": value, "kl": value}) for s in (0, 1)]

    result = compare(units(10), units(8), ["collapse/active_units", "kl"])
    assert row(result, A, "collapse/active_units").verdict == "regression"
    assert row(result, A, "kl").verdict == "no direction"
    assert compare(units(8), units(10), ["collapse/active_units"]).regressions == []


def test_missing_and_new_combinations_are_listed() -> None:
    result = compare(runs(combos="ab"), runs(combos="ac"), ["iw_nll"])
    assert result.missing == [f"digits: {B}"]
    assert result.new == [f"digits: {C}"]
    assert [r.combination for r in result.rows] == [A]
    text = format_comparison(result)
    assert f"Missing in current (1):\n- digits: {B}" in text
    assert f"New in current (1):\n- digits: {C}" in text
    assert exit_code(result) == EXIT_OK


def test_a_suite_on_one_side_only_is_missing_or_new() -> None:
    result = compare(runs(combos="a") + runs(combos="a", suite="mnist"), runs(combos="a"))
    assert result.missing == [f"mnist: {A}"]


def test_a_combination_that_now_fails_is_a_regression() -> None:
    current = runs(combos="a") + [make_record("b", s, status="failed") for s in range(3)]
    result = compare(runs(), current, ["iw_nll"])
    assert row(result, B).verdict == "failed"
    assert exit_code(result) == EXIT_REGRESSION


def test_different_budgets_are_not_comparable() -> None:
    with pytest.raises(ConfigError) as info:
        compare(runs(), runs(steps=500))
    assert "not comparable (budget.steps: baseline 2000, current 500)" in str(info.value)


def test_other_suite_options_are_not_comparable() -> None:
    with pytest.raises(ConfigError) as info:
        compare(runs(options={"binarization": "dynamic"}), runs(options={"binarization": "static"}))
    assert "not comparable (option.binarization: baseline dynamic, current static)" in str(
        info.value
    )


def test_a_group_without_counterpart_is_reported() -> None:
    result = compare(runs() + runs(combos="a", steps=500), runs(), ["iw_nll"])
    (mismatch,) = result.mismatches
    assert mismatch.startswith("suite digits: baseline results with budget steps=500")
    assert exit_code(result) == EXIT_OK


def test_nothing_in_common_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no suite appears in both"):
        compare(runs(), runs(suite="mnist"))


def test_bad_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="the records have: iw_nll, neg_elbo"):
        compare(runs(), runs(), ["nll"])
    with pytest.raises(ConfigError, match="the current has no records"):
        compare(runs(), [])
    with pytest.raises(ConfigError, match="--rel needs a finite number >= 0"):
        Tolerance("rel", -1)
