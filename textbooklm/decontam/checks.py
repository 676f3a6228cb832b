"""``config check`` of decontam: benchmark files exist."""

from __future__ import annotations

from textbooklm.decontam.config import DecontamConfig
from textbooklm.run_check import Checker


def check(cfg: DecontamConfig, c: Checker) -> None:
    for i, bench in enumerate(cfg.benchmarks):
        c.path(f"benchmarks.{i}.path", bench.path, "file")
