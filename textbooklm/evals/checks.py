"""``config check`` of eval: models are stages of the run or folders; benchmark files exist."""

from __future__ import annotations

from pathlib import Path

from textbooklm.evals.config import EvalConfig
from textbooklm.run_check import Checker


def check(cfg: EvalConfig, c: Checker) -> None:
    for i, name in enumerate(cfg.models):
        c.model(f"models.{i}", name)
    c.path("mbpp_path", cfg.mbpp_path, "file")
    c.path("problems_path", cfg.problems_path, "file")
    c.path("gsm8k_path", cfg.gsm8k_path, "file")
    for i, task in enumerate(cfg.choice_tasks):
        c.path(f"choice_tasks.{i}.path", task.path, "file")
    for i, target in enumerate(cfg.perplexity):
        if not Path(target).exists():
            c.dataset(f"perplexity.{i}", target)
