"""What ``vaebench run`` prints: one parseable document in the machine formats, and every
section (the OOD table too) drawn by the one table model."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

import pandas as pd
import pytest

from tests.table_records import make_record
from vaebench import formats, tables
from vaebench.commands import export, leaderboard


def records() -> list[dict]:
    out = []
    for combo, shift in (("a", 0.0), ("b", 0.3)):
        for seed in range(3):
            record = make_record(combo, seed, {"neg_elbo": 25.0 + shift + seed / 10})
            metrics = record["metrics"]
            metrics["iw_nll"] = {"value": 24.0 + shift + seed / 10, "unit": "nats",
                                 "higher_is_better": False}  # fmt: skip
            metrics["collapse/kl"] = {"value": 3.0 + seed, "unit": "nats"}
            metrics["holes/marginal_kl"] = {"value": 1.0 + shift, "unit": "nats",
                                            "higher_is_better": False}  # fmt: skip
            for score in ("iw_ll", "elbo"):
                for stat, hib in (("auroc", True), ("auprc", True), ("fpr95", False)):
                    metrics[f"ood/{score}/noise_&_co/{stat}"] = {
                        "value": 0.9 - shift / 3 + seed / 100,
                        "unit": "",
                        "higher_is_better": hib,
                    }
            metrics["iw_gap"] = {"value": 1.0, "unit": "nats", "higher_is_better": None}
            out.append(record)
    return out


def test_json_is_one_object_with_a_key_per_table():
    data = json.loads(tables.render_run(records(), "json"))
    assert list(data) == ["likelihood", "collapse", "ood/elbo", "ood/iw_ll", "other"]
    (board,) = data["likelihood"]
    assert [m["name"] for m in board["metrics"]] == ["neg_elbo", "iw_nll"]
    assert board["rank_by"] == "iw_nll"
    assert data["collapse"][0]["rank_by"] == "holes/marginal_kl"
    assert data["other"] == {"error": "none of iw_gap has a better direction to rank by"}


def test_csv_is_the_per_seed_table():
    frame = pd.read_csv(StringIO(tables.render_run(records(), "csv")))
    assert len(frame) == 6 and {"iw_nll", "ood/iw_ll/noise_&_co/auroc", "seed"} <= set(frame)


def test_the_ood_table_is_a_leaderboard_in_every_format():
    md = tables.render_run(records(), "md")
    assert "## Out-of-distribution detection (OOD set = positive class): iw_ll" in md
    assert "**0.91 ± 0.01**" in md  # the best AUROC is bold, as in every other table
    latex = tables.render_run(records(), "latex")
    assert r"ood/iw\_ll/noise\_\&\_co/auroc" in latex and "noise_&" not in latex
    html = tables.render_run(records(), "html")
    assert "noise_&amp;_co" in html and "<h2>Posterior collapse and prior mismatch</h2>" in html


def test_sections_come_from_what_each_metric_declares():
    declared = [tables.Placement("custom", "collapse", ("iw_gap",), "iw_gap")]
    drawn = tables.section_tables(records(), declared)
    assert [(t.key, t.metrics) for t in drawn][0] == ("collapse", ("iw_gap",))
    assert drawn[-1].key == "other" and "iw_nll" in drawn[-1].metrics


def test_the_report_tables_get_their_ids_from_the_renderer():
    boards = tables.leaderboard(records(), ["iw_nll"])
    html = tables.to_html(boards, id_prefix="likelihood-")
    assert html.startswith('<table id="likelihood-tab-vaebench-digits-')


def test_one_list_of_formats_without_torch_or_pandas():
    code = (
        "import sys, vaebench.formats as f; "
        "print(f.FORMATS, 'torch' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "('md', 'latex', 'csv', 'json', 'html') False False"
    assert tables.FORMATS is formats.FORMATS
    import argparse

    for module in (leaderboard, export):
        parser = argparse.ArgumentParser()
        module.add_parser(parser.add_subparsers())
        (sub,) = parser._subparsers._group_actions[0].choices.values()
        (action,) = [a for a in sub._actions if a.dest == "format"]
        assert tuple(action.choices) == formats.FORMATS


@pytest.mark.parametrize("fmt", ["json", "md"])
def test_leaderboard_section_draws_the_run_tables(tmp_path, capsys, fmt):
    from tests.table_records import write
    from vaebench import cli

    root = write(tmp_path / "r", *records())
    assert cli.main(["leaderboard", str(root), "--section", "ood", "--format", fmt]) == 0
    out = capsys.readouterr().out
    expected = tables.render_sections(records(), fmt, 2, ["ood"])
    assert out == expected + "\n"
    assert cli.main(["leaderboard", str(root), "--section", "ood", "--metric", "kl"]) == 2
