"""A pristine fork server inside each worker: every program's processes fork from a state that never
held another program's data.

Why: the worker reads each request (code, hidden test) and each result (stdout) into its own heap;
a child forked from it starts with a copy of that heap, freed blocks included, so a program that
scanned its own memory found the previous program's code, test and output. The fork server is
forked from the worker once, at start-up, before any request; afterwards it receives only role
letters, file descriptors (SCM_RIGHTS) and pids, never program data. Each process it forks reads
its own request from a fresh pipe (child.py).

The server is the parent of the processes it forks, so it also reaps them: the worker watches them
with pidfds, kills them, then asks for their exit status and CPU use (``reap``), which decide
``timeout`` and ``crashed``. Orphans they leave are re-parented to the worker (PID 1 of its PID
namespace, or a child subreaper), which kills them.

Forks happen ahead of need: after each program's cleanup the worker takes the next program's pair
(``prefork``, ``take``); each forked process waits on its own socket for its file descriptors
(``start``). The server forks and answers without waiting for a new process to run: a double fork
that made the worker their parent waited for the middle process to be scheduled, ~60 ms per program
at load 12-18 on this 2-core machine.
"""

from __future__ import annotations

import array
import gc
import os
import signal
import socket
import struct
from collections.abc import Callable

from textbooklm.sandbox.namespaces import PR_SET_PDEATHSIG, prctl

_PID = struct.Struct("q")


class ForkServerGone(RuntimeError):
    """The fork server died (or answered nonsense): the worker cannot start clean programs any more."""


class ForkServer:
    """``ForkServer(roles)`` forks the server now and asks for the first processes.

    ``take()`` returns the forked processes ready for the next program (pid, control socket) in the
    order of ``roles``; ``start(process, fds)`` hands one its fds (it then runs its role);
    ``reap(pids)`` waits for (already killed or exited) ones; ``prefork()`` asks for the next set.
    ``roles`` maps a one-byte role name to a function that takes the received fds and never returns.
    """

    def __init__(self, roles: dict[bytes, Callable[[list[int]], None]]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        oom_score = _read_oom_score()
        pid = os.fork()
        if pid == 0:  # the server: never returns
            try:
                ours.close()
                _write_oom_score(oom_score)  # the worker's, not what at-fork hooks give programs
                _serve(theirs, roles)
            finally:
                os._exit(0)
        theirs.close()
        self.sock = ours
        self.pid = pid
        self.roles = len(roles)
        self.prefork()

    def _send(self, message: bytes) -> None:
        try:
            self.sock.sendall(message)
        except OSError as exc:
            raise ForkServerGone(f"the fork server is gone ({exc})") from None

    def _recv(self, size: int, max_fds: int = 0) -> tuple[bytes, list[int]]:
        try:
            message, fds, _flags, _addr = socket.recv_fds(self.sock, size, max_fds)
        except OSError as exc:
            raise ForkServerGone(f"the fork server is gone ({exc})") from None
        if not message:
            for fd in fds:
                os.close(fd)
            raise ForkServerGone("the fork server closed its socket")
        return message, fds

    def prefork(self) -> None:
        """Ask for the next program's processes (answered later, to ``take``)."""
        self._send(b"P")

    def take(self) -> list[tuple[int, socket.socket]]:
        message, fds = self._recv(_PID.size * self.roles, self.roles)
        pids = [_PID.unpack_from(message, i * _PID.size)[0] for i in range(len(message) // _PID.size)]
        if len(pids) != self.roles or len(fds) != self.roles or any(pid <= 0 for pid in pids):
            for fd in fds:
                os.close(fd)
            raise ForkServerGone(f"the fork server could not fork (errno {-min(pids or [0])})")
        return [(pid, socket.socket(fileno=fd)) for pid, fd in zip(pids, fds, strict=True)]

    @staticmethod
    def start(process: tuple[int, socket.socket], fds: list[int]) -> None:
        """Give a forked process its fds; it closes the socket and runs its role."""
        _pid, control = process
        try:
            socket.send_fds(control, [b"go"], fds)
        except OSError:  # it died waiting: the worker sees it exit and reports it
            pass
        control.close()

    def reap(self, pids: list[int]) -> list[tuple[int, float]]:
        """(wait status, CPU seconds) of each pid; each must have exited or been killed already."""
        self._send(b"R" + b"".join(_PID.pack(p) for p in pids))
        data, _ = self._recv(_STATUS.size * len(pids))
        return [_STATUS.unpack_from(data, i * _STATUS.size) for i in range(len(pids))]

    def close(self) -> None:
        self.sock.close()  # the server sees EOF and exits


_STATUS = struct.Struct("qd")


def _read_oom_score() -> str:
    try:
        with open("/proc/self/oom_score_adj") as f:
            return f.read().strip()
    except OSError:
        return ""


def _write_oom_score(value: str) -> None:
    if value:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(value)
        except OSError:
            pass


def _serve(sock: socket.socket, roles: dict[bytes, Callable[[list[int]], None]]) -> None:
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the worker
    keep = sock.fileno()
    os.closerange(3, keep)  # the worker's protocol pipes and anything else it held
    os.closerange(keep + 1, 65536)
    # Every object so far goes to the permanent generation: the collector of a forked process never
    # walks (writes) them, so their pages stay shared instead of being copied in each process.
    gc.collect()
    gc.freeze()
    while True:
        try:
            message = sock.recv(4096)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        if message[:1] == b"R":
            answer = b""
            for at in range(1, len(message) - _PID.size + 1, _PID.size):
                try:
                    _, status, usage = os.wait4(_PID.unpack_from(message, at)[0], 0)
                    answer += _STATUS.pack(status, usage.ru_utime + usage.ru_stime)
                except ChildProcessError:
                    answer += _STATUS.pack(0, 0.0)
            sock.sendall(answer)
        elif message[:1] == b"P":
            _prefork(sock, roles)


def _prefork(sock: socket.socket, roles: dict[bytes, Callable[[list[int]], None]]) -> None:
    """Fork one process per role, each waiting on its own socket; send the worker pids and sockets."""
    pids, ours = [], []
    for run in roles.values():
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError as exc:
            mine.close()
            theirs.close()
            pids.append(-(exc.errno or 1))
            continue
        if pid == 0:
            try:
                mine.close()
                sock.close()
                for other in ours:
                    other.close()
                _wait_and_run(theirs, run)
            finally:
                os._exit(71)
        theirs.close()
        pids.append(pid)
        ours.append(mine)
    sock.sendmsg([b"".join(_PID.pack(p) for p in pids)],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [s.fileno() for s in ours]))] if ours else [])
    for s in ours:
        s.close()


def _wait_and_run(control: socket.socket, run: Callable[[list[int]], None]) -> None:
    try:
        message, fds, _flags, _addr = socket.recv_fds(control, 16, 16)
    except OSError:
        os._exit(0)
    control.close()
    if not message:  # the worker ended without a program for us
        os._exit(0)
    run(fds)
