"""What a program can see of its host: no secret from the parent's environment (not in its own
environment, not in any /proc/*/environ or cmdline it can read), no host process in /proc, not
uid 0, and only the variables ``Limits.env`` names. Real sandbox processes, no mocks. Where a
layer cannot be had on this machine, the result must say which and why (never a silent pass)."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import pytest

from textbooklm.sandbox import Limits, Program, SandboxPool
from textbooklm.sandbox.environment import FROM_PARENT, HASH_SEED, THREAD_CAPS, program_environment
from textbooklm.sandbox.mounts import blocking_ancestors

# Reads every /proc/<pid>/environ and cmdline it can (and every thread's), reports where the
# secret turned up, how many files it could read (so an empty scan is not mistaken for a clean one),
# and its own environment.
SCAN = """import json, os, sys
secret = sys.argv_secret
hits, readable = [], 0
for entry in os.listdir('/proc'):
    if not entry.isdigit():
        continue
    paths = [f'/proc/{entry}/environ', f'/proc/{entry}/cmdline']
    try:
        paths += [f'/proc/{entry}/task/{t}/environ' for t in os.listdir(f'/proc/{entry}/task')]
    except OSError:
        pass
    for path in paths:
        try:
            data = open(path, 'rb').read()
        except OSError:
            continue
        readable += 1
        if secret.encode() in data:
            hits.append(path)
print(json.dumps({'environ': dict(os.environ), 'hits': hits, 'readable': readable}))
"""


def _scan_program(secret: str) -> Program:
    return Program(id="scan", code=SCAN.replace("sys.argv_secret", repr(secret)))


def _worker_pids(marker: str) -> list[int]:
    """Host pids of the pool's workers (their command line carries the tmp root)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def test_no_parent_secret_reaches_a_program(tmp_path, monkeypatch):
    secret = "sk-planted-" + secrets.token_hex(12)
    monkeypatch.setenv("OPENAI_API_KEY", secret)  # the parent holds it before the pool exists
    monkeypatch.setenv("SOME_OTHER_SETTING", "x")
    with SandboxPool(Limits(timeout_s=5), workers=2, tmp_root=str(tmp_path)) as pool:
        r = pool.run([_scan_program(secret)])[0]
        workers = _worker_pids(str(tmp_path))
        assert workers  # the outer worker and its PID-1 child, seen from the host
        for pid in workers:  # the workers themselves were exec'd without it (what a program could read)
            assert secret.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
            names = {kv.split(b"=", 1)[0].decode() for kv in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                     if kv}
            assert "OPENAI_API_KEY" not in names and "SOME_OTHER_SETTING" not in names
    assert r.status == "passed", (r.error, r.stderr)
    assert secret not in r.stdout and secret not in r.stderr
    report = json.loads(r.stdout)
    allowed = set(FROM_PARENT) | set(THREAD_CAPS) | set(HASH_SEED) | {"HOME", "TMPDIR", "TMP", "TEMP",
                                                                      "PYTHONDONTWRITEBYTECODE"}
    assert set(report["environ"]) <= allowed, set(report["environ"]) - allowed
    assert report["environ"]["HOME"] == report["environ"]["TMPDIR"] and report["environ"]["HOME"].startswith(
        str(tmp_path))
    assert report["readable"] >= 1  # at least its own /proc/self/environ: the scan did read something
    assert r.env_scrubbed
    if r.proc_private or r.uid != os.geteuid():
        assert report["hits"] == []
    else:  # same uid as this test and the host's /proc: the test's own environ is readable; say so
        assert any("/proc" in n for n in r.isolation_notes), r.isolation_notes
        pytest.skip(f"no private /proc and no separate uid here: {r.isolation_notes}")


def test_proc_shows_no_host_process(tmp_path):
    code = "import os, json\nprint(json.dumps([int(e) for e in os.listdir('/proc') if e.isdigit()] + [os.getpid()]))\n"
    with SandboxPool(Limits(timeout_s=5), workers=1, tmp_root=str(tmp_path)) as pool:
        r = pool.run([Program(id="ls", code=code)])[0]
        isolation = pool.isolation
    assert r.status == "passed", (r.error, r.stderr)
    *listed, own = json.loads(r.stdout)
    host = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    if not r.proc_private:
        assert not isolation["proc_private"]
        assert any("/proc" in n for n in r.isolation_notes), r.isolation_notes
        pytest.skip(f"no private /proc here: {r.isolation_notes}")
    assert isolation["proc_private"] and isolation["pid_namespace"]
    # Only the namespace: its PID 1 (the worker), the worker's fork server, the test's process and the
    # program itself.
    assert len(listed) == 4 and {1, own} <= set(listed), listed
    assert len(host) > len(listed)


def test_programs_do_not_run_as_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("not running as root: programs already run as the invoking user (no uid to drop)")
    code = ("import os, json, email.mime.text, sqlite3, xml.dom.minidom, zipfile, decimal\n"
            "try:\n    home = sorted(os.listdir(os.path.expanduser('~root')))\nexcept OSError as e:\n"
            "    home = str(e)\n"
            "print(json.dumps([os.getuid(), os.geteuid(), home]))\n")
    with SandboxPool(Limits(timeout_s=5), workers=2, tmp_root=str(tmp_path)) as pool:
        results = pool.run([Program(id=f"u{i}", code=code) for i in range(4)])
        isolation = pool.isolation
    for r in results:
        assert r.status == "passed", (r.error, r.stderr)
        uid, euid, root_home = json.loads(r.stdout)
        assert (uid, euid) == (r.uid, r.uid)
        if r.uid == 0:  # the kernel or the interpreter's location refused: said, not silent
            assert any("programs run as root" in n for n in r.isolation_notes), r.isolation_notes
            pytest.skip(f"programs stay root here: {r.isolation_notes}")
        assert r.uid >= 62000
    assert isolation["uid"] >= 62000
    # Root's private home is masked for programs: what the interpreter needs, nothing else of it.
    host_home = sorted(os.listdir(os.path.expanduser("~root")))
    if isinstance(root_home, list) and isolation.get("masked"):
        assert set(root_home) < set(host_home) or root_home == host_home == []


def test_limits_env_passes_named_variables_only(tmp_path, monkeypatch):
    monkeypatch.setenv("NOT_NAMED", "parent-only")
    code = "import os, json\nprint(json.dumps(dict(os.environ)))\n"
    limits = Limits(timeout_s=5, env={"TEXTBOOKLM_TEST_VAR": "hello world", "OMP_NUM_THREADS": "2"})
    with SandboxPool(limits, workers=1, tmp_root=str(tmp_path)) as pool:
        r = pool.run([Program(id="env", code=code)])[0]
    assert r.status == "passed", (r.error, r.stderr)
    env = json.loads(r.stdout)
    assert env["TEXTBOOKLM_TEST_VAR"] == "hello world"
    assert env["OMP_NUM_THREADS"] == "2"  # Limits.env wins over the defaults
    assert "NOT_NAMED" not in env


@pytest.mark.parametrize("bad", [{"A=B": "1"}, {"": "1"}, {"1X": "1"}, {"A": "x\0y"}])
def test_limits_env_rejects_bad_names_and_values(bad):
    with pytest.raises(ValueError, match="env"):
        Limits(env=bad)


SET_ORDER = "print(list({f'item-{i}' for i in range(40)}))\nimport os\nprint(os.environ['PYTHONHASHSEED'])\n"


def test_printed_set_order_is_the_same_in_every_pool(tmp_path):
    """PYTHONHASHSEED is fixed for the worker (a forked program keeps its interpreter's seed) and for
    programs: a printed set reads the same in two pools (a random seed per worker orders it differently)."""
    outputs = []
    for _ in range(2):
        with SandboxPool(Limits(timeout_s=5), workers=1, tmp_root=str(tmp_path)) as pool:
            r = pool.run([Program(id="set", code=SET_ORDER)])[0]
        assert r.status == "passed", (r.error, r.stderr)
        outputs.append(r.stdout)
    assert outputs[0] == outputs[1] and outputs[0].splitlines()[1] == "0"


def test_program_environment_is_an_allowlist():
    parent = {"PATH": "/bin", "LANG": "de_DE.UTF-8", "OPENAI_API_KEY": "sk-x", "PYTHONPATH": "/p"}
    env = program_environment(parent, "/w", {"X": "1"})
    assert env["PATH"] == "/bin" and env["LANG"] == "de_DE.UTF-8" and env["X"] == "1"
    assert env["HOME"] == env["TMPDIR"] == "/w"
    assert "OPENAI_API_KEY" not in env and "PYTHONPATH" not in env


def test_blocking_ancestors_finds_untraversable_dirs(tmp_path):
    private = tmp_path / "private"
    (private / "lib" / "py").mkdir(parents=True)
    private.chmod(0o700)
    try:
        found = blocking_ancestors(str(private / "lib" / "py"))
        assert str(private) in found
        assert str(private / "lib") not in found
    finally:
        private.chmod(0o755)


def test_programs_hold_no_capability(tmp_path):
    """Even a program that stays uid 0 (or owns the worker's user namespace) could otherwise unmount
    the private /proc; it has no capability and cannot regain one (no_new_privs)."""
    code = ("status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
            "print(status['CapEff'].strip(), status['CapPrm'].strip(), status['NoNewPrivs'].strip())\n")
    with SandboxPool(Limits(timeout_s=5), workers=1, tmp_root=str(tmp_path)) as pool:
        r = pool.run([Program(id="caps", code=code)])[0]
    assert r.status == "passed", (r.error, r.stderr)
    assert r.stdout.split() == ["0000000000000000", "0000000000000000", "1"]


def test_tmp_root_under_a_private_dir_stays_usable(tmp_path):
    """A tmp root below a dir only root may traverse: the mask binds it back writable for the drop uid."""
    if os.geteuid() != 0:
        pytest.skip("not running as root: no uid is dropped, nothing is masked")
    private = tmp_path / "private"
    root = private / "work"
    root.mkdir(parents=True)
    private.chmod(0o700)
    code = "import os, tempfile\nopen(os.path.join(tempfile.gettempdir(), 'f'), 'w').write('x')\nprint(os.getuid())\n"
    try:
        with SandboxPool(Limits(timeout_s=5), workers=1, tmp_root=str(root)) as pool:
            r = pool.run([Program(id="w", code=code)])[0]
            isolation = pool.isolation
    finally:
        private.chmod(0o755)
    assert r.status == "passed", (r.error, r.stderr, r.isolation_notes)
    if r.uid == 0:
        assert any("programs run as root" in n for n in r.isolation_notes), r.isolation_notes
        pytest.skip(f"programs stay root here: {r.isolation_notes}")
    assert any(str(root).startswith(m + os.sep) for m in isolation["masked"]), isolation["masked"]
    assert int(r.stdout) == r.uid != 0
    assert list(root.iterdir()) == []


USERNS_SCRIPT = """import json, sys
from textbooklm.sandbox import Limits, Program, SandboxPool
code = sys.argv[1]
with SandboxPool(Limits(timeout_s=5), workers=1, tmp_root=sys.argv[2]) as pool:
    r = pool.run([Program(id="scan", code=code)])[0]
    print(json.dumps({"result": r.to_record(), "isolation": pool.isolation}))
"""


def test_missing_layers_are_reported(tmp_path, monkeypatch):
    """Run a pool inside a user namespace where it is 'root' without real privileges: the drop uid
    does not exist there, so programs stay uid 0; the result must say so (and why), and still leak
    nothing (private /proc, allowlisted environment, no capabilities)."""
    import shutil
    import subprocess
    import sys

    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1) on this machine")
    secret = "sk-planted-" + secrets.token_hex(12)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    cmd = [unshare, "--user", "--map-root-user", sys.executable, "-c", USERNS_SCRIPT,
           SCAN.replace("sys.argv_secret", repr(secret)), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and proc.stderr.startswith("unshare:"):  # unshare(1) itself was refused
        pytest.skip(f"user namespaces refused here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    r, isolation = out["result"], out["isolation"]
    assert r["status"] == "passed", r
    assert r["uid"] == 0 and isolation["uid"] == 0
    assert any("programs run as root" in n and re.search(r"uid 6\d{4}", n) for n in r["isolation_notes"]), \
        r["isolation_notes"]  # the leased uid: 62000 unless another live pool holds it
    assert any("programs run as root" in n for n in isolation["notes"])
    scan = json.loads(r["stdout"])
    assert scan["hits"] == [] and "OPENAI_API_KEY" not in scan["environ"]
    if r["proc_private"]:
        assert isolation["proc_private"]
    else:
        assert any("/proc" in n for n in r["isolation_notes"]), r["isolation_notes"]


WRITE_AND_WAIT = """import os, time
open('loot.txt', 'w').write({secret!r})
print(os.getcwd(), flush=True)
for _ in range(200):
    if os.path.exists('done'):
        break
    time.sleep(0.05)
"""
PEEK = """import json
try:
    found = open({path!r}).read()
except OSError as e:
    found = type(e).__name__
print(json.dumps(found))
"""


def _peek_across_pools(tmp_root: Path, uid_a: int | None, uid_b: int | None) -> tuple[dict, int, int]:
    """Pool A's program writes a file and waits; pool B's program opens it by path. (what B read, uid A, uid B)"""
    import threading

    secret = secrets.token_hex(8)
    limits = Limits(timeout_s=15)
    with SandboxPool(limits, workers=1, tmp_root=str(tmp_root), uid_base=uid_a) as a, \
            SandboxPool(limits, workers=1, tmp_root=str(tmp_root), uid_base=uid_b) as b:
        out: list = []
        writer = threading.Thread(target=lambda: out.extend(a.run([Program(
            id="a", code=WRITE_AND_WAIT.format(secret=secret))])))
        writer.start()
        loot = []
        for _ in range(200):
            loot = list(tmp_root.glob("textbooklm-sandbox-*/textbooklm-sbx-*/loot.txt"))
            if loot:
                break
            threading.Event().wait(0.05)
        assert loot, "pool A's program never wrote its file"
        peek = b.run([Program(id="b", code=PEEK.format(path=str(loot[0])))])[0]  # it knows the path
        (loot[0].parent / "done").touch()
        writer.join()
    assert out[0].status == "passed" and peek.status == "passed", (out[0].error, peek.error, peek.stderr)
    return {"value": json.loads(peek.stdout), "secret": secret, "fs_view": peek.fs_view}, out[0].uid, peek.uid


def test_two_live_pools_never_share_a_uid_so_one_cannot_read_the_others_work(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("not running as root: every program runs as the invoking user (no uid to drop)")
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="textbooklm-uidtest-", dir="/tmp"))  # traversable by any uid
    os.chmod(root, 0o755)
    try:
        # Control: two pools forced onto the same uid (how every pool ran before leases) can read each other.
        shared, uid_a, uid_b = _peek_across_pools(root, 62000, 62000)
        if uid_a == 0:
            pytest.skip("programs stay root here (see test_programs_do_not_run_as_root)")
        assert uid_a == uid_b == 62000
        # With a filesystem view (fs_view.py) pool A's folder is not even in B's view; without one, a
        # shared uid reads it.
        assert shared["value"] == ("FileNotFoundError" if shared["fs_view"] != "none" else shared["secret"])
        # Leased uids: distinct, and the work folder (0700, owned by A's uid) is closed to B.
        leased, uid_a, uid_b = _peek_across_pools(root, None, None)
        assert uid_a != uid_b and min(uid_a, uid_b) >= 62000
        assert leased["value"] == ("FileNotFoundError" if leased["fs_view"] != "none" else "PermissionError")
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def test_uid_leases_are_disjoint_released_and_refuse_an_unsafe_lock_folder(tmp_path):
    from textbooklm.sandbox.uids import UidLease, lock_dir

    folder = tmp_path / "leases"
    first, second = UidLease(3, first=70000, span=5, folder=folder), UidLease(2, first=70000, span=5, folder=folder)
    assert first.uids == [70000, 70001, 70002] and second.uids == [70003, 70004]
    with pytest.raises(RuntimeError, match="no free uid for 1 workers in 70000-70004"):
        UidLease(1, first=70000, span=5, folder=folder)
    first.release()
    assert UidLease(3, first=70000, span=5, folder=folder).uids == [70000, 70001, 70002]
    os.chmod(lock_dir([folder]), 0o777)  # writable by a sandboxed uid: it could steer leases
    with pytest.raises(RuntimeError, match="writable only by it"):
        UidLease(1, first=70000, span=5, folder=folder)


HOLD_A_LEASE = """import sys
from textbooklm.sandbox.uids import UidLease
lease = UidLease(1)
print(lease.uids[0], flush=True)
sys.stdin.read()  # hold it until the test closes our stdin
"""


def test_uid_leases_do_not_depend_on_tmpdir(tmp_path):
    """Two pools started with different TMPDIR lease from the same fixed folder: never the same uid (the
    lease folder used to live under tempfile.gettempdir(), so both took 62000)."""
    import subprocess
    import sys

    from textbooklm.sandbox.uids import lock_dir_candidates

    assert all(not str(p).startswith(str(tmp_path)) for p in lock_dir_candidates())
    holders = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            env = {**os.environ, "TMPDIR": str(tmp_path / name)}
            holders.append(subprocess.Popen([sys.executable, "-c", HOLD_A_LEASE], env=env, text=True,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        uids = [int(p.stdout.readline()) for p in holders]
    finally:
        for p in holders:
            p.stdin.close()
            p.wait(timeout=30)
    assert uids[0] != uids[1] and min(uids) >= 62000, uids
    assert list((tmp_path / "a").iterdir()) == list((tmp_path / "b").iterdir()) == []
