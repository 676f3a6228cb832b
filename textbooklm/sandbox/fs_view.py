"""The programs' filesystem: a new, read-only root holding only what Python needs, with private tmpfs.

Why: in the host's mount tree a program could read whatever the host leaves world-readable (a run's
teacher cache, benchmark solutions, configs, the project checkout, home folders), connect to host
Unix sockets under ``/run`` or ``/tmp``, and leave files in ``/tmp`` or ``/dev/shm`` that later
programs read (and that a RAM-sized ``/dev/shm`` keeps in host memory after the run).

What: once per worker, inside its private mount namespace, a tmpfs becomes the new root and receives:

* read-only bind mounts of ``/usr`` (and ``/bin``, ``/lib*``, ``/sbin`` where they are real folders),
  a few files of ``/etc`` (users, name service, dynamic loader, time zone, certificates), the
  interpreter's prefixes and every folder on the worker's ``sys.path`` (stdlib, site-packages);
* of this project only ``textbooklm/__init__.py``, ``textbooklm/sandbox`` and the two modules it
  imports (never the checkout, its configs or run folders), at their real paths, read-only;
* the pool's private work-dir folder, writable, at its real path (the worker chowns each work dir);
* ``/dev`` with null, zero, full, random, urandom only; a ``/proc`` of the worker's PID namespace;
* private, size-limited tmpfs at ``/tmp``, ``/var/tmp``, ``/run/lock`` and ``/dev/shm`` (mode 1777),
  emptied after every program by mounting a fresh one (:meth:`View.empty_private_tmp`): what a program
  leaves there is gone before the next one starts, and nothing reaches the host's ``/tmp`` or
  ``/dev/shm``. Their pages are charged to the worker's memory cgroup (cgroups.py).

Then ``pivot_root`` into it and detach the old root, so no host path outside the binds can be named
any more (no ``..`` or ``/proc/1/root`` way back: PID 1 of the namespace is the worker itself). The
root tmpfs is remounted read-only. Paths stay identical, so the modules the worker already imported
keep working, and folders the drop uid could not traverse on the host (``/root`` holding pyenv) are
plain 0755 folders of the view.

Cost: a few dozen mount calls once per worker (measured in the README's sandbox section); per
program only the emptying, which mounts fresh tmpfs only where a program left something.
"""

from __future__ import annotations

import os
import platform
import stat
from dataclasses import dataclass, field

from textbooklm.sandbox.mounts import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    _libc,
    _mount,
    _umount_detach,
    blocking_ancestors,
)

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_ENTRIES = ("passwd", "group", "nsswitch.conf", "hosts", "host.conf", "localtime", "timezone", "ld.so.cache",
               "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates", "alternatives", "mime.types", "os-release",
               "locale.alias", "locale.conf", "protocols", "services")
DEVICES = ("null", "zero", "full", "random", "urandom")
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2"}
PRIVATE_TMP = ("/tmp", "/var/tmp", "/run/lock", "/dev/shm")
# Every bind that lands inside a private tmpfs (the work-dir folder under /tmp; a checkout or venv that
# lives under /tmp) is also bound at /.sandbox-binds/<n>: the source for binding it back into a fresh
# tmpfs (a handle from before the pivot cannot be bound: its mount left the namespace with the old root).
ALIASES = "/.sandbox-binds"
_PIVOT_ROOT = {"x86_64": 155, "amd64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41, "ppc64le": 203,
               "s390x": 217}
# statvfs flags that a bind remount inside a user namespace must keep (the kernel locks them).
_ST_TO_MS = {1: MS_RDONLY, 2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: 1024, 2048: 2048, 4096: 1 << 21}


@dataclass(frozen=True)
class Rebind:
    """A bind inside a private tmpfs, restored from its alias whenever that tmpfs is renewed."""

    alias: str
    target: str
    writable: bool
    is_dir: bool


@dataclass
class View:
    """The built view, as the worker needs it after every program."""

    tmp_mb: int
    private_tmp: list[str] = field(default_factory=list)  # tmpfs mount points (paths inside the view)
    proc_private: bool = False  # /proc is a new one of the worker's PID namespace
    proc_note: str = ""  # why not
    rebinds: dict[str, list[Rebind]] = field(default_factory=dict)  # private tmpfs -> binds inside it
    _fresh: dict[str, tuple[int, int]] = field(default_factory=dict)

    def _mount_tmpfs(self, path: str) -> None:
        size = 1 if path.endswith("/run/lock") else self.tmp_mb  # lock files only
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={size}m,nr_inodes=16384")

    def _is_clean(self, path: str) -> bool:
        """Nothing written since the mount: tmpfs counts every inode and block it hands out."""
        fs = os.statvfs(path)
        info = os.lstat(path)
        return ((fs.f_ffree, fs.f_bfree) == self._fresh.get(path) and stat.S_IMODE(info.st_mode) == 0o1777
                and info.st_uid == 0)

    def _record_fresh(self, path: str) -> None:
        fs = os.statvfs(path)
        self._fresh[path] = (fs.f_ffree, fs.f_bfree)

    def empty_private_tmp(self) -> list[str]:
        """After a program: replace each private tmpfs it wrote to by a fresh one (dropping every file and
        the memory they held), with the binds inside it restored. Call when no process of the program is
        left. Returns what was renewed."""
        renewed = []
        for path in self.private_tmp:
            try:
                if self._is_clean(path):
                    continue
            except OSError:
                pass
            _umount_detach(path)
            self._mount_tmpfs(path)
            for bind in self.rebinds.get(path, []):
                _bind_path(bind.alias, bind.target, bind.writable, bind.is_dir)
            self._record_fresh(path)
            renewed.append(path)
        return renewed


def _makedirs(path: str, mode: int = 0o755) -> None:
    """Create the missing folders of ``path`` (already inside the new root) with ``mode``."""
    current = ""
    for part in path.strip("/").split("/"):
        current += "/" + part
        try:
            os.mkdir(current, mode)
        except FileExistsError:
            pass


def _locked_flags(path: str) -> int:
    """The mount flags of ``path``'s mount that a bind remount must repeat (user namespaces lock them)."""
    try:
        f_flag = os.statvfs(path).f_flag
    except OSError:
        return 0
    return sum(ms for st, ms in _ST_TO_MS.items() if f_flag & st)


def _bind_path(source: str, target: str, writable: bool, is_dir: bool) -> None:
    """Bind ``source`` at ``target`` (made first: a folder, or an empty file), read-only unless ``writable``."""
    if is_dir:
        _makedirs(target)
    else:
        _makedirs(os.path.dirname(target))
        if not os.path.exists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    _mount(source, target, None, MS_BIND | MS_REC)
    if not writable:
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | _locked_flags(target)
        _mount(None, target, None, flags)


def _pivot_root(new_root: str) -> None:
    """pivot_root(new_root, new_root), then detach the old root stacked below it (no folder needed)."""
    number = _PIVOT_ROOT.get(platform.machine().lower())
    if number is None:
        raise OSError(0, f"pivot_root: unknown syscall number on {platform.machine()}")
    os.chdir(new_root)
    if _libc.syscall(number, b".", b".") != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"pivot_root: {os.strerror(err)}")
    if _libc.umount2(b".", MNT_DETACH) != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"detaching the old root: {os.strerror(err)}")
    os.chdir("/")


def read_only_sources(interpreter_dirs: list[str], package_dir: str) -> tuple[list[str], list[str]]:
    """(folders, files) to bind read-only: the system, the interpreter and ``sys.path``, of this project
    only its package's sandbox part. The checkout itself (``package_dir``'s parent) is left out unless it
    is a site-packages folder (an installed package), and so is everything below it except the binds."""
    checkout = os.path.dirname(package_dir)
    dirs: list[str] = []
    for p in [*SYSTEM_DIRS, *interpreter_dirs]:
        for q in dict.fromkeys([os.path.abspath(p), os.path.realpath(p)]):
            if q == checkout and not checkout.endswith("-packages"):
                continue
            if os.path.isdir(q) and not os.path.islink(q):
                dirs.append(q)
    files = [os.path.join("/etc", e) for e in ETC_ENTRIES if os.path.exists(os.path.join("/etc", e))]
    if not any(package_dir == d or package_dir.startswith(d + os.sep) for d in dirs):
        dirs.append(os.path.join(package_dir, "sandbox"))
        files += [os.path.join(package_dir, n) for n in ("__init__.py", "config_base.py", "process_lifetime.py")]
    # A folder inside another bound folder is already there.
    kept = sorted(set(dirs), key=len)
    kept = [d for i, d in enumerate(kept) if not any(d.startswith(o + os.sep) for o in kept[:i])]
    return kept, files


def hidden_ancestors(paths: list[str]) -> list[str]:
    """The outermost host folders above ``paths`` that other uids cannot traverse (open in the view)."""
    found = {b[0] for p in paths if (b := blocking_ancestors(p))}
    return sorted(a for a in found if not any(a.startswith(o + os.sep) for o in found))


def build(tmp_root: str, tmp_mb: int, interpreter_dirs: list[str], package_dir: str,
          own_proc: bool, cgroup_dirs: list[str] = ()) -> View:
    """Build the view and pivot into it (call inside a private mount namespace, as its owner).
    ``own_proc``: mount a /proc of this PID namespace (else the host's is bound, as it was).
    ``cgroup_dirs``: the worker's own cgroup folders, bound read-only (it reads pids.current and the
    OOM counter there after every program; a program only sees its own counters).
    Raises OSError naming the step when the kernel refuses; nothing has changed for the caller then
    except mounts below an unused scratch folder."""
    dirs, files = read_only_sources(interpreter_dirs, package_dir)
    dirs += [d for d in cgroup_dirs if d not in dirs]
    point = os.path.join(tmp_root, f".view-{os.getpid()}-{os.urandom(4).hex()}")
    os.mkdir(point, 0o700)
    fds: dict[str, int] = {}
    view = View(tmp_mb=tmp_mb)
    try:
        for p in [*dirs, *files, tmp_root, *(f"/dev/{d}" for d in DEVICES), "/proc"]:
            if os.path.lexists(p) and p not in fds:
                fds[p] = os.open(p, os.O_PATH)
        _mount("tmpfs", point, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m")
        root = point
        for top in SYSTEM_DIRS:  # /bin -> usr/bin and the like: the same links in the view
            if os.path.islink(top):
                os.symlink(os.readlink(top), root + top)
        for path in PRIVATE_TMP:  # first: binds below them (the work dirs under /tmp) land inside
            _makedirs(root + path)
            view._mount_tmpfs(root + path)
        binds = [(p, False, True) for p in dirs] + [(tmp_root, True, True)]
        for p in files:
            if os.path.islink(p) and p.startswith("/etc/"):
                _makedirs(root + os.path.dirname(p))
                os.symlink(os.readlink(p), root + p)
            elif p in fds:
                binds.append((p, False, os.path.isdir(p)))
        for n, (p, writable, is_dir) in enumerate(sorted(binds, key=lambda b: len(b[0]))):  # outer ones first
            source = f"/proc/self/fd/{fds[p]}"
            holder = next((t for t in PRIVATE_TMP if p.startswith(t + os.sep)), "")
            if holder:
                alias = f"{ALIASES}/{n}"
                _bind_path(source, root + alias, writable, is_dir)
                view.rebinds.setdefault(holder, []).append(Rebind(alias, p, writable, is_dir))
            _bind_path(source, root + p, writable, is_dir)
        _makedirs(root + "/dev")
        for d in DEVICES:
            if f"/dev/{d}" in fds:  # devices stay writable (/dev/null) and keep their devtmpfs mount flags
                target = root + f"/dev/{d}"
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o666))
                _mount(f"/proc/self/fd/{fds[f'/dev/{d}']}", target, None, MS_BIND)
        for name, target in DEV_LINKS.items():
            os.symlink(target, root + f"/dev/{name}")
        _makedirs(root + "/proc")
        view.proc_note = "no private /proc: it needs a PID namespace; programs see every host process"
        if own_proc:
            try:
                _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                view.proc_private, view.proc_note = True, ""
            except OSError as exc:
                view.proc_note = f"no private /proc ({exc.strerror}): programs see every host process"
        if not view.proc_private:
            _mount(f"/proc/self/fd/{fds['/proc']}", root + "/proc", None, MS_BIND | MS_REC)
        _mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        _pivot_root(root)
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        try:
            _umount_detach(point)
        except OSError:
            pass
        try:
            os.rmdir(point)
        except OSError:
            pass
        raise
    for fd in fds.values():
        os.close(fd)
    view.private_tmp = list(PRIVATE_TMP)
    for path in view.private_tmp:
        view._record_fresh(path)
    return view
