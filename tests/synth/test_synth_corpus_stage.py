"""The exercises stage with ``source = "corpus"`` through the pipeline: corpus -> judge -> classify ->
filter -> exercises mined from the filtered files, tests from running them in the real sandbox."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from textbooklm.config import PipelineConfig, parse_config
from textbooklm.pipeline import run_pipeline
from textbooklm.problems import read_problems_jsonl
from textbooklm.store import Dataset

pytestmark = pytest.mark.slow
FIXTURE = Path(__file__).parent / "fixtures" / "mining_module.py"


def corpus_folder(root: Path) -> Path:
    """The fixture module plus filler files so that the classifier sees two classes."""
    root.mkdir(parents=True)
    shutil.copy(FIXTURE, root / "mining_module.py")
    for i in range(8):
        (root / f"lesson_{i}.py").write_text(
            f'"""Lesson {i}."""\n\n\ndef scale_{i}(values: list[int]) -> list[int]:\n'
            f'    """Multiply every value by {i + 2}.\n\n    >>> scale_{i}([1, 2])\n    [{i + 2}, {2 * (i + 2)}]\n'
            f'    """\n    # One pass over the list.\n    return [v * {i + 2} for v in values]\n')
        (root / f"data_{i}.py").write_text("".join(f"x{j} = {j * 7919 % 1000}\n" for j in range(40)))
    return root


def config(folder: Path, **exercises) -> PipelineConfig:
    return parse_config({
        "run": {"workers": 1, "seed": 0},
        "corpus": {"sources": [{"kind": "folder", "path": str(folder)}], "dedup": {"near": False},
                   "filters": {"min_lines": 1}},
        "judge": {"judges": ["heuristic"], "heuristic": {"threshold": 0.5}},
        "classify": {"embedder": "hashing-256", "n_estimators": 10, "test_fraction": 0.3},
        "filter": {"threshold": 0.0},  # keep every file: this test is about mining, not filtering
        "exercises": {"source": "corpus", "min_tests": 3, "sandbox": {"timeout_s": 3.0}, **exercises},
    })


def test_corpus_exercises_through_the_pipeline(tmp_path):
    cfg = config(corpus_folder(tmp_path / "code"), corpus={"inputs": 10, "per_call_s": 0.2})
    record = run_pipeline(cfg, tmp_path / "run")
    out = tmp_path / "run" / "exercises"
    kept, rejected = Dataset(out), Dataset(out / "rejected")
    names = set(kept.column("entry_point"))
    assert {"add_numbers", "clamp", "count_words"} <= names and {f"scale_{i}" for i in range(8)} <= names
    reasons = {r["entry_point"]: r["reason"] for r in rejected.iter_records()}
    assert {k: reasons[k] for k in ("read_first_line", "roll", "scaled", "always_fails", "remember", "spin",
                                    "half")} == {
        "read_first_line": "io", "roll": "randomness", "scaled": "uses-globals", "always_fails": "raises",
        "remember": "non-deterministic", "spin": "too-slow", "half": "doctest-failed"}
    for r in kept.iter_records():
        prov = json.loads(r["provenance"])["synth"]
        assert prov["source"] == "corpus" and prov["verification"]["status"] == "passed"
        assert prov["mined"]["source_path"].endswith(".py") and len(prov["tests"]) >= 3
        assert r["text"] == r["prompt"] + r["completion"]
    problems = read_problems_jsonl(out / "problems.jsonl")
    assert sorted(p.entry_point for p in problems) == sorted(names)
    assert all(p.extra["origin"] == "corpus" for p in problems)
    line = record["stages"]["exercises"]["line"]
    assert f" -> {kept.num_rows} kept, " in line
    assert re.search(rf"; corpus: \d+ files, \d+ documented functions, \d+ candidates run, {kept.num_rows} kept", line)
    assert Counter(Dataset(out).column("entry_point"))["clamp"] == 1


def test_corpus_source_without_a_filter_stage_is_a_clear_error(tmp_path):
    cfg = PipelineConfig.model_validate({"run": {"workers": 1}, "exercises": {"source": "corpus"}})
    with pytest.raises(ValueError, match=r"exercises.source: 'corpus' mines the filtered corpus, but this config "
                       r"runs no \[filter\] stage"):
        run_pipeline(cfg, tmp_path / "run")
