"""``config check`` of textbooks and exercises: seed, names and template files exist."""

from __future__ import annotations

from typing import Any

from textbooklm.run_check import Checker


def check(cfg: Any, c: Checker) -> None:
    c.path("seeds.topics_file", cfg.seeds.topics_file, "file")
    c.path("seeds.words_file", cfg.seeds.words_file, "file")
    c.path("names_file", getattr(cfg, "names_file", None), "file")
