"""``config check`` of textbooks and exercises: seed, names and template files exist; mined exercises
have a filtered corpus to mine; judged textbooks have an LLM judge to judge them; exercise checks on the
executor that ask for extra solutions have no teacher budget to share out."""

from __future__ import annotations

from typing import Any

from textbooklm.run_check import Checker


def check(cfg: Any, c: Checker) -> None:
    c.path("seeds.topics_file", cfg.seeds.topics_file, "file")
    c.path("seeds.words_file", cfg.seeds.words_file, "file")
    c.path("names_file", getattr(cfg, "names_file", None), "file")
    if "corpus" in getattr(cfg, "sources", []) and getattr(c.cfg, "filter", None) is None:
        c.problem("source", "'corpus' mines the filtered corpus, but this config runs no [filter] stage")
    if getattr(cfg, "judge", False):
        judge = getattr(c.cfg, "judge", None)
        if judge is None or "llm" not in judge.judges:
            c.problem("judge", "judged textbooks need the run's LLM judge: a [judge] section with 'llm' in judges "
                      "(and its teacher)")
    if getattr(cfg, "checks", "driver") == "executor" and getattr(cfg, "n_solutions", 1) > 1:
        t = c.cfg.teachers.get(getattr(cfg, "teacher", None) or "")
        if t is not None and (t.budget_usd is not None or t.budget_tokens is not None):
            c.problem("checks", "checks = 'executor' asks for extra solutions from each checking worker, each with "
                      "its own teacher, which a stage budget cannot share out: set checks = 'driver', or drop the "
                      "teacher's budget_usd / budget_tokens")
