"""The LLM judge on the real offline teacher (SmolLM2-135M, local transformers backend)."""

from __future__ import annotations

import pytest

from textbooklm.quality.config import LLMJudgeConfig
from textbooklm.quality.llm_judge import judge_records, token_counter
from textbooklm.quality.prompts import cut_head, load_template
from textbooklm.teacher import TeacherConfig, build_teacher


@pytest.mark.slow
def test_smollm2_scores_files_with_one_pass_per_label(tmp_path):
    teacher = build_teacher(TeacherConfig(backend="local", model="smollm2", batch_size=2), tmp_path, "judge")
    try:
        counter = token_counter(teacher)
        assert counter is not None  # files are cut with the model's own tokenizer
        long_file = "def area(width, height):\n    return width * height\n" * 200
        head, was_cut = cut_head(long_file, 96, counter)
        assert was_cut and len(teacher.backend.tokenizer(head, add_special_tokens=False)["input_ids"]) <= 96

        texts = ['def greet(name):\n    """Say hello to someone by name."""\n    return f"Hello, {name}!"\n',
                 long_file]
        cfg = LLMJudgeConfig(prompt="phi1", max_file_tokens=96)
        out = judge_records(teacher, texts, cfg, load_template(cfg))
        for verdict in out:
            assert verdict["how"] == "choices" and verdict["reason"] is None
            assert 0.0 <= verdict["score"] <= 1.0 and sum(verdict["probs"]) == pytest.approx(1.0, abs=1e-3)
        assert [v["cut"] for v in out] == [False, True]
        assert teacher.ledger.completed == 2
        again = judge_records(teacher, texts, cfg, load_template(cfg))  # from the cache, identical
        assert [v["score"] for v in again] == [v["score"] for v in out]
        assert teacher.ledger.completed == 2 and teacher.ledger.cached == 2
    finally:
        teacher.close()
