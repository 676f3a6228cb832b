"""Code blocks out of model-written markdown, which is messy: every block is found, typed and parsed.

What a teacher (SmolLM2 especially) writes: fences with ```python, ```py, ```Python3, ``` {python},
~~~ fences, fences indented inside list items, a last fence left open because generation stopped
at max_tokens, untagged fences, shell sessions and program output in fences, and ``>>>``
interpreter sessions. :func:`extract_blocks` handles all of these and never raises; each block says
whether it is Python, whether it parses (and the syntax error when not), and whether it is meant to
run (Python, parses, and reads no stdin: the sandbox's stdin is /dev/null).
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import asdict, dataclass
from typing import Any

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*\{?[ \t]*\.?(?P<lang>[\w+#.-]*)[^\n`]*$")
_PYTHON_TAGS = {"python", "py", "python3", "py3", "pycon", "ipython", "python-repl", "pyi"}
_NOT_PYTHON_TAGS = {
    "bash", "sh", "shell", "console", "text", "txt", "output", "plaintext", "json", "yaml", "toml", "sql", "html",
    "javascript", "js", "java", "c", "cpp", "c++", "ruby", "go", "rust", "markdown", "md", "csv", "xml", "css",
}
_NO_RUN_MARK = re.compile(r"#\s*(?:no-?run|do not run)\b", re.IGNORECASE)


@dataclass
class CodeBlock:
    """One fenced block of a reply."""

    index: int
    language: str  # the fence's tag, lower-cased ('' when untagged)
    code: str  # dedented; '>>>' sessions turned into their code lines
    line: int  # 1-based line of the opening fence
    closed: bool = True  # False: the reply ended inside the block (cut at max_tokens)
    is_python: bool = False
    parses: bool = False
    syntax_error: str = ""
    runnable: bool = False
    not_run_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def session_to_code(code: str) -> str:
    """A '>>>' interpreter session -> its input lines (output lines dropped)."""
    out = []
    for line in code.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(">>>") or stripped.startswith("..."):
            out.append(stripped[4:] if len(stripped) > 3 and stripped[3] == " " else stripped[3:])
    return "\n".join(out) + "\n"


def syntax_problem(code: str) -> str:
    """'' when ``code`` parses, else 'SyntaxError: msg (line N)'."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:  # e.g. null bytes
        return f"{type(exc).__name__}: {exc}"
    return ""


_CODE_START = re.compile(r"^\s*(def |class |import |from \S+ import |for |while |if |print\(|return )", re.MULTILINE)


def _looks_like_python(code: str) -> bool:
    """Untagged block: Python when it parses and has a statement that is more than a bare name, or
    (broken code is still code) when it does not parse but has lines that start like Python."""
    if syntax_problem(code):
        return bool(_CODE_START.search(code))
    try:
        tree = ast.parse(code)
    except Exception:  # noqa: BLE001 - syntax_problem already vetted it
        return False
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, (ast.Name, ast.Constant))) for n in tree.body)


def _classify(block: CodeBlock) -> CodeBlock:
    lang = block.language
    if ">>>" in block.code and any(ln.lstrip().startswith(">>>") for ln in block.code.splitlines()):
        block.code = session_to_code(block.code)
        block.is_python = lang not in _NOT_PYTHON_TAGS or lang == "console"
    elif lang in _PYTHON_TAGS or lang.startswith("python"):
        block.is_python = True
    elif lang == "":
        block.is_python = _looks_like_python(block.code)
    if not block.is_python:
        block.not_run_reason = f"not Python ({lang or 'untagged'})"
        return block
    block.syntax_error = syntax_problem(block.code)
    block.parses = not block.syntax_error
    if not block.parses:
        block.not_run_reason = "does not parse"
    elif not block.code.strip():
        block.not_run_reason = "empty"
    elif re.search(r"\binput\s*\(", block.code):
        block.not_run_reason = "reads stdin (input())"
    elif _NO_RUN_MARK.search(block.code):
        block.not_run_reason = "marked no-run"
    else:
        block.runnable = True
    return block


def extract_blocks(markdown: str) -> list[CodeBlock]:
    """Every fenced block of ``markdown``, in order, classified. Never raises."""
    lines = markdown.splitlines()
    blocks: list[CodeBlock] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent").expandtabs())
        start = i
        body: list[str] = []
        closed = False
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and stripped.strip(fence[0]) == "":
                closed = True
                i += 1
                break
            body.append(lines[i])
            i += 1
        text = "\n".join(
            ln[indent:] if ln[:indent].strip() == "" else ln for ln in body
        )
        code = textwrap.dedent(text).strip("\n") + "\n" if text.strip() else ""
        blocks.append(_classify(CodeBlock(len(blocks), m.group("lang").lower(), code, start + 1, closed)))
    return blocks


def python_blocks(markdown: str) -> list[CodeBlock]:
    return [b for b in extract_blocks(markdown) if b.is_python]


def unfenced_code(reply: str) -> str:
    """For a reply with no fences: from the first line that starts code (def/import/from/class/@) on,
    dropping trailing prose lines until what is left parses. '' when nothing parses."""
    lines = reply.splitlines()
    starts = [i for i, ln in enumerate(lines) if re.match(r"^(def |async def |import |from \S+ import |class |@)", ln)]
    if not starts:
        return ""
    body = lines[starts[0]:]
    while body:
        code = "\n".join(body).strip("\n") + "\n"
        if not syntax_problem(code):
            return code
        body = body[:-1]
    return ""


def parsable_prefix(code: str) -> str:
    """The longest prefix of ``code`` that ends before a top-level statement and parses: what is left of a
    block cut off mid-statement (a reply stopped at max_tokens). '' when no such prefix exists."""
    lines = code.splitlines()
    cuts = [i for i, ln in enumerate(lines) if i and ln[:1] not in ("", " ", "\t", "#", ")", "]", "}")]
    for i in reversed(cuts):
        prefix = "\n".join(lines[:i]).rstrip() + "\n"
        if prefix.strip() and not syntax_problem(prefix):
            return prefix
    return ""
