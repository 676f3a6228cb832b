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
    h = cfg.heldout_exercises
    if h is not None:
        if not Path(h.dataset).is_dir():
            c.dataset("heldout_exercises.dataset", h.dataset)
        ft = getattr(c.cfg, "finetune", None)
        data = getattr(ft, "data", None)
        if data is not None and data.val_fraction != h.fraction:
            c.problem("heldout_exercises.fraction", f"{h.fraction} differs from [finetune] data.val_fraction "
                      f"{data.val_fraction}: held-out exercises would be finetuned on (or left unscored)")
    for i, target in enumerate(cfg.perplexity):
        if not Path(target).exists():
            c.dataset(f"perplexity.{i}", target)
