"""Reading JSON Lines files the way every command here does: all or nothing, every bad line named.

The whole file is checked before any record is used, so a command never does half a batch and
then stops on line 9,000. Every bad line is reported at once as ``FILE:LINE: reason`` (one
:class:`JsonlError`, a ValueError), so a user fixes the input in one pass:

* not valid UTF-8 (the byte offset in the line and the bytes there),
* not valid JSON (the full ``json`` message with the column, and the text around it),
* a string holding a lone surrogate such as ``"\\ud800"`` (valid JSON, but no UTF-8 writer or
  tokenizer accepts it; the key path and the character are named),
* whatever the caller's ``build`` rejects (a missing key...), and, with ``id_key``, a duplicate id
  (naming both lines).

Blank lines are skipped; a ``.gz`` file is read through gzip. The message lists the first
:data:`MAX_LISTED` problems and how many more there are; :attr:`JsonlError.problems` holds them all.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from textbooklm.unicode_text import describe_surrogate, first_surrogate

T = TypeVar("T")
MAX_LISTED = 200


class JsonlError(ValueError):
    """Bad lines in a JSONL file; ``problems`` has one ``FILE:LINE: reason`` per bad line."""

    def __init__(self, path: Path, problems: list[str], total_lines: int):
        self.path = path
        self.problems = problems
        shown = problems[:MAX_LISTED]
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        noun = "line" if len(problems) == 1 else "lines"
        super().__init__(f"{path}: {len(problems)} bad {noun} of {total_lines}; nothing was used:\n  "
                         + "\n  ".join(shown) + more)


def _surrogate_at(value: Any, where: str = "") -> str | None:
    """Key path and description of the first string (key or value) holding a lone surrogate."""
    if isinstance(value, str):
        return f"{where or 'the record'}: {describe_surrogate(value)}" if first_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if first_surrogate(key) is not None:
                return f"key {key.encode('utf-8', 'backslashreplace').decode()!r}: {describe_surrogate(key)}"
            found = _surrogate_at(item, f"{where}[{json.dumps(key)}]")
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _surrogate_at(item, f"{where}[{i}]")
            if found:
                return found
    return None


def _decode_line(raw: bytes) -> tuple[Any, str | None]:
    """``(record, None)`` or ``(None, reason)`` for one non-blank line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.end]
        return None, f"not valid UTF-8 ({exc.reason} at byte {exc.start} of the line: {bad!r})"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        start = max(0, exc.pos - 30)
        near = text[start : exc.pos + 30].rstrip("\r\n")
        return None, f"not valid JSON ({exc.msg} at column {exc.colno}, char {exc.pos}; near {near!r})"
    surrogate = _surrogate_at(record)
    if surrogate:
        return None, f"invalid Unicode: {surrogate} (a JSON escape such as \\ud800 with no pair)"
    return record, None


def parse_jsonl(path: str | Path, build: Callable[[str, Any], T], id_key: str | None = None) -> list[T]:
    """``build(where, record)`` for every non-blank line of ``path``, or one JsonlError naming every bad line.

    ``build`` rejects a record by raising ValueError (its message should start with ``where``). With
    ``id_key``, two records with the same ``record[id_key]`` (compared as strings) are an error.
    """
    path = Path(path)
    try:
        fh = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    built: list[T] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    n = 0
    with fh:
        try:
            lines = list(fh)
        except (OSError, EOFError) as exc:  # a damaged or truncated .gz
            raise ValueError(f"{path}: cannot read ({exc})") from None
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            where = f"{path}:{n}"
            record, reason = _decode_line(raw)
            if reason is not None:
                problems.append(f"{where}: {reason}")
                continue
            if id_key is not None and isinstance(record, dict) and id_key in record:
                key = str(record[id_key])
                if key in first_line:
                    problems.append(f"{where}: duplicate {id_key} {key!r} (first at line {first_line[key]})")
                    continue
                first_line[key] = n
            try:
                built.append(build(where, record))
            except ValueError as exc:
                message = str(exc)
                problems.append(message if message.startswith(f"{where}:") else f"{where}: {message}")
    if problems:
        raise JsonlError(path, problems, n)
    return built


def read_jsonl(path: str | Path, id_key: str | None = None) -> list[tuple[str, Any]]:
    """``("FILE:LINE", record)`` for every non-blank line of ``path`` (all lines checked first)."""
    return parse_jsonl(path, lambda where, record: (where, record), id_key=id_key)
