"""Stage stats: counts from what a stage wrote, or from the counts its summary states (which must add up)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from textbooklm.stage_stats import stage_stats
from textbooklm.store import finish_dataset, write_table


def _stage(tmp_path, kept: int, rejected: int):
    write_table(tmp_path / "part-00000.parquet", pa.table({"id": [str(i) for i in range(kept)]}))
    finish_dataset(tmp_path, stage="corpus", config_hash="h")
    write_table(tmp_path / "rejected" / "part-00000.parquet",
                pa.table({"id": [f"r{i}" for i in range(rejected)], "reason": ["too-long"] * rejected}))
    finish_dataset(tmp_path / "rejected", stage="corpus.rejected", config_hash="h")
    return tmp_path


def test_counts_come_from_the_datasets(tmp_path):
    stats = stage_stats("corpus", _stage(tmp_path, 5, 2), {}, 1.0)
    assert (stats["in"], stats["kept"], stats["dropped"], stats["in_means"]) == (7, 5, 2, "records")
    assert stats["dropped_by_reason"] == {"too-long": 2}


def test_a_stage_may_say_what_in_means_and_its_counts_must_add_up(tmp_path):
    folder = _stage(tmp_path, 5, 2)
    stats = stage_stats("corpus", folder, {"counts": {"in": 6, "kept": 4, "dropped": 2, "in_means": "checked"}}, 1.0)
    assert (stats["in"], stats["kept"], stats["dropped"], stats["in_means"]) == (6, 4, 2, "checked")
    with pytest.raises(ValueError, match="in 7 != kept 4"):
        stage_stats("corpus", folder, {"counts": {"in": 7, "kept": 4, "dropped": 2}}, 1.0)
