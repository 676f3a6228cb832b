"""The LLM judge: a prompt template, a teacher, and a score per record.

Two ways to read a score (``judge.llm.method``):

* ``choices`` (default): one scoring request per file. The teacher returns the probability of each
  answer label as the reply ("high"/"low", or "0".."5"); the score is the expected value over them.
  On the local backend that is one forward pass per file, several times cheaper than generating a
  justification; on an OpenAI-compatible endpoint it reads the first token's top logprobs. Where the
  endpoint returns no usable logprobs (or refuses them: a logprobs 400), or when the labels cover less
  than the teacher's ``min_choice_mass`` of the first token's probability (labels matched with spaces
  and case ignored, variants summed), that record falls back to generating and parsing. Each record
  says which path it took (``how``, ``fallback``) and how much mass its labels covered (``mass``).
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
from textbooklm.teacher.tokens import WORD_TOKEN_MARGIN, PromptCounter, offsets_counter, prompt_counter
from textbooklm.teacher.types import REASON_NO_LOGPROBS

# Paths a record's score can take (counted in the judge summary).
PATH_CHOICES = "choices"
PATH_GENERATE = "generate"
PATH_LOW_MASS = "generate after low label mass"
PATH_NO_LOGPROBS = "generate after no logprobs"


def token_counter(teacher: Teacher) -> Callable[[str], list[int]] | None:
    """End offsets of each token under the teacher's own tokenizer, when it is a local model."""
    return offsets_counter(getattr(teacher.backend, "tokenizer", None))


# Tokens the chat template wraps around a prompt (role markers, a default system prompt): SmolLM2's
# adds ~30; kept generous since it is not counted.
CHAT_OVERHEAD_TOKENS = 48


def head_budget(cfg: LLMJudgeConfig, template: Template, counter: PromptCounter) -> int:
    """``max_file_tokens``, lowered where the model's context could not hold the template, the head
    and a generated reply (choices may fall back to generating) together."""
    if counter.context is None:
        return cfg.max_file_tokens
    overhead = counter.tokens(template.render("", for_choices=False))
    if overhead is None:
        return cfg.max_file_tokens
    room = counter.context - overhead - CHAT_OVERHEAD_TOKENS - cfg.max_reply_tokens
    return max(16, min(cfg.max_file_tokens, room))


def fit_head(text: str, max_tokens: int, counter: PromptCounter) -> tuple[str, bool]:
    """The head of ``text`` that is at most ``max_tokens`` tokens as ``counter`` counts them.

    With offsets the cut is exact. With a count only (a server's /tokenize), the word-count cut is
    shrunk by the measured ratio until the count fits. Without either, only ``1 / WORD_TOKEN_MARGIN``
    of the budget is used, counted in words and punctuation marks.
    """
    if counter.ends is not None:
        return cut_head(text, max_tokens, counter.ends)
    if counter.count is None:
        return cut_head(text, max(1, int(max_tokens / WORD_TOKEN_MARGIN)))
    budget = max_tokens
    head, was_cut = cut_head(text, budget)
    for _ in range(8):
        n = counter.count(head)
        if n is None:  # the server stopped answering /tokenize: the stated margin instead
            return cut_head(text, max(1, int(max_tokens / WORD_TOKEN_MARGIN)))
        if n <= max_tokens:
            return head, was_cut
        budget = max(1, min(budget - 1, int(budget * max_tokens / n * 0.98)))
        head, was_cut = cut_head(text, budget)
        was_cut = True
    return head, was_cut


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def judge_records(
    teacher: Teacher, texts: Sequence[str], cfg: LLMJudgeConfig, template: Template
) -> list[dict[str, Any]]:
    """Score ``texts`` with the LLM; one dict per text (score in [0, 1] or None, raw, reason, how)."""
    counter = prompt_counter(teacher.backend)
    heads = [fit_head(t, head_budget(cfg, template, counter), counter) for t in texts]
    out: list[dict[str, Any]] = [{} for _ in texts]
    to_generate: list[int] = []
    fallback: dict[int, dict[str, Any]] = {}
    if cfg.method == "choices":
        labels = CHOICES[template.scale]
        min_mass = teacher.cfg.min_choice_mass
        reqs = [Request(messages=_messages(template.render(h, for_choices=True)), max_tokens=1, temperature=0.0,
                        choices=labels) for h, _ in heads]
        for i, res in enumerate(teacher.complete(reqs, show_progress=True)):
            mass = None if res.choice_mass is None else round(res.choice_mass, 4)
            if res.ok and res.choice_probs is not None and (res.choice_mass is None or res.choice_mass >= min_mass):
                score, raw = score_from_probs(res.choice_probs, template.scale)
                out[i] = {"score": round(score, 4), "raw": round(raw, 4), "reason": None, "how": "choices",
                          "path": PATH_CHOICES, "probs": [round(p, 4) for p in res.choice_probs], "mass": mass}
            elif res.ok and res.choice_probs is not None:
                # the labels are a small part of what the model would say: their renormalised
                # probabilities mean little, so ask for a reply instead
                to_generate.append(i)
                fallback[i] = {"path": PATH_LOW_MASS, "mass": mass, "probs": [round(p, 4) for p in res.choice_probs],
                               "fallback": f"labels covered {res.choice_mass:.3f} of the first token's "
                                           f"probability (< min_choice_mass {min_mass:g})"}
            elif res.reason == REASON_NO_LOGPROBS:
                to_generate.append(i)  # this endpoint cannot score labels: ask for a reply instead
                fallback[i] = {"path": PATH_NO_LOGPROBS, "mass": mass, "fallback": res.error}
            else:
                out[i] = _failed(res, "choices")
        if getattr(teacher.backend, "top_logprobs_capped", False):
            for o in out:
                if o.get("how") == "choices":
                    o["top_logprobs"] = teacher.backend.top_logprobs  # the server's cap, not the config's
    else:
        to_generate = list(range(len(texts)))
    if to_generate:
        reqs = [Request(messages=_messages(template.render(heads[i][0], for_choices=False)),
                        max_tokens=cfg.max_reply_tokens, temperature=0.0) for i in to_generate]
        for i, res in zip(to_generate, teacher.complete(reqs, show_progress=True), strict=True):
            if not res.ok:
                out[i] = {**_failed(res, "generate"), **fallback.get(i, {"path": PATH_GENERATE})}
                continue
            parsed = parse_reply(res.text, template.scale)
            out[i] = {"score": None if parsed.score is None else round(parsed.score, 4), "raw": parsed.raw,
                      "reason": parsed.reason, "how": "generate", "reply": res.text[:500],
                      **fallback.get(i, {"path": PATH_GENERATE})}
    for i, (_, was_cut) in enumerate(heads):
        out[i]["cut"] = was_cut
    return out


def _failed(res: Result, how: str) -> dict[str, Any]:
    return {"score": None, "raw": None, "reason": f"request-failed: {res.error}", "how": how,
            "path": PATH_CHOICES if how == "choices" else PATH_GENERATE}
