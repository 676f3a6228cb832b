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
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import threading
import time

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
