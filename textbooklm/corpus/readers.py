"""Readers: turn a configured source into raw items (bytes or text plus where they came from).

Reading happens in two steps so work can be sharded and resumed:

1. :func:`plan_units` (main process, cheap): list the *units* of a source, JSON-able dicts such as
   one file, one archive, one JSONL file or one Parquet row group.
2. :func:`read_unit` (worker): yield a :class:`RawItem` per file / record in a unit. Anything that
   cannot be read becomes a RawItem with ``error`` set instead of raising, so one bad archive or
   line never stops a run and is kept as a rejected record with its reason.

Every entry a reader sees is read or rejected: a FIFO, socket or device (also behind a symlink, such
as one to ``/dev/zero``) and a directory whose name matches the glob are ``not-a-regular-file``, a
symlink to nothing is ``dangling-link``. Files are opened with ``O_NONBLOCK`` and checked with
``fstat`` before reading, so a FIFO (even one that appears after planning) never blocks a worker.

A folder is hostile input too (a repository from the web can hold ``key.py -> ~/.ssh/id_rsa``): a symlink
whose target leaves the source folder is ``outside-source`` and never opened, and a symlink to a
folder is not followed but listed (whatever its name) and rejected, so what it hides is counted.
Folders are walked with an explicit stack, so a tree thousands of levels deep cannot overflow
Python's recursion limit.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from textbooklm.corpus.config import SourceConfig

ARCHIVE_SUFFIXES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar")


@dataclass
class RawItem:
    """One file or record as read, before decoding and filtering."""

    path: str
    data: bytes | str | None
    n_bytes: int
    error: str | None = None  # a rejection reason: unreadable, unreadable-archive, malformed-record, ...
    detail: str = ""


def stdlib_root() -> Path:
    """The running interpreter's standard library folder (the demo corpus)."""
    return Path(sysconfig.get_paths()["stdlib"])


def _match(rel: str, pattern: str) -> bool:
    """Glob match where ``**/`` may also match nothing (so ``**/*.py`` matches ``a.py``)."""
    return fnmatch(rel, pattern) or (pattern.startswith("**/") and fnmatch(rel, pattern[3:]))


def walk(root: Path, wanted: Callable[[str], bool], skip_dirs: tuple[str, ...] = ()) -> list[Path]:
    """Entries under ``root`` whose relative path is ``wanted``, plus every symlink to a folder, sorted.

    Iterative (an explicit stack, not recursion), never descends through a symlink, and lists a
    symlinked folder as an entry of its own so the reader rejects it by name instead of skipping
    what is behind it in silence. Folders named in ``skip_dirs`` are not entered.
    """
    found: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue  # unreadable folder: nothing listed below it (as rglob did)
        for entry in entries:
            path = folder / entry.name
            rel = str(path.relative_to(root))
            if entry.is_symlink():
                if wanted(rel) or entry.is_dir():  # a symlink to a folder is never followed, but counted
                    found.append(path)
            elif entry.is_dir():
                if entry.name not in skip_dirs:
                    stack.append(path)
                if wanted(rel):  # a folder named like a match: the reader rejects it as not a file
                    found.append(path)
            elif wanted(rel):
                found.append(path)
    return sorted(found)


def outside_root(path: Path, root: Path) -> tuple[str, str] | None:
    """``("outside-source", detail)`` when ``path`` is a symlink whose target leaves ``root``, else None.

    Only a symlink can leave the folder it was listed in; ``realpath`` resolves every link on the way
    (a chain of links, a link to a link-to-folder), so ``a.py -> ../../etc/shadow`` is caught."""
    if not os.path.islink(path):
        return None
    target = os.path.realpath(path)
    base = os.path.realpath(root)
    if target == base or target.startswith(base.rstrip(os.sep) + os.sep):
        return None
    return "outside-source", f"symlink to {os.readlink(path)!r}, outside the source folder {str(root)!r}"


def plan_units(source: SourceConfig) -> list[dict[str, Any]]:
    """List the units of work of one source. Raises ValueError naming the path if it is missing."""
    if source.kind == "stdlib":
        root = stdlib_root()
        files = walk(root, lambda rel: rel.endswith(".py"), skip_dirs=("site-packages",))
        return [{"file": str(p), "root": str(root)} for p in files]
    path = Path(source.path or "")
    if not path.exists():
        raise ValueError(f"corpus source {source.label}: {path} does not exist")
    if source.kind == "folder":
        if not path.is_dir():
            raise ValueError(f"corpus source {source.label}: {path} is not a folder")
        # Every matching entry becomes a unit, whatever its type: the worker reads it or rejects it.
        files = walk(path, lambda rel: _match(rel, source.glob))
        return [{"file": str(p), "root": str(path)} for p in files]
    # A folder of archives / JSONL / Parquet files: each unit remembers the folder (its "root"), so a
    # symlink in it that leads out is rejected; a file named on its own is read where it points.
    root = {"root": str(path)} if path.is_dir() else {}
    if source.kind == "archive":
        files = [path] if not root else walk(path, lambda rel: rel.endswith(ARCHIVE_SUFFIXES))
        return [{"archive": str(p), **root} for p in files]
    if source.kind == "jsonl":
        files = [path] if not root else walk(path, lambda rel: rel.endswith(".jsonl"))
        return [{"jsonl": str(p), **root} for p in files]
    if source.kind == "parquet":
        files = [path] if not root else walk(path, lambda rel: rel.endswith(".parquet"))
        units: list[dict[str, Any]] = []
        for p in files:
            problem = outside_root(p, path) if root else None
            problem = problem or not_regular(p)
            if problem is not None:  # never hand a FIFO to the Parquet reader: it would block
                units.append({"parquet": str(p), "row_group": -1, "reason": problem[0], "error": problem[1], **root})
                continue
            try:
                groups = pq.ParquetFile(p).metadata.num_row_groups
            except Exception as exc:  # noqa: BLE001 - any unreadable file becomes a rejected unit
                units.append({"parquet": str(p), "row_group": -1, "error": f"{type(exc).__name__}: {exc}", **root})
                continue
            units.extend({"parquet": str(p), "row_group": g, **root} for g in range(groups))
        return units
    raise ValueError(f"unknown source kind {source.kind!r}")  # pragma: no cover - pydantic checks


def read_unit(unit: dict[str, Any], source: SourceConfig, max_bytes: int) -> Iterator[RawItem]:
    """Yield the items of one unit; never raises for bad data."""
    whole = unit.get("archive") or unit.get("jsonl") or unit.get("parquet")
    if whole and "root" in unit and (problem := outside_root(Path(whole), Path(unit["root"]))) is not None:
        yield RawItem(whole, None, 0, *problem)
    elif "file" in unit:
        yield _read_file(Path(unit["file"]), Path(unit["root"]), max_bytes)
    elif "archive" in unit:
        yield from _read_archive(Path(unit["archive"]), source.glob, max_bytes)
    elif "jsonl" in unit:
        yield from _read_jsonl(Path(unit["jsonl"]), source)
    elif "parquet" in unit:
        yield from _read_parquet(unit, source)


def _kind(mode: int) -> str:
    """What a non-regular file is, in words, for a rejection detail."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return f"not a regular file (mode {stat.filemode(mode)})"


def not_regular(path: Path) -> tuple[str, str] | None:
    """``(reason, detail)`` when ``path`` is not a readable regular file (symlinks followed), else None.

    Only ``stat`` is used, so nothing is opened: a FIFO cannot block here.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return "dangling-link", f"symlink to {os.readlink(path)!r}, which does not exist"
        return "unreadable", "FileNotFoundError: vanished after it was listed"
    except OSError as exc:  # a symlink loop, a permission error on a parent folder...
        if exc.errno == errno.ELOOP:
            return "dangling-link", f"symlink loop: {exc.strerror}"
        return "unreadable", f"{type(exc).__name__}: {exc}"
    if stat.S_ISREG(st.st_mode):
        return None
    via = f" (symlink to {os.readlink(path)!r})" if os.path.islink(path) else ""
    return "not-a-regular-file", _kind(st.st_mode) + via


def open_regular(path: Path, follow: bool = True) -> tuple[Any, int] | tuple[None, tuple[str, str]]:
    """Open ``path`` for reading only if it is a regular file: ``(binary file, size)`` or ``(None, (reason,
    detail))``. ``O_NONBLOCK`` makes opening a FIFO return at once; ``fstat`` on the open descriptor then
    checks what was really opened (the entry may have been swapped since it was listed).

    ``follow=False`` (a folder entry that was checked not to be a symlink) opens with ``O_NOFOLLOW``:
    an entry swapped for a symlink after that check fails to open instead of being read."""
    problem = not_regular(path)
    if problem is not None:
        return None, problem
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            return None, ("outside-source", "became a symlink after it was checked; not followed")
        return None, ("unreadable", f"{type(exc).__name__}: {exc}")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None, ("not-a-regular-file", _kind(st.st_mode))
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), st.st_size


def _read_file(path: Path, root: Path, max_bytes: int) -> RawItem:
    try:
        rel = str(path.relative_to(root))
    except ValueError:
        rel = str(path)
    problem = outside_root(path, root)
    if problem is not None:
        return RawItem(rel, None, 0, *problem)
    fh, info = open_regular(path, follow=os.path.islink(path))
    if fh is None:
        return RawItem(rel, None, 0, *info)
    size = info
    try:
        with fh:
            if size > max_bytes:
                return RawItem(rel, None, size, "too-large", f"{size} bytes > max_bytes {max_bytes}")
            return RawItem(rel, fh.read(), size)
    except OSError as exc:
        return RawItem(rel, None, 0, "unreadable", f"{type(exc).__name__}: {exc}")


def _read_archive(path: Path, pattern: str, max_bytes: int) -> Iterator[RawItem]:
    """Members of a zip/wheel or tar(.gz) matching ``pattern``, read without unpacking to disk."""
    name = path.name
    fh, info = open_regular(path)
    if fh is None:
        yield RawItem(str(path), None, 0, *info)
        return
    try:
        if name.endswith((".whl", ".zip")):
            with fh, zipfile.ZipFile(fh) as zf:
                for info in zf.infolist():
                    if info.is_dir() or not _match(info.filename, pattern):
                        continue
                    where = f"{path}!/{info.filename}"
                    if info.file_size > max_bytes:
                        yield RawItem(where, None, info.file_size, "too-large", f"{info.file_size} bytes")
                        continue
                    yield RawItem(where, zf.read(info), info.file_size)
        else:
            with fh, tarfile.open(fileobj=fh, mode="r:*") as tf:
                for member in tf:
                    if not _match(member.name, pattern):
                        continue
                    where = f"{path}!/{member.name}"
                    if not member.isfile():  # a matching directory, link, FIFO or device member
                        kind = "a symlink" if member.issym() else "a hard link" if member.islnk() else (
                            "a directory" if member.isdir() else "a special file")
                        yield RawItem(where, None, 0, "not-a-regular-file", f"archive member is {kind}")
                        continue
                    if member.size > max_bytes:
                        yield RawItem(where, None, member.size, "too-large", f"{member.size} bytes")
                        continue
                    fh = tf.extractfile(member)
                    yield RawItem(where, fh.read() if fh else b"", member.size)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, ValueError) as exc:
        yield RawItem(str(path), None, _size(path), "unreadable-archive", f"{type(exc).__name__}: {exc}")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _record_path(rec: dict[str, Any], source: SourceConfig, fallback: str) -> str:
    if source.path_column and isinstance(rec.get(source.path_column), str):
        return rec[source.path_column]
    return fallback


def _read_jsonl(path: Path, source: SourceConfig) -> Iterator[RawItem]:
    fh, info = open_regular(path)
    if fh is None:
        yield RawItem(str(path), None, 0, *info)
        return
    with fh:
        for lineno, line in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield RawItem(where, line.decode("utf-8", "replace"), len(line), "malformed-record", f"bad JSON: {exc}")
                continue
            yield _from_record(rec, source, where, len(line))


def _from_record(rec: Any, source: SourceConfig, where: str, n_bytes: int) -> RawItem:
    if not isinstance(rec, dict):
        return RawItem(where, json.dumps(rec)[:10_000], n_bytes, "malformed-record", "record is not an object")
    text = rec.get(source.text_column)
    if text is None:
        return RawItem(where, json.dumps(rec)[:10_000], n_bytes, "malformed-record",
                       f"no {source.text_column!r} field (set text_column)")
    if not isinstance(text, str):
        return RawItem(where, json.dumps(rec)[:10_000], n_bytes, "malformed-record",
                       f"{source.text_column!r} is {type(text).__name__}, not a string")
    return RawItem(_record_path(rec, source, where), text, len(text.encode("utf-8", "surrogatepass")))


def _read_parquet(unit: dict[str, Any], source: SourceConfig) -> Iterator[RawItem]:
    path = unit["parquet"]
    if unit.get("row_group", 0) < 0:
        yield RawItem(path, None, _size(Path(path)), unit.get("reason", "unreadable"), unit.get("error", ""))
        return
    problem = not_regular(Path(path))  # again: the entry may have changed since it was planned
    if problem is not None:
        yield RawItem(path, None, 0, *problem)
        return
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        if source.text_column not in names:
            yield RawItem(f"{path}:rg{unit['row_group']}", None, 0, "malformed-record",
                          f"no column {source.text_column!r} (columns: {', '.join(names)})")
            return
        cols = [source.text_column] + ([source.path_column] if source.path_column in names else [])
        table = pf.read_row_group(unit["row_group"], columns=cols)
    except Exception as exc:  # noqa: BLE001 - corrupt file becomes a rejected record
        yield RawItem(path, None, 0, "unreadable", f"{type(exc).__name__}: {exc}")
        return
    offset = sum(pf.metadata.row_group(g).num_rows for g in range(unit["row_group"]))
    for i, rec in enumerate(table.to_pylist()):
        yield _from_record(rec, source, f"{path}:{offset + i}", 0)


def python_version_label() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"
