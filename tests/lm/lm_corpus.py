"""Real text for the lm tests: files of the running interpreter's standard library."""

from __future__ import annotations

import sysconfig
from pathlib import Path


def stdlib_texts(n: int, start: int = 0) -> list[str]:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    return [f.read_text(encoding="utf-8", errors="replace") for f in files[start : start + n]]
