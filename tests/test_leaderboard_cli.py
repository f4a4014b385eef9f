"""The leaderboard, export and compare commands, run through their own argparse parsers."""

from __future__ import annotations

import argparse
import json
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest

from tests.table_records import make_record, write
from vaebench import tables
from vaebench.commands import compare, export, leaderboard
from vaebench.errors import ConfigError, VaebenchError


def cli(*argv: str | Path) -> int:
    """Parse ``argv`` with the commands' own parsers and run the chosen one."""
    parser = argparse.ArgumentParser(prog="vaebench")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (leaderboard, export, compare):
        module.add_parser(subparsers)
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def results(root: Path, shift: float = 0.0, combos: str = "abc", **options) -> Path:
    values = {"a": [24.0, 24.2, 24.4], "b": [24.1, 24.3, 24.5], "c": [26.0, 26.2]}
    return write(
        root,
        *(
            make_record(
                c, s, {"iw_nll": v + shift, "neg_elbo": v + 1 + shift, "kl": 3.0}, **options
            )
            for c in combos
            for s, v in enumerate(values[c])
        ),
    )


def test_leaderboard_prints_markdown_of_the_default_metrics(tmp_path: Path, capsys) -> None:
    root = results(tmp_path / "r")
    assert cli("leaderboard", root) == 0
    out = capsys.readouterr().out
    records, _ = tables.load_results([root])
    assert out == tables.to_markdown(tables.leaderboard(records, ["neg_elbo", "iw_nll"])) + "\n"
    assert "neg_elbo (nats) ↓" in out and "kl" not in out.split("\n|")[1]


@pytest.mark.parametrize(
    ("fmt", "marker"),
    [
        ("latex", r"\toprule"),
        ("csv", "iw_nll:mean"),
        ("json", '"rank_by": "iw_nll"'),
        ("html", "<table"),
        ("md", "| combination"),
    ],
)
def test_leaderboard_formats(tmp_path: Path, capsys, fmt: str, marker: str) -> None:
    assert cli("leaderboard", results(tmp_path / "r"), "--format", fmt) == 0
    assert marker in capsys.readouterr().out


def test_metric_rank_by_and_decimals(tmp_path: Path, capsys) -> None:
    root = results(tmp_path / "r")
    cli("leaderboard", root, "--metric", "kl,neg_elbo", "--rank-by", "neg_elbo", "--decimals", "3")
    out = capsys.readouterr().out
    assert "kl (nats)" in out and "iw_nll" not in out.replace("Ranked by neg_elbo", "")
    assert "**25.200 ± 0.200**" in out


def test_output_file_format_follows_its_suffix(tmp_path: Path, capsys) -> None:
    target = tmp_path / "board.tex"
    assert cli("leaderboard", results(tmp_path / "r"), "-o", target) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"wrote {target}" in captured.err
    assert target.read_text().startswith("% needs \\usepackage{booktabs}")


def test_bad_records_go_to_stderr_unless_strict(tmp_path: Path, capsys) -> None:
    root = results(tmp_path / "r")
    bad = sorted((root / "records").glob("*.json"))[0]
    bad.write_text(bad.read_text()[:50])
    assert cli("leaderboard", root) == 0
    captured = capsys.readouterr()
    assert f"vaebench: skipped bad record {bad}: not a readable JSON record" in captured.err
    assert "| combination" in captured.out
    with pytest.raises(VaebenchError, match="bad record"):
        cli("leaderboard", root, "--strict")


def test_conflicting_duplicates_go_to_stderr(tmp_path: Path, capsys) -> None:
    one = results(tmp_path / "one", combos="a")
    two = results(tmp_path / "two", shift=1.0, combos="a")
    assert cli("leaderboard", one, two) == 0
    err = capsys.readouterr().err
    assert err.count("vaebench: conflict: key") == 3 and str(two) in err


def test_unknown_metric_is_a_one_line_error_listing_metrics(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        cli("leaderboard", results(tmp_path / "r"), "--metric", "elbo")
    assert "\n" not in str(info.value)
    assert "the records have: iw_nll, kl, neg_elbo" in str(info.value)


def test_empty_and_missing_directories_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no result records"):
        cli("leaderboard", tmp_path / "empty")
    with pytest.raises(ConfigError, match="does not exist"):
        cli("leaderboard", tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="does not exist"):
        cli("export", tmp_path / "nowhere")


def test_per_seed_export_reads_back_into_the_leaderboard(tmp_path: Path, capsys) -> None:
    root = results(tmp_path / "r")
    csv = tmp_path / "per_seed.csv"
    assert cli("export", root, "--per-seed", "-o", csv) == 0
    frame = pd.read_csv(csv)
    assert len(frame) == 8 and {"iw_nll", "neg_elbo", "kl", "seed", "status"} <= set(frame)
    capsys.readouterr()
    cli("leaderboard", root)
    from_dir = capsys.readouterr().out
    cli("leaderboard", csv)
    assert capsys.readouterr().out == from_dir


def test_per_seed_export_can_keep_some_metrics(tmp_path: Path, capsys) -> None:
    cli("export", results(tmp_path / "r"), "--per-seed", "--metric", "iw_nll")
    frame = pd.read_csv(StringIO(capsys.readouterr().out))
    assert "iw_nll" in frame and "neg_elbo" not in frame and "kl" not in frame


def test_aggregated_export_is_the_leaderboard_of_every_metric(tmp_path: Path, capsys) -> None:
    root = results(tmp_path / "r")
    assert cli("export", root) == 0
    frame = pd.read_csv(StringIO(capsys.readouterr().out))
    assert len(frame) == 3
    assert {"iw_nll:mean", "neg_elbo:std", "kl:n", "n_seeds"} <= set(frame)
    cli("export", root, "--format", "json")
    boards = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in boards[0]["metrics"]] == ["iw_nll", "kl", "neg_elbo"]


def test_compare_passes_on_identical_results(tmp_path: Path, capsys) -> None:
    assert cli("compare", results(tmp_path / "base"), results(tmp_path / "cur")) == 0
    assert capsys.readouterr().out.rstrip().endswith("Result: no regression (exit 0).")


def test_compare_fails_when_current_is_clearly_worse(tmp_path: Path, capsys) -> None:
    code = cli("compare", results(tmp_path / "base"), results(tmp_path / "cur", shift=1.0))
    assert code == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "Result: 6 regression(s) (exit 1)." in out
    assert cli("compare", tmp_path / "base", tmp_path / "cur", "--abs", "2") == 0


def test_compare_lists_missing_and_new_combinations(tmp_path: Path, capsys) -> None:
    base = results(tmp_path / "base", combos="ab")
    cur = results(tmp_path / "cur", combos="ac")
    assert cli("compare", base, cur, "--metric", "iw_nll") == 0
    out = capsys.readouterr().out
    assert "Missing in current (1):\n- digits: mlp-gaussian / mlp-bernoulli / vamp_prior" in out
    assert "New in current (1):\n- digits: conv-gaussian / conv-bernoulli / standard-normal" in out


def test_compare_refuses_incomparable_results(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="budget.steps: baseline 2000, current 500"):
        cli("compare", results(tmp_path / "base"), results(tmp_path / "cur", steps=500))


def test_compare_tolerance_flags_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        cli("compare", tmp_path, tmp_path, "--abs", "1", "--rel", "0.1")
    assert info.value.code == 2
