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

Memory: likewise one cgroup per worker with the ``memory`` controller (v2 ``memory.max`` in the same
folder as ``pids.max``; v1 a folder of the same name in the ``memory`` hierarchy), limit = the
program's ``memory_mb`` plus the worker's own allowance. Unlike RLIMIT_AS it counts what a program
holds outside its address space: ``memfd_create`` files, shared memory and the pages of the private
tmpfs (/tmp, /dev/shm) it wrote. When the limit is hit the kernel's OOM killer ends a process of the
cgroup (the worker protects itself with ``oom_score_adj``), and the counter read by ``oom_kills``
(v2 ``memory.events``, v1 ``memory.oom_control``) turns the program's verdict into ``memory``.
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


def candidate_parents(controller: str = "pids") -> list[tuple[str, str]]:
    """Where a cgroup with ``controller`` (pids, memory) could be made, best first: (dir, kind)."""
    own = _own_paths()
    out: list[tuple[str, str]] = []
    for fstype, mount, root, _opts in _mounts():
        if fstype == "cgroup2":
            out += [(d, "cgroup-v2") for d in _under(mount, root, own.get(""))]
    for fstype, mount, root, opts in _mounts():
        if fstype == "cgroup" and controller in opts.split(","):
            out += [(d, "cgroup-v1") for d in _under(mount, root, own.get(controller))]
    return out


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _v2_enable(parent: str, controller: str = "pids") -> None:
    """Make ``pids.max`` (``memory.max``) appear in children of a v2 cgroup (fails with EBUSY where the
    parent holds processes and is not the root: cgroup v2's no-internal-processes rule)."""
    if controller not in _read(os.path.join(parent, "cgroup.controllers")).split():
        raise OSError(errno.ENOTSUP, f"the {controller} controller is not available in {parent}")
    if controller not in _read(os.path.join(parent, "cgroup.subtree_control")).split():
        _write(os.path.join(parent, "cgroup.subtree_control"), f"+{controller}")


def create(name: str, pids_max: int) -> tuple[PidsCgroup | None, str]:
    """Make cgroup ``name`` with ``pids.max = pids_max`` in the first usable place.
    Returns (the cgroup, "") or (None, why none could be made)."""
    reasons = []
    for parent, kind in candidate_parents():
        path = os.path.join(parent, name)
        try:
            if kind == "cgroup-v2":
                _v2_enable(parent, "pids")
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


@dataclass(frozen=True)
class MemoryCgroup:
    path: str
    kind: str  # "cgroup-v2" | "cgroup-v1"
    limit_mb: int


def create_memory(name: str, limit_mb: int) -> tuple[MemoryCgroup | None, str]:
    """Make (or, in v2, reuse the pids cgroup ``name`` as) a memory cgroup limited to ``limit_mb`` MiB,
    swap included where the kernel accounts it. Returns (the cgroup, "") or (None, why none)."""
    reasons = []
    limit = str(limit_mb * 1024 * 1024)
    for parent, kind in candidate_parents("memory"):
        path = os.path.join(parent, name)
        made = False
        try:
            if kind == "cgroup-v2":
                _v2_enable(parent, "memory")
            try:
                os.mkdir(path)
                made = True
            except FileExistsError:
                if kind != "cgroup-v2":
                    raise
        except OSError as exc:
            reasons.append(f"{parent}: {exc.strerror or exc}")
            continue
        limit_file = "memory.max" if kind == "cgroup-v2" else "memory.limit_in_bytes"
        try:
            _write(os.path.join(path, limit_file), limit)
        except OSError as exc:
            reasons.append(f"{path}/{limit_file}: {exc.strerror or exc}")
            if made:
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            continue
        swap_file, swap = (("memory.swap.max", "0") if kind == "cgroup-v2"
                           else ("memory.memsw.limit_in_bytes", limit))
        try:  # no swap beyond the limit (absent where swap is not accounted: then there is none to use)
            _write(os.path.join(path, swap_file), swap)
        except OSError:
            pass
        return MemoryCgroup(path, kind, limit_mb), ""
    return None, "; ".join(reasons) or "no cgroup hierarchy with the memory controller is mounted"


def oom_kills(cgroup: MemoryCgroup | None) -> int:
    """How many processes the OOM killer has ended in the cgroup so far (0 when unknown)."""
    if cgroup is None:
        return 0
    name = "memory.events" if cgroup.kind == "cgroup-v2" else "memory.oom_control"
    try:
        for line in _read(os.path.join(cgroup.path, name)).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


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
    for parent, _kind in candidate_parents("pids") + candidate_parents("memory"):
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
