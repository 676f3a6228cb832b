"""The one record id and the provenance helpers every stage uses."""

from __future__ import annotations

import json

from textbooklm.record import content_id, provenance, rejected_row, with_provenance


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
