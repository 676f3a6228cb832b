import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from corpus_fixtures import BAD_FILES, filter_overrides, make_folder, make_jsonl, make_parquet, make_targz, make_wheel

from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline
from textbooklm.store import Dataset


def corpus_config(tmp_path: Path, **extra) -> dict:
    src = tmp_path / "inputs"
    folder = make_folder(src / "code")
    (src / "broken.whl").write_bytes(b"PK\x03\x04 not a zip")
    return {
        "run": {"workers": 2},
        "corpus": {
            "files_per_shard": 5,
            "filters": filter_overrides(),
            "sources": [
                {"kind": "folder", "path": str(folder)},
                {"kind": "jsonl", "path": str(make_jsonl(src / "recs.jsonl")), "path_column": "name"},
                {"kind": "parquet", "path": str(make_parquet(src / "recs.parquet"))},
                {"kind": "archive", "path": str(make_wheel(src / "pkg-1.0-py3-none-any.whl"))},
                {"kind": "archive", "path": str(make_targz(src / "src.tar.gz"))},
                {"kind": "archive", "path": str(src / "broken.whl")},
            ],
            **extra,
        },
    }


def test_stage_keeps_rejects_and_dedups(tmp_path):
    cfg = parse_config(corpus_config(tmp_path))
    run_pipeline(cfg, tmp_path / "run")
    kept = Dataset(tmp_path / "run" / "corpus")
    rejected = Dataset(tmp_path / "run" / "corpus" / "rejected")
    summary = kept.manifest["summary"]
    reasons = [r["reason"] for r in rejected.iter_records()]
    # Every bad file is rejected for its own reason, once.
    for reason in BAD_FILES:
        assert reasons.count(reason) == 1, reason
    assert reasons.count("malformed-record") == 4  # the four bad JSONL lines
    assert reasons.count("unreadable-archive") == 1
    assert reasons.count("exact-duplicate") == 1 and reasons.count("near-duplicate") == 1
    # Nothing lost: every item read is kept or rejected.
    assert summary["read"] == kept.num_rows + rejected.num_rows
    assert kept.num_rows == 12 + 3 + 4 + 2 + 2
    ids = kept.column("id")
    assert len(ids) == len(set(ids))
    rows = {r["path"]: r for r in kept.iter_records()}
    assert {"good_000.py", "good_001.py", "rec0"} <= set(rows)
    prov = json.loads(rows["good_001.py"]["provenance"])["corpus"]
    assert prov["cluster_size"] == 2 and prov["decision"] == "keep"
    near = next(r for r in rejected.iter_records() if r["reason"] == "near-duplicate")
    assert near["path"] == "zz_near_copy.py" and "good_001.py" in near["detail"] and near["text"]
    assert json.loads(near["provenance"])["corpus"]["cluster"] == rows["good_001.py"]["id"]
    line = summary["line"]
    assert line.startswith(f"corpus: {summary['read']} files read -> {kept.num_rows} kept, "
                           f"{rejected.num_rows} dropped (")
    assert "1 near duplicates in 1 clusters" in line and "binary 1" in line
    assert summary["counts"]["in"] == summary["read"] == kept.num_rows + rejected.num_rows


def test_rerun_does_nothing_and_config_change_reruns(tmp_path, capsys):
    raw = corpus_config(tmp_path)
    run_pipeline(parse_config(raw), tmp_path / "run")
    shard = Dataset(tmp_path / "run" / "corpus").shards()[0]
    mtime = shard.stat().st_mtime_ns
    run_pipeline(parse_config(raw), tmp_path / "run")
    assert "done already" in capsys.readouterr().err
    assert shard.stat().st_mtime_ns == mtime
    raw["corpus"]["dedup"] = {"near": False}
    run_pipeline(parse_config(raw), tmp_path / "run")
    reasons = Dataset(tmp_path / "run" / "corpus" / "rejected").column("reason")
    assert "near-duplicate" not in reasons and "exact-duplicate" in reasons


def snapshot(run_dir: Path) -> tuple[list, list]:
    kept = Dataset(run_dir / "corpus")
    rej = Dataset(run_dir / "corpus" / "rejected")
    return (
        [(r["id"], r["path"], r["provenance"]) for r in kept.iter_records(["id", "path", "provenance"])],
        [(r["id"], r["path"], r["reason"]) for r in rej.iter_records(["id", "path", "reason"])],
    )


def count_markers(run_dir: Path, step: str) -> int:
    d = run_dir / "corpus" / "_work" / "markers" / step
    return len(list(d.glob("*.json"))) if d.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("step,after", [("read", 4), ("write", 3)])
def test_sigkill_then_rerun_equals_uninterrupted(tmp_path, step, after):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\nworkers = 2\n[corpus]\nfiles_per_shard = 60\nsources = [{kind = "stdlib"}]\n')
    cmd = [sys.executable, "-m", "textbooklm.cli", "run", str(cfg), "--out"]
    clean = tmp_path / "clean"
    subprocess.run([*cmd, str(clean)], check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, str(killed)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while count_markers(killed, step) < after and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "corpus" / "_stage.json").exists(), "the run finished before it could be killed"
    assert count_markers(killed, step) >= after

    subprocess.run([*cmd, str(killed)], check=True, capture_output=True)
    a, b = snapshot(clean), snapshot(killed)
    assert a == b
    assert len({r[0] for r in b[0]}) == len(b[0])  # no duplicate ids among kept records
    summary = json.loads((killed / "corpus" / "manifest.json").read_text())["summary"]
    assert summary["read"] == len(b[0]) + len(b[1])
