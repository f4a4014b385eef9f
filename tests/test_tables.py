"""The table model: per-seed frames, aggregation, merging, leaderboards and every format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.table_records import make_record, write
from vaebench import tables
from vaebench.errors import ConfigError, VaebenchError

# Per-seed (neg_elbo, iw_nll) of the known-answer leaderboard, worked out by hand:
# iw_nll means a 24.20, d 24.25 (one seed), b 24.30, c 26.10 -> ranks a, d, b, c.
# neg_elbo means a 25.50, d 25.80, b 25.40 (best), c 28.10.
KNOWN = {
    "a": [(25.0, 24.0), (25.5, 24.2), (26.0, 24.4)],
    "b": [(25.2, 24.1), (25.4, 24.3), (25.6, 24.5)],
    "c": [(28.0, 26.0), (28.2, 26.2)],
    "d": [(25.8, 24.25)],
}


def known_records() -> list[dict]:
    records = [
        make_record(combo, seed, {"neg_elbo": elbo, "iw_nll": nll})
        for combo, runs in KNOWN.items()
        for seed, (elbo, nll) in enumerate(runs)
    ]
    return records + [make_record("c", 2, status="failed")]


def test_records_frame_has_one_row_per_record_and_a_column_per_metric() -> None:
    records = known_records()
    frame = tables.records_frame(records)
    assert len(frame) == len(records)
    assert {"key", "suite", "combination", "seed", "status", "group", "budget"} <= set(frame)
    assert {"neg_elbo", "iw_nll"} <= set(frame)
    row = frame[
        (frame["combination"] == "mlp-gaussian / mlp-bernoulli / vamp_prior") & (frame["seed"] == 1)
    ].iloc[0]
    assert (row["neg_elbo"], row["iw_nll"], row["status"]) == (25.4, 24.3, "ok")
    assert row["budget"].startswith("steps=2000, batch_size=100, lr=0.001")
    failed = frame[frame["status"] == "failed"].iloc[0]
    assert math.isnan(failed["iw_nll"]) and failed["error"] == "TrainingError: loss is nan"
    assert frame["group"].nunique() == 1


def test_metric_metadata_comes_from_the_records() -> None:
    records = [make_record("a", 0, {"iw_nll": 1.0, "kl": 2.0, "collapse/active_units": 3})]
    info = tables.metric_info(records)
    assert tables.metric_names(records) == ["collapse/active_units", "iw_nll", "kl"]
    assert info["iw_nll"] == tables.MetricInfo("iw_nll", "nats", False)
    assert info["collapse/active_units"].header == "collapse/active_units (dims) ↑"
    assert info["kl"].header == "kl (nats)"


def test_aggregate_matches_numpy_and_counts_failures_without_averaging_them() -> None:
    frame = tables.records_frame(known_records())
    agg = tables.aggregate(frame, ["neg_elbo", "iw_nll"]).set_index("combination")
    for combo, runs in KNOWN.items():
        label = tables.combination_label(make_record(combo)["combination"])
        row = agg.loc[label]
        nll = np.array([r[1] for r in runs])
        assert row["iw_nll:mean"] == pytest.approx(nll.mean())
        assert row["iw_nll:n"] == len(nll)
        if len(nll) > 1:
            assert row["iw_nll:std"] == pytest.approx(nll.std(ddof=1))
            assert row["iw_nll:se"] == pytest.approx(nll.std(ddof=1) / np.sqrt(len(nll)))
        else:
            assert math.isnan(row["iw_nll:std"]) and math.isnan(row["iw_nll:se"])
    conv = agg.loc["conv-gaussian / conv-bernoulli / standard-normal"]
    assert (conv["n_seeds"], conv["n_failed"]) == (2, 1)
    assert conv["params"] == 1000 and conv["train_seconds"] == 10.0


def test_aggregate_uses_the_records_stderr_for_a_single_seed() -> None:
    frame = tables.records_frame([make_record("a", 0, {"iw_nll": 24.0}, stderr=0.3)])
    agg = tables.aggregate(frame, ["iw_nll"])
    assert agg.loc[0, "iw_nll:se"] == 0.3 and math.isnan(agg.loc[0, "iw_nll:std"])


def test_merge_drops_identical_duplicates_silently() -> None:
    record = make_record("a", 0, {"iw_nll": 24.0})
    kept, conflicts = tables.merge_records([record, dict(record)])
    assert kept == [record] and conflicts == []


def test_merge_reports_a_duplicate_key_with_different_numbers(tmp_path: Path) -> None:
    record = make_record("a", 0, {"iw_nll": 24.0})
    write(tmp_path / "one", record)
    write(tmp_path / "two", {**record, "metrics": make_record("a", 0, {"iw_nll": 30.0})["metrics"]})
    loaded, _ = tables.load_results([tmp_path / "one", tmp_path / "two"])
    kept, conflicts = tables.merge_records(loaded)
    assert len(kept) == 1 and kept[0]["metrics"]["iw_nll"]["value"] == 24.0
    assert len(conflicts) == 1
    assert "metrics iw_nll" in conflicts[0]
    assert str(tmp_path / "one") in conflicts[0] and str(tmp_path / "two") in conflicts[0]
    boards = tables.leaderboard(loaded, ["iw_nll"])
    assert "1 conflicting duplicate record(s) left out" in boards[0].footnotes[-1]


def test_leaderboard_ranks_marks_and_tests_as_computed_by_hand() -> None:
    (board,) = tables.leaderboard(known_records(), ["neg_elbo", "iw_nll"])
    assert board.rank_by == "iw_nll"
    assert [r.prior for r in board.rows] == [
        "standard-normal",
        "vamp_prior",
        "vamp_prior",
        "standard-normal",
    ]
    assert [r.rank for r in board.rows] == [1, 2, 3, 4]
    a, d, b, c = board.rows
    assert board.best is a
    assert [r.cells["iw_nll"].mark for r in board.rows] == [
        "best",
        "untested",
        "not worse",
        "worse",
    ]
    assert [r.cells["neg_elbo"].mark for r in board.rows] == [
        "not worse",
        "untested",
        "best",
        "worse",
    ]
    expected = stats.ttest_ind(
        [24.1, 24.3, 24.5], [24.0, 24.2, 24.4], equal_var=False, alternative="greater"
    ).pvalue
    assert b.cells["iw_nll"].p_value == pytest.approx(expected)
    assert c.cells["iw_nll"].p_value < tables.ALPHA <= b.cells["iw_nll"].p_value
    assert (c.n_seeds, c.n_failed) == (2, 1)


def test_higher_is_better_ranks_descending() -> None:
    records = [
        make_record(combo, seed, {"collapse/active_units": units})
        for combo, values in {"a": [3, 4], "b": [9, 10], "c": [6, 6]}.items()
        for seed, units in enumerate(values)
    ]
    (board,) = tables.leaderboard(records, ["collapse/active_units"])
    assert [r.prior for r in board.rows] == ["vamp_prior", "standard-normal", "standard-normal"]
    assert board.rows[0].cells["collapse/active_units"].mark == "best"
    assert "(higher is better)" in board.footnotes[0]


def test_constant_equal_seeds_are_not_worse() -> None:
    records = [
        make_record(combo, seed, {"iw_nll": 24.0}) for combo in ("a", "b") for seed in range(2)
    ]
    (board,) = tables.leaderboard(records, ["iw_nll"])
    assert [r.cells["iw_nll"].mark for r in board.rows] == ["best", "best"]
    records = [
        make_record(c, s, {"iw_nll": v}) for c, v in (("a", 24.0), ("b", 25.0)) for s in range(2)
    ]
    (board,) = tables.leaderboard(records, ["iw_nll"])
    assert board.rows[1].cells["iw_nll"].mark == "worse"


def expected_markdown(group: str) -> str:
    return f"""\
### digits v1, profile default

budget: steps=2000, batch_size=100, lr=0.001, eval_every=100, patience=10; eval: k=1000, \
k_ood=100, seed=1234, max_elements=33554432, metrics=[likelihood]; group {group}.

|   # | combination                                      |   neg_elbo (nats) ↓ |   iw_nll (nats) ↓ |         seeds |   params |   train (s) |
|----:|:-------------------------------------------------|--------------------:|------------------:|--------------:|---------:|------------:|
|   1 | mlp-gaussian / mlp-bernoulli / standard-normal   |      25.50 ± 0.50 † |  **24.20 ± 0.20** |             3 |     1000 |        10.0 |
|   2 | conv-gaussian / conv-bernoulli / vamp_prior      |               25.80 |             24.25 |             1 |     1000 |        10.0 |
|   3 | mlp-gaussian / mlp-bernoulli / vamp_prior        |    **25.40 ± 0.20** |    24.30 ± 0.20 † |             3 |     1000 |        10.0 |
|   4 | conv-gaussian / conv-bernoulli / standard-normal |        28.10 ± 0.14 |      26.10 ± 0.14 | 2 (+1 failed) |     1000 |        10.0 |

Ranked by iw_nll (lower is better). Cells: mean ± std over seeds (ddof=1); a single seed shows \
its value alone.

Bold: best in its column. †: not significantly worse than the best (Welch's t-test, one-sided, \
α = 0.05, over per-seed values).

Not tested (fewer than 2 seeds here or in the best): neg_elbo: conv-gaussian / conv-bernoulli / \
vamp_prior; iw_nll: conv-gaussian / conv-bernoulli / vamp_prior.

Seeds: successful runs; failed runs are counted, not averaged."""  # noqa: E501


def test_markdown_is_exactly_the_hand_made_table() -> None:
    records = known_records()
    boards = tables.leaderboard(records, ["neg_elbo", "iw_nll"])
    assert tables.to_markdown(boards) == expected_markdown(tables.group_id(records[0]))


def test_latex_is_exactly_the_hand_made_table() -> None:
    records = known_records()
    group = tables.group_id(records[0])
    boards = tables.leaderboard(records, ["neg_elbo", "iw_nll"])
    expected = rf"""% needs \usepackage{{booktabs}}
\begin{{table}}[htbp]
\centering
\caption{{digits v1, profile default. budget: steps=2000, batch\_size=100, lr=0.001, eval\_every=100, patience=10; eval: k=1000, k\_ood=100, seed=1234, max\_elements=33554432, metrics=[likelihood]; group {group}. Ranked by iw\_nll (lower is better). Cells: mean $\pm$ std over seeds (ddof=1); a single seed shows its value alone. Bold: best in its column. $^{{\dagger}}$: not significantly worse than the best (Welch's t-test, one-sided, $\alpha$ = 0.05, over per-seed values). Not tested (fewer than 2 seeds here or in the best): neg\_elbo: conv-gaussian / conv-bernoulli / vamp\_prior; iw\_nll: conv-gaussian / conv-bernoulli / vamp\_prior. Seeds: successful runs; failed runs are counted, not averaged.}}
\label{{tab:vaebench-digits-{group}}}
\begin{{tabular}}{{rlrrrrr}}
\toprule
\# & combination & neg\_elbo (nats) $\downarrow$ & iw\_nll (nats) $\downarrow$ & seeds & params & train (s) \\
\midrule
1 & mlp-gaussian / mlp-bernoulli / standard-normal & $25.50 \pm 0.50^{{\dagger}}$ & $\mathbf{{24.20 \pm 0.20}}$ & 3 & 1000 & 10.0 \\
2 & conv-gaussian / conv-bernoulli / vamp\_prior & $25.80$ & $24.25$ & 1 & 1000 & 10.0 \\
3 & mlp-gaussian / mlp-bernoulli / vamp\_prior & $\mathbf{{25.40 \pm 0.20}}$ & $24.30 \pm 0.20^{{\dagger}}$ & 3 & 1000 & 10.0 \\
4 & conv-gaussian / conv-bernoulli / standard-normal & $28.10 \pm 0.14$ & $26.10 \pm 0.14$ & 2 (+1 failed) & 1000 & 10.0 \\
\bottomrule
\end{{tabular}}
\end{{table}}"""  # noqa: E501
    assert tables.to_latex(boards) == expected


def test_decimals_parameter() -> None:
    boards = tables.leaderboard(known_records(), ["iw_nll"])
    assert "**24.200 ± 0.200**" in tables.to_markdown(boards, decimals=3)
    assert "**24.2 ± 0.2**" in tables.to_markdown(boards, decimals=1)


def test_latex_escapes_names() -> None:
    assert tables.latex_escape("a_b & 5% #1 {x} ~ ^") == (
        r"a\_b \& 5\% \#1 \{x\} \textasciitilde{} \textasciicircum{}"
    )


def test_html_is_a_plain_escaped_table() -> None:
    records = [make_record("b", s, {"iw_nll": 24.0 + s}) for s in range(2)]
    for record in records:
        record["combination"]["prior"] = "<vamp&co>"
    text = tables.to_html(tables.leaderboard(records, ["iw_nll"]))
    assert text.startswith("<table") and text.endswith("</table>")
    assert "&lt;vamp&amp;co&gt;" in text and "<vamp" not in text
    assert "<script" not in text and "<strong>24.50 ± 0.71</strong>" in text


def test_tables_of_one_group_get_distinct_html_ids() -> None:
    import re

    records = [make_record("b", s, {"iw_nll": 24.0 + s, "neg_elbo": 25.0 + s}) for s in range(2)]
    boards = [*tables.leaderboard(records, ["iw_nll"]), *tables.leaderboard(records, ["neg_elbo"])]
    ids = re.findall(r'<table id="([^"]+)"', tables.to_html(boards))
    assert len(ids) == 2 and ids[0] != ids[1] and ids[1] == f"{ids[0]}-2"


def test_csv_and_json_hold_the_same_numbers() -> None:
    boards = tables.leaderboard(known_records(), ["neg_elbo", "iw_nll"])
    from io import StringIO

    frame = pd.read_csv(StringIO(tables.to_csv(boards)))
    assert list(frame["rank"]) == [1, 2, 3, 4]
    assert frame.loc[0, "iw_nll:mean"] == pytest.approx(24.2)
    assert list(frame["iw_nll:mark"].fillna("")) == ["best", "untested", "not worse", "worse"]
    data = json.loads(tables.to_json(boards))
    assert data[0]["rows"][2]["cells"]["iw_nll"]["values"] == [24.1, 24.3, 24.5]
    assert data[0]["rows"][1]["cells"]["iw_nll"]["std"] is None  # NaN -> null


def test_two_budgets_land_in_two_tables_with_a_note() -> None:
    records = known_records() + [make_record("a", 0, {"iw_nll": 30.0}, steps=500)]
    boards = tables.leaderboard(records, ["iw_nll"])
    assert len(boards) == 2
    assert sorted(b.budget["steps"] for b in boards) == [500, 2000]
    for board in boards:
        (note,) = board.notes
        steps = board.budget["steps"]
        assert note == (
            "Not comparable with 1 other digits table: they differ in budget.steps. "
            f"Here budget.steps={steps}."
        )
    markdown = tables.to_markdown(boards)
    assert markdown.count("### digits v1") == 2 and "Here budget.steps=500." in markdown


def test_suites_get_separate_tables_without_a_note() -> None:
    records = [make_record("a", 0, {"iw_nll": 1.0}, suite=s) for s in ("digits", "mnist")]
    boards = tables.leaderboard(records, ["iw_nll"])
    assert [b.suite for b in boards] == ["digits", "mnist"] and not boards[0].notes


def test_unknown_metric_lists_the_metrics_that_exist() -> None:
    with pytest.raises(ConfigError) as info:
        tables.leaderboard(known_records(), ["iw_nl"])
    message = str(info.value)
    assert "\n" not in message
    assert "'iw_nl'" in message and "did you mean 'iw_nll'" in message
    assert "the records have: iw_nll, neg_elbo" in message
    with pytest.raises(ConfigError, match="the records have: iw_nll, neg_elbo"):
        tables.leaderboard(known_records(), ["iw_nll"], rank_by="nll")


def test_rank_metric_needs_a_direction() -> None:
    records = [make_record("a", 0, {"iw_nll": 1.0, "kl": 2.0})]
    with pytest.raises(ConfigError, match="'kl' has no better direction; rank by one of: iw_nll"):
        tables.leaderboard(records, ["iw_nll", "kl"], rank_by="kl")


def test_rank_metric_not_shown_becomes_the_first_column() -> None:
    (board,) = tables.leaderboard(known_records(), ["iw_nll"], rank_by="neg_elbo")
    assert [m.name for m in board.metrics] == ["neg_elbo", "iw_nll"]
    assert board.rows[0].prior == "vamp_prior"


def test_per_seed_csv_reads_back_into_the_same_leaderboard(tmp_path: Path) -> None:
    records = known_records()
    records[0]["metrics"]["iw_nll"]["stderr"] = 0.25
    csv = tmp_path / "per_seed.csv"
    csv.write_text(tables.to_csv(tables.records_frame(records)))
    loaded, problems = tables.load_results([csv])
    assert problems == [] and len(loaded) == len(records)
    assert loaded[0]["_path"] == f"{csv} (row 1)"
    assert {r["key"] for r in loaded} == {r["key"] for r in records}
    assert tables.group_id(loaded[0]) == tables.group_id(records[0])
    assert tables.merge_records(records + loaded)[1] == []  # the numbers survive exactly
    original = tables.to_markdown(tables.leaderboard(records, ["neg_elbo", "iw_nll"]))
    again = tables.to_markdown(tables.leaderboard(loaded, ["neg_elbo", "iw_nll"]))
    assert again == original
    stderr = [r["metrics"]["iw_nll"].get("stderr") for r in loaded if r["key"] == records[0]["key"]]
    assert stderr == [0.25]


def test_a_csv_from_elsewhere_is_refused(tmp_path: Path) -> None:
    csv = tmp_path / "other.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="missing columns: key"):
        tables.load_results([csv])


def test_bad_csv_rows_are_reported_and_skipped(tmp_path: Path) -> None:
    csv = tmp_path / "per_seed.csv"
    frame = tables.records_frame(known_records()[:2])
    frame.loc[1, "status"] = "weird"
    csv.write_text(tables.to_csv(frame))
    loaded, problems = tables.load_results([csv])
    assert len(loaded) == 1 and len(problems) == 1
    assert str(problems[0]) == f"{csv}: row 2: status 'weird' is not 'ok' or 'failed'"
    with pytest.raises(VaebenchError, match="row 2"):
        tables.load_results([csv], strict=True)


def test_bad_records_are_reported_with_their_path_and_skipped(tmp_path: Path) -> None:
    good = make_record("a", 0, {"iw_nll": 24.0})
    truncated = make_record("a", 1, {"iw_nll": 24.1})
    edited = make_record("a", 2, {"iw_nll": 24.2})
    root = write(tmp_path / "results", good, truncated)
    truncated_path = root / "records" / f"{truncated['stem']}.json"
    truncated_path.write_text(truncated_path.read_text()[:100])
    edited_path = root / "records" / f"{edited['stem']}.json"
    edited_path.write_text(json.dumps({**edited, "key": "f" * 64}))
    records, problems = tables.load_results([root])
    assert [r["key"] for r in records] == [good["key"]]
    reasons = {p.path: p.reason for p in problems}
    assert set(reasons) == {truncated_path, edited_path}
    assert reasons[truncated_path].startswith("not a readable JSON record")
    assert "does not match its file name" in reasons[edited_path]
    with pytest.raises(VaebenchError, match="bad record"):
        tables.load_results([root], strict=True)


def test_empty_or_missing_results_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no result records in"):
        tables.load_results([empty])
    with pytest.raises(ConfigError, match="does not exist"):
        tables.load_results([tmp_path / "missing"])


def test_per_seed_frame_renders_in_every_format() -> None:
    frame = tables.records_frame(known_records())
    for fmt in tables.FORMATS:
        text = tables.render(frame, fmt)
        assert "vamp" in text and ("25.40" in text or "25.4" in text)
    assert "| failed   |" in tables.to_markdown(frame)


def test_format_for_uses_the_output_suffix() -> None:
    assert tables.format_for("out.tex", None, "md") == "latex"
    assert tables.format_for("out.tex", "csv", "md") == "csv"
    assert tables.format_for(None, None, "md") == "md"
    assert tables.format_for("out.txt", None, "md") == "md"


def test_run_summary_helpers(tmp_path: Path) -> None:
    records = known_records()
    assert tables.render_run(records) == tables.to_markdown(
        tables.leaderboard(records, ["neg_elbo", "iw_nll"])
    )
    assert tables.render_run([make_record("a", 0, status="failed")]).startswith("(no metrics")
    path = tables.write_per_seed_csv(records, tmp_path / "seeds.csv")
    loaded, problems = tables.load_results([path])
    assert problems == [] and len(loaded) == len(records)


@pytest.mark.slow
def test_the_ood_tables_say_where_auprc_chance_lies(tmp_path: Path) -> None:
    from tests.small_runs import tiny_digits
    from vaebench.api import run
    from vaebench.tables import render_run

    summary = run(
        **tiny_digits(
            metrics=["likelihood", "ood"], priors=["standard-normal"], seeds=[0], out=str(tmp_path)
        )
    )
    text = render_run(summary.records, "md")
    likelihood, _, ood = text.partition("Out-of-distribution")
    assert "AUPRC's chance level is the OOD set's share" in ood
    assert "AUPRC's chance level" not in likelihood


def test_records_of_other_suite_options_are_other_tables_never_averaged(tmp_path: Path) -> None:
    """Static and dynamic binarization are two data sets: same combination, same budget, yet
    their seeds are not one mean."""
    dynamic = [
        make_record("a", seed, {"iw_nll": value}, options={"binarization": "dynamic"})
        for seed, value in enumerate((84.65, 84.46))
    ]
    static = [make_record("a", 0, {"iw_nll": 88.35}, options={"binarization": "static"})]
    boards = tables.leaderboard(dynamic + static, ["iw_nll"])
    by_option = {b.options["binarization"]: b for b in boards}
    assert sorted(by_option) == ["dynamic", "static"]
    assert by_option["static"].rows[0].cells["iw_nll"].n == 1
    assert by_option["static"].rows[0].cells["iw_nll"].mean == pytest.approx(88.35)
    assert by_option["dynamic"].rows[0].cells["iw_nll"].mean == pytest.approx(84.555)
    assert by_option["static"].description.startswith("suite options: binarization=static; ")
    assert "they differ in option.binarization" in by_option["static"].notes[0]
    # An option left unset is no option: such a record shares a group with one without.
    unset = make_record("a", 0, {"iw_nll": 1.0}, options={"limit": None})
    assert tables.group_id(unset) == tables.group_id(make_record("a", 0, {"iw_nll": 1.0}))
    # A CSV export reads back with its options, into the same groups.
    csv = tmp_path / "per_seed.csv"
    csv.write_text(tables.to_csv(tables.records_frame(dynamic + static)))
    loaded, problems = tables.load_results([csv])
    assert problems == []
    assert sorted(map(tables.group_id, loaded)) == sorted(map(tables.group_id, dynamic + static))
