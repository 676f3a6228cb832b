"""The process limit binds even root (cgroup pids controller): a ctypes fork bomb, which the
Python-level guard cannot see, stays under ``pids.max``, ends contained, and the pool goes on;
no cgroup outlives its pool."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time

import pytest

from textbooklm.sandbox import Limits, Program, SandboxPool, cgroups

CGROUP_KINDS = ("cgroup-v1", "cgroup-v2")

# Forks until the kernel refuses; the children wait. Prints successes, the errno of the refusal, and
# what its own cgroup says (pids.current / pids.max), read from inside the sandbox.
COUNT_FORKS = """import ctypes
libc = ctypes.CDLL(None, use_errno=True)
ok = err = 0
for _ in range(200):
    pid = libc.fork()
    if pid == 0:
        libc.pause()
        libc._exit(0)
    if pid < 0:
        err = ctypes.get_errno()
        break
    ok += 1
current = limit = -1
for line in open('/proc/self/cgroup'):
    _, hierarchy, path = line.rstrip().split(':', 2)
    for base in (['/sys/fs/cgroup/pids' + path] if 'pids' in hierarchy.split(',') else
                 ['/sys/fs/cgroup' + path, '/sys/fs/cgroup/unified' + path] if hierarchy == '' else []):
        try:
            current = int(open(base + '/pids.current').read())
            limit = int(open(base + '/pids.max').read())
        except OSError:
            pass
print(ok, err, current, limit)
"""
FORK_BOMB = "import ctypes\nlibc = ctypes.CDLL(None)\nwhile True:\n    libc.fork()\n"


def _events_max(path: str) -> int:
    """How many forks the pids controller has refused in this cgroup (pids.events 'max N')."""
    for line in open(os.path.join(path, "pids.events")):
        key, _, value = line.partition(" ")
        if key == "max":
            return int(value)
    return 0


def _mine() -> list[str]:
    return cgroups.ours(f"{cgroups.PREFIX}{os.getpid()}-")


def test_ctypes_forks_stop_at_the_limit(tmp_path):
    with SandboxPool(Limits(timeout_s=3, max_processes=8), workers=1, tmp_root=str(tmp_path)) as pool:
        if pool.isolation["process_limit"] not in CGROUP_KINDS:
            pytest.skip(f"no writable pids cgroup here: {pool.isolation['notes']}")
        (path,) = pool.cgroup_paths()
        # pids.max = 8 + 3: the worker, its fork server and the test's process live in the cgroup too.
        assert pool.isolation["pids_max"] == 11 and open(os.path.join(path, "pids.max")).read().strip() == "11"
        r = pool.run([Program(id="count", code=COUNT_FORKS)])[0]
        assert r.status == "passed", (r.error, r.stderr)
        assert r.process_limit == pool.isolation["process_limit"]
        ok, err, current, limit = map(int, r.stdout.split())
        # The program itself plus 7 children reach max_processes = 8 (worker, fork server and test are the +3).
        assert (ok, err) == (7, errno.EAGAIN)
        assert limit == 11 and current == 11
        # The children were killed and reaped: the worker and its fork server remain, with the next
        # program's two processes (forked ahead, waiting for their pipes).
        assert cgroups.pids_current(path) == 4
    assert not os.path.exists(path)


@pytest.mark.slow
def test_ctypes_fork_bomb_is_contained_and_pool_survives(tmp_path):
    limits = Limits(timeout_s=1.0, max_processes=16)
    with SandboxPool(limits, workers=2, tmp_root=str(tmp_path)) as pool:
        if pool.isolation["process_limit"] not in CGROUP_KINDS:
            pytest.skip(f"no writable pids cgroup here: {pool.isolation['notes']}")
        paths = pool.cgroup_paths()
        assert len(paths) == 2
        refused_before = sum(_events_max(p) for p in paths)
        peak = {p: 0 for p in paths}
        stop = threading.Event()

        def watch() -> None:  # sample pids.current while the bombs run
            while not stop.is_set():
                for p in paths:
                    try:
                        peak[p] = max(peak[p], cgroups.pids_current(p))
                    except (OSError, ValueError):
                        pass
                time.sleep(0.002)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            start = time.monotonic()
            bombs = pool.run([Program(id=f"bomb{i}", code=FORK_BOMB) for i in range(2)])
            elapsed = time.monotonic() - start
        finally:
            stop.set()
            watcher.join()
        for r in bombs:
            assert r.status in ("timeout", "crashed", "failed"), (r.status, r.error)
            assert r.duration_s < 5.0
        assert elapsed < 15.0
        assert all(0 < n <= limits.max_processes + 3 for n in peak.values()), peak
        assert sum(_events_max(p) for p in paths) > refused_before  # the kernel did refuse forks
        # every bomb process is gone (worker + fork server, and the next program's two processes)
        assert all(cgroups.pids_current(p) == 4 for p in paths)
        after = pool.run([Program(id="after", code="print('ok')"), Program(id="count", code=COUNT_FORKS)])
        assert after[0].status == "passed" and after[0].stdout == "ok\n"
        assert after[1].stdout.split()[:2] == [str(limits.max_processes - 1), str(errno.EAGAIN)]
    assert not any(os.path.exists(p) for p in paths)


def test_two_pools_have_separate_cgroups_and_leave_none(tmp_path):
    before = _mine()
    with SandboxPool(Limits(timeout_s=2, max_processes=4), workers=1, tmp_root=str(tmp_path)) as a, \
            SandboxPool(Limits(timeout_s=2, max_processes=6), workers=1, tmp_root=str(tmp_path)) as b:
        if a.isolation["process_limit"] not in CGROUP_KINDS:
            pytest.skip(f"no writable pids cgroup here: {a.isolation['notes']}")
        assert set(a.cgroup_paths()).isdisjoint(b.cgroup_paths())
        ra = a.run([Program(id="a", code=COUNT_FORKS)])[0]
        rb = b.run([Program(id="b", code=COUNT_FORKS)])[0]
        assert ra.stdout.split()[0] == "3" and rb.stdout.split()[0] == "5"
    assert _mine() == before


def test_cgroup_of_a_killed_worker_is_removed(tmp_path):
    with SandboxPool(Limits(timeout_s=2), workers=1, tmp_root=str(tmp_path)) as pool:
        if pool.isolation["process_limit"] not in CGROUP_KINDS:
            pytest.skip(f"no writable pids cgroup here: {pool.isolation['notes']}")
        (old,) = pool.cgroup_paths()
        os.killpg(pool._procs[0].proc.pid, signal.SIGKILL)  # a worker lost from outside
        lost = pool.run([Program(id="lost", code="print(1)")])[0]
        assert lost.status == "crashed" and "worker died" in lost.error
        (new,) = pool.cgroup_paths()
        assert new != old and not os.path.exists(old) and os.path.exists(new)
        assert pool.run([Program(id="again", code="print(1)")])[0].status == "passed"
    assert not os.path.exists(new) and _mine() == []


def test_without_a_cgroup_it_falls_back_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroups, "create", lambda name, pids_max: (None, "refused for this test"))
    with SandboxPool(Limits(timeout_s=2), workers=1, tmp_root=str(tmp_path)) as pool:
        r = pool.run([Program(id="a", code="print(1)")])[0]
        assert pool.cgroup_paths() == []
    unprivileged = pool.isolation["uid"] != 0
    assert pool.isolation["process_limit"] == ("rlimit-nproc" if unprivileged else "none")
    assert r.status == "passed" and r.process_limit == pool.isolation["process_limit"]
    assert any("refused for this test" in n for n in pool.isolation["notes"])


def test_cgroup_paths_follow_the_mount_and_namespace_root():
    assert cgroups._under("/sys/fs/cgroup/pids", "/", "/a/b") == ["/sys/fs/cgroup/pids/a/b", "/sys/fs/cgroup/pids"]
    assert cgroups._under("/sys/fs/cgroup", "/", "/") == ["/sys/fs/cgroup"]
    # A hierarchy mounted from /ctr (e.g. in a container): our /ctr/x is <mount>/x.
    assert cgroups._under("/mnt/cg", "/ctr", "/ctr/x") == ["/mnt/cg/x", "/mnt/cg"]
    assert cgroups._under("/mnt/cg", "/", "/../outside") == ["/mnt/cg"]
