"""The one record id and the provenance helpers every stage uses."""

from __future__ import annotations

import json

from textbooklm.record import (
    content_id,
    exercise_source_key,
    heldout_source_file,
    is_heldout_exercise,
    is_validation,
    provenance,
    rejected_row,
    with_provenance,
)


def test_content_id_ignores_line_endings_and_trailing_space_only():
    assert content_id("a = 1\r\nb = 2  \n\n") == content_id("a = 1\nb = 2")
    assert content_id("a = 1") != content_id("a = 2")
    assert len(content_id("x")) == 32
    assert content_id("bad \ud800 text")  # a lone surrogate still hashes (so it can be rejected by id)


def test_with_provenance_adds_a_stage_entry_and_keeps_the_others():
    row = {"id": "r", "provenance": json.dumps({"corpus": {"path": "a.py"}})}
    out = with_provenance(row, "filter", score=0.9)
    out = with_provenance(out, "filter", threshold=0.5)
    assert provenance(out) == {"corpus": {"path": "a.py"}, "filter": {"score": 0.9, "threshold": 0.5}}
    assert provenance(row) == {"corpus": {"path": "a.py"}}  # the input row is not changed


def test_foreign_provenance_is_kept_not_lost():
    assert provenance({"provenance": "not json"}) == {"previous": "not json"}
    assert provenance({"provenance": "[1, 2]"}) == {"previous": [1, 2]}
    assert provenance({}) == {}


def test_rejected_row_carries_reason_detail_and_decision():
    row = rejected_row({"id": "r", "text": "t"}, "decontam", "contaminated-ngram", "HumanEval/1: 3 shared",
                       problem_id="HumanEval/1")
    assert row["reason"] == "contaminated-ngram" and row["detail"].startswith("HumanEval/1")
    assert provenance(row)["decontam"] == {"decision": "contaminated-ngram", "problem_id": "HumanEval/1"}


def _mined(fid: str, name: str) -> dict:
    prov = {"synth": {"source": "corpus", "mined": {"source_path": f"{fid}.py", "source_id": fid, "function": name}}}
    return {"id": f"{fid}-{name}", "prompt": f"def {name}(x):\n", "completion": "    return x\n",
            "provenance": json.dumps(prov)}


def test_exercises_of_one_source_file_fall_on_one_side_of_the_split():
    # 40 files of 5 functions each: per-exercise hashing put siblings of one file on both sides.
    rows = [_mined(f"file{f}", f"fn{k}") for f in range(40) for k in range(5)]
    sides: dict[str, set[bool]] = {}
    for r in rows:
        sides.setdefault(exercise_source_key(r), set()).add(is_heldout_exercise(r, 0.3))
    assert len(sides) == 40 and all(len(s) == 1 for s in sides.values())
    held = sum(next(iter(s)) for s in sides.values())
    assert 0 < held < 40  # both sides are used
    assert exercise_source_key(rows[0]) == "file:file0" and heldout_source_file(rows[0]) == "file0"


def test_teacher_exercise_is_split_by_its_own_id():
    row = {"id": "abc", "prompt": "def f():\n", "completion": "    return 1\n",
           "provenance": json.dumps({"synth": {"source": "teacher"}})}
    assert exercise_source_key(row) == "exercise:abc" and heldout_source_file(row) is None
    assert is_heldout_exercise(row, 0.5) == is_validation("exercise:abc", 0.5)
    no_id = {"prompt": "def f():\n", "completion": "    return 1\n"}
    assert exercise_source_key(no_id) == "exercise:" + content_id("def f():\n    return 1\n")
    assert not is_heldout_exercise(row, 0.0)
