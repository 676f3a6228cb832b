"""Two ways a teacher's textbook reply is not a textbook: cut off at max_tokens, or the prompt echoed back.

Why: a small teacher often runs to ``max_tokens`` and stops mid-sentence or inside a code block; as
training data that teaches the model to stop mid-thought (and the open block runs as broken code).
And it often repeats the instructions it was given ("Write a textbook section about ...") before,
or instead of, answering; that trains the model on prompt text, not on textbooks.

* :func:`salvage_cut_off`: a reply that ended at max_tokens (``finish_reason == "length"``) is kept
  only as far as its last complete section: whole paragraphs ending in sentence punctuation, or a
  closed code block, with every fence closed. ``None`` when nothing complete is left.
* :func:`prompt_echo`: the share of the prompt's word 8-grams (its instructions, lower-cased) that
  appear in the reply; a reply that opens with the prompt's first words counts as an echo too.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_SENTENCE_END = re.compile(r"[.!?:;)\]\"'`*]\s*$")
ECHO_NGRAM = 8


def _complete_paragraph(lines: list[str]) -> bool:
    """A paragraph (non-empty lines) that ends a thought: sentence punctuation, or a heading / list item."""
    last = lines[-1].rstrip()
    return bool(_SENTENCE_END.search(last)) or last.lstrip().startswith("#")


def salvage_cut_off(text: str) -> str | None:
    """The longest prefix of ``text`` that ends a complete section (see the module docstring), or None.

    Cut points are blank lines outside code blocks and the line after a closing fence; a prefix
    qualifies when every fence in it is closed and its last paragraph is complete.
    """
    lines = text.rstrip("\n").split("\n")
    best: int | None = None
    open_fence: str | None = None
    for i, line in enumerate(lines):
        m = _FENCE.match(line)
        if m:
            mark = m.group(1)[0] * 3
            if open_fence is None:
                open_fence = mark
            elif mark == open_fence:
                open_fence = None
                best = i + 1  # a closed code block is a complete unit
            continue
        if open_fence is None and not line.strip() and i > 0:
            para: list[str] = []
            for prev in reversed(lines[:i]):
                if not prev.strip():
                    break
                para.insert(0, prev)
            if para and (_FENCE.match(para[-1]) or _complete_paragraph(para)):
                best = i
    if best is None:
        return None
    out = "\n".join(lines[:best]).rstrip()
    return out + "\n" if out.strip() else None


def is_cut_off(text: str, finish_reason: str | None) -> bool:
    """Whether a reply stopped at max_tokens in the middle of something (an open block or sentence)."""
    if finish_reason != "length":
        return False
    body = text.rstrip()
    fences = sum(1 for ln in body.split("\n") if _FENCE.match(ln))
    if fences % 2:
        return True
    last = body.split("\n")[-1] if body else ""
    return not (_FENCE.match(last) or _complete_paragraph([last]))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def prompt_echo(text: str, prompt: str, n: int = ECHO_NGRAM) -> float:
    """Share (0..1) of the prompt's word n-grams found in the reply; 1.0 when the reply opens with the
    prompt's first n words."""
    pw, tw = _words(prompt), _words(text)
    if len(pw) < n or len(tw) < n:
        return 0.0
    if tw[:n] == pw[:n]:
        return 1.0
    grams = {tuple(pw[i:i + n]) for i in range(len(pw) - n + 1)}
    seen = {tuple(tw[i:i + n]) for i in range(len(tw) - n + 1)}
    return len(grams & seen) / len(grams)
