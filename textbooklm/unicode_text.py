"""Strings that cannot be written as UTF-8: finding, escaping and naming lone surrogates.

Python strings may hold lone surrogates (U+D800..U+DFFF) that no UTF-8 writer accepts. They arrive
two ways: a JSON text with an escape such as ``"\\ud800"`` (``json.loads`` keeps it), and a file
name that is not valid UTF-8 (``os.fsdecode`` maps each bad byte to U+DC80..U+DCFF,
"surrogateescape"). Parquet, ``json.dumps(ensure_ascii=False)`` and the tokenizers all reject them,
so every place that stores text checks here first instead of crashing half-way through a shard.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def first_surrogate(text: str) -> tuple[int, str] | None:
    """``(position, "U+D800")`` of the first lone surrogate in ``text``, or None when it is clean."""
    match = _SURROGATE.search(text)
    if match is None:
        return None
    return match.start(), f"U+{ord(match.group(0)):04X}"


def describe_surrogate(text: str) -> str:
    """One phrase for an error message, e.g. ``lone surrogate U+D800 at character 21``."""
    found = first_surrogate(text)
    if found is None:
        return "no lone surrogate"
    count = len(_SURROGATE.findall(text))
    more = f" ({count} in all)" if count > 1 else ""
    return f"lone surrogate {found[1]} at character {found[0]}{more}"


def escape_surrogates(text: str) -> str:
    """``text`` with every lone surrogate written as the 6 characters ``\\udXXX`` (storable as UTF-8)."""
    if first_surrogate(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def escape_path(path: str) -> tuple[str, str | None]:
    """A storable form of a path: ``(path, None)`` when it is valid UTF-8, else ``(escaped, hex)``.

    A non-UTF-8 file name comes back with each bad byte as ``\\xNN`` (``bad_\\xff.py``) and ``hex`` is
    the name's exact bytes, so provenance can keep the original losslessly
    (``os.fsdecode(bytes.fromhex(hex))`` reopens it). A real lone surrogate (from a JSON name field)
    is encoded with "surrogatepass" (``\\xed\\xa0\\x80`` for U+D800), again with the exact bytes in hex.
    """
    if first_surrogate(path) is None:
        return path, None
    try:
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate outside U+DC80..U+DCFF: not a decoded byte
        raw = path.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace"), raw.hex()


def find_unwritable(record: dict[str, Any]) -> tuple[str, str] | None:
    """``(column, description)`` of the first string field (top level) holding a lone surrogate."""
    for key, value in record.items():
        if isinstance(value, str) and first_surrogate(value) is not None:
            return key, describe_surrogate(value)
    return None


def json_text(obj: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False)`` unless that holds a lone surrogate; then ASCII escapes.

    Both read back to the same object; only the ASCII form can be encoded as UTF-8 (SQLite, files).
    """
    text = json.dumps(obj, ensure_ascii=False)
    return text if first_surrogate(text) is None else json.dumps(obj)
