"""Arm A's raw corpus is decontaminated with the run's own decontam settings (a real pipeline run).

Regression: decontam cleans the filtered corpus, so arm A (the unfiltered corpus) trained on whatever
benchmark solutions the corpus held, the one arm not held to the rule, and only a warning said so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from textbooklm.ablate.data import resolve_dataset
from textbooklm.code_tasks import load_problems
from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline
from textbooklm.store import Dataset

pytestmark = pytest.mark.slow


def _corpus(root: Path) -> Path:
    root.mkdir()
    for i in range(24):
        if i % 2:
            body = "".join(f"v{i}_{j} = {j * 7919 % 1000}\n" for j in range(12))
        else:
            body = (f'"""Lesson {i}: doubling."""\n\n\ndef double_{i}(x: int) -> int:\n'
                    f'    """Return twice x, step by step."""\n    # add x to itself\n    return x + x\n')
        (root / f"f{i:02d}.py").write_text(body)
    leaked = load_problems("humaneval")[0]
    (root / "leaked.py").write_text(leaked.prompt + leaked.canonical_solution)
    return root


def test_arm_a_gets_a_copy_cleaned_by_the_runs_decontam_and_validation_stays_raw(tmp_path):
    folder = _corpus(tmp_path / "src")
    cfg = parse_config({
        "run": {"workers": 1},
        "corpus": {"sources": [{"kind": "folder", "path": str(folder)}]},
        "judge": {"judges": ["heuristic"], "heuristic": {"threshold": 0.5}},
        "classify": {"embedder": "hashing-256", "n_estimators": 10, "test_fraction": 0.3},
        "filter": {"threshold": 0.99},  # keeps next to nothing: the leaked file never reaches decontam
        "decontam": {"embedder": "hashing"},
    }, "test.toml")
    run_dir = tmp_path / "run"
    run_pipeline(cfg, run_dir)
    raw = Dataset(run_dir / "corpus")
    assert any("has_close_elements" in t for t in raw.column("text"))

    cleaned = resolve_dataset("corpus", run_dir, "arm A", workers=1)
    assert cleaned.path.parent.parent == run_dir / "ablation" / "decontam"
    texts = cleaned.column("text")
    assert len(texts) == raw.num_rows - 1 and not any("has_close_elements" in t for t in texts)
    rejected = list(Dataset(cleaned.path.parent / "rejected").iter_records())
    assert len(rejected) == 1 and rejected[0]["reason"].startswith("contaminated-")
    assert rejected[0]["problem_id"] == "HumanEval/0"
    assert "arm A" in cleaned.manifest["summary"]["line"] and "1 removed" in cleaned.manifest["summary"]["line"]

    again = resolve_dataset("corpus", run_dir, "arm A", workers=1)  # reused, not redone
    assert again.path == cleaned.path and again.manifest == cleaned.manifest
    assert resolve_dataset("corpus", run_dir, "ablate.validation", clean=False).path == run_dir / "corpus"
