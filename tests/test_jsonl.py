"""The one JSONL reader: all or nothing, every bad line named with file:line and the full reason.

Also the two commands that read JSONL input (``sandbox run``, ``decontam check``) run for real in a
child process: a bad file must exit 2 listing every bad line, and must not write a result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from textbooklm.jsonl import MAX_LISTED, JsonlError, parse_jsonl, read_jsonl


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_good_file_gives_every_record_with_its_line(tmp_path):
    path = write_lines(tmp_path / "ok.jsonl", [b'{"id": 1}', b"", b"  ", b'{"id": 2}'])
    assert read_jsonl(path) == [(f"{path}:1", {"id": 1}), (f"{path}:4", {"id": 2})]


def test_every_bad_line_is_listed_at_once(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [
        b'{"id": "a", "code": "x = 1"}',
        b'{"id": "b" "code": "x"}',  # missing comma
        b'{"id": "c", "code": "caf\xe9"}',  # Latin-1 byte, not UTF-8
        b'{"id": "d", "code": "return \\"\\ud800\\""}',  # lone surrogate escape
        b'{"id": "a", "code": "again"}',  # duplicate id
        b'{"id": "e", "code": "ok"}',
    ])
    with pytest.raises(JsonlError) as info:
        read_jsonl(path, id_key="id")
    err = info.value
    assert err.problems == [
        f"{path}:2: not valid JSON (Expecting ',' delimiter at column 12, char 11; "
        "near '{\"id\": \"b\" \"code\": \"x\"}')",
        f"{path}:3: not valid UTF-8 (invalid continuation byte at byte 24 of the line: b'\\xe9')",
        f"{path}:4: invalid Unicode: [\"code\"]: lone surrogate U+D800 at character 8 "
        "(a JSON escape such as \\ud800 with no pair)",
        f"{path}:5: duplicate id 'a' (first at line 1)",
    ]
    assert str(err).startswith(f"{path}: 4 bad lines of 6; nothing was used:\n  {path}:2: not valid JSON")


def test_long_json_error_detail_is_not_cut_short(tmp_path):
    code = "x" * 5000
    path = write_lines(tmp_path / "long.jsonl", [json.dumps({"id": 1, "code": code}).encode()[:-1] + b" oops}"])
    with pytest.raises(JsonlError) as info:
        read_jsonl(path)
    [problem] = info.value.problems
    assert "Expecting ',' delimiter at column 5022, char 5021" in problem and "oops" in problem


def test_builder_errors_are_collected_with_the_rest(tmp_path):
    path = write_lines(tmp_path / "b.jsonl", [b'{"n": 1}', b'{"n": "two"}', b"[1", b'{"n": "three"}'])

    def build(where, rec):
        if not isinstance(rec.get("n"), int):
            raise ValueError(f"{where}: n must be a number")
        return rec["n"]

    with pytest.raises(JsonlError) as info:
        parse_jsonl(path, build)
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in info.value.problems] == ["2", "3", "4"]
    assert info.value.problems[0] == f"{path}:2: n must be a number"


def test_a_file_of_garbage_lists_the_first_problems_and_counts_the_rest(tmp_path):
    path = write_lines(tmp_path / "g.jsonl", [b"garbage"] * (MAX_LISTED + 5))
    with pytest.raises(JsonlError) as info:
        read_jsonl(path)
    assert len(info.value.problems) == MAX_LISTED + 5
    assert str(info.value).endswith("... and 5 more")


def test_missing_file_and_folder_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="nope.jsonl: no such file"):
        read_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="cannot read"):
        read_jsonl(tmp_path)


BAD_INPUT = [
    b'{"id": "p1", "code": "print(1)"}',
    b'{"id": "p2", "code": "print(2)"',
    b'{"id": "p3", "code": "print(\'\xff\')"}',
    b'{"id": "p1", "code": "print(3)"}',
    b'{"id": "p4", "code": "s = \\"\\udc00\\""}',
]


def _expect_refused(proc: subprocess.CompletedProcess, path: Path, out: Path) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    text = " ".join((proc.stdout + proc.stderr).split())  # rich may wrap long lines
    for line in (2, 3, 4, 5):
        assert f"{path}:{line}:" in text.replace(" ", "") or f"{path}:{line}:" in text, (line, text)
    assert "duplicate id 'p1' (first at line 1)" in text
    assert "Traceback" not in text
    assert not out.exists()  # never half a batch


@pytest.mark.timeout(120)
def test_sandbox_run_refuses_a_bad_file_listing_every_bad_line(tmp_path):
    path = write_lines(tmp_path / "progs.jsonl", BAD_INPUT)
    out = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, "-m", "textbooklm.cli", "sandbox", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=100)
    _expect_refused(proc, path, out)


@pytest.mark.timeout(120)
def test_decontam_check_refuses_a_bad_file_listing_every_bad_line(tmp_path):
    path = write_lines(tmp_path / "samples.jsonl", BAD_INPUT)
    out = tmp_path / "matches.jsonl"
    proc = subprocess.run([sys.executable, "-m", "textbooklm.cli", "decontam", "check", str(path), "--out", str(out),
                           "--embedder", "hashing"], capture_output=True, text=True, timeout=100,
                          env={"COLUMNS": "400", **__import__("os").environ})
    _expect_refused(proc, path, out)
    assert "TypeError" not in proc.stderr


def test_decontam_report_names_every_bad_matches_line(tmp_path):
    from textbooklm.decontam.cli import load_report

    path = write_lines(tmp_path / "matches.jsonl", [b'{"id": "a", "matches": []}', b'{"id": "b"}', b"\xff"])
    with pytest.raises(JsonlError) as info:
        load_report(path, ["humaneval"], [], None, 1)
    assert info.value.problems == [
        f"{path}:2: not a row written by `decontam check` (no \"matches\")",
        f"{path}:3: not valid UTF-8 (invalid start byte at byte 0 of the line: b'\\xff')",
    ]
