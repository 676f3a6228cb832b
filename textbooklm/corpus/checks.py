"""``config check`` of the corpus section: every source path exists (a folder where the reader takes one)."""

from __future__ import annotations

from textbooklm.corpus.config import CorpusConfig
from textbooklm.run_check import Checker


def check(cfg: CorpusConfig, c: Checker) -> None:
    for i, src in enumerate(cfg.sources):
        if src.kind == "folder":
            c.path(f"sources.{i}.path", src.path, "dir")
        elif src.kind != "stdlib":  # jsonl, parquet, archive: one file, or a folder of them (read in order)
            c.path(f"sources.{i}.path", src.path, "any")
