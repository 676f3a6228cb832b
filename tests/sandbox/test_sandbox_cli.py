"""``textbooklm sandbox run``: bad options are one-line errors (not tracebacks, not silently changed),
and the summary and meta file list every containment layer (issue 24, items 6 and 8)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from textbooklm.sandbox.cli import isolation_summary


def _run(tmp_path, *options: str) -> subprocess.CompletedProcess:
    programs = tmp_path / "p.jsonl"
    programs.write_text(json.dumps({"id": "a", "code": "print(sorted({'x', 'y'}))"}) + "\n")
    cmd = [sys.executable, "-m", "textbooklm.cli", "sandbox", "run", str(programs), "--out", str(tmp_path / "r.jsonl"),
           *options]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("options, says", [
    (("--timeout", "-1"), "--timeout -1.0: must be greater than 0"),
    (("--timeout", "nan"), "--timeout nan: must be greater than 0"),
    (("--memory-mb", "1"), "--memory-mb 1: must be greater than or equal to 64"),
    (("--workers", "-5"), "--workers -5: must be 0 (one per core) or a positive count"),
    (("--workers", "100000"), "--workers 100000: at most"),
    (("--max-processes", "0"), "--max-processes 0: must be greater than or equal to 1"),
])
def test_bad_options_are_one_line_errors(tmp_path, options, says):
    proc = _run(tmp_path, *options)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r.jsonl").exists()


def test_meta_lists_every_layer_and_summary_names_them(tmp_path):
    proc = _run(tmp_path, "--workers", "1", "--timeout", "5")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "r.jsonl.meta.json").read_text())
    assert set(meta["layers"]) == {"network_isolated", "proc_private", "env_scrubbed", "uid", "process_limit",
                                   "memory_limit", "private_tmp", "fs_view"}
    row = json.loads((tmp_path / "r.jsonl").read_text())
    for layer in ("private_tmp", "memory_limit", "fs_view"):
        assert row[layer] == meta["layers"][layer], layer
    assert isolation_summary(meta["isolation"]) in proc.stdout + proc.stderr


def test_summary_names_a_missing_layer_in_capitals():
    full = {"network_isolated": True, "proc_private": True, "env_scrubbed": True, "uid": 62000,
            "process_limit": "cgroup-v1", "memory_limit": "cgroup-v1", "private_tmp": True, "fs_view": "read-only-root"}
    assert not any(word.isupper() and len(word) > 3 for word in isolation_summary(full).split())
    gaps = isolation_summary({**full, "memory_limit": "rlimit-as", "private_tmp": False, "fs_view": "none",
                              "process_limit": "none"})
    for phrase in ("MEMORY BY RLIMIT_AS ONLY", "HOST /tmp AND /dev/shm SHARED", "HOST FILES VISIBLE",
                   "NO PROCESS LIMIT"):
        assert phrase in gaps, gaps
