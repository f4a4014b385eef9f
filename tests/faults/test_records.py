"""Records with fields of the wrong type, other schema versions, and the fourth axis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.table_records import make_record, write
from vaebench import cli, results, tables
from vaebench.errors import VaebenchError


def _results(root: Path, shift: float = 0.0) -> Path:
    return write(
        root,
        *(
            make_record(c, s, {"iw_nll": 24.0 + s / 10 + shift, "neg_elbo": 25.0 + s / 10})
            for c in "ab"
            for s in range(2)
        ),
    )


BREAKS = {
    "seed": ("abc", "field 'seed' must be a whole number, not str 'abc'"),
    "combination": ("a/b/c", "field 'combination' must be an object, not str 'a/b/c'"),
    "suite": (None, "field 'suite' must be an object, not null"),
    "artifacts": (["x.png"], "field 'artifacts' must be an object, not list ['x.png']"),
}


def _break(root: Path, field: str) -> Path:
    path = sorted((root / "records").glob("*.json"))[0]
    record = json.loads(path.read_text())
    record[field] = BREAKS[field][0]
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize("field", sorted(BREAKS))
def test_a_field_of_the_wrong_type_is_skipped_naming_the_file_and_field(tmp_path, field):
    root = _results(tmp_path / "r")
    bad = _break(root, field)
    records, problems = results.load_records([root])
    assert len(records) == 3
    assert [str(p) for p in problems] == [f"{bad}: {BREAKS[field][1]}"]
    with pytest.raises(VaebenchError, match=f"bad record {bad}"):
        results.load_records([root], strict=True)


@pytest.mark.parametrize("field", sorted(BREAKS))
def test_leaderboard_and_compare_skip_bad_records_and_carry_on(tmp_path, capsys, field):
    base, cur = _results(tmp_path / "base"), _results(tmp_path / "cur")
    bad = _break(cur, field)
    assert cli.main(["leaderboard", str(cur)]) == 0
    captured = capsys.readouterr()
    assert f"skipped bad record {bad}: {BREAKS[field][1]}" in captured.err
    assert "| combination" in captured.out
    assert cli.main(["compare", str(base), str(cur)]) == 0
    assert "Result: no regression (exit 0)." in capsys.readouterr().out


def test_report_skips_bad_records(tmp_path):
    pytest.importorskip("matplotlib")
    from vaebench.report import build_report

    root = _results(tmp_path / "r")
    bad = _break(root, "seed")
    report = build_report(root)
    assert f"unreadable record {bad}: field" in report.html.replace("&#x27;", "'")


def test_an_unexpected_error_in_compare_is_not_a_regression(tmp_path, capsys, monkeypatch):
    import vaebench.compare

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(vaebench.compare, "compare", broken)
    base, cur = _results(tmp_path / "base"), _results(tmp_path / "cur")
    assert cli.main(["compare", str(base), str(cur)]) == 2
    err = capsys.readouterr().err
    assert "RuntimeError: a bug" in err and "no verdict" in err


def test_schema_1_records_read_as_the_elbo_under_legacy_seeding(tmp_path):
    root = _results(tmp_path / "r")
    records, problems = results.load_records([root])
    assert problems == [] and len(records) == 4
    for record in records:
        assert record["combination"]["objective"] == "elbo"
        assert record["seeding"] == "legacy"
    # Their label and group id stay what they were before objectives existed.
    assert tables.record_label(records[0]) == "mlp-gaussian / mlp-bernoulli / standard-normal"
    raw = json.loads(Path(records[0]["_path"]).read_text())
    assert tables.group_id(records[0]) == tables.group_id(raw)


def schema_2(record: dict, objective: str = "iwae", options: dict | None = None) -> dict:
    """A schema-2 copy of a hand-made record: the objective and the seeding scheme."""
    options = {"k": 1} if options is None else options
    out = json.loads(json.dumps(record))
    out["schema_version"] = 2
    out["combination"]["objective"] = objective
    out["components"] = {
        "objective": {
            "name": objective,
            "plugin": "vaebench",
            "version": "0.1.0",
            "options": options,
            "defaults": {"k": 1},
        }
    }
    out["seeding"] = "streams-1"
    out["key"] = results.make_key({"was": out["key"], "objective": objective, "options": options})
    out["stem"] = results.stem("digits", out["combination"], out["seed"], out["key"])
    return out


def test_schema_2_records_load_and_show_their_objective(tmp_path):
    old = [make_record("b", s, {"iw_nll": 24.0 + s}) for s in range(2)]
    iwae = [schema_2(r, options={"k": 5}) for r in old]
    plain = [schema_2(r, options={"k": 1}) for r in old]
    root = write(tmp_path / "r", *old, *iwae, *plain)
    records, problems = results.load_records([root])
    assert problems == [] and len(records) == 6
    labels = {tables.record_label(r) for r in records}
    assert labels == {
        "mlp-gaussian / mlp-bernoulli / vamp_prior",
        "mlp-gaussian / mlp-bernoulli / vamp_prior / iwae(k=5)",
        "mlp-gaussian / mlp-bernoulli / vamp_prior / iwae",
    }
    boards = tables.leaderboard(records, ["iw_nll"])
    # Legacy seeding never shares a table with the new scheme; the objectives are rows.
    assert len(boards) == 2
    new = next(b for b in boards if b.seeding == "streams-1")
    assert {r.combination for r in new.rows} == {
        "mlp-gaussian / mlp-bernoulli / vamp_prior / iwae(k=5)",
        "mlp-gaussian / mlp-bernoulli / vamp_prior / iwae",
    }
    assert {r.objective for r in new.rows} == {"iwae"}
    assert all(r.n_seeds == 2 for r in new.rows)
    assert any("seeding" in note for b in boards for note in b.notes)


def test_schema_2_per_seed_csv_reads_back_with_objective_and_seeding(tmp_path):
    old = [make_record("b", s, {"iw_nll": 24.0 + s}) for s in range(2)]
    records = old + [schema_2(r, options={"k": 5}) for r in old]
    csv = tables.write_per_seed_csv(records, tmp_path / "seeds.csv")
    loaded, problems = tables.load_results([csv])
    assert problems == []
    original = tables.to_markdown(tables.leaderboard(records, ["iw_nll"]))
    assert tables.to_markdown(tables.leaderboard(loaded, ["iw_nll"])) == original
    assert "vamp_prior / iwae(k=5)" in original


def test_schema_2_without_objective_or_seeding_is_refused_naming_the_field():
    record = schema_2(make_record("a", 0, {"iw_nll": 1.0}))
    del record["combination"]["objective"]
    with pytest.raises(results.RecordError, match="'combination.objective' must be a name"):
        results.validate_record(record)
    record = schema_2(make_record("a", 0, {"iw_nll": 1.0}))
    del record["seeding"]
    with pytest.raises(results.RecordError, match="'seeding' must be a scheme name"):
        results.validate_record(record)
    record["identity"] = {"seeding": "streams-1"}
    assert results.validate_record(record)["seeding"] == "streams-1"


def test_a_newer_schema_is_refused_with_the_fix():
    record = {**make_record("a", 0, {"iw_nll": 1.0}), "schema_version": 3}
    with pytest.raises(results.RecordError, match=r"reads \(1, 2\); upgrade vaebench"):
        results.validate_record(record)


def test_check_record_holds_a_record_to_be_written_to_the_type():
    record = schema_2(make_record("a", 0, {"iw_nll": 1.0}))
    results.check_record(record)
    with pytest.raises(results.RecordError, match="'schema_version' is 1; writers write 2"):
        results.check_record(make_record("a", 0, {"iw_nll": 1.0}))
    with pytest.raises(results.RecordError, match="field 'seed' must be a whole number"):
        results.check_record({**record, "seed": "0"})
    with pytest.raises(results.RecordError, match="metrics.iw_nll.value' must be a number"):
        results.check_record({**record, "metrics": {"iw_nll": {"value": "1.0"}}})
    with pytest.raises(results.RecordError, match="field 'stem' must be a string"):
        results.check_record({k: v for k, v in record.items() if k != "stem"})
