"""Mined tests are the same text run to run: sets (results and generated inputs) print in sorted order,
whatever the hash seed of the host or of the sandbox (issue 24, item 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from textbooklm.synth.stable_repr import STABLE_REPR_SOURCE, stable_repr

ROOT = Path(__file__).resolve().parents[2]
SET_MODULE = '''
def vowels_in(text: str) -> set:
    """The distinct vowels of a text, as a set."""
    found = set()
    for ch in text.lower():
        if ch in "aeiou":
            found.add(ch)
    return found


def shout_all(words: set[str]) -> list:
    """Every word upper-cased, sorted."""
    out = [w.upper() for w in words]
    return sorted(out)
'''
MINE = f'''
import json
from textbooklm.sandbox import Limits, SandboxPool
from textbooklm.synth.corpus_exercises import mine_round
with SandboxPool(Limits(timeout_s=5.0), workers=1) as pool:
    kept, rejected, _ = mine_round(0, [{{"id": "f", "text": {SET_MODULE!r}, "path": "sets.py"}}], min_tests=2,
                                   inputs_per_function=10, per_call_s=0.5, min_lines=3, max_lines=60,
                                   max_per_file=10, sandbox=pool, seed=0)
print(json.dumps({{r["entry_point"]: r["test"] for r in kept}}))
'''


def _mined_tests(hash_seed: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", MINE], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_mined_set_valued_result_gives_the_same_test_under_two_hash_seeds():
    first, second = _mined_tests("1"), _mined_tests("2")
    assert set(first) == {"vowels_in", "shout_all"}
    assert "{'a', 'e', 'o'}" in first["vowels_in"] or "{'e', 'o'}" in first["vowels_in"]  # sorted set literal
    assert first == second


def test_the_probe_repr_is_sorted_in_every_interpreter():
    """The very source the probe runs, in fresh interpreters with different hash seeds."""
    code = STABLE_REPR_SOURCE + "print(stable_repr([{'pear', 'apple', 'fig', 'kiwi'}, {'b': 1, 'a': {'y', 'x'}}]))"
    texts = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": s},
                            capture_output=True, text=True, check=True).stdout for s in ("1", "2", "3")}
    assert texts == {"[{'apple', 'fig', 'kiwi', 'pear'}, {'a': {'x', 'y'}, 'b': 1}]\n"}


def test_stable_repr_round_trips_literals():
    import ast

    for v in [{3, 1, 2}, set(), (1,), (), {"k": [1, {2}]}, [None, True, 1.5, b"x"], "s"]:
        assert ast.literal_eval(stable_repr(v)) == v
    assert stable_repr(frozenset({2, 1})) == "frozenset({1, 2})"
