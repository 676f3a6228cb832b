"""Linux namespaces for the warm worker: no network, and a PID namespace for complete cleanup.

Why per worker and not per program: creating a network namespace costs milliseconds and its
teardown is asynchronous in the kernel, so thousands per minute would be the bottleneck. One
namespace per worker is just as isolating, because every program forked by the worker inherits it.

The PID namespace makes the worker's forking process PID 1 of its own namespace: after each
program it kills every other process in the namespace with one ``kill(-1, SIGKILL)``, so nothing
a program started (even one that called setsid) outlives it; and a program cannot signal PID 1.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def unshare(flags: int) -> None:
    """unshare(2); raises OSError with the errno when the kernel refuses."""
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def prctl(option: int, arg: int) -> None:
    if _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Clear every capability of the calling process (capset(2) with empty sets).

    Why: a program that stays uid 0 (no usable drop uid) or runs in a user namespace the worker
    created holds every capability there, so it could unmount the private /proc or the masks, or
    signal other users' processes. Without capabilities, root is only the owner of root's files."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def _map_ids(uid: int, gid: int) -> None:
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def isolate(network: bool) -> dict[str, object]:
    """Enter new network and PID namespaces where permitted. Returns what was achieved and why not.

    As root: unshare directly. Otherwise first a user namespace (unprivileged user namespaces are
    enabled on most distributions; some, e.g. Ubuntu with AppArmor restrictions, refuse them).
    """
    info: dict[str, object] = {"network_isolated": False, "pid_namespace": False, "notes": []}
    notes: list[str] = info["notes"]  # type: ignore[assignment]
    want = CLONE_NEWPID | (CLONE_NEWNET if network else 0)
    if os.geteuid() != 0:
        uid, gid = os.getuid(), os.getgid()
        try:
            unshare(CLONE_NEWUSER)
            _map_ids(uid, gid)
        except OSError as exc:
            notes.append(f"no user namespace ({exc.strerror}); network and PID namespaces need one")
            return info
    try:
        unshare(want)
        info["network_isolated"] = network
        info["pid_namespace"] = True
        return info
    except OSError as exc:
        notes.append(f"unshare(NEWPID|NEWNET) refused ({exc.strerror})")
    if network:
        try:
            unshare(CLONE_NEWNET)
            info["network_isolated"] = True
        except OSError as exc:
            notes.append(f"unshare(NEWNET) refused ({exc.strerror}): programs can reach the network")
    try:
        unshare(CLONE_NEWPID)
        info["pid_namespace"] = True
    except OSError as exc:
        notes.append(f"unshare(NEWPID) refused ({exc.strerror}): cleanup uses a subreaper instead")
    return info
