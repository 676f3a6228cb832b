"""judge -> classify -> filter through the pipeline and the CLI, on a corpus built by the corpus stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from quality_fixtures import base_config, make_corpus_folder

from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline, run_status
from textbooklm.quality.report_section import filter_section
from textbooklm.reporting.view import RunView
from textbooklm.run import Run
from textbooklm.store import Dataset

QUALITY = {
    "judge": {"judges": ["heuristic"], "heuristic": {"threshold": 0.5}},
    "classify": {"embedder": "hashing-256", "n_estimators": 30, "test_fraction": 0.3},
    "filter": {},
}


def test_judge_classify_filter(tmp_path):
    folder = make_corpus_folder(tmp_path / "code")
    raw = base_config(folder, **QUALITY)
    run_pipeline(parse_config(raw), tmp_path / "run")
    run = tmp_path / "run"

    judged = list(Dataset(run / "judge").iter_records())
    assert len(judged) == 60
    labels = {r["path"]: r["label"] for r in judged}
    assert all(labels[p] == 1 for p in labels if p.startswith("good_"))
    assert all(labels[p] == 0 for p in labels if p.startswith("bad_"))
    feats = json.loads(judged[0]["provenance"])["judge"]["heuristic"]["features"]
    assert {"docstrings", "comments", "identifiers", "data_share"} <= set(feats)

    metrics = json.loads((run / "classify" / "metrics.json").read_text())
    rf = metrics["heads"]["random_forest"]["test"]  # out of fold: 3 folds (test_fraction 0.3)
    assert metrics["folds"] == 3 and metrics["held_out_by"] == "3-fold out-of-fold" and rf["n"] == 60
    assert rf["f1"] > metrics["baselines"]["predict-positive"]["f1"] and rf["f1"] >= 0.9
    assert metrics["heads"]["ridge"]["test"]["roc_auc"] >= 0.9
    assert (run / "classify" / "model" / "classifier.json").exists()

    kept = list(Dataset(run / "filter").iter_records())
    dropped = list(Dataset(run / "filter" / "rejected").iter_records())
    assert len(kept) + len(dropped) == 60
    assert {r["path"] for r in kept} == {p for p in labels if p.startswith("good_")}
    for r in kept:
        prov = json.loads(r["provenance"])
        assert prov["filter"]["score"] >= prov["filter"]["threshold"] and "corpus" in prov
    assert all(r["reason"] == "low-educational-value" and r["score"] < 0.5 for r in dropped)
    summary = Dataset(run / "filter").manifest["summary"]
    counts = summary["counts"]
    assert (counts["in"], counts["kept"], counts["dropped"], counts["in_means"]) == (60, 30, 30, "records scored")
    assert counts["dropped_by_reason"] == {"low-educational-value": 30}
    assert summary["line"].startswith("filter: 60 records scored -> 30 kept, 30 dropped (low-educational-value 30); ")
    assert "tokens (bytes/4) kept" in summary["line"]
    assert summary["kept_bytes"] == sum(r["n_bytes"] for r in kept) == counts["counters"]["kept_bytes"]
    assert summary["embedded_here"] == 0  # every record was judged: each takes its out-of-fold score
    assert summary["embedder"] == "hashing-256"  # no precision for a model-free embedder
    for name in ("score_histogram", "precision_recall"):
        assert (run / "filter" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert json.loads((run / "filter" / f"{name}.json").read_text())
    hist = json.loads((run / "filter" / "score_histogram.json").read_text())
    assert sum(hist["kept"]) == 30 and sum(hist["dropped"]) == 30
    assert_ledger_counts(run, {"judge": (60, 60, 0, "files sampled for heuristic labels"),
                               "classify": (60, 60, 0, "labelled records scored out of fold"),
                               "filter": (60, 30, 30, "records scored")})
    story = filter_section(RunView(Run(run))).story  # the report reads the ledger's counts
    assert story and story[0].startswith("the classifier kept 30 of 60 files")

    # killed while writing: two shards closed their ledger but left no marker, one had not closed it, and
    # a ledger file of a shard no longer planned lies beside them; the resumed run counts each record once
    before = Dataset(run / "filter").manifest["summary"]["counts"]
    (run / "filter" / "_stage.json").unlink()
    markers = sorted((run / "filter" / "_work" / "markers").glob("write-*/*.json"))
    for m in markers[:3]:
        m.unlink()
    (run / "filter" / "_ledger" / markers[0].name).unlink()
    (run / "filter" / "rejected" / markers[0].stem).unlink()
    stray = run / "filter" / "_ledger" / "part-99999.parquet.json"
    stray.write_text(json.dumps({"key": "part-99999.parquet", "kept": 5, "dropped": 0}))
    run_pipeline(parse_config(raw), run)
    assert Dataset(run / "filter").manifest["summary"]["counts"] == before and not stray.exists()
    assert Dataset(run / "filter" / "rejected").num_rows == 30

    # top_fraction instead of the threshold: only the filter re-runs
    raw["filter"] = {"top_fraction": 0.25}
    run_pipeline(parse_config(raw), run)
    assert Dataset(run / "filter").num_rows == 15
    assert_ledger_counts(run, {"filter": (60, 15, 45, "records scored")})


def assert_ledger_counts(run: Path, want: dict[str, tuple[int, int, int, str]]) -> None:
    """status (run.json's stats) says what each stage's ledger counted, and rejected/ holds the dropped rows."""
    rows = {r["stage"]: r for r in run_status(run)}
    for stage, (n_in, kept, dropped, in_means) in want.items():
        row = rows[stage]
        assert (row["in"], row["kept"], row["rejected"], row["in_means"]) == (n_in, kept, dropped, in_means), stage
        assert Dataset(run / stage / "rejected").num_rows == dropped
        assert row["line"].startswith(f"{stage}: {n_in} {in_means} -> {kept} kept, {dropped} dropped")


@pytest.mark.slow
def test_cli_commands(tmp_path):
    folder = make_corpus_folder(tmp_path / "code", n_good=15, n_bad=15)
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "textbooklm.cli"]
    subprocess.run([*cli, "corpus", str(folder), "--out", str(out), "--workers", "1"], check=True,
                   capture_output=True, env=env)
    res = subprocess.run([*cli, "filter", "--out", str(out)], capture_output=True, text=True, env=env)
    assert res.returncode != 0 and "stage 'classify' has not finished" in res.stderr
    for cmd in (["judge", "--heuristic-threshold", "0.5"], ["classify", "--embedder", "hashing-256"],
                ["filter", "--top-fraction", "0.5"]):
        res = subprocess.run([*cli, *cmd, "--out", str(out)], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        assert f"{cmd[0]}: " in res.stderr
    assert "filter: 30 records scored -> 15 kept, 15 dropped" in res.stderr
    record = json.loads((out / "run.json").read_text())
    assert {"corpus", "judge", "classify", "filter"} <= set(record["stages"])


def filter_snapshot(run: Path) -> tuple[list, list]:
    kept = [(r["id"], r["provenance"]) for r in Dataset(run / "filter").iter_records(["id", "provenance"])]
    rej = [(r["id"], r["score"]) for r in Dataset(run / "filter" / "rejected").iter_records(["id", "score"])]
    return kept, rej


@pytest.mark.slow
def test_filter_resumes_after_sigkill(tmp_path):
    """Kill `textbooklm run` while the filter scores its 60 shards (one worker); the re-run scores only
    the shards without a marker and the result equals an uninterrupted run."""
    import shutil

    folder = make_corpus_folder(tmp_path / "code", n_good=30, n_bad=30)
    raw = base_config(folder, **QUALITY)
    raw["corpus"]["files_per_shard"] = 1  # 60 shards to score
    raw["judge"]["heuristic"]["sample"] = 40  # 20 records the filter embeds itself
    clean = tmp_path / "clean"
    run_pipeline(parse_config(raw), clean)

    killed = tmp_path / "killed"  # same upstream stages; only the filter runs (and is killed)
    shutil.copytree(clean, killed)
    shutil.rmtree(killed / "filter")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(raw))
    script = ("import json, sys; from textbooklm.config import parse_config; from textbooklm.pipeline import "
              "run_pipeline; run_pipeline(parse_config(json.load(open(sys.argv[1]))), sys.argv[2])")
    cmd = [sys.executable, "-c", script, str(cfg), str(killed)]
    markers = killed / "filter" / "_work" / "markers" / "score"
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and len(list(markers.glob("*.json"))) < 3:
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(markers.glob("*.json")))
    assert 3 <= done < 60, f"killed after {done} of 60 shards"
    assert not (killed / "filter" / "_stage.json").exists()
    first = {p.name: p.stat().st_mtime_ns for p in markers.glob("*.json")}

    subprocess.run(cmd, check=True, capture_output=True)
    assert all(p.stat().st_mtime_ns == first[p.name] for p in markers.glob("*.json") if p.name in first)
    assert len(list(markers.glob("*.json"))) == 60
    assert filter_snapshot(killed) == filter_snapshot(clean)
    kept, rej = filter_snapshot(killed)
    assert len(kept) + len(rej) == 60 and len({k for k, _ in kept}) == len(kept)
    summary = Dataset(killed / "filter").manifest["summary"]
    assert summary["embedded_here"] == 20
    # the ledger counted every record once, as the uninterrupted run did
    assert summary["counts"] == Dataset(clean / "filter").manifest["summary"]["counts"]
    assert summary["counts"]["in"] == 60 and len(list((killed / "filter" / "_ledger").glob("*.json"))) == 60
