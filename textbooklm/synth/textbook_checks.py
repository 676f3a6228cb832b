"""Checks of a teacher's textbook reply: cut off at max_tokens, the prompt echoed back, code that never runs.

Why: a small teacher often runs to ``max_tokens`` and stops mid-sentence or inside a code block; as
training data that teaches the model to stop mid-thought (and the open block runs as broken code).
And it often repeats the instructions it was given ("Write a textbook section about ...") before,
or instead of, answering; that trains the model on prompt text, not on textbooks.

* :func:`salvage_cut_off`: a reply that ended at max_tokens (``finish_reason == "length"``) is kept
  only as far as its last complete section: whole paragraphs ending in sentence punctuation, or a
  closed code block, with every fence closed. ``None`` when nothing complete is left.
* :func:`prompt_echo`: the share of the prompt's word 8-grams (its instructions, lower-cased) that
  appear in the reply; a reply that opens with the prompt's first words counts as an echo too.
* :func:`unexercised`: why a code block that ran without error did not run its code (a block of
  definitions nothing calls): only blocks that execute what they define count as "ran ok".
"""

from __future__ import annotations

import ast
import re

from textbooklm.codeblocks import extract_blocks

# Fences as codeblocks.extract_blocks reads them: an opening fence may carry a tag (```python), a closing
# one is a line of only the opening's character, at least as many, so "```python" inside an open block is
# code, not a close. The salvaged text is checked with extract_blocks itself as well.
_OPEN = re.compile(r"^[ \t]*(`{3,}|~{3,})[^`]*$")
_BARE_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*$")
_SENTENCE_END = re.compile(r"[.!?:;)\]\"'`*]\s*$")
ECHO_NGRAM = 8


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and stripped.strip(fence[0]) == ""


def _complete_paragraph(lines: list[str]) -> bool:
    """A paragraph (non-empty lines) that ends a thought: sentence punctuation, or a heading / list item."""
    last = lines[-1].rstrip()
    return bool(_SENTENCE_END.search(last)) or last.lstrip().startswith("#")


def _cut_points(lines: list[str]) -> list[int]:
    """Line counts at which a prefix ends a complete section outside every fence (see salvage_cut_off)."""
    cuts: list[int] = []
    fence: str | None = None  # the open fence's marker (e.g. "```"), None outside blocks
    for i, line in enumerate(lines):
        if fence is not None:
            if _closes(line, fence):
                fence = None
                cuts.append(i + 1)  # a closed code block is a complete unit
            continue
        m = _OPEN.match(line)
        if m:
            fence = m.group(1)
            continue
        if not line.strip() and i > 0:
            para: list[str] = []
            for prev in reversed(lines[:i]):
                if not prev.strip():
                    break
                para.insert(0, prev)
            if para and (_BARE_FENCE.match(para[-1]) or _complete_paragraph(para)):
                cuts.append(i)
    return cuts


def _inside_fence(text: str) -> bool:
    """Whether ``text`` ends inside a fenced block as the code-block reader sees it."""
    return any(not b.closed for b in extract_blocks(text))


def salvage_cut_off(text: str) -> str | None:
    """The longest prefix of ``text`` that ends a complete section (see the module docstring), or None.

    Cut points are blank lines outside code blocks and the line after a closing fence; a prefix
    qualifies when every fence in it is closed (as codeblocks.extract_blocks reads fences: the blocks
    that get run) and its last paragraph is complete. A salvaged text never ends inside a fence.
    """
    lines = text.rstrip("\n").split("\n")
    for cut in reversed(_cut_points(lines)):
        out = "\n".join(lines[:cut]).rstrip()
        if out.strip() and not _inside_fence(out + "\n"):
            return out + "\n"
    return None


def is_cut_off(text: str, finish_reason: str | None) -> bool:
    """Whether a reply stopped at max_tokens in the middle of something (an open block or sentence)."""
    if finish_reason != "length":
        return False
    body = text.rstrip()
    if _inside_fence(body + "\n"):
        return True
    last = body.split("\n")[-1] if body else ""
    return not (_OPEN.match(last) or _complete_paragraph([last]))


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


def _executable(tree: ast.Module) -> list[ast.stmt]:
    """Top-level statements that do something when the block runs: not imports, definitions, docstrings
    or ``pass``; the body of an ``if __name__ == "__main__":`` counts (blocks run as ``__main__``)."""
    out: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                             ast.Pass)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        out.append(node)
    return out


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def unexercised(code: str, later: list[str] | None = None) -> str:
    """Why a block that ran does not count as running its code ('' when it does).

    Why: a block of definitions runs without error even when its bodies call names that exist nowhere
    (stubs); "ran ok" then says nothing about the code. A block counts when something in it executes:
    a call, an assert, or an expression (``print(f(2))``, ``total = sum(xs)``, ``assert f(1) == 2``);
    and when it defines functions or classes, something must use one of them, in this block or in a
    later block of the same textbook (blocks run like a notebook, so a later call runs them).
    """
    tree = _parse(code)
    if tree is None:
        return "does not parse"
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    execs = _executable(tree)
    does_something = any(isinstance(n, (ast.Call, ast.Assert)) for s in execs for n in ast.walk(s))
    if not defined:
        return "" if does_something else "executes nothing (no call, assert or print)"
    later_execs = [s for c in later or [] for t in [_parse(c)] if t is not None for s in _executable(t)]
    used = {n.id for s in execs + later_execs for n in ast.walk(s) if isinstance(n, ast.Name)}
    if defined & used:
        return ""
    return f"defines {', '.join(sorted(defined))} but nothing calls it"[:200]
