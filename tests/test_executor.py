import json
import os
from pathlib import Path

import pytest

from textbooklm.executor import map_shards


def square_task(task):
    """Writes a file (as a stage would) and returns counts; records which process ran it."""
    out = Path(task["out"]) / f"{task['key']}.txt"
    out.write_text(str(task["x"] ** 2))
    return {"square": task["x"] ** 2, "pid": os.getpid()}


def failing_task(task):
    if task["x"] == 3:
        raise RuntimeError("boom on 3")
    return {"x": task["x"]}


def tasks(tmp_path, n=6):
    return [{"key": f"t{i}", "x": i, "out": str(tmp_path)} for i in range(n)]


def test_local_pool_runs_all_in_order(tmp_path):
    res = map_shards(square_task, tasks(tmp_path), tmp_path / "m", workers=2)
    assert list(res) == [f"t{i}" for i in range(6)]
    assert [r["square"] for r in res.values()] == [i * i for i in range(6)]
    assert len({r["pid"] for r in res.values()}) >= 1
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [f"t{i}.json" for i in range(6)]


def test_marked_tasks_are_skipped(tmp_path):
    marker = tmp_path / "m"
    marker.mkdir()
    (marker / "t2.json").write_text(json.dumps({"square": -1, "pid": 0}))
    res = map_shards(square_task, tasks(tmp_path), marker, workers=1)
    assert res["t2"]["square"] == -1  # reused, not recomputed
    assert not (tmp_path / "t2.txt").exists()
    assert (tmp_path / "t3.txt").read_text() == "9"


def test_failure_leaves_other_tasks_marked(tmp_path):
    with pytest.raises(RuntimeError, match="boom on 3"):
        map_shards(failing_task, tasks(tmp_path), tmp_path / "m", workers=1)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["t0.json", "t1.json", "t2.json"]


def test_duplicate_keys_rejected(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        map_shards(square_task, [{"key": "a", "x": 1, "out": str(tmp_path)}] * 2, tmp_path / "m")


def test_unknown_executor(tmp_path):
    with pytest.raises(ValueError, match="unknown executor"):
        map_shards(square_task, tasks(tmp_path), tmp_path / "m", executor="dask")


@pytest.mark.slow
def test_ray_local_instance(tmp_path):
    """A real local Ray instance runs a real stage's shard function and the markers still work."""
    pytest.importorskip("ray")
    from textbooklm.corpus.config import CorpusConfig, SourceConfig
    from textbooklm.corpus.stage import plan_tasks, read_shard

    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"m{i}.py").write_text("".join(f"def f_{i}_{j}(x):\n    return x + {j}\n" for j in range(4)))
    cfg = CorpusConfig(sources=[SourceConfig(kind="folder", path=str(src))], files_per_shard=2)
    work = tmp_path / "work"
    plan = plan_tasks(cfg, work)
    res = map_shards(read_shard, plan, tmp_path / "m", executor="ray", workers=2)
    assert [r["kept"] for r in res.values()] == [2, 2, 2]
    assert sorted(p.name for p in (work / "read").iterdir()) == [t["key"] for t in plan]
    again = map_shards(read_shard, plan, tmp_path / "m", executor="ray", workers=2)
    assert again == res


def torch_task(task):
    import torch

    x = torch.randn(256, 256)
    return {"sum": float((x @ x).sum() * 0)}


@pytest.mark.timeout(120)
def test_workers_survive_torch_threads_in_parent(tmp_path):
    """A stage that used torch's thread pool in this process must not deadlock the workers it starts
    (OpenMP state does not survive fork; the pool uses a fork server)."""
    import torch

    torch.set_num_threads(2)
    y = torch.randn(512, 512)
    for _ in range(3):
        y = torch.tanh(y @ y)
    res = map_shards(torch_task, [{"key": f"t{i}"} for i in range(4)], tmp_path / "m", workers=2)
    assert [r["sum"] for r in res.values()] == [0.0] * 4


def pid_task(task):
    import time

    time.sleep(0.2)  # long enough that both workers take tasks
    return {"pid": os.getpid()}


def test_map_steps_reuse_one_warm_pool(tmp_path):
    """Every map step of a stage runs on the same workers (a fresh pool per step cost ~5 s at load)."""
    from textbooklm.executor import shutdown_pool

    shutdown_pool()
    try:
        first = map_shards(pid_task, [{"key": f"a{i}"} for i in range(6)], tmp_path / "m1", workers=2)
        second = map_shards(pid_task, [{"key": f"b{i}"} for i in range(6)], tmp_path / "m2", workers=2)
        pids_1 = {r["pid"] for r in first.values()}
        pids_2 = {r["pid"] for r in second.values()}
        assert os.getpid() not in pids_1 | pids_2
        assert pids_2 <= pids_1, (pids_1, pids_2)
    finally:
        shutdown_pool()
    third = map_shards(pid_task, [{"key": f"c{i}"} for i in range(4)], tmp_path / "m3", workers=2)
    assert not {r["pid"] for r in third.values()} & pids_1  # after shutdown_pool: a new pool
    shutdown_pool()


def test_a_failed_step_leaves_the_pool_usable_and_other_markers_final(tmp_path):
    from textbooklm.executor import shutdown_pool

    try:
        with pytest.raises(RuntimeError, match="boom on 3"):
            map_shards(failing_task, tasks(tmp_path), tmp_path / "m", workers=2)
        res = map_shards(square_task, tasks(tmp_path), tmp_path / "m2", workers=2)
        assert [r["square"] for r in res.values()] == [i * i for i in range(6)]
    finally:
        shutdown_pool()


def test_workers_are_bounded_by_cores_and_config_check_says_so(tmp_path):
    from textbooklm.config import parse_config
    from textbooklm.executor import WORKERS_PER_CORE, max_workers, resolve_workers, usable_cores
    from textbooklm.run_check import check_run

    assert max_workers() == WORKERS_PER_CORE * usable_cores()
    assert resolve_workers(100_000) == max_workers()
    assert resolve_workers(0) == usable_cores()
    assert resolve_workers(1) == 1
    [line] = check_run(parse_config({"run": {"workers": 100_000}, "corpus": {}}), "c.toml")
    assert line.startswith("c.toml: run.workers: 100000 is more than the local executor starts") and \
        f"at most {max_workers()}" in line
    assert check_run(parse_config({"run": {"workers": max_workers()}, "corpus": {}}), "c.toml") == []
    assert check_run(parse_config({"run": {"workers": 100_000}, "corpus": {}}), "c.toml", paths=False) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_submitter_runs_each_task_on_a_worker_and_writes_its_marker_last(tmp_path, workers):
    """``Submitter``: tasks handed over one at a time (the synth driver's round checks), run off the caller's
    process even with one worker, each result in its Future and in ``<markers>/<key>.json``; a failing task
    raises from its Future and leaves no marker."""
    from textbooklm.executor import Submitter

    with Submitter("local", workers) as sub:
        futures = {t["key"]: sub.submit(square_task, t, tmp_path / "m") for t in tasks(tmp_path, 4)}
        bad = sub.submit(failing_task, {"key": "bad", "x": 3}, tmp_path / "m")
        results = {k: f.result(timeout=60) for k, f in futures.items()}
        with pytest.raises(RuntimeError, match="boom on 3"):
            bad.result(timeout=60)
    assert [r["square"] for r in results.values()] == [0, 1, 4, 9]
    assert os.getpid() not in {r["pid"] for r in results.values()}
    for key, r in results.items():
        assert json.loads((tmp_path / "m" / f"{key}.json").read_text()) == r
        assert (tmp_path / f"{key}.txt").read_text() == str(r["square"])
    assert not (tmp_path / "m" / "bad.json").exists()
    with pytest.raises(ValueError, match="unknown executor"):
        Submitter("dask")
