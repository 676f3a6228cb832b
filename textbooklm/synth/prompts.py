"""Prompt templates: editable text files with ``$placeholders`` (string.Template syntax).

Why string.Template and not str.format: templates are full of Python code, whose braces would all
need doubling. ``$$`` is a literal dollar. A template that names a placeholder the stage does not
provide is an error naming the file and the placeholder, raised before any request is sent.
"""

from __future__ import annotations

import hashlib
import string
from pathlib import Path

from textbooklm.synth.seeds import Seed, data_file

DEFAULTS = {"textbook": "textbook.txt", "exercise": "exercise.txt", "solution": "solution.txt"}


class PromptTemplate:
    """A loaded template: its text, where it came from, and a hash for provenance."""

    def __init__(self, text: str, source: str, allowed: set[str]) -> None:
        self.text = text
        self.source = source
        self.template = string.Template(text)
        if not self.template.is_valid():
            raise ValueError(f"{source}: invalid placeholder syntax (use $name or ${{name}}; $$ for a dollar)")
        unknown = set(self.template.get_identifiers()) - allowed
        if unknown:
            raise ValueError(
                f"{source}: unknown placeholder(s) {sorted(unknown)}; this template may use {sorted(allowed)}"
            )
        self.hash = hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def load(cls, kind: str, path: str | Path | None, allowed: set[str]) -> PromptTemplate:
        p = Path(path) if path else data_file(DEFAULTS[kind])
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"{p}: no such {kind} template file") from None
        return cls(text, str(p), allowed)

    def render(self, **values: str) -> str:
        return self.template.substitute(values).strip() + "\n"


TEXTBOOK_FIELDS = {"topic", "audience", "style", "words", "words_line", "excerpt", "excerpt_block"}
EXERCISE_FIELDS = {"name", "signature", "params", "topic", "audience", "words", "words_line", "min_tests"}
SOLUTION_FIELDS = {"prompt", "name"}


def words_line(words: list[str]) -> str:
    if not words:
        return ""
    quoted = ", ".join(f'"{w}"' for w in words)
    return f"\nUse the word{'s' if len(words) > 1 else ''} {quoted} somewhere in the text or the examples."


def topic_phrase(topic: str) -> str:
    """'Data structures > Lists > Sorting lists' -> 'Sorting lists (Lists)': the leaf, with its parent as context."""
    parts = topic.split(" > ")
    return parts[-1] if len(parts) == 1 else f"{parts[-1]} ({parts[-2]})"


def render_textbook(template: PromptTemplate, seed: Seed) -> str:
    """The textbook prompt of one seed (topic shown as its leaf, the path is in provenance)."""
    excerpt = seed.excerpt["text"] if seed.excerpt else ""
    block = (
        f"\nBase your examples on ideas from this code excerpt (do not copy it):\n```python\n{excerpt.rstrip()}\n```"
        if excerpt else ""
    )
    return template.render(
        topic=topic_phrase(seed.topic),
        audience=seed.audience,
        style=seed.style,
        words=", ".join(seed.words),
        words_line=words_line(seed.words),
        excerpt=excerpt,
        excerpt_block=block,
    )
