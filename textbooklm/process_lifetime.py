"""Worker processes die with the run that started them, even when it is killed with SIGKILL.

A SIGKILLed main process runs no cleanup, and the local executor's workers are not its children:
they are forked by the multiprocessing fork server, and each holds the fork server's "alive" pipe
and the resource tracker's pipe open. So without help the workers keep computing and then wait on
the task queue for ever, and the fork server and tracker (which exit when those pipes close) stay
with them. Two mechanisms, both installed in every worker when it starts:

* a watchdog thread blocked on a pidfd of the main process (``os.pidfd_open``; polling
  ``kill(pid, 0)`` where pidfds are missing) that SIGKILLs the worker the moment the main process
  ends. It needs the GIL for an instant, which Python hands over every few milliseconds even while
  another thread computes;
* ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (Linux): the kernel kills the worker when its parent (the
  fork server) dies. The signal fires on the death of the *thread* that forked the process; the
  fork server is single-threaded, so that is the fork server itself.

Once the workers are gone the fork server and the resource tracker see their pipes close and exit
on their own (the test in ``tests/test_process_lifetime.py`` counts them).

A local Ray cluster started by ``ray.init()`` fate-shares its GCS, raylet and workers with the
driver, but its two agents (``DashboardAgent``, ``RuntimeEnvAgent``) first try to report the
raylet's death to the dead GCS and linger 60-90 s (measured). :func:`start_reaper` covers that: a
small process, in its own session, that waits for the driver to end and then SIGKILLs the
processes the driver listed (pid and start time, so a reused pid is never hit).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when the thread that forked it ends.

    Returns False where prctl is unavailable (not Linux). Call it in the child right after it starts.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(int(sig)), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wait_for_exit(pid: int, poll_s: float) -> None:
    """Block until process ``pid`` has ended (returns at once if it already has)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll; pid reuse within poll_s is
        while True:                    # the only blind spot
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                pass
            time.sleep(poll_s)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll():
            pass
    finally:
        os.close(fd)


def exit_with(pid: int, poll_s: float = 0.5) -> threading.Thread:
    """Start a daemon thread that SIGKILLs this process as soon as process ``pid`` ends."""
    def watch() -> None:
        _wait_for_exit(pid, poll_s)
        _kill_self()

    thread = threading.Thread(target=watch, name=f"exit-with-{pid}", daemon=True)
    thread.start()
    return thread


def die_with(main_pid: int) -> None:
    """Pool-worker initializer: die with the process ``main_pid`` and with this worker's own parent."""
    set_parent_death_signal()
    exit_with(main_pid)  # also covers a parent that died before prctl took effect


# -- process trees, and a reaper for processes that are not our workers ---------------------------
Proc = tuple[int, str]  # (pid, start time in clock ticks since boot): names one process for ever


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int) -> set[Proc]:
    """Every living (not zombie) process below ``root``, from one walk of ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[Proc] = set()
    stack = [root]
    while stack:
        for pid in children.get(stack.pop(), []):
            fields = _stat(pid)
            if fields is not None and fields[0] != "Z":
                found.add((pid, fields[19]))
                stack.append(pid)
    return found


def still_alive(procs: set[Proc]) -> set[Proc]:
    """Those of ``procs`` still running (same pid and start time, not a zombie)."""
    alive = set()
    for pid, start in procs:
        fields = _stat(pid)
        if fields is not None and fields[19] == start and fields[0] != "Z":
            alive.add((pid, start))
    return alive


def start_reaper(procs: set[Proc], watch_pid: int | None = None) -> subprocess.Popen:
    """Start a process that SIGKILLs ``procs`` once ``watch_pid`` (default: this process) has ended.

    The caller kills the reaper (``.kill()``) when it shuts the processes down itself. It runs in its
    own session and ignores SIGINT, so a Ctrl-C or a kill of the process group still leaves it to
    clean up.
    """
    args = [sys.executable, "-m", "textbooklm.process_lifetime", "--watch", str(watch_pid or os.getpid())]
    args += [f"{pid}:{start}" for pid, start in sorted(procs)]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def _reaper_main() -> None:
    parser = argparse.ArgumentParser(description="Kill the given processes once --watch has ended.")
    parser.add_argument("--watch", type=int, required=True)
    parser.add_argument("procs", nargs="*", help="PID:STARTTIME")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    procs = {(int(p), start) for p, start in (item.split(":", 1) for item in args.procs)}
    _wait_for_exit(args.watch, 0.5)
    for pid, _ in still_alive(procs):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    _reaper_main()
