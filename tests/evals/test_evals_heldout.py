"""Held-out verified exercises: the packer's split rule, the problems they become, the eval metrics on a
tiny real checkpoint, and the config check that keeps them out of finetuning."""

from __future__ import annotations

import json
import math

import pytest
from test_evals_stage import tiny_checkpoint  # noqa: F401 - the module-scoped fixture

from textbooklm.config import parse_config
from textbooklm.evals.config import EvalConfig
from textbooklm.evals.heldout import heldout_problems, is_heldout
from textbooklm.evals.stage import run
from textbooklm.lm.pack import is_validation
from textbooklm.pipeline import context_for
from textbooklm.run import Run
from textbooklm.run_check import check_run
from textbooklm.store import write_dataset


def exercise_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        prompt = f'def add_{i}(a, b):\n    """Add {i} to a + b."""\n'
        completion = f"    return a + b + {i}\n"
        test = f"def check(candidate):\n    assert candidate(1, 2) == {3 + i}\n"
        rows.append({"id": f"e{i}", "prompt": prompt, "completion": completion, "text": prompt + completion,
                     "entry_point": f"add_{i}", "test": test})
    return rows


def test_the_split_is_the_packers():
    texts = [f"def f{i}():\n    return {i}\n" for i in range(400)]
    for frac in (0.05, 0.1, 0.5):
        assert [is_heldout(t, frac) for t in texts] == [is_validation(t, frac) for t in texts]


def test_heldout_problems_are_the_validation_side(tmp_path):
    ds = write_dataset(tmp_path / "ex", exercise_rows(60), stage="exercises")
    problems = heldout_problems(ds, 0.2)
    expected = [r for r in exercise_rows(60) if is_validation(r["prompt"] + r["completion"], 0.2)]
    assert [p.entry_point for p in problems] == [r["entry_point"] for r in expected] and 3 <= len(problems) <= 25
    assert all(p.canonical_solution and p.task_id.startswith("exercise/e") for p in problems)
    assert len(heldout_problems(ds, 0.2, limit=2)) == 2


@pytest.mark.slow
def test_eval_scores_heldout_exercises(tmp_path, tiny_checkpoint):  # noqa: F811
    ds = write_dataset(tmp_path / "ex", exercise_rows(40), stage="exercises")
    cfg = EvalConfig(models=[str(tiny_checkpoint)], humaneval=False, n_samples=2, max_new_tokens=8, batch_size=4,
                     heldout_exercises={"dataset": str(ds.path), "fraction": 0.25})
    ctx = context_for(Run(tmp_path, parse_config({"run": {"workers": 1}})), "eval")
    run(cfg, {}, tmp_path / "eval", ctx)
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    m = results["models"]["model"]
    assert 0 <= m["exercises pass@1"] <= 100 and math.isfinite(m["exercises reference NLL/token"])
    chosen = json.loads((tmp_path / "eval" / "heldout_exercises.json").read_text())["task_ids"]
    assert chosen == [p.task_id for p in heldout_problems(ds, 0.25)] and chosen


def test_config_check_wants_the_finetune_split(tmp_path):
    raw = {"finetune": {"data": {"sources": [{"dataset": str(tmp_path)}], "val_fraction": 0.1}},
           "eval": {"models": [str(tmp_path)], "heldout_exercises": {"dataset": str(tmp_path), "fraction": 0.2}}}
    problems = check_run(parse_config(raw), "x.toml")
    assert any("heldout_exercises.fraction: 0.2 differs from [finetune] data.val_fraction 0.1" in p for p in problems)
    raw["eval"]["heldout_exercises"]["fraction"] = 0.1
    assert not [p for p in check_run(parse_config(raw), "x.toml") if "heldout" in p]
