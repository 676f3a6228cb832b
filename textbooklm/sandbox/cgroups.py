"""The process limit through the cgroup ``pids`` controller.

Why not RLIMIT_NPROC alone: it does not bind root, and programs run as root wherever the
interpreter is not readable by an unprivileged uid (e.g. Python under /root/.pyenv), so a fork
bomb written with ctypes (past the Python-level guard) would be unlimited. A pids cgroup binds
every user: once ``pids.current`` reaches ``pids.max`` the kernel refuses fork/clone (EAGAIN).

Layout: the pool makes one cgroup per warm worker (``textbooklm-<pid>-<pool>-w<i>-<gen>``) next
to its own, and the worker moves itself into it once at start; every program it forks inherits
the cgroup at fork time. That costs nothing per program, where moving each child costs ~1 ms of
cgroup migration. ``pids.max`` is therefore the program's ``max_processes`` plus 1 for the worker.
The pool removes the cgroup when the worker ends (killing anything still in it first).

Where: cgroup v2 (a ``pids.max`` appears in a child of the unified hierarchy when the ``pids``
controller is enabled there) or cgroup v1 (a ``pids`` hierarchy, e.g. /sys/fs/cgroup/pids), under
this process's own cgroup first, then the hierarchy's root; the first writable one wins. With
neither, the sandbox falls back to RLIMIT_NPROC and says so.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass

PREFIX = "textbooklm-"
STALE_AFTER_S = 60.0  # an empty cgroup of a dead pool is swept only when this old


@dataclass(frozen=True)
class PidsCgroup:
    path: str
    kind: str  # "cgroup-v2" | "cgroup-v1"


def _mounts() -> list[tuple[str, str, str, str]]:
    """(fstype, mount point, root within the hierarchy, super options) of every cgroup mount."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, tail = left.split(), right.split()
                if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
                    found.append((tail[0], fields[4], fields[3], tail[2]))
    except OSError:
        pass
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup per hierarchy: {"pids": "/a/b"} (v1), {"": "/x"} (v2)."""
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3:
                    for name in parts[1].split(",") if parts[1] else [""]:
                        paths[name] = parts[2]
    except OSError:
        pass
    return paths


def _under(mount: str, root: str, own: str | None) -> list[str]:
    """Candidate parent dirs in one hierarchy: this process's own cgroup, then the mount's root."""
    dirs = []
    if own is not None:
        rel = own
        if root != "/" and (own == root or own.startswith(root.rstrip("/") + "/")):
            rel = own[len(root.rstrip("/")):]
        if not rel.startswith("/.."):  # outside our cgroup namespace: unusable
            dirs.append(os.path.normpath(mount + "/" + rel.lstrip("/")))
    dirs.append(mount)
    return list(dict.fromkeys(dirs))


def candidate_parents() -> list[tuple[str, str]]:
    """Where a pids cgroup could be made, best first: (dir, kind)."""
    own = _own_paths()
    out: list[tuple[str, str]] = []
    for fstype, mount, root, _opts in _mounts():
        if fstype == "cgroup2":
            out += [(d, "cgroup-v2") for d in _under(mount, root, own.get(""))]
    for fstype, mount, root, opts in _mounts():
        if fstype == "cgroup" and "pids" in opts.split(","):
            out += [(d, "cgroup-v1") for d in _under(mount, root, own.get("pids"))]
    return out


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _v2_enable_pids(parent: str) -> None:
    """Make ``pids.max`` appear in children of a v2 cgroup (fails with EBUSY where the parent holds
    processes and is not the root: cgroup v2's no-internal-processes rule)."""
    if "pids" not in _read(os.path.join(parent, "cgroup.controllers")).split():
        raise OSError(errno.ENOTSUP, f"the pids controller is not available in {parent}")
    if "pids" not in _read(os.path.join(parent, "cgroup.subtree_control")).split():
        _write(os.path.join(parent, "cgroup.subtree_control"), "+pids")


def create(name: str, pids_max: int) -> tuple[PidsCgroup | None, str]:
    """Make cgroup ``name`` with ``pids.max = pids_max`` in the first usable place.
    Returns (the cgroup, "") or (None, why none could be made)."""
    reasons = []
    for parent, kind in candidate_parents():
        path = os.path.join(parent, name)
        try:
            if kind == "cgroup-v2":
                _v2_enable_pids(parent)
            os.mkdir(path)
        except OSError as exc:
            reasons.append(f"{parent}: {exc.strerror or exc}")
            continue
        try:
            _write(os.path.join(path, "pids.max"), str(pids_max))
            return PidsCgroup(path, kind), ""
        except OSError as exc:
            reasons.append(f"{path}/pids.max: {exc.strerror or exc}")
            try:
                os.rmdir(path)
            except OSError:
                pass
    return None, "; ".join(reasons) or "no cgroup hierarchy with the pids controller is mounted"


def join(path: str) -> None:
    """Move the calling process into the cgroup ("0" means the writer, in v1 and v2 alike)."""
    _write(os.path.join(path, "cgroup.procs"), "0")


def procs(path: str) -> list[int]:
    """Processes in the cgroup, as pids of the caller's PID namespace."""
    try:
        return [int(p) for p in _read(os.path.join(path, "cgroup.procs")).split()]
    except (OSError, ValueError):
        return []


def pids_current(path: str) -> int:
    return int(_read(os.path.join(path, "pids.current")))


def kill_all(path: str, keep: int | None = None) -> int:
    """SIGKILL every process in the cgroup except ``keep``; returns how many were signalled."""
    victims = [p for p in procs(path) if p != keep]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(victims)


def remove(path: str, timeout_s: float = 5.0) -> bool:
    """Kill what is left in the cgroup and remove it; rmdir fails with EBUSY until the last process
    is gone (reaping is asynchronous), so retry briefly. True when the directory no longer exists."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return not os.path.exists(path)
        kill_path = os.path.join(path, "cgroup.kill")  # v2, kernel >= 5.14: kills the whole subtree
        try:
            _write(kill_path, "1")
        except OSError:
            kill_all(path)
        time.sleep(0.01)


def ours(prefix: str = PREFIX) -> list[str]:
    """Every cgroup dir named with ``prefix`` in the places ``create`` uses (for leftover checks)."""
    found = []
    for parent, _kind in candidate_parents():
        try:
            found += [os.path.join(parent, n) for n in os.listdir(parent) if n.startswith(prefix)]
        except OSError:
            continue
    return sorted(set(found))


def sweep_stale() -> None:
    """Remove empty, old cgroups left by pools whose process died (SIGKILL gives no chance to
    clean up). Only empty ones: a cgroup seen from another PID namespace is never touched."""
    now = time.time()
    for path in ours():
        owner = os.path.basename(path)[len(PREFIX):].split("-", 1)[0]
        if not owner.isdigit() or os.path.exists(f"/proc/{owner}"):
            continue
        try:
            if now - os.stat(path).st_mtime > STALE_AFTER_S and not procs(path):
                os.rmdir(path)
        except OSError:
            pass
