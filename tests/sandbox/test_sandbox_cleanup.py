"""After 1,000 mixed programs (some forking, daemonizing, flooding, timing out) nothing is left:
no process, no temp dir and no pids cgroup (checked before and after)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from textbooklm.sandbox import Limits, Program, SandboxPool, cgroups

KINDS = [
    ("pass", "def f():\n    return 1\n", "def check(c):\n    assert c() == 1\n", "f", {"passed"}),
    ("fail", "def f():\n    return 2\n", "def check(c):\n    assert c() == 1\n", "f", {"failed"}),
    ("raise", "raise ValueError('x')\n", "", "", {"failed"}),
    ("exit", "import os\nos._exit(3)\n", "", "", {"crashed"}),
    ("fork_sleeper", "import os, time\nif os.fork() == 0:\n    time.sleep(30)\n", "", "", {"passed"}),
    ("daemon", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
               "        time.sleep(30)\n    os._exit(0)\n", "", "", {"passed"}),
    ("thread", "import threading, time\nthreading.Thread(target=time.sleep, args=(30,)).start()\n", "", "",
     {"passed"}),
    ("file", "open('big', 'w').write('x' * 100000)\n", "", "", {"passed"}),
    ("print", "print('y' * 200000)\n", "", "", {"passed"}),
]


def _processes_mentioning(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                pids.append(int(entry))
    return pids


@pytest.mark.slow
def test_thousand_mixed_programs_leave_nothing(tmp_path):
    root = tmp_path / "sbx"
    root.mkdir()
    marker = str(root)  # every worker and every fork of it carries this in its command line
    mine = f"{cgroups.PREFIX}{os.getpid()}-"  # every pids cgroup a pool of this process makes
    assert _processes_mentioning(marker) == [] and list(root.iterdir()) == [] and cgroups.ours(mine) == []
    programs = [Program(id=f"{i}", code=KINDS[i % len(KINDS)][1], test=KINDS[i % len(KINDS)][2],
                        entry_point=KINDS[i % len(KINDS)][3]) for i in range(990)]
    programs += [Program(id=f"t{i}", code="while True:\n    pass\n") for i in range(10)]  # timeouts
    with SandboxPool(Limits(timeout_s=0.5, guard=False), workers=2, tmp_root=str(root)) as pool:
        results = pool.run(programs)
        assert len(_processes_mentioning(marker)) <= 4  # only the workers (outer + PID 1 each) remain
        for path in pool.cgroup_paths():  # each worker's cgroup holds the worker alone
            assert cgroups.pids_current(path) == 1, path
    for i, r in enumerate(results[:990]):
        assert r.status in KINDS[i % len(KINDS)][4], (KINDS[i % len(KINDS)][0], r.status, r.error)
    assert all(r.status == "timeout" for r in results[990:])
    assert _processes_mentioning(marker) == []
    assert list(root.iterdir()) == []
    assert cgroups.ours(mine) == []


def test_cli_run_writes_results_and_limits(tmp_path):
    programs = tmp_path / "p.jsonl"
    programs.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "code": "def f(x):\n    return 2 * x\n", "test": "def check(c):\n    assert c(2) == 4\n",
         "entry_point": "f"},
        {"id": "b", "code": "1 / 0"},
    ]) + "\n")
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "textbooklm.cli", "sandbox", "run", str(programs), "--out", str(out),
           "--timeout", "2", "--memory-mb", "1024", "--workers", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in rows] == [("a", "passed"), ("b", "failed")]
    meta = json.loads(out.with_name("r.jsonl.meta.json").read_text())
    assert meta["limits"]["memory_mb"] == 1024 and meta["limits"]["timeout_s"] == 2.0 and meta["workers"] == 1
    assert "network_isolated" in meta["isolation"]
    assert meta["isolation"]["process_limit"] in ("cgroup-v1", "cgroup-v2", "rlimit-nproc", "none")
    assert {r["process_limit"] for r in rows} == {meta["isolation"]["process_limit"]}
    for key in ("proc_private", "env_scrubbed", "uid", "notes"):  # every layer, achieved or not (and why)
        assert key in meta["isolation"], key
    assert {r["proc_private"] for r in rows} == {meta["isolation"]["proc_private"]}
    assert all(r["env_scrubbed"] and isinstance(r["uid"], int) for r in rows)

    programs.write_text('{"id": "a"}\n')
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "p.jsonl:1: missing key" in proc.stderr
