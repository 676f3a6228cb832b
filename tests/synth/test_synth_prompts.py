"""Prompt templates: rendering every seed field, and clear errors for bad templates."""

from __future__ import annotations

import pytest

from textbooklm.synth.exercises_stage import exercise_prompt
from textbooklm.synth.names import FunctionName
from textbooklm.synth.prompts import (
    EXERCISE_FIELDS,
    TEXTBOOK_FIELDS,
    PromptTemplate,
    render_textbook,
    topic_phrase,
)
from textbooklm.synth.seeds import Seed


def test_default_textbook_prompt_carries_every_choice():
    t = PromptTemplate.load("textbook", None, TEXTBOOK_FIELDS)
    seed = Seed(0, "Data structures > Lists > Sorting lists", "young learners", "worked examples", ["kite", "owl"])
    text = render_textbook(t, seed)
    assert "Sorting lists (Lists)" in text
    assert "young learners" in text and "worked examples" in text
    assert '"kite", "owl"' in text
    assert "```python" in text and "excerpt" not in text
    seed.excerpt = {"id": "x", "path": "a.py", "text": "def area(r):\n    return 3.14 * r * r"}
    with_excerpt = render_textbook(t, seed)
    assert "def area(r):" in with_excerpt and with_excerpt != text
    assert len(t.hash) == 16


def test_exercise_prompt_names_the_function_and_its_parameters():
    t = PromptTemplate.load("exercise", None, EXERCISE_FIELDS)
    fn = FunctionName("count_vowels", "text: str", "working with strings", "string", "count")
    text = exercise_prompt(t, fn, "college students", [], 3)
    assert "`count_vowels(text: str)`" in text
    assert "working with strings" in text and "college students" in text and "at least 3 assert" in text
    assert "Use the word" not in text
    assert "Use the words" in exercise_prompt(t, fn, "college students", ["owl", "kite"], 3)


def test_user_template_with_code_braces_and_a_literal_dollar(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("Costs $$5. Teach $topic to $audience like {'a': 1}.$words_line")
    t = PromptTemplate.load("textbook", f, TEXTBOOK_FIELDS)
    out = render_textbook(t, Seed(1, "Recursion", "professionals", "tutorial", []))
    assert out == "Costs $5. Teach Recursion to professionals like {'a': 1}.\n"
    assert topic_phrase("A > B > C") == "C (B)"


def test_bad_templates_fail_before_any_request(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("Teach $topic in $langauge")
    with pytest.raises(ValueError, match=r"t\.txt: unknown placeholder\(s\) \['langauge'\]"):
        PromptTemplate.load("textbook", f, TEXTBOOK_FIELDS)
    f.write_text("Price: $ 5")
    with pytest.raises(ValueError, match="invalid placeholder"):
        PromptTemplate.load("textbook", f, TEXTBOOK_FIELDS)
    with pytest.raises(ValueError, match="no such textbook template"):
        PromptTemplate.load("textbook", tmp_path / "nope.txt", TEXTBOOK_FIELDS)
