"""Accident guard installed inside the sandboxed child just before the program runs.

Why: model-written code sometimes does destructive things by accident (``shutil.rmtree`` on a
guessed path, ``os.system("rm ...")``, a fork loop). The OS limits (RLIMIT_*, a separate user,
namespaces) contain most of it; this guard turns the common calls into a clear
``SandboxGuardError`` naming the call, so the verdict says what happened. It is NOT a security
boundary: ctypes or re-imported C modules can get around it.

File operations stay allowed inside the program's own work dir (textbook code writes and deletes
its own files); writing, removing, renaming or chmod-ing anything outside it is refused.
"""

from __future__ import annotations

import builtins
import io
import os
import shutil
import subprocess


class SandboxGuardError(PermissionError):
    """A guarded call was refused; the message names the call and the reason."""


def _refuse(name: str):
    def refused(*_args, **_kwargs):
        raise SandboxGuardError(f"sandbox: {name} is disabled")

    refused.__name__ = name.rsplit(".", 1)[-1]
    return refused


def install(workdir: str) -> None:
    """Replace the destructive calls of os/shutil/subprocess/builtins in this process."""
    root = os.path.realpath(workdir)
    realpath = os.path.realpath
    fspath = os.fspath
    readlink = os.readlink
    sep = os.sep

    def inside(path, dir_fd=None) -> bool:
        if isinstance(path, int):  # an already-open fd: its opening was checked
            return True
        try:
            path = fspath(path)
            if dir_fd is not None:  # shutil.rmtree works relative to directory fds
                path = os.path.join(readlink(f"/proc/self/fd/{dir_fd}"), path)
            full = realpath(path)
        except (TypeError, ValueError, OSError):
            return False
        return full == root or full.startswith(root + sep) or full == "/dev/null"

    def checked(name: str, func, *positions: int):
        def wrapper(*args, **kwargs):
            dir_fd = kwargs.get("dir_fd")
            for i in positions:
                if i < len(args) and not inside(args[i], dir_fd):
                    raise SandboxGuardError(
                        f"sandbox: {name}({args[i]!r}) outside the work dir is disabled"
                    )
            for key in ("path", "src", "dst"):
                if key in kwargs and not inside(kwargs[key], dir_fd):
                    raise SandboxGuardError(
                        f"sandbox: {name}({kwargs[key]!r}) outside the work dir is disabled"
                    )
            return func(*args, **kwargs)

        wrapper.__name__ = getattr(func, "__name__", name)
        return wrapper

    for name in ("remove", "unlink", "rmdir", "removedirs", "truncate", "chmod", "chown", "lchown",
                 "mkdir", "makedirs", "symlink", "link", "utime", "mkfifo"):
        if hasattr(os, name):
            setattr(os, name, checked(f"os.{name}", getattr(os, name), 0, 1 if name in ("symlink", "link") else 0))
    for name in ("rename", "renames", "replace"):
        setattr(os, name, checked(f"os.{name}", getattr(os, name), 0, 1))
    shutil.rmtree = checked("shutil.rmtree", shutil.rmtree, 0)
    shutil.move = checked("shutil.move", shutil.move, 0, 1)
    shutil.chown = checked("shutil.chown", shutil.chown, 0)

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    real_os_open = os.open

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & write_flags and not inside(path, kwargs.get("dir_fd")):
            raise SandboxGuardError(f"sandbox: writing {path!r} outside the work dir is disabled")
        return real_os_open(path, flags, *args, **kwargs)

    os.open = guarded_os_open
    real_open = io.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if isinstance(mode, str) and any(c in mode for c in "wax+") and not inside(file):
            raise SandboxGuardError(f"sandbox: writing {file!r} outside the work dir is disabled")
        return real_open(file, mode, *args, **kwargs)

    builtins.open = guarded_open
    io.open = guarded_open

    for name in ("kill", "killpg", "fork", "forkpty", "system", "popen", "execv", "execve", "execvp",
                 "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp",
                 "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "posix_spawn", "posix_spawnp",
                 "setuid", "setgid", "chroot", "fchmod", "fchown"):
        if hasattr(os, name):
            setattr(os, name, _refuse(f"os.{name}"))
    subprocess.Popen = _refuse("subprocess.Popen")  # type: ignore[misc]
    for name in ("run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
        setattr(subprocess, name, _refuse(f"subprocess.{name}"))
    try:  # the C fork used by subprocess/multiprocessing
        import _posixsubprocess

        _posixsubprocess.fork_exec = _refuse("_posixsubprocess.fork_exec")
    except ImportError:  # pragma: no cover - non-POSIX
        pass
