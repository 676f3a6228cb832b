"""Teacher docstring rewrites of mined exercises: what reply is usable, how it replaces the docstring,
and the stage with a real local HTTP teacher (body and tests untouched, re-verified)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from fakes.echo_server import EchoServer, _Handler

from textbooklm.config import parse_config
from textbooklm.pipeline import run_pipeline
from textbooklm.store import Dataset
from textbooklm.synth.docstring_rewrite import clean_reply, replace_docstring

PROMPT = 'import re\n\n\ndef f(a: int, b: int) -> int:\n    """Old.\n\n    More old.\n    """\n'
COMPLETION = "    return a + b\n"


def test_clean_reply_accepts_plain_text_and_rejects_code():
    assert clean_reply('"""Return the sum."""') == ("Return the sum.", "")
    assert clean_reply("```\nReturn the sum.\n```") == ("Return the sum.", "")
    assert clean_reply("  ")[0] is None
    assert clean_reply("def f(a, b):\n    return a + b")[1] == "holds code"
    assert clean_reply('Say """hi"""')[1] == "quotes or backslashes inside"
    assert "at most" in clean_reply("x" * 5000)[1]


def test_replace_docstring_keeps_signature_head_and_body():
    out = replace_docstring(PROMPT, COMPLETION, "f", "Return a + b.\n\n>>> f(1, 2)\n3")
    assert out == ('import re\n\n\ndef f(a: int, b: int) -> int:\n    """Return a + b.\n\n    >>> f(1, 2)\n    3\n'
                   '    """\n')
    assert replace_docstring(PROMPT, COMPLETION, "f", "One line.").endswith('    """One line."""\n')
    assert replace_docstring(PROMPT, COMPLETION, "g", "x") is None


class DocHandler(_Handler):
    @staticmethod
    def _completion(state: Any, body: dict[str, Any], logprobs_ok: bool) -> dict[str, Any]:
        prompt = str((body.get("messages") or [{}])[-1].get("content", ""))
        text = "Return the sum of a and b." if "def add_numbers" in prompt else "def oops():\n    return 1"
        return {"id": "d", "object": "chat.completion", "created": int(time.time()), "model": "scripted",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.mark.slow
def test_stage_rewrites_docstrings_and_keeps_bodies(tmp_path, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(Path(__file__).parent / "fixtures" / "mining_module.py", code / "mining_module.py")
    for i in range(6):
        (code / f"data_{i}.py").write_text("".join(f"x{j} = {j * (i + 3)}\n" for j in range(30)))
        (code / f"lesson_{i}.py").write_text(f'"""Lesson {i}."""\n\n\ndef twice_{i}(v: int) -> int:\n'
                                             f'    """Double v."""\n    # Twice.\n    return 2 * v + {i}\n')
    monkeypatch.setenv("TEXTBOOKLM_TEST_DOC_KEY", "sk-test")
    srv = EchoServer(latency_s=0.0)
    srv._httpd.RequestHandlerClass = DocHandler
    with srv:
        cfg = parse_config({
            "run": {"workers": 1, "seed": 0},
            "teachers": {"t": {"backend": "openai", "model": "scripted", "base_url": srv.base_url,
                               "api_key_env": "TEXTBOOKLM_TEST_DOC_KEY", "max_retries": 0}},
            "corpus": {"sources": [{"kind": "folder", "path": str(code)}], "dedup": {"near": False},
                       "filters": {"min_lines": 1}},
            "judge": {"judges": ["heuristic"], "heuristic": {"threshold": 0.5}},
            "classify": {"embedder": "hashing-256", "n_estimators": 10, "test_fraction": 0.3},
            "filter": {"threshold": 0.0},
            "exercises": {"source": "corpus", "teacher": "t", "min_tests": 3,
                          "corpus": {"rewrite_docstring": True, "inputs": 10, "per_call_s": 0.2}},
        })
        run_pipeline(cfg, tmp_path / "run")
    kept = {r["entry_point"]: r for r in Dataset(tmp_path / "run" / "exercises").iter_records()}
    add = kept["add_numbers"]
    assert '"""Return the sum of a and b."""' in add["prompt"] and add["completion"] == "    return a + b\n"
    note = json.loads(add["provenance"])["synth"]["docstring_rewrite"]
    assert "Add two numbers." in note["original_prompt"] and "kept_original" not in note
    clamp = json.loads(kept["clamp"]["provenance"])["synth"]["docstring_rewrite"]
    assert clamp["kept_original"] == "holds code" and "Clamp x" in kept["clamp"]["prompt"]
