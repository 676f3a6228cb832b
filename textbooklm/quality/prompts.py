"""Judge prompts: editable template files, the answer labels of each scale, and reply parsing.

Templates are plain text files with a ``{code}`` placeholder (filled with ``str.replace``, because
code is full of braces). The built-in ones sit in ``textbooklm/quality/prompts/``; a config may name
its own file instead.

Two answer scales:

* ``high-low`` (phi-1: "determine its educational value for a student whose goal is to learn basic
  coding concepts"): labels ``high`` / ``low``; normalised score = P(high) (or 1/0 when parsed).
* ``0-5`` (FineWeb-Edu's additive rubric, reply ends in "Educational score: N"): normalised score =
  grade / 5, the grade being the expected value over the digit probabilities when logprobs exist.

Parsing never guesses: a reply without a recognisable score, or with one out of range, gives
``score=None`` and a reason (``no-score``, ``out-of-range: 7``, ``ambiguous: high and low``) that is
counted in the summary and kept in the record's provenance.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textbooklm.quality.config import BUILTIN_PROMPTS, LLMJudgeConfig

PROMPT_DIR = Path(__file__).parent / "prompts"
CHOICES = {"high-low": ("high", "low"), "0-5": ("0", "1", "2", "3", "4", "5")}
# Appended in 'choices' mode: the rubric asks for a justification first, but a one-pass score needs the
# grade to be the reply's first token.
CHOICE_SUFFIX = {
    "high-low": "",
    "0-5": "\n\nReply with the total points only: a single digit from 0 to 5.",
}


@dataclass(frozen=True)
class Template:
    """A loaded prompt template and what its answers look like."""

    name: str
    text: str
    scale: str

    @property
    def sha(self) -> str:
        """Short hash of the template text: goes into provenance so a reader knows which prompt judged."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]

    def render(self, code: str, for_choices: bool) -> str:
        return self.text.replace("{code}", code).rstrip() + (CHOICE_SUFFIX[self.scale] if for_choices else "")


def load_template(cfg: LLMJudgeConfig) -> Template:
    """The built-in template by name, or the user's file (which must contain ``{code}``)."""
    if cfg.prompt in BUILTIN_PROMPTS:
        path = PROMPT_DIR / f"{cfg.prompt}.txt"
    else:
        path = Path(cfg.prompt).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"judge.llm.prompt {cfg.prompt!r}: cannot read template {path}: {exc}") from None
    if "{code}" not in text:
        raise ValueError(f"judge.llm.prompt: template {path} has no {{code}} placeholder")
    return Template(name=cfg.prompt, text=text, scale=cfg.resolved_scale())


_CODE_TOKEN = re.compile(r"\w+|[^\w\s]|\n")


def cut_head(text: str, max_tokens: int, count_tokens: Callable[[str], list[int]] | None = None) -> tuple[str, bool]:
    """Keep the first ``max_tokens`` tokens of ``text``; returns (head, was_cut).

    With ``count_tokens`` (a tokenizer returning offsets' end positions) the cut is exact for that
    model; without it, words, punctuation marks and newlines each count as one token, which is close to
    a BPE count for code.
    """
    if count_tokens is not None:
        ends = count_tokens(text)
        if len(ends) <= max_tokens:
            return text, False
        return text[: ends[max_tokens - 1]], True
    count = 0
    for m in _CODE_TOKEN.finditer(text):
        count += 1
        if count > max_tokens:
            return text[: m.start()].rstrip(" \t"), True
    return text, False


@dataclass(frozen=True)
class Parsed:
    """A reply turned into a normalised score in [0, 1], or ``None`` with the reason it failed."""

    score: float | None
    raw: float | str | None = None  # the grade or label as found in the reply
    reason: str | None = None


_EDU_SCORE = re.compile(r"educational\s+score\s*[:=]?\s*\**\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^\W*(-?\d+(?:\.\d+)?)\s*(?:/\s*5|points?)?\W*$", re.IGNORECASE)
_HIGH_LOW = re.compile(r"\b(high|low)\b", re.IGNORECASE)


def parse_reply(text: str, scale: str) -> Parsed:
    """Parse a judge's free-text reply on ``scale`` ('high-low' or '0-5')."""
    if scale == "0-5":
        return _parse_grade(text)
    if scale == "high-low":
        return _parse_high_low(text)
    raise ValueError(f"unknown judge scale {scale!r}")


def _parse_grade(text: str) -> Parsed:
    found = _EDU_SCORE.findall(text)
    if found:
        value = float(found[-1])  # the rubric's conclusion comes last; earlier mentions quote the format
    elif m := _BARE_NUMBER.match(text.strip()):
        value = float(m.group(1))
    else:
        return Parsed(None, None, "no-score")
    if not 0 <= value <= 5:
        return Parsed(None, value, f"out-of-range: {value:g}")
    return Parsed(value / 5.0, value)


def _parse_high_low(text: str) -> Parsed:
    labels = [m.lower() for m in _HIGH_LOW.findall(text)]
    if not labels:
        return Parsed(None, None, "no-score")
    if len(set(labels)) > 1:
        # "high" and "low" both appear: trust the first word only when the reply starts with it
        # (models lead with the answer); otherwise it is a discussion, not a verdict.
        first = text.strip().lower()
        for label in ("high", "low"):
            if re.match(rf"^\W*{label}\b", first):
                return Parsed(1.0 if label == "high" else 0.0, label)
        return Parsed(None, None, "ambiguous: high and low")
    return Parsed(1.0 if labels[0] == "high" else 0.0, labels[0])


def score_from_probs(probs: list[float], scale: str) -> tuple[float, float]:
    """Expected value over the label probabilities -> (normalised score, raw grade or P(high))."""
    if scale == "high-low":
        p_high = probs[0] / max(sum(probs), 1e-12)
        return p_high, p_high
    grade = sum(i * p for i, p in enumerate(probs)) / max(sum(probs), 1e-12)
    return grade / 5.0, grade
