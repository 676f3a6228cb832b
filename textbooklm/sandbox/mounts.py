"""The worker's private mount namespace: its own ``/proc``, and the interpreter reachable by the drop uid.

Why a private ``/proc``: the host's ``/proc`` lists every process of the machine, and
``/proc/<pid>/environ`` / ``cmdline`` of any process the program may read carry secrets (an
``OPENAI_API_KEY`` in the parent's environment). A ``proc`` mounted inside the worker's PID
namespace shows only that namespace: the worker (PID 1) and the program's own processes. The
host's ``/proc`` is detached first (not only covered), so even a program still running as root
cannot unmount the new one to get the old one back.

Why the masking: as root, programs drop to an unprivileged uid, but the interpreter may live under
a private home (``/root/.pyenv``, mode 0700), so that uid could not import the standard library.
Instead of changing permissions on the host, the worker mounts an empty tmpfs (mode 0755) over each
such untraversable directory *inside its own mount namespace* and bind-mounts back, read-only and
at the same paths, only what the worker needs (the interpreter prefix, the virtualenv, the package,
``sys.path``). Paths stay identical, so the modules the worker already imported keep working, and
everything else in that private home (keys, configs, other checkouts) is simply absent for programs.

All of this happens once per worker (milliseconds), never per program, and only after the whole
mount tree was made private (``MS_REC|MS_PRIVATE``), so nothing propagates back to the host.
"""

from __future__ import annotations

import ctypes
import os
import stat

from textbooklm.sandbox.namespaces import CLONE_NEWNS, unshare

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

_libc = ctypes.CDLL(None, use_errno=True)


def _enc(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2); raises OSError naming the target when the kernel refuses."""
    if _libc.mount(_enc(source), _enc(target), _enc(fstype), ctypes.c_ulong(flags), _enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _umount_detach(target: str) -> None:
    if _libc.umount2(os.fsencode(target), ctypes.c_int(MNT_DETACH)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def enter_private_namespace() -> str:
    """unshare(CLONE_NEWNS) and make every mount private. Returns "" or why not (then nothing
    else in this module may be used: a mount would propagate to the host)."""
    try:
        unshare(CLONE_NEWNS)
    except OSError as exc:
        return f"no mount namespace (unshare(NEWNS) refused: {exc.strerror})"
    try:
        _mount("none", "/", None, MS_REC | MS_PRIVATE)
    except OSError as exc:
        return f"could not make the mount namespace private ({exc.strerror})"
    return ""


def remount_proc(scratch: str) -> str:
    """Replace ``/proc`` with one of this PID namespace. Call as PID 1 of a new PID namespace,
    inside a private mount namespace; ``scratch`` is a directory this process may create a
    mount point in. Returns "" (private, host's detached), a note (private, host's only covered),
    or raises OSError (no private /proc; the host's stays as it was).

    The new proc is mounted aside first and moved onto /proc only once it exists, so a refusal
    never leaves the worker without a /proc."""
    point = os.path.join(scratch, f".proc-{os.getpid()}-{os.urandom(4).hex()}")
    os.mkdir(point, 0o700)
    try:
        _mount("proc", point, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        try:
            _umount_detach("/proc")
            note = ""
        except OSError as exc:  # e.g. a locked mount in a user namespace: cover it instead
            note = f"the host's /proc is covered, not detached ({exc.strerror})"
        _mount(point, "/proc", None, MS_MOVE)
        return note
    finally:
        try:
            os.rmdir(point)
        except OSError:
            pass


def blocking_ancestors(path: str) -> list[str]:
    """The directories above ``path`` (outermost first) that 'other' users cannot traverse."""
    out = []
    parts = os.path.abspath(path).split(os.sep)[1:-1]
    current = ""
    for part in parts:
        current += os.sep + part
        try:
            mode = os.stat(current).st_mode
        except OSError:
            break
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            out.append(current)
    return out


def expose(paths: list[tuple[str, bool]]) -> tuple[list[str], list[str]]:
    """Make every ``(path, writable)`` reachable by any uid, without touching host permissions.

    For each untraversable ancestor of a path: mount an empty tmpfs over it (in this private mount
    namespace) and bind-mount the needed paths back at the same place (read-only unless
    ``writable``). Returns (the directories masked, notes on what could not be done).
    """
    wanted: dict[str, bool] = {}
    for path, writable in paths:
        for p in {os.path.abspath(path), os.path.realpath(path)}:
            if os.path.isdir(p):
                wanted[p] = wanted.get(p, False) or writable
    masks: list[str] = []  # only the outermost untraversable dir counts: below it all is tmpfs until the bind
    for p in wanted:
        blocking = blocking_ancestors(p)
        a = blocking[0] if blocking else None
        if a is not None and not any(a == m or a.startswith(m + os.sep) for m in masks):
            masks = [m for m in masks if not m.startswith(a + os.sep)] + [a]
    if not masks:
        return [], []
    inside = {p: w for p, w in wanted.items() if any(p.startswith(m + os.sep) for m in masks)}
    notes: list[str] = []
    fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in inside}  # handles that survive the masking
    try:
        done: list[str] = []
        for m in sorted(masks):
            try:
                _mount("tmpfs", m, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
                done.append(m)
            except OSError as exc:
                notes.append(f"could not mask {m} ({exc.strerror})")
        for p in sorted(inside, key=len):  # outer binds first; an inner one then lands on top
            if not any(p.startswith(m + os.sep) for m in done):
                continue
            try:
                os.makedirs(p, mode=0o755, exist_ok=True)
                _mount(f"/proc/self/fd/{fds[p]}", p, None, MS_BIND | MS_REC)
                if not inside[p]:
                    _mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
            except OSError as exc:
                notes.append(f"could not bind {p} back into the masked {os.path.dirname(p)} ({exc})")
        for m in done:  # the tmpfs itself: read-only from now on
            try:
                _mount(None, m, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            except OSError:
                pass
        return done, notes
    finally:
        for fd in fds.values():
            os.close(fd)
