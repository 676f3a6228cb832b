"""Loaders for the phi-1.5 common-sense benchmarks, from the standard files a user provides.

None of these data sets ships with a package, so each loader reads the file format its authors
(or the Hugging Face ``datasets`` export) publish and turns every question into a
:class:`ChoiceItem`: one context, several continuations, the index of the right one. The prompt
shapes follow lm-evaluation-harness so accuracies are comparable with published numbers.

Formats read (JSONL unless noted; ``.parquet`` files with the same columns work too):

* ``arc`` / ``openbookqa``: AI2 format ``{"question": {"stem", "choices": [{"label", "text"}]},
  "answerKey"}`` or the HF export (``question``/``question_stem``, ``choices: {"label", "text"}``).
* ``piqa``: ``{"goal", "sol1", "sol2", "label"}``; without ``label``, a sibling ``*-labels.lst``.
* ``hellaswag``: ``{"activity_label", "ctx_a", "ctx_b", "endings", "label"}``.
* ``winogrande``: ``{"sentence", "option1", "option2", "answer": "1"|"2"}`` (partial scoring:
  the option fills the blank in the context, the rest of the sentence is what is scored).
* ``boolq``: ``{"question", "passage", "answer": bool}`` (or ``label``).
* ``siqa``: ``{"context", "question", "answerA", "answerB", "answerC", "label": "1".."3"}``;
  without ``label``, a sibling ``*-labels.lst``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ChoiceItem:
    """One multiple-choice question: a context per choice (usually the same) and continuations."""

    id: str
    contexts: list[str]
    continuations: list[str]
    label: int


class TaskFormatError(ValueError):
    """A benchmark file that does not match its format; the message names the file and record."""


def read_records(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise TaskFormatError(f"{path}: no such file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    from textbooklm.jsonl import JsonlError, parse_jsonl

    def as_dict(where: str, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        return record

    try:
        return parse_jsonl(path, as_dict)
    except JsonlError as exc:  # every bad line at once, in the benchmark's own error type
        raise TaskFormatError(str(exc)) from None


def _labels_file(path: Path) -> list[str] | None:
    for cand in (path.with_name(path.stem + "-labels.lst"), path.with_suffix(".lst")):
        if cand.is_file():
            return cand.read_text().split()
    return None


def _same(ctx: str, conts: list[str], label: int, rid: str) -> ChoiceItem:
    return ChoiceItem(rid, [ctx] * len(conts), conts, label)


def _arc(rec: dict[str, Any], i: int) -> ChoiceItem:
    q = rec["question"]
    if isinstance(q, dict):  # AI2 format
        stem, choices = q["stem"], q["choices"]
        labels, texts = [c["label"] for c in choices], [c["text"] for c in choices]
    else:  # HF export
        stem = q
        labels, texts = list(rec["choices"]["label"]), list(rec["choices"]["text"])
    return _same(f"Question: {stem}\nAnswer:", [f" {t}" for t in texts], labels.index(rec["answerKey"]),
                 str(rec.get("id", i)))


def _openbookqa(rec: dict[str, Any], i: int) -> ChoiceItem:
    if "question_stem" in rec:
        stem, labels, texts = rec["question_stem"], list(rec["choices"]["label"]), list(rec["choices"]["text"])
    else:
        q = rec["question"]
        stem, labels, texts = q["stem"], [c["label"] for c in q["choices"]], [c["text"] for c in q["choices"]]
    return _same(stem, [f" {t}" for t in texts], labels.index(rec["answerKey"]), str(rec.get("id", i)))


def _piqa(rec: dict[str, Any], i: int) -> ChoiceItem:
    return _same(f"Question: {rec['goal']}\nAnswer:", [f" {rec['sol1']}", f" {rec['sol2']}"], int(rec["label"]),
                 str(rec.get("id", i)))


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(rec: dict[str, Any], i: int) -> ChoiceItem:
    ctx = rec["ctx_a"] + " " + rec["ctx_b"].capitalize()
    query = _hellaswag_clean(rec["activity_label"] + ": " + ctx)
    return _same(query, [" " + _hellaswag_clean(e) for e in rec["endings"]], int(rec["label"]),
                 str(rec.get("ind", i)))


def _winogrande(rec: dict[str, Any], i: int) -> ChoiceItem:
    sentence = rec["sentence"]
    cut = sentence.index("_")
    rest = " " + sentence[cut + 1 :].strip()
    contexts = [sentence[:cut] + rec["option1"], sentence[:cut] + rec["option2"]]
    return ChoiceItem(str(rec.get("qID", i)), contexts, [rest, rest], int(rec["answer"]) - 1)


def _boolq(rec: dict[str, Any], i: int) -> ChoiceItem:
    answer = rec["answer"] if "answer" in rec else rec["label"]
    question = rec["question"].rstrip("?")
    return _same(f"{rec['passage']}\nQuestion: {question}?\nAnswer:", [" no", " yes"], int(bool(answer)),
                 str(rec.get("idx", i)))


def _siqa(rec: dict[str, Any], i: int) -> ChoiceItem:
    conts = [f" {rec['answerA']}", f" {rec['answerB']}", f" {rec['answerC']}"]
    return _same(f"Q: {rec['context']} {rec['question']}\nA:", conts, int(rec["label"]) - 1, str(rec.get("id", i)))


PARSERS: dict[str, Callable[[dict[str, Any], int], ChoiceItem]] = {
    "arc": _arc,
    "arc_easy": _arc,
    "arc_challenge": _arc,
    "openbookqa": _openbookqa,
    "piqa": _piqa,
    "hellaswag": _hellaswag,
    "winogrande": _winogrande,
    "boolq": _boolq,
    "siqa": _siqa,
}
NEEDS_LABEL_FILE = {"piqa", "siqa"}


def load_choice_task(task: str, path: str | Path) -> list[ChoiceItem]:
    """Read ``path`` as benchmark ``task``; a record that does not fit names the file and line."""
    if task not in PARSERS:
        raise ValueError(f"unknown multiple-choice task {task!r}; known: {', '.join(sorted(PARSERS))}")
    path = Path(path)
    records = read_records(path)
    if task in NEEDS_LABEL_FILE and records and "label" not in records[0]:
        labels = _labels_file(path)
        if labels is None or len(labels) != len(records):
            raise TaskFormatError(f"{path}: records have no 'label' and no matching {path.stem}-labels.lst")
        for rec, lab in zip(records, labels, strict=True):
            rec["label"] = lab
    items = []
    for i, rec in enumerate(records):
        try:
            items.append(PARSERS[task](rec, i))
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise TaskFormatError(f"{path}: record {i + 1} is not in {task} format ({reason})") from None
    return items
