"""The LLM judge: a prompt template, a teacher, and a score per record.

Two ways to read a score (``judge.llm.method``):

* ``choices`` (default): one scoring request per file. The teacher returns the probability of each
  answer label as the reply ("high"/"low", or "0".."5"); the score is the expected value over them.
  On the local backend that is one forward pass per file, several times cheaper than generating a
  justification; on an OpenAI-compatible endpoint it reads the first token's top logprobs. Where the
  endpoint returns no usable logprobs, that record falls back to generating and parsing.
* ``generate``: generate the reply and parse it (:func:`textbooklm.quality.prompts.parse_reply`).

Every request goes through the teacher's SQLite cache, so a re-run (or a resumed run) sends nothing
twice. A record whose reply cannot be parsed, or whose request failed, gets ``score=None`` and its
reason; the caller counts and keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from textbooklm.quality.config import LLMJudgeConfig
from textbooklm.quality.prompts import CHOICES, Template, cut_head, parse_reply, score_from_probs
from textbooklm.teacher import Request, Result, Teacher
from textbooklm.teacher.types import REASON_NO_LOGPROBS


def token_counter(teacher: Teacher) -> Callable[[str], list[int]] | None:
    """End offsets of each token under the teacher's own tokenizer, when it is a local model.

    Hosted models hide their tokenizer; :func:`cut_head` then counts words and punctuation instead.
    """
    tokenizer = getattr(teacher.backend, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        return None

    def ends(text: str) -> list[int]:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [end for _, end in enc["offset_mapping"]]

    return ends


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def judge_records(
    teacher: Teacher, texts: Sequence[str], cfg: LLMJudgeConfig, template: Template
) -> list[dict[str, Any]]:
    """Score ``texts`` with the LLM; one dict per text (score in [0, 1] or None, raw, reason, how)."""
    counter = token_counter(teacher)
    heads = [cut_head(t, cfg.max_file_tokens, counter) for t in texts]
    out: list[dict[str, Any]] = [{} for _ in texts]
    to_generate: list[int] = []
    if cfg.method == "choices":
        labels = CHOICES[template.scale]
        reqs = [Request(messages=_messages(template.render(h, for_choices=True)), max_tokens=1, temperature=0.0,
                        choices=labels) for h, _ in heads]
        for i, res in enumerate(teacher.complete(reqs, show_progress=True)):
            if res.ok and res.choice_probs is not None:
                score, raw = score_from_probs(res.choice_probs, template.scale)
                out[i] = {"score": round(score, 4), "raw": round(raw, 4), "reason": None, "how": "choices",
                          "probs": [round(p, 4) for p in res.choice_probs]}
            elif res.reason == REASON_NO_LOGPROBS:
                to_generate.append(i)  # this endpoint cannot score labels: ask for a reply instead
            else:
                out[i] = _failed(res, "choices")
    else:
        to_generate = list(range(len(texts)))
    if to_generate:
        reqs = [Request(messages=_messages(template.render(heads[i][0], for_choices=False)),
                        max_tokens=cfg.max_reply_tokens, temperature=0.0) for i in to_generate]
        for i, res in zip(to_generate, teacher.complete(reqs, show_progress=True), strict=True):
            if not res.ok:
                out[i] = _failed(res, "generate")
                continue
            parsed = parse_reply(res.text, template.scale)
            out[i] = {"score": None if parsed.score is None else round(parsed.score, 4), "raw": parsed.raw,
                      "reason": parsed.reason, "how": "generate", "reply": res.text[:500]}
    for i, (_, was_cut) in enumerate(heads):
        out[i]["cut"] = was_cut
    return out


def _failed(res: Result, how: str) -> dict[str, Any]:
    return {"score": None, "raw": None, "reason": f"request-failed: {res.error}", "how": how}
