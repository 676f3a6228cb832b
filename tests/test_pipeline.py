import json

from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline, run_status, stage_hashes, stage_state


def tiny_config(tmp_path, **corpus):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for i in range(4):
        (src / f"m{i}.py").write_text("".join(f"def g_{i}_{j}(a, b):\n    return a * {j} - b\n" for j in range(5)))
    sources = [{"kind": "folder", "path": str(src)}]
    return parse_config({"run": {"workers": 1}, "corpus": {"sources": sources, **corpus}})


def test_run_json_records_versions_config_timings_counts(tmp_path):
    record = run_pipeline(tiny_config(tmp_path), tmp_path / "run")
    on_disk = json.loads((tmp_path / "run" / "run.json").read_text())
    assert on_disk["versions"]["textbooklm"] and on_disk["versions"]["python"]
    assert on_disk["config"]["corpus"]["files_per_shard"] == 200
    stage = on_disk["stages"]["corpus"]
    assert stage["seconds"] >= 0 and stage["summary"]["kept"] == 4
    assert record["stages"]["corpus"]["config_hash"] == stage_hashes(tiny_config(tmp_path))["corpus"]


def test_states_and_status(tmp_path):
    cfg = tiny_config(tmp_path)
    run_dir = tmp_path / "run"
    assert stage_state(run_dir, "corpus") == "pending"
    (run_dir / "corpus").mkdir(parents=True)
    assert stage_state(run_dir, "corpus") == "partial"
    run_pipeline(cfg, run_dir)
    assert stage_state(run_dir, "corpus", stage_hashes(cfg)["corpus"]) == "done"
    changed = tiny_config(tmp_path, files_per_shard=1)
    assert stage_state(run_dir, "corpus", stage_hashes(changed)["corpus"]) == "stale"
    [row] = run_status(run_dir)
    assert row["stage"] == "corpus" and row["kept"] == 4 and row["rejected"] == 0 and row["state"] == "done"
    [row] = run_status(run_dir, changed)
    assert row["state"] == "stale"


def test_seed_change_reruns_but_workers_do_not(tmp_path):
    a = tiny_config(tmp_path)
    b = a.model_copy(deep=True)
    b.run.workers = 2
    c = a.model_copy(deep=True)
    c.run.seed = 5
    assert stage_hashes(a) == stage_hashes(b)
    assert stage_hashes(a) != stage_hashes(c)


def test_interrupted_attempt_with_other_config_is_wiped(tmp_path):
    cfg = tiny_config(tmp_path)
    folder = tmp_path / "run" / "corpus"
    folder.mkdir(parents=True)
    (folder / "_attempt.json").write_text(json.dumps({"config_hash": "something-else"}))
    (folder / "part-00099.parquet").write_bytes(b"left over from another config")
    run_pipeline(cfg, tmp_path / "run")
    assert not (folder / "part-00099.parquet").exists()


def test_a_stage_done_before_its_input_was_remade_is_stale(tmp_path):
    """Issue 25: finetune killed and re-run left eval 'done' though it measured the old model."""
    base = tiny_config(tmp_path)
    cfg = parse_config({"run": {"workers": 1}, "corpus": base.corpus.model_dump(mode="json"),
                        "judge": {"judges": ["heuristic"], "label_from": "heuristic"}})
    run_dir = tmp_path / "run"
    run_pipeline(cfg, run_dir)
    assert [r["state"] for r in run_status(run_dir)] == ["done", "done"]
    first_judge = json.loads((run_dir / "judge" / "_stage.json").read_text())["finished_ns"]
    (run_dir / "corpus" / "_stage.json").unlink()  # corpus is being re-run (killed mid-way)
    assert [r["state"] for r in run_status(run_dir)] == ["partial", "stale"]
    run_pipeline(cfg, run_dir)
    assert [r["state"] for r in run_status(run_dir)] == ["done", "done"]
    assert json.loads((run_dir / "judge" / "_stage.json").read_text())["finished_ns"] > first_judge
