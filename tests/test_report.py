"""``vaebench report`` on a tiny digits run: a self-contained page with every figure, every
combination, and a say-so for every missing part."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from vaebench import cli, plugins, tables
from vaebench.images import PNG_SIGNATURE, image_grid_png, pair_grid_png
from vaebench.report import build_report, figdata
from vaebench.results import load_records
from vaebench.suites import digits

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.slow  # every test reads a trained grid (the tiny_run fixture)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny digits grid (every prior, two seeds), run once for the module, with sample and
    reconstruction grids beside every record (made here when the pipeline saved none)."""
    from vaebench.api import run

    out = tmp_path_factory.mktemp("report") / "r"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(plugins.ENV_PLUGINS, "")  # the built-in plugin only: hermetic
        plugins.reset_default_host()
        try:
            run(
                suite="digits",
                profile="tiny",
                seeds=[0, 1],
                out=str(out),
                progress=False,
                suite_options={"limit": 100},  # evaluation on 100 test points: seconds
            )
        finally:
            plugins.reset_default_host()
    add_missing_grids(out)
    return out


def add_missing_grids(root: Path) -> None:
    tiles = digits.load({}).test[:16].numpy().reshape(-1, 8, 8) / (digits.LEVELS - 1)
    for path in sorted((root / "records").glob("*.json")):
        record = json.loads(path.read_text())
        if record["status"] != "ok" or "samples" in record["artifacts"]:
            continue
        folder = root / "artifacts" / record["stem"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "samples.png").write_bytes(image_grid_png(tiles, ncol=4, scale=4, pad=4))
        (folder / "recon.png").write_bytes(pair_grid_png(tiles[:8], tiles[8:], scale=4, pad=4))
        record["artifacts"]["samples"] = f"artifacts/{record['stem']}/samples.png"
        record["artifacts"]["recon"] = f"artifacts/{record['stem']}/recon.png"
        path.write_text(json.dumps(record))


class Page(HTMLParser):
    """Every tag, attribute and text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, name, value or "") for name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)

    def values(self, attr: str, tag: str | None = None) -> list[str]:
        return [v for t, a, v in self.attrs if a == attr and (tag is None or t == tag)]

    @property
    def plain(self) -> str:
        return " ".join(self.text)


def expected_figures(root: Path) -> int:
    """One per figure kind the issue lists, counted from the records alone."""
    records, _ = load_records([root])
    ok = [r for r in records if r["status"] == "ok"]
    curves = 1 if any(r.get("training", {}).get("curve") for r in ok) else 0
    collapse = {
        figdata.label_of(r)
        for r in ok
        if (r["metrics"].get("collapse/kl", {}).get("extra") or {}).get("per_dim")
        or (r["metrics"].get("collapse/active_units", {}).get("extra") or {}).get("per_dim")
    }
    pairs = set()
    for r in ok:
        if "scores" in r["artifacts"]:
            with np.load(root / r["artifacts"]["scores"]) as data:
                pairs |= {tuple(n.split("/")) for n in data.files if not n.startswith("test/")}
    images = {figdata.label_of(r) for r in ok if "samples" in r["artifacts"]}
    return curves + len(collapse) + len(pairs) + len(images)


@pytest.fixture(scope="module")
def written(tiny_run, tmp_path_factory):
    """The report and its figure files, written once through the command line."""
    out = tmp_path_factory.mktemp("out")
    code = cli.main(
        ["report", str(tiny_run), "-o", str(out / "r.html"), "--figures", str(out / "figs")]
    )
    assert code == 0
    return out / "r.html", out / "figs"


def assert_self_contained(page: Page) -> None:
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    for tag, name, value in page.attrs:
        assert "http://" not in value and "https://" not in value, (tag, name)
        if name == "href":
            assert value.startswith("#"), value
        if name == "src":
            assert value.startswith("data:image/png;base64,"), tag
    ids = set(page.values("id"))
    assert all(href[1:] in ids for href in page.values("href"))


def test_report_is_one_self_contained_page_with_every_figure(tiny_run, written):
    html_path, figures_dir = written
    text = html_path.read_text(encoding="utf-8")
    page = Page(text)
    assert_self_contained(page)
    assert "url(" not in text  # no fonts or images fetched by the style sheet
    images = page.values("src", "img")
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert len(images) == expected_figures(tiny_run)
    assert len(images) >= 1 + 3 + 3  # curves, at least one ROC per OOD set, image grids
    # Each embedded figure is also written for papers, as PNG and PDF.
    pngs = sorted(figures_dir.glob("*.png"))
    assert len(pngs) == len(images)
    for png in pngs:
        assert png.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


def test_report_names_every_combination_and_its_provenance(tiny_run, written):
    page = Page(written[0].read_text(encoding="utf-8"))
    records, _ = load_records([tiny_run])
    plain = page.plain
    for record in records:
        assert tables.combination_label(record["combination"]) in plain
    for heading in (
        "Leaderboard",
        "Runs",
        "Learning curves",
        "Posterior collapse",
        "Out-of-distribution detection",
        "Samples and reconstructions",
        "Provenance",
    ):
        assert heading in plain
    environment = records[0]["environment"]
    assert environment["torch"] in plain and environment["python"] in plain
    assert "suite version" in plain and "budget" in plain and "steps=20" in plain
    assert "iw_nll" in plain  # the leaderboard's columns


def test_report_figure_data_match_the_records(tiny_run):
    records, _ = load_records([tiny_run])
    curves, _ = figdata.learning_curves(records)
    assert len(curves) == len({figdata.label_of(r) for r in records})
    for summary in curves:
        seeds = [r for r in records if figdata.label_of(r) == summary.label]
        finals = [r["training"]["curve"][-1]["val_neg_elbo"] for r in seeds]
        assert summary.val_mean[-1] == pytest.approx(np.mean(finals))
        assert summary.val_lo[-1] == min(finals) and summary.val_hi[-1] == max(finals)
    rocs, _ = figdata.roc_curves(records)
    recorded = [
        (s.auroc, s.recorded_auroc)
        for group in rocs.values()
        for c in group
        for s in c.seeds
        if s.recorded_auroc is not None
    ]
    for computed, stored in recorded:
        assert computed == pytest.approx(stored, abs=1e-9)


def break_parts(source: Path, target: Path) -> dict[str, str]:
    """A copy of a run with one failed combination, one without artifacts or collapse metrics,
    and one whose scores hold no OOD set and whose name needs escaping."""
    shutil.copytree(source, target)
    labels = {}
    for path in sorted((target / "records").glob("*.json")):
        record = json.loads(path.read_text())
        prior = record["combination"]["prior"]
        if prior == "vamp":
            record.update(
                status="failed",
                metrics={},
                training=None,
                artifacts={},
                error={
                    "type": "TrainingError",
                    "message": "loss is NaN",
                    "phase": "train",
                    "traceback": "",
                },
            )
        elif prior == "mog":
            record["artifacts"] = {}
            record["metrics"] = {
                k: v for k, v in record["metrics"].items() if not k.startswith("collapse/")
            }
        else:
            record["combination"]["prior"] = "sn<&>"
            scores = target / record["artifacts"]["scores"]
            with np.load(scores) as data:
                kept = {n: data[n] for n in data.files if n.startswith("test/")}
            np.savez(scores, **kept)
        labels[prior] = tables.record_label(record)
        path.write_text(json.dumps(record))
    return labels


def test_report_says_what_is_missing_where_it_would_be(tiny_run, tmp_path):
    root = tmp_path / "broken"
    labels = break_parts(tiny_run, root)
    report = build_report(root)
    page = Page(report.html)
    assert_self_contained(page)
    assert len(page.values("src", "img")) == len(report.figures) == expected_figures(root)
    plain = page.plain
    assert f"{labels['vamp']}: every seed failed in phase train (TrainingError: loss is NaN)" in (
        plain
    )
    assert f"{labels['mog']}: no per-example scores" in plain
    assert f"{labels['standard-normal']}: the scores hold no OOD set" in plain
    assert f"{labels['mog']}: no sample or reconstruction grid was saved" in plain
    assert f"{labels['mog']}: no per-dimension KL or activities recorded" in plain
    assert "Missing ROC curves" in plain
    # Text is escaped: the odd name shows as written and injects no markup.
    assert labels["standard-normal"] in plain and "sn&lt;&amp;&gt;" in report.html
    assert "sn<&>" not in report.html
    assert any("failed" in v for v in page.values("class", "tr"))


def test_report_of_runs_that_all_failed(tiny_run, tmp_path, capsys):
    root = tmp_path / "failed"
    break_parts(tiny_run, tmp_path / "broken")
    (root / "records").mkdir(parents=True)
    for path in (tmp_path / "broken" / "records").glob("*vamp*.json"):
        shutil.copy(path, root / "records" / path.name)
    assert cli.main(["report", str(root)]) == 0
    text = (root / "report.html").read_text(encoding="utf-8")
    assert "every run of this group failed" in Page(text).plain
    assert "report.html" in capsys.readouterr().err
    umask = os.umask(0)
    os.umask(umask)
    assert (root / "report.html").stat().st_mode & 0o777 == 0o666 & ~umask  # shareable


def test_report_errors_name_the_fix(tmp_path, tiny_run, monkeypatch, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "no result records" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["report", str(tiny_run), "-o", str(tmp_path / "x.html")]) == 2
    assert "pip install 'vaebench[report]'" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
