"""``config check`` of decontam: benchmark files exist; one held-out fraction for the whole run."""

from __future__ import annotations

from textbooklm.decontam.config import DecontamConfig
from textbooklm.run_check import Checker


def check(cfg: DecontamConfig, c: Checker) -> None:
    for i, bench in enumerate(cfg.benchmarks):
        c.path(f"benchmarks.{i}.path", bench.path, "file")
    if not cfg.heldout_exercises or getattr(c.cfg, "exercises", None) is None:
        return
    # Finetuning's validation split, eval's held-out set and what decontam keeps out of training must be
    # one set of exercises; with different fractions some "held-out" exercises would be trained on.
    data = getattr(getattr(c.cfg, "finetune", None), "data", None)
    if data is not None and data.val_fraction != cfg.heldout_fraction:
        c.problem("heldout_fraction", f"{cfg.heldout_fraction} differs from [finetune] data.val_fraction "
                  f"{data.val_fraction}: finetuning would train on exercises decontam treats as held out (or "
                  "hold out exercises whose source files are in the pretraining data)")
    held = getattr(getattr(c.cfg, "eval", None), "heldout_exercises", None)
    if held is not None and held.fraction != cfg.heldout_fraction:
        c.problem("heldout_fraction", f"{cfg.heldout_fraction} differs from [eval] heldout_exercises.fraction "
                  f"{held.fraction}: eval would score exercises that are not the ones kept out of training")
