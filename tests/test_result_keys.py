"""How often a training saves does not change its result, so it is not part of the key or the
table group; records and checkpoints written while it was are found under their former stems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vaebench import plugins, results
from vaebench.runner import RunRequest, plan, run, seed_states
from vaebench.tables import group_id, merge_records

TINY: dict[str, Any] = {
    "suite": "digits", "profile": "tiny", "seeds": [0], "priors": ["standard-normal"],
    "metrics": ["likelihood"], "k": 2, "suite_options": {"limit": 100}, "progress": False,
}  # fmt: skip


def _request(out: Path, **changes: Any) -> RunRequest:
    return RunRequest(**{**TINY, "out": str(out), **changes})


def _as_former(root: Path, record: dict[str, Any], checkpoint_every: int) -> dict[str, Any]:
    """Rewrite ``record`` as it was written while checkpoint_every was part of the key."""
    identity = {
        **record["identity"],
        "budget": {**record["identity"]["budget"], "checkpoint_every": checkpoint_every},
    }
    key = results.make_key(identity)
    stem = results.stem("digits", record["combination"], record["seed"], key)
    old = {
        **record,
        "identity": identity,
        "key": key,
        "stem": stem,
        "budget": {**record["budget"], "checkpoint_every": checkpoint_every},
    }
    old.pop("_path", None)
    artifacts = root / results.ARTIFACTS / record["stem"]
    if artifacts.is_dir():
        artifacts.rename(root / results.ARTIFACTS / stem)
        old["artifacts"] = {
            name: path.replace(record["stem"], stem) for name, path in record["artifacts"].items()
        }
    (root / results.RECORDS / f"{record['stem']}.json").unlink()
    results.write_record(root, old)
    return old


def test_checkpoint_every_changes_neither_the_key_nor_the_table_group(tmp_path: Path) -> None:
    with plugins.use_host(plugins.PluginHost(entry_points=False)) as host:
        (plain,) = plan(_request(tmp_path), host)
        (saving,) = plan(_request(tmp_path, checkpoint_every=7), host)
        (longer,) = plan(_request(tmp_path, steps=30), host)
    assert saving.keys == plain.keys and saving.stems == plain.stems
    assert longer.keys != plain.keys  # a field that does change the result still does
    assert plain.former_stem(0) is None
    assert saving.former_stem(0) not in (None, saving.stems[0])
    a = {**plain.record_head(0), "metrics": {}, "status": "ok"}
    b = {**saving.record_head(0), "metrics": {}, "status": "ok"}
    assert b["budget"]["checkpoint_every"] == 7  # the record still says how it was run
    assert group_id(a) == group_id(b)


def test_result_key_is_the_stored_key_unless_checkpoint_every_was_in_it(tmp_path: Path) -> None:
    with plugins.use_host(plugins.PluginHost(entry_points=False)) as host:
        (unit,) = plan(_request(tmp_path, checkpoint_every=7), host)
    record = {**unit.record_head(0), "metrics": {}, "status": "ok"}
    assert results.result_key(record) == record["key"]
    old = _as_former(_writable(tmp_path, record), record, 7)
    assert old["stem"] == unit.former_stem(0)
    assert old["key"] != record["key"] and results.result_key(old) == record["key"]
    # A record without an identity (written by hand, or an old schema) keeps its key.
    assert results.result_key({"key": "abc"}) == "abc"


def _writable(root: Path, record: dict[str, Any]) -> Path:
    results.prepare_dir(root)
    results.write_record(root, record)
    return root


@pytest.mark.slow
def test_a_record_written_under_its_former_key_is_finished_and_merges_with_a_new_one(
    tmp_path: Path,
) -> None:
    with plugins.use_host(plugins.PluginHost(entry_points=False)) as host:
        first = run(_request(tmp_path, checkpoint_every=5), host)
        (record,) = first.records
        old = _as_former(tmp_path, dict(record), 5)
        (unit,) = plan(_request(tmp_path, checkpoint_every=5), host)
        assert seed_states(_request(tmp_path), [unit])[unit.stems[0]].status == "finished"
        again = run(_request(tmp_path, checkpoint_every=5), host)
        assert (again.ran, again.skipped) == (0, 1)
        assert [r["key"] for r in again.records] == [old["key"]]

        # The same result under both stems is one row of a table, not two seeds.
        records, problems = results.load_records([tmp_path])
        new = {**old, "key": record["key"], "stem": record["stem"], "identity": record["identity"]}
        assert problems == []
        kept, conflicts = merge_records([*records, new])
        assert len(kept) == 1 and conflicts == []

        # --force retrains it: its record replaces the one under the former stem.
        forced = run(_request(tmp_path, checkpoint_every=5, force=True), host)
    assert forced.ran == 1
    names = sorted(p.name for p in (tmp_path / results.RECORDS).glob("*.json"))
    assert names == [f"{record['stem']}.json"]
    assert old["artifacts"] and not (tmp_path / results.ARTIFACTS / old["stem"]).exists()
    assert (tmp_path / results.ARTIFACTS / record["stem"]).is_dir()
    assert (
        json.loads((tmp_path / results.RECORDS / names[0]).read_text())["metrics"]
        == (record["metrics"])
    )
