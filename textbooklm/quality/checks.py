"""``config check`` of the quality sections: a custom judge prompt file exists."""

from __future__ import annotations

from textbooklm.quality.config import BUILTIN_PROMPTS, JudgeConfig
from textbooklm.run_check import Checker


def check_judge(cfg: JudgeConfig, c: Checker) -> None:
    if "llm" in cfg.judges and cfg.llm.prompt not in BUILTIN_PROMPTS:
        c.path("llm.prompt", cfg.llm.prompt, "file")
