"""The stage ledger: verdicts recorded per shard, summed once, and everything else derived from them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from textbooklm.ledger import ShardLedger, StageLedger
from textbooklm.stage_stats import stage_stats
from textbooklm.store import Dataset, finish_dataset, write_table

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])


def _shard(folder, key: str, kept: int, drops: list[tuple[str, str]]) -> dict:
    led = ShardLedger(str(folder), key, SCHEMA)
    led.keep(kept)
    for i, (rid, reason) in enumerate(drops):
        led.drop({"id": rid, "text": f"t{i}"}, reason, f"why {rid}")
    led.count("tokens", 10 * kept)
    return led.close()


def test_shards_sum_into_counts_line_and_rejected_rows(tmp_path):
    _shard(tmp_path, "part-00000.parquet", 3, [("a", "too-long"), ("b", "exact-duplicate")])
    _shard(tmp_path, "part-00001.parquet", 2, [("c", "too-long")])
    write_table(tmp_path / "part-00000.parquet", pa.table({"id": ["k1", "k2", "k3", "k4", "k5"]}))
    summary = StageLedger("corpus", tmp_path, "files read", SCHEMA).finish(tail="2 clusters", extra=1)
    counts = summary["counts"]
    assert (counts["in"], counts["kept"], counts["dropped"]) == (8, 5, 3)
    assert counts["dropped_by_reason"] == {"too-long": 2, "exact-duplicate": 1}
    assert counts["counters"] == {"tokens": 50} and summary["extra"] == 1
    assert summary["line"] == ("corpus: 8 files read -> 5 kept, 3 dropped (too-long 2, exact-duplicate 1); "
                               "2 clusters")
    rejected = Dataset(tmp_path / "rejected")
    rows = rejected.to_table().to_pylist()
    assert rejected.is_finished and [r["id"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["reason"] == "too-long" and rows[0]["detail"] == "why a" and rows[0]["text"] == "t0"
    finish_dataset(tmp_path, stage="corpus", config_hash="h", summary=summary)
    stats = stage_stats("corpus", tmp_path, summary, 1.0)
    assert (stats["in"], stats["kept"], stats["dropped"], stats["in_means"]) == (8, 5, 3, "files read")
    assert stats["dropped_by_reason"] == counts["dropped_by_reason"] and stats["tokens"] == 50


def test_a_rerun_shard_overwrites_and_counts_once(tmp_path):
    _shard(tmp_path, "part-00000.parquet", 3, [("a", "too-long")])
    _shard(tmp_path, "part-00000.parquet", 3, [("a", "too-long")])  # killed after close, run again
    led = StageLedger("corpus", tmp_path)
    assert led.totals()["in"] == 4
    led.forget(set())  # a re-plan without this shard
    assert led.totals()["in"] == 0 and not (tmp_path / "rejected" / "part-00000.parquet").exists()


def test_stats_refuse_a_ledger_that_disagrees_with_its_rejected_rows(tmp_path):
    _shard(tmp_path, "part-00000.parquet", 1, [("a", "too-long")])
    summary = StageLedger("corpus", tmp_path).finish()
    summary["counts"].update(dropped=2, kept=0, dropped_by_reason={"too-long": 2})
    with pytest.raises(ValueError, match="says 2 dropped but rejected/ holds 1"):
        stage_stats("corpus", tmp_path, summary, 1.0)


def test_a_drop_needs_a_reason(tmp_path):
    with pytest.raises(ValueError, match="needs a reason"):
        ShardLedger(str(tmp_path), "k").drop({"id": "x"}, "")


def test_a_stage_that_decided_nothing_says_only_its_tail(tmp_path):
    summary = StageLedger("pretrain", tmp_path, "documents read").finish(tail="4 steps, 512 tokens")
    assert summary["line"] == "pretrain: 4 steps, 512 tokens" and summary["counts"]["in"] == 0
