"""The textbooks stage on a real 2-node local Ray cluster (teacher drivers = 2) keeps exactly what the
local run (one in-process driver) keeps; the scripted local server counts every request (issue 26)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from textbooklm.config import PipelineConfig
from textbooklm.pipeline import run_pipeline
from textbooklm.store import Dataset
from textbooklm.teacher.cache import cache_files
from textbooklm.teacher.cache_admin import read_ledgers


def config(server: Any, teacher_table: Any, run: dict[str, Any], **teacher: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "run": {"seed": 3, **run},
        "teachers": {"t": teacher_table(server, **teacher)},
        # the scripted textbooks differ in their topic line only: keep near duplicates, compare all 8 texts
        "textbooks": {"teacher": "t", "count": 8, "per_round": 4, "diversity": {"drop_near_duplicates": False}},
    })


def kept_and_dropped(folder) -> tuple[set, set]:  # noqa: ANN001
    kept = {(r["id"], r["text"]) for r in Dataset(folder / "textbooks").iter_records()}
    dropped = {(r["id"], r["reason"]) for r in Dataset(folder / "textbooks" / "rejected").iter_records()}
    return kept, dropped


@pytest.mark.slow  # a Ray cluster starts in ~10-30 s on a small machine
def test_textbooks_on_a_two_node_ray_cluster_keep_what_the_local_run_keeps(scripted_server, teacher_table, tmp_path):
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    run_pipeline(config(scripted_server, teacher_table, {"executor": "local", "workers": 1}), tmp_path / "local")
    local_sent = Counter(h.prompt for h in scripted_server.hits)
    scripted_server.state.hits.clear()

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        cfg = config(scripted_server, teacher_table, {"executor": "ray", "ray_address": cluster.address}, drivers=2)
        run_pipeline(cfg, tmp_path / "ray")
    finally:
        cluster.shutdown()
    ray_sent = Counter(h.prompt for h in scripted_server.hits)

    kept, dropped = kept_and_dropped(tmp_path / "local")
    assert len(kept) == 8 and (kept, dropped) == kept_and_dropped(tmp_path / "ray")
    assert ray_sent == local_sent and max(ray_sent.values()) == 1  # the same requests, each sent once
    # the drivers wrote their own cache files (a slot per driver running at once); in-process, the main one
    assert [p.name for p in cache_files(tmp_path / "local" / "_cache")] == ["teacher_cache.sqlite"]
    assert 1 <= len([p for p in cache_files(tmp_path / "ray" / "_cache") if p.name != "teacher_cache.sqlite"]) <= 2


def test_textbooks_with_two_local_drivers_keep_what_one_driver_keeps(scripted_server, teacher_table, tmp_path):
    run_pipeline(config(scripted_server, teacher_table, {"workers": 1}), tmp_path / "one")
    one_sent = Counter(h.prompt for h in scripted_server.hits)
    scripted_server.state.hits.clear()
    run_pipeline(config(scripted_server, teacher_table, {"workers": 2}, drivers=2), tmp_path / "two")
    assert kept_and_dropped(tmp_path / "one") == kept_and_dropped(tmp_path / "two")
    assert Counter(h.prompt for h in scripted_server.hits) == one_sent and max(one_sent.values()) == 1
    (ledger,) = [r for r in read_ledgers(tmp_path / "two" / "_cache") if r["stage"] == "textbooks"]
    assert (ledger["requests"], ledger["completed"], ledger["cached"]) == (8, 8, 0)  # the drivers' rows, summed


def test_textbooks_with_drivers_killed_mid_run_resume_without_resending(scripted_server, teacher_table, tmp_path):
    """SIGKILL the run while two drivers send a round: the re-run sends only what no driver had committed,
    and keeps what an uninterrupted one-driver run keeps."""
    from fakes.killed_run import kill_when_cached

    run_pipeline(config(scripted_server, teacher_table, {"workers": 1}), tmp_path / "one")
    scripted_server.state.hits.clear()
    scripted_server.state.latency_s = 0.1
    cfg = config(scripted_server, teacher_table, {"workers": 2}, drivers=2, concurrency=1)
    before = kill_when_cached(cfg, tmp_path / "two", 5)  # round 0 (4) is done, round 1 is under way
    assert 5 <= len(before) < 8, f"the kill should land mid-run, {len(before)} of 8 were done"

    run_pipeline(cfg, tmp_path / "two")
    ok = Counter(h.prompt for h in scripted_server.hits if h.outcome == "ok")
    assert all(ok[p] == 1 for p in before), "a reply committed before the kill was asked again"
    assert len(ok) == 8 and sum(ok.values()) <= 8 + cfg.teachers["t"].drivers * cfg.teachers["t"].concurrency
    assert kept_and_dropped(tmp_path / "one") == kept_and_dropped(tmp_path / "two")
