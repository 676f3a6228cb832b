"""Unprivileged uids for sandbox workers, leased so that no two live pools share one.

Why: a program's work folder is private to the uid it runs as (mode 0700). When every pool used
uids 62000+i, a program in one pool ran as the same uid as a program in another pool (two runs, an
ablation beside a pipeline) and could read that program's folder, its code and what it wrote.
Now each worker takes a uid nobody else holds, for the pool's life.

A lease is an exclusive ``flock`` on ``<lock dir>/<uid>.lock``, held open by the pool's process:
the kernel drops it when the process exits, kill -9 included, so a crashed run never strands its
uids and nothing has to be cleaned up. The lock folder belongs to the effective user and is
writable by nobody else, so a sandboxed uid cannot pre-create or delete lock files to steer leases;
a folder that fails that check is refused, never trusted.

Where: one fixed folder per machine, never derived from ``$TMPDIR`` (two pools started with
different ``TMPDIR`` once leased from two folders and both ran as uid 62000): as root
``/run/textbooklm-sandbox-uids`` (``/run`` is root-owned and cleared at boot), else
``/var/lock/...``, else ``/tmp/textbooklm-sandbox-uids-0``; as another user (who drops no uid, so
leases only keep pools apart) ``/tmp/textbooklm-sandbox-uids-<euid>``.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

FIRST_UID = 62000
UID_COUNT = 2048  # 62000-64047: below 65534 (nobody) and outside the usual system and login ranges


def lock_dir_candidates() -> list[Path]:
    """Where the lease folder may live, best first (fixed paths: the same for every pool of the machine)."""
    euid = os.geteuid()
    if euid == 0:
        return [Path("/run/textbooklm-sandbox-uids"), Path("/var/lock/textbooklm-sandbox-uids"),
                Path("/tmp/textbooklm-sandbox-uids-0")]
    return [Path(f"/tmp/textbooklm-sandbox-uids-{euid}")]


def lock_dir(candidates: list[Path] | None = None) -> Path:
    """The lease folder (made 0755 on first use) in the first candidate place whose parent lets us make
    it; an unsafe existing one is an error naming why (never skipped for the next candidate: another
    pool would lease from there)."""
    reasons = []
    for folder in candidates or lock_dir_candidates():
        try:
            folder.mkdir(mode=0o755)
        except FileExistsError:
            pass
        except OSError as exc:  # e.g. no /run, or a read-only one: the next fixed place
            reasons.append(f"{folder}: {exc.strerror}")
            continue
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise RuntimeError(f"sandbox: {folder} is not a folder owned by uid {os.geteuid()} and writable only "
                               "by it; remove it (another user may be steering sandbox uids)")
        return folder
    raise RuntimeError(f"sandbox: no place for the uid lease folder ({'; '.join(reasons)})")


class UidLease:
    """``count`` uids held until :meth:`release` (or until this process ends)."""

    def __init__(self, count: int, first: int = FIRST_UID, span: int = UID_COUNT,
                 folder: Path | None = None) -> None:
        self.uids: list[int] = []
        self._fds: list[int] = []
        folder = lock_dir([folder] if folder is not None else None)
        for uid in range(first, first + span):
            if len(self.uids) == count:
                break
            fd = os.open(folder / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uids.append(uid)
            self._fds.append(fd)
        if len(self.uids) < count:
            self.release()
            raise RuntimeError(f"sandbox: no free uid for {count} workers in {first}-{first + span - 1} "
                               f"(other pools hold them)")

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)  # closing the last descriptor drops the flock
        self._fds.clear()
        self.uids.clear()
