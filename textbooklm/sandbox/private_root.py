"""The pool's private folder for work dirs: made inside the tmp root, writable by the pool's user only.

Why: work dirs used to be made directly in the tmp root (``/tmp``), a folder every uid may write.
A program could then put files beside its work dir that a host process later picked up (a
``bisect.py`` imported by the next worker, started with that folder as its cwd), or replace its
work dir with a link so that the worker's cleanup, running as root, changed a host folder. Inside
a folder of mode 0711 owned by the pool's user, a program's uid can reach its own work dir (the
worker chowns it) but can neither list, create, rename nor remove anything next to it.

One folder per pool (``textbooklm-sandbox-<pid>-<random>``), removed when the pool closes; those of
pools whose process died (kill -9) are removed by the next pool that starts.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile

PREFIX = "textbooklm-sandbox-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-[A-Za-z0-9_]+$")


def create(base: str) -> str:
    """A new private folder in ``base`` (mode 0711, owned by the effective user)."""
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base)
    os.chmod(path, 0o711)  # mkdtemp makes 0700: the drop uids must traverse it to reach their work dirs
    return path


def remove(path: str) -> None:
    """Remove a pool's folder. shutil.rmtree walks by directory fds here (``avoids_symlink_attacks``),
    so a link a program left inside its work dir is removed, never followed."""
    shutil.rmtree(path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(base: str) -> list[str]:
    """Remove the folders of pools whose process is gone (only real folders we own). Returns them."""
    removed = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        match = _NAME.match(name)
        if not match or pid_alive(int(match.group(1))):
            continue
        path = os.path.join(base, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            remove(path)
            removed.append(path)
    return removed
