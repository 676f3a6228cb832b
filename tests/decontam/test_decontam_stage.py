"""The stage through the real pipeline (Parquet in, cleaned copies / rejected / report out) and the CLI."""

from __future__ import annotations

import json

from test_decontam_signals import RENAMED_REORDERED, UNRELATED
from typer.testing import CliRunner

from textbooklm.cli import app
from textbooklm.code_tasks import load_problems
from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline
from textbooklm.store import Dataset, write_dataset

PROMPT_144 = next(p for p in load_problems("humaneval") if p.task_id == "HumanEval/144")


def _corpus(run_dir):
    """A finished `corpus` dataset as the corpus stage writes it (id, text, provenance, ...)."""
    texts = [UNRELATED, RENAMED_REORDERED, PROMPT_144.prompt + PROMPT_144.canonical_solution,
             "def greet(name):\n    print('hello', name)\n"]
    recs = [{"id": f"c{i}", "text": t, "path": f"f{i}.py", "provenance": json.dumps({"corpus": {"path": f"f{i}.py"}})}
            for i, t in enumerate(texts)]
    write_dataset(run_dir / "corpus", recs, stage="corpus")


def test_stage_in_pipeline(tmp_path):
    run_dir = tmp_path / "run"
    _corpus(run_dir)
    cfg = parse_config({"run": {"workers": 1}, "decontam": {"embedder": "hashing", "rows_per_task": 2}})
    # Only decontam is configured; feed it the corpus dataset as the pipeline would.
    from textbooklm.decontam.stage import run
    from textbooklm.pipeline import context_for
    from textbooklm.run import Run

    out = run_dir / "decontam"
    ds = run(cfg.decontam, {"corpus": Dataset(run_dir / "corpus")}, out, context_for(Run(run_dir, cfg), "decontam"))
    kept = Dataset(out / "corpus").to_table().to_pylist()
    assert [r["id"] for r in kept] == ["c0", "c3"]
    assert set(kept[0]) == {"id", "text", "path", "provenance"}
    prov = json.loads(kept[0]["provenance"])
    assert prov["corpus"]["path"] == "f0.py" and prov["decontam"]["decision"] == "keep"
    rejected = {r["id"]: r for r in Dataset(out / "rejected").to_table().to_pylist()}
    assert set(rejected) == {"c1", "c2"}
    assert rejected["c1"]["signal"] == "ast" and rejected["c1"]["problem_id"] == "HumanEval/144"
    assert rejected["c2"]["signal"] == "ngram" and json.loads(rejected["c2"]["record"]) == {"path": "f2.py"}
    matches = ds.to_table().to_pylist()
    assert {m["id"] for m in matches} == {"c1", "c2"} and all(m["dataset"] == "corpus" for m in matches)
    report = json.loads((out / "report.json").read_text())
    assert [t["tau"] for t in report["taus"]] == [0.95, 0.9, 0.85, 0.8]
    assert all(t["removed"] == 2 and t["similar_problems"] == ["HumanEval/144"] for t in report["taus"])
    assert report["n_problems"] == 164 and report["n_samples"] == 4
    summary = ds.manifest["summary"]
    assert "4 training records checked -> 2 kept, 2 dropped (contaminated-" in summary["line"]
    assert summary["removed_by_signal"] == {"ast": 1, "ngram": 1} and summary["checked"] == 4
    assert summary["counts"]["dropped_by_reason"] == {"contaminated-ast": 1, "contaminated-ngram": 1}
    assert (out / "_ledger").is_dir() and Dataset(out / "rejected").is_finished
    # Re-running finds every task done and gives the same result.
    run(cfg.decontam, {"corpus": Dataset(run_dir / "corpus")}, out, context_for(Run(run_dir, cfg), "decontam"))
    assert Dataset(out / "corpus").num_rows == 2
    assert Dataset(out).manifest["summary"]["counts"] == summary["counts"]  # nothing counted twice

    result = CliRunner().invoke(app, ["decontam", "report", str(run_dir), "--similar"])
    assert result.exit_code == 0, result.output
    assert "0.80" in result.output and "similar at tau 0.95: HumanEval/144" in result.output


def test_pipeline_wiring(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text(UNRELATED + "\n\n" + "x = 1\n" * 5)
    (src / "b.py").write_text(RENAMED_REORDERED + "\n\n" + "y = 2\n" * 5)
    cfg = parse_config({"run": {"workers": 1}, "corpus": {"sources": [{"kind": "folder", "path": str(src)}]},
                        "decontam": {"embedder": "hashing"}})
    record = run_pipeline(cfg, tmp_path / "run")
    assert "decontam" in record["stages"]
    assert Dataset(tmp_path / "run" / "decontam" / "corpus").num_rows == 1
    assert "-> 1 kept, 1 dropped" in record["stages"]["decontam"]["line"]
    stats = record["stages"]["decontam"]["stats"]
    assert (stats["in"], stats["kept"], stats["dropped"], stats["in_means"]) == (2, 1, 1, "training records checked")


def test_check_command_and_bad_input(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"id": "a", "code": RENAMED_REORDERED}) + "\n"
                       + json.dumps({"id": "b", "text": UNRELATED}) + "\n")
    out = tmp_path / "m.jsonl"
    r = CliRunner().invoke(app, ["decontam", "check", str(samples), "--benchmark", "humaneval", "--out", str(out),
                                 "--embedder", "hashing"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["id"], x["decision"]) for x in rows] == [("a", "remove"), ("b", "keep")]
    r = CliRunner().invoke(app, ["decontam", "report", str(out)])
    assert r.exit_code == 0 and "164 problems" in r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "code": "x"}) + "\n" + json.dumps({"code": "y"}) + "\n")
    r = CliRunner().invoke(app, ["decontam", "check", str(bad), "--out", str(out), "--embedder", "hashing"])
    assert r.exit_code == 2 and "bad.jsonl:2" in r.output


def test_check_reads_a_runs_dataset_by_name_or_folder(tmp_path):
    run_dir = tmp_path / "run"
    _corpus(run_dir)
    out = tmp_path / "m.jsonl"
    for args in (["--dataset", "corpus", str(run_dir)], [str(run_dir / "corpus")]):
        r = CliRunner().invoke(app, ["decontam", "check", *args, "--out", str(out), "--embedder", "hashing"])
        assert r.exit_code == 0, r.output
        rows = {x["id"]: x["decision"] for x in map(json.loads, out.read_text().splitlines())}
        assert rows == {"c0": "keep", "c1": "remove", "c2": "remove", "c3": "keep"}
    r = CliRunner().invoke(app, ["decontam", "check", str(tmp_path), "--out", str(out), "--embedder", "hashing"])
    assert r.exit_code == 2 and "not a finished dataset" in r.output


def test_mbpp_without_path_is_a_config_error():
    import pytest

    from textbooklm.config import ConfigError

    with pytest.raises(ConfigError, match="needs a path"):
        parse_config({"decontam": {"benchmarks": [{"task": "mbpp"}]}})


def test_config_check_wants_one_heldout_fraction_for_the_run(tmp_path):
    from textbooklm.run_check import check_run

    raw = {"exercises": {"source": "teacher", "teacher": "t"}, "teachers": {"t": {"backend": "openai", "model": "m"}},
           "decontam": {"embedder": "hashing", "heldout_fraction": 0.2},
           "finetune": {"data": {"sources": [{"dataset": "exercises"}], "val_fraction": 0.1}},
           "eval": {"models": ["finetune"], "heldout_exercises": {"dataset": "exercises", "fraction": 0.1}}}
    problems = [p for p in check_run(parse_config(raw), "x.toml", paths=False) if "heldout_fraction" in p]
    assert len(problems) == 2 and "differs from [finetune] data.val_fraction 0.1" in problems[0]
    assert "differs from [eval] heldout_exercises.fraction 0.1" in problems[1]
    raw["decontam"]["heldout_fraction"] = 0.1
    assert not [p for p in check_run(parse_config(raw), "x.toml", paths=False) if "heldout_fraction" in p]
    raw["decontam"] = {"heldout_exercises": False, "heldout_fraction": 0.3}  # off: nothing to agree on
    assert not [p for p in check_run(parse_config(raw), "x.toml", paths=False) if "heldout_fraction" in p]
