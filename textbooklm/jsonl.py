"""Reading JSON Lines files the way every command here does: blank lines skipped, and a bad line
raises ValueError naming ``FILE:LINE`` and the reason, so a user can fix the input at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_jsonl(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield ``("FILE:LINE", record)`` for every non-blank line of ``path``."""
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            yield f"{path}:{n}", record
