"""Optional teacher rewrite of a mined exercise's docstring (``corpus.rewrite_docstring``).

Why: a real function's docstring was written for its module's readers ("Helper for _foo; see RFC
822"), not as an exercise statement. A teacher may restate it; it never touches the body or the
tests, so the exercise stays correct by construction: the tests were observed from the original
code, and the stored solution is verified against them again after the rewrite.

A reply is used only when it is a plain docstring: text (optionally fenced or quoted), not empty, at
most MAX_DOCSTRING characters, no triple quotes, no code. Otherwise the original stays and the
reason is noted in provenance (``docstring_rewrite``).
"""

from __future__ import annotations

import ast
import re
from typing import Any

MAX_DOCSTRING = 1200
PROMPT = (
    "Here is a Python function:\n\n```python\n{code}```\n\n"
    "Rewrite its docstring for a student who must write the function's body from the signature and the "
    "docstring alone: say what it returns for its inputs, clearly and briefly. Keep any >>> examples. "
    "Reply with the new docstring text only, without quotes."
)


def clean_reply(reply: str) -> tuple[str | None, str]:
    """(docstring text or None, why not)."""
    text = reply.strip()
    fence = re.match(r"^```[\w]*\n(.*?)\n?```$", text, re.S)
    if fence:
        text = fence.group(1).strip()
    for q in ('"""', "'''"):
        if text.startswith(q) and text.endswith(q) and len(text) >= 6:
            text = text[3:-3].strip()
    if not text:
        return None, "empty reply"
    if len(text) > MAX_DOCSTRING:
        return None, f"{len(text)} characters, at most {MAX_DOCSTRING}"
    if '"""' in text or "'''" in text or "\\" in text:
        return None, "quotes or backslashes inside"
    if re.search(r"^\s*(def |class |return |import )", text, re.M):
        return None, "holds code"
    return text, ""


def replace_docstring(prompt: str, completion: str, name: str, doc: str) -> str | None:
    """``prompt`` with the docstring of function ``name`` replaced by ``doc`` (None if it cannot be found)."""
    try:
        tree = ast.parse(prompt + completion)
    except SyntaxError:
        return None
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    if not funcs or not funcs[-1].body:
        return None
    first = funcs[-1].body[0]
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value,
                                                                                               str)):
        return None
    lines = prompt.split("\n")
    if (first.end_lineno or 0) > len(lines):
        return None
    indent = re.match(r"\s*", lines[first.lineno - 1]).group(0)
    body = "\n".join(f"{indent}{ln}" if ln.strip() else "" for ln in doc.split("\n"))
    new_doc = f'{indent}"""{body[len(indent):]}\n{indent}"""' if "\n" in doc else f'{indent}"""{doc}"""'
    out = "\n".join(lines[:first.lineno - 1] + [new_doc] + lines[first.end_lineno:])
    try:
        ast.parse(out + completion)
    except SyntaxError:
        return None
    return out


def rewrite_requests(rows: list[dict[str, Any]]) -> list[str]:
    """The prompt asking for each row's new docstring."""
    return [PROMPT.format(code=r["text"]) for r in rows]
