"""Held-out verified exercises: the packer's split rule, the problems they become, the eval metrics on a
tiny real checkpoint, and the config check that keeps them out of finetuning."""

from __future__ import annotations

import json
import math

import pytest
from test_evals_stage import tiny_checkpoint  # noqa: F401 - the module-scoped fixture

from textbooklm.config import parse_config
from textbooklm.evals.config import EvalConfig
from textbooklm.evals.heldout import (
    TrainingSource,
    heldout_problems,
    reference_function,
    relabel,
    set_label,
    training_overlap,
)
from textbooklm.evals.stage import run
from textbooklm.pipeline import context_for
from textbooklm.record import is_heldout_exercise
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


def test_heldout_problems_are_the_validation_side(tmp_path):
    ds = write_dataset(tmp_path / "ex", exercise_rows(60), stage="exercises")
    problems = heldout_problems(ds, 0.2)
    expected = [r for r in exercise_rows(60) if is_heldout_exercise(r, 0.2)]
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
    # A checkpoint folder from outside the run: its training data is unknown, and results say so.
    assert "not a training stage of this run" in results["heldout_overlap"]["model"]["unknown"]
    chosen = json.loads((tmp_path / "eval" / "heldout_exercises.json").read_text())["task_ids"]
    assert chosen == [p.task_id for p in heldout_problems(ds, 0.25)] and chosen


def test_config_check_wants_the_finetune_split(tmp_path):
    raw = {"finetune": {"data": {"sources": [{"dataset": str(tmp_path)}], "val_fraction": 0.1}},
           "eval": {"models": [str(tmp_path)], "heldout_exercises": {"dataset": str(tmp_path), "fraction": 0.2}}}
    problems = check_run(parse_config(raw), "x.toml")
    assert any("heldout_exercises.fraction: 0.2 differs from [finetune] data.val_fraction 0.1" in p for p in problems)
    raw["eval"]["heldout_exercises"]["fraction"] = 0.1
    assert not [p for p in check_run(parse_config(raw), "x.toml") if "heldout" in p]


def test_overlap_finds_a_heldout_function_in_training_text_whatever_its_spacing(tmp_path):
    rows = exercise_rows(40)
    ds = write_dataset(tmp_path / "ex", rows, stage="exercises")
    held = heldout_problems(ds, 0.3)
    assert held
    leaked = held[0]
    copy = "# a training file\n" + reference_function(leaked).replace("    ", "\t") + "\nx = 1\n"
    clean = write_dataset(tmp_path / "clean", [{"id": "a", "text": "def other():\n    return 0\n"}], stage="t")
    dirty = write_dataset(tmp_path / "dirty", [{"id": "b", "text": copy}], stage="t")
    sets = {"exercises": held}
    got = training_overlap(sets, [TrainingSource("clean", clean, 0.0), TrainingSource("ex", ds, 0.3)])
    # The exercises dataset itself is read on its training side only: its held-out rows are not "trained on".
    assert got["exercises"]["overlapping"] == 0 and got["training_data"][1]["train_documents"] == 40 - len(held)
    got = training_overlap(sets, [TrainingSource("dirty", dirty, 0.0)])
    assert got["exercises"] == {"n": len(held), "overlapping": 1, "by_function": 1, "by_source_file": 0,
                                "problem_ids": [leaked.task_id]}
    # A source file counts by record id: the file an exercise was mined from.
    got = training_overlap(sets, [TrainingSource("clean", clean, 0.0)], {held[-1].task_id: "a"})
    assert got["exercises"]["by_source_file"] == 1
    assert set_label("exercises", got) == "exercises (overlapping training: 1)"
    assert list(relabel({"exercises pass@1": 1.0, "humaneval pass@1": 2.0}, got)) == [
        "exercises (overlapping training: 1) pass@1", "humaneval pass@1"]
