"""``checks = "executor"``: each round's check (parse, sandbox, extra solutions, per-round diversity) runs
as a task on the run's executor (a local pool worker, or a Ray node) and the stage writes exactly what
driver checks write, on one machine, after a kill, and on a real 2-node Ray cluster (issue 26 item 1)."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from textbooklm.config import PipelineConfig
from textbooklm.pipeline import run_pipeline
from textbooklm.store import Dataset


def config(server: Any, teacher_table: Any, run: dict[str, Any], **textbooks: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "run": {"seed": 5, **run},
        "teachers": {"t": teacher_table(server)},
        # near duplicates dropped: the scripted textbooks differ in their topic line, so some rows are rejected
        "textbooks": {"teacher": "t", "count": 10, "per_round": 3, **textbooks},
    })


def timeless(row: dict[str, Any]) -> dict[str, Any]:
    """A row less the one thing no two runs share: how long each code block took in the sandbox."""
    return {**row, "provenance": re.sub(r'"duration_s": [0-9.e-]+', '"duration_s": _', row["provenance"])}


def written(folder: Path, stage: str = "textbooks") -> dict[str, Any]:
    """Everything the stage wrote that a user reads: kept and rejected rows (all columns, in order, run
    times left out), the diversity report, and the summary's counts."""
    out = folder / stage
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "kept": [[timeless(r) for r in pq.read_table(p).to_pylist()] for p in Dataset(out).shards()],
        "rejected": [[timeless(r) for r in pq.read_table(p).to_pylist()] for p in Dataset(out / "rejected").shards()],
        "diversity": json.loads((out / "diversity.json").read_text()),
        "counts": manifest["summary"]["counts"],
    }


def markers(folder: Path, stage: str = "textbooks") -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((folder / stage / "_work" / "markers").glob("round-*"))]


@pytest.mark.parametrize("ahead", [1, 2])
def test_executor_checks_write_what_driver_checks_write(scripted_server, teacher_table, tmp_path, ahead):
    run_pipeline(config(scripted_server, teacher_table, {"workers": 2}, rounds_ahead=ahead), tmp_path / "driver")
    sent = Counter(h.prompt for h in scripted_server.hits)
    scripted_server.state.hits.clear()
    run_pipeline(config(scripted_server, teacher_table, {"workers": 2}, checks="executor", rounds_ahead=ahead),
                 tmp_path / "executor")
    here, there = written(tmp_path / "driver"), written(tmp_path / "executor")
    assert here["counts"]["in"] == 10 and here["counts"]["kept"] and here["counts"]["dropped"]
    assert there == here
    assert Counter(h.prompt for h in scripted_server.hits) == sent and max(sent.values()) == 1
    # the checks ran in the pool's workers, not in this process; on the driver they carry no such stamp
    pids = {int(m["checked_by"].rsplit(":", 1)[1]) for m in markers(tmp_path / "executor")}
    assert pids and os.getpid() not in pids
    assert all("checked_by" not in m for m in markers(tmp_path / "driver"))


def test_exercise_checks_on_the_executor_ask_for_solutions_once_and_write_what_the_driver_writes(
        scripted_server, teacher_table, tmp_path):
    """The exercises' check asks the teacher for a second solution (agreement): in a worker, through its own
    teacher and cache file; the requests, the rows and the problems file are those of driver checks."""
    def cfg(**exercises: Any) -> PipelineConfig:
        return PipelineConfig.model_validate({
            "run": {"seed": 5, "workers": 2}, "teachers": {"t": teacher_table(scripted_server)},
            "exercises": {"teacher": "t", "count": 9, "per_round": 3, "min_tests": 2, "solutions": 2, **exercises}})

    run_pipeline(cfg(rounds_ahead=2), tmp_path / "driver")
    sent = Counter(h.prompt for h in scripted_server.hits)
    scripted_server.state.hits.clear()
    run_pipeline(cfg(checks="executor", rounds_ahead=2), tmp_path / "executor")  # (its own request cache)
    here, there = written(tmp_path / "driver", "exercises"), written(tmp_path / "executor", "exercises")
    assert there == here and here["counts"]["kept"] and here["counts"]["dropped"]
    assert (tmp_path / "executor" / "exercises" / "problems.jsonl").read_bytes() == \
        (tmp_path / "driver" / "exercises" / "problems.jsonl").read_bytes()
    assert any("Complete this Python function" in p for p in sent), "no second solution asked: the test checks nothing"
    assert Counter(h.prompt for h in scripted_server.hits) == sent and max(sent.values()) == 1
    assert all("checked_by" in m for m in markers(tmp_path / "executor", "exercises"))


def test_executor_checks_killed_mid_run_resume_to_the_same_output(scripted_server, teacher_table, tmp_path):
    """SIGKILL the run while rounds are checked in the pool: the re-run sends only what was not committed
    and writes what an uninterrupted run writes."""
    from fakes.killed_run import kill_when_cached

    scripted_server.state.latency_s = 0.1
    cfg = config(scripted_server, teacher_table, {"workers": 2}, checks="executor", rounds_ahead=2)
    before = kill_when_cached(cfg, tmp_path / "killed", 5)  # round 0 answered, round 1 under way
    assert 5 <= len(before) < 10, f"the kill should land mid-run, {len(before)} of 10 were done"

    run_pipeline(cfg, tmp_path / "killed")
    ok = Counter(h.prompt for h in scripted_server.hits if h.outcome == "ok")
    assert all(ok[p] == 1 for p in before), "a reply committed before the kill was asked again"
    assert len(ok) == 10
    whole = config(scripted_server, teacher_table, {"workers": 2}, rounds_ahead=2)
    run_pipeline(whole, tmp_path / "whole-ahead")
    assert written(tmp_path / "killed") == written(tmp_path / "whole-ahead")


@pytest.mark.slow  # a Ray cluster starts in ~10-30 s on a small machine
def test_executor_checks_on_a_two_node_ray_cluster_write_what_the_local_run_writes(scripted_server, teacher_table,
                                                                                     tmp_path):
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    run_pipeline(config(scripted_server, teacher_table, {"workers": 1}), tmp_path / "local")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        cfg = config(scripted_server, teacher_table, {"executor": "ray", "ray_address": cluster.address},
                     checks="executor")
        run_pipeline(cfg, tmp_path / "ray")
    finally:
        cluster.shutdown()
    assert written(tmp_path / "ray") == written(tmp_path / "local")
    assert all("checked_by" in m for m in markers(tmp_path / "ray"))


def test_config_check_refuses_executor_checks_that_would_overspend_a_budget(scripted_server, teacher_table):
    from textbooklm.run_check import check_run

    def problems(checks: str, solutions: int, **teacher: Any) -> list[str]:
        cfg = PipelineConfig.model_validate({
            "teachers": {"t": teacher_table(scripted_server, **teacher)},
            "exercises": {"teacher": "t", "count": 3, "solutions": solutions, "checks": checks}})
        return [p for p in check_run(cfg, "cfg.toml") if "exercises.checks" in p]

    budget = {"budget_tokens": 10_000}
    assert problems("executor", 2, **budget) and "cannot share out" in problems("executor", 2, **budget)[0]
    assert not problems("driver", 2, **budget)
    assert not problems("executor", 1, **budget)  # no extra solution: the workers ask nothing
    assert not problems("executor", 2)


def test_where_the_checks_run_is_not_part_of_the_stage_hash(scripted_server, teacher_table):
    """The output is the same wherever the checks run, so moving them re-runs nothing; rounds_ahead changes
    the draw, so it re-runs the stage."""
    from textbooklm.run import stage_hashes

    def hashes(**textbooks: Any) -> dict[str, str]:
        return stage_hashes(config(scripted_server, teacher_table, {}, **textbooks))

    assert hashes(checks="executor") == hashes(checks="driver") == hashes()
    assert hashes(rounds_ahead=2)["textbooks"] != hashes()["textbooks"]
