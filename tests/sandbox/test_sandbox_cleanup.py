"""After 1,000 mixed programs over two pools at once (some forking, daemonizing, flooding, timing out,
spilling files into /tmp and /dev/shm, holding memory past the limit) nothing is left: no process, no
work dir, no cgroup, nothing in the host's /tmp or /dev/shm (checked before and after)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
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


SPILL = ("import _io, os\nfor d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
         "    _io.open(os.path.join(d, 'TOKEN-' + str(os.getpid())), 'w').write('left')\n")
MEMFD_HOG = ("import os\nfds = []\nfor i in range(512):\n    if i % 32 == 0:\n"
             "        fds.append(os.memfd_create('hog'))\n    os.write(fds[-1], b'x' * (1 << 20))\n")


def _host_entries(token: str) -> list[str]:
    """Entries in the host's /tmp, /var/tmp and /dev/shm whose name carries ``token``."""
    return [os.path.join(d, n) for d in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(d)
            for n in os.listdir(d) if token in n]


@pytest.mark.slow
def test_thousand_mixed_programs_over_two_pools_leave_nothing(tmp_path):
    """1,000 programs over two pools running at once: every verdict as expected, and afterwards no
    process, no work dir, no cgroup, and nothing in the host's /tmp, /var/tmp or /dev/shm."""
    token = f"textbooklm-stress-{os.getpid()}-{os.urandom(4).hex()}"
    kinds = [*KINDS, ("spill", SPILL.replace("TOKEN", token), "", "", {"passed"})]
    roots = [tmp_path / "sbx-a", tmp_path / "sbx-b"]
    mine = f"{cgroups.PREFIX}{os.getpid()}-"  # every cgroup a pool of this process makes
    for root in roots:
        root.mkdir()
        assert _processes_mentioning(str(root)) == []
    assert cgroups.ours(mine) == [] and _host_entries(token) == []

    def programs(pool_name: str) -> list[Program]:
        items = [Program(id=f"{pool_name}{i}", code=kinds[i % len(kinds)][1], test=kinds[i % len(kinds)][2],
                         entry_point=kinds[i % len(kinds)][3]) for i in range(490)]
        items += [Program(id=f"{pool_name}t{i}", code="while True:\n    pass\n") for i in range(5)]  # timeouts
        # memory hogs; a wider wall limit (4 x reference_s): on a loaded box, writing 512 MiB under memory
        # pressure outlasts the 2 s given to the others, and a timeout would hide the memory verdict
        return items + [Program(id=f"{pool_name}m{i}", code=MEMFD_HOG, reference_s=5.0) for i in range(5)]

    limits = Limits(timeout_s=2, memory_mb=256, guard=False)
    results: dict[str, list] = {}
    baseline: dict[str, tuple] = {}
    errors: list[BaseException] = []

    def run(name: str, root) -> None:
        try:
            with SandboxPool(limits, workers=1, tmp_root=str(root)) as pool:
                # what a started pool holds (workers and their helpers): the same must be all that is left
                baseline[name] = (len(_processes_mentioning(str(root))),
                                  [cgroups.pids_current(p) for p in pool.cgroup_paths()], pool.isolation)
                results[name] = pool.run(programs(name))
                assert len(_processes_mentioning(str(root))) == baseline[name][0]
                assert [cgroups.pids_current(p) for p in pool.cgroup_paths()] == baseline[name][1]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name, root)) for name, root in zip("ab", roots, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for name in "ab":
        rs, isolation = results[name], baseline[name][2]
        for i, r in enumerate(rs[:490]):
            assert r.status in kinds[i % len(kinds)][4], (kinds[i % len(kinds)][0], r.status, r.error)
        assert all(r.status == "timeout" for r in rs[490:495])
        memfd = "memory" if isolation["memory_limit"] != "rlimit-as" else "passed"
        assert all(r.status == memfd for r in rs[495:]), [(r.status, r.error) for r in rs[495:]]
    for root in roots:
        assert _processes_mentioning(str(root)) == []
        assert list(root.iterdir()) == []
    assert cgroups.ours(mine) == []
    if all(baseline[n][2]["private_tmp"] for n in "ab"):
        assert _host_entries(token) == []
    else:  # programs wrote into the host's /tmp: remove what they left, and say so
        for path in _host_entries(token):
            os.unlink(path)
        pytest.skip("no private /tmp here: programs write into the host's /tmp")


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


TRAPS = """import os, shutil, stat
os.symlink({victim!r}, 'dirlink')
os.symlink({victim!r} + '/data.txt', 'filelink')
os.mkdir('locked')
open('locked/f', 'w').write('x')
os.chmod('locked', 0)
shutil.rmtree('/tmp', ignore_errors=True)  # the private /tmp (or, without one, what the uid may remove)
shutil.rmtree(os.environ['TMPDIR'], ignore_errors=True)  # its own work dir: the folder above is not its own
os.symlink({victim!r}, os.path.join(os.environ['TMPDIR'], 'dirlink2'))  # the work dir is still there
print(sorted(os.listdir(os.environ['TMPDIR'])))
"""


def test_cleanup_never_follows_a_link_or_changes_a_host_mode(tmp_path):
    """A program leaves links to a host folder and an unreadable folder in its work dir and empties its
    TMPDIR with shutil.rmtree: the worker's cleanup (as root) removes the links, not what they point at,
    and no host mode changes (issue 24, item 2: /tmp once became 0700 this way)."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    (victim / "data.txt").write_text("keep me")
    victim.chmod(0o755)
    root = tmp_path / "sbx"
    root.mkdir()
    tmp_mode = stat.S_IMODE(os.stat("/tmp").st_mode)
    with SandboxPool(Limits(timeout_s=10, guard=False), workers=1, tmp_root=str(root)) as pool:
        first, after = pool.run([Program(id="traps", code=TRAPS.format(victim=str(victim))),
                                 Program(id="after", code="import tempfile\nprint(tempfile.mkdtemp())\n")])
    assert first.status == "passed", (first.error, first.stderr)
    assert "'dirlink2'" in first.stdout  # the work dir outlived the program's rmtree of it
    assert after.status == "passed", (after.error, after.stderr)  # tempfile still works for the next one
    assert (victim / "data.txt").read_text() == "keep me"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755 and stat.S_IMODE((victim / "data.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE(os.stat("/tmp").st_mode) == tmp_mode == 0o1777
    assert list(root.iterdir()) == []
