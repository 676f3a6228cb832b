"""A SIGKILLed main process leaves no worker, fork server or resource tracker behind.

Real processes only: a child Python maps a slow task over the local executor (2 workers), the test
waits until the pool's processes exist, SIGKILLs the child and then counts, by walking ``/proc``,
which of the processes that descended from it are still alive (pid and start time both match, so a
reused pid is not counted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from textbooklm.process_lifetime import descendants, still_alive

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from textbooklm.executor import map_shards

    def busy(task):  # computes, as a stage worker does, for far longer than the test waits
        end = time.time() + 120
        while time.time() < end:
            sum(range(1000))
        return {}

    if __name__ == "__main__":
        from slow_tasks import busy
        workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
        map_shards(busy, [{"key": f"k{i}"} for i in range(max(4, min(workers, 64)))], sys.argv[1],
                   workers=workers, executor=sys.argv[2] if len(sys.argv) > 2 else "local")
    """
)


def start_busy_run(tmp_path, executor: str = "local", workers: int = 2) -> subprocess.Popen:
    (tmp_path / "slow_tasks.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(tmp_path / "slow_tasks.py"), str(tmp_path / "markers"), executor,
                             str(workers)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_and_count(main: subprocess.Popen, before: set[tuple[int, str]], grace_s: float) -> set[tuple[int, str]]:
    """SIGKILL ``main``; what of ``before`` is still alive ``grace_s`` later (or sooner, once none is)."""
    os.kill(main.pid, signal.SIGKILL)
    main.wait()
    deadline = time.time() + grace_s
    while still_alive(before) and time.time() < deadline:
        time.sleep(0.1)
    return still_alive(before)


@pytest.mark.timeout(180)
def test_sigkilled_main_process_leaves_no_pool_process(tmp_path):
    main = start_busy_run(tmp_path)
    before: set[tuple[int, str]] = set()
    try:
        # The pool is up when two workers, the fork server and the resource tracker all exist.
        deadline = time.time() + 120
        while len(procs := descendants(main.pid)) < 4:
            assert main.poll() is None, "the script ended before its workers were seen"
            assert time.time() < deadline, f"only {len(procs)} pool processes after 120 s"
            time.sleep(0.2)
        time.sleep(1.0)  # let the workers get into their task
        before = descendants(main.pid)
        left = kill_and_count(main, before, grace_s=5)
        assert len(before) >= 4
        assert left == set(), f"{len(left)} of {len(before)} processes outlived the SIGKILLed main process"
    finally:
        for pid, _ in still_alive(descendants(main.pid)) | still_alive(before):
            os.kill(pid, signal.SIGKILL)
        if main.poll() is None:
            main.kill()


@pytest.mark.timeout(180)
def test_sigkilled_run_with_absurd_workers_leaves_nothing_within_seconds(tmp_path):
    """workers = 100000 started a process per shard (60 on 2 cores) that outlived a SIGKILL by 25-45 s.
    Now the pool is capped at max_workers() and each worker forks from a fork server that has already
    imported the executor, so it watches its owner from its first milliseconds."""
    from textbooklm.executor import max_workers

    main = start_busy_run(tmp_path, workers=100_000)
    before: set[tuple[int, str]] = set()
    try:
        deadline = time.time() + 120
        while len(procs := descendants(main.pid)) < max_workers() + 2:  # workers + fork server + tracker
            assert main.poll() is None, "the script ended before its workers were seen"
            assert time.time() < deadline, f"only {len(procs)} pool processes after 120 s"
            time.sleep(0.2)
        time.sleep(1.0)  # any worker beyond the cap would have been started by now
        before = descendants(main.pid)
        assert len(before) == max_workers() + 2, [_cmdline(pid)[:60] for pid, _ in before]
        left = kill_and_count(main, before, grace_s=5)
        assert left == set(), f"{len(left)} of {len(before)} processes outlived the SIGKILLed main process"
    finally:
        for pid, _ in still_alive(descendants(main.pid)) | still_alive(before):
            os.kill(pid, signal.SIGKILL)
        if main.poll() is None:
            main.kill()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkilled_corpus_command_leaves_no_process(tmp_path):
    """The real command: `textbooklm corpus stdlib --workers 2` (~1,800 files), killed mid-read."""
    cmd = [sys.executable, "-m", "textbooklm.cli", "corpus", "stdlib", "--out", str(tmp_path / "run"),
           "--workers", "2"]
    main = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before: set[tuple[int, str]] = set()
    try:
        deadline = time.time() + 180
        while len(descendants(main.pid)) < 4:  # 2 workers, the fork server, the resource tracker
            assert main.poll() is None, "the corpus command ended before its pool was seen"
            assert time.time() < deadline, "no worker pool after 180 s"
            time.sleep(0.05)
        before = descendants(main.pid)
        left = kill_and_count(main, before, grace_s=5)
        assert left == set(), [_cmdline(pid)[:60] for pid, _ in left]
    finally:
        for pid, _ in still_alive(descendants(main.pid)) | still_alive(before):
            os.kill(pid, signal.SIGKILL)
        if main.poll() is None:
            main.kill()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkilled_ray_driver_leaves_no_local_cluster_process(tmp_path):
    """Without the reaper Ray's DashboardAgent and RuntimeEnvAgent linger 60-90 s (measured)."""
    pytest.importorskip("ray")
    main = start_busy_run(tmp_path, executor="ray")
    before: set[tuple[int, str]] = set()
    try:
        deadline = time.time() + 240
        while not any("ray::_run_and_mark" in _cmdline(pid) for pid, _ in descendants(main.pid)):
            assert main.poll() is None, "the script ended before Ray ran a task"
            assert time.time() < deadline, "no Ray worker running a task after 240 s"
            time.sleep(0.5)
        before = descendants(main.pid)
        names = {_cmdline(pid) for pid, _ in before}
        assert any("raylet" in n for n in names) and any("Agent" in n for n in names), names
        left = kill_and_count(main, before, grace_s=15)
        assert left == set(), [_cmdline(pid)[:60] for pid, _ in left]
    finally:
        for pid, _ in still_alive(descendants(main.pid)) | still_alive(before):
            os.kill(pid, signal.SIGKILL)
        if main.poll() is None:
            main.kill()


@pytest.mark.timeout(60)
def test_exit_with_kills_the_watcher_when_the_watched_process_ends(tmp_path):
    """The watchdog alone, in a child that watches a short-lived sibling."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    code = f"from textbooklm.process_lifetime import exit_with; import time; exit_with({sleeper.pid}); time.sleep(60)"
    watcher = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(1.5)
        assert watcher.poll() is None  # alive while the watched process lives
        sleeper.kill()
        sleeper.wait()
        assert watcher.wait(timeout=10) == -signal.SIGKILL
    finally:
        for proc in (sleeper, watcher):
            if proc.poll() is None:
                proc.kill()


def test_exit_with_a_process_already_gone_kills_at_once():
    code = "from textbooklm.process_lifetime import exit_with; import time; exit_with(%d); time.sleep(30)"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert subprocess.run([sys.executable, "-c", code % gone.pid], timeout=20).returncode == -signal.SIGKILL


SANDBOX_SCRIPT = textwrap.dedent(
    """
    from textbooklm.sandbox import Limits, Program, SandboxPool

    with SandboxPool(Limits(timeout_s=60, max_timeout_s=60), workers=2) as pool:
        pool.run([Program(id=str(i), code="import time\\ntime.sleep(120)\\n") for i in range(2)])
    """
)


@pytest.mark.timeout(180)
def test_sigkilled_sandbox_owner_leaves_no_zygote_or_program(tmp_path):
    """The sandbox's workers (and the programs they run) die with the pool's process, not at the wall limit."""
    (tmp_path / "sandbox_owner.py").write_text(SANDBOX_SCRIPT)
    main = subprocess.Popen([sys.executable, str(tmp_path / "sandbox_owner.py")], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before: set[tuple[int, str]] = set()
    try:
        deadline = time.time() + 120
        # Two zygotes, each with its namespace's PID 1 and a running program (plus its fork): >= 6.
        while len(procs := descendants(main.pid)) < 6:
            assert main.poll() is None, "the pool ended before its programs ran"
            assert time.time() < deadline, f"only {len(procs)} sandbox processes after 120 s"
            time.sleep(0.2)
        time.sleep(0.5)
        before = descendants(main.pid)
        left = kill_and_count(main, before, grace_s=5)
        assert left == set(), f"{len(left)} of {len(before)} sandbox processes outlived their owner"
    finally:
        for pid, _ in still_alive(descendants(main.pid)) | still_alive(before):
            os.kill(pid, signal.SIGKILL)
        if main.poll() is None:
            main.kill()
