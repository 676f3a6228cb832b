"""The issue's required behaviour, against the real bundled HumanEval."""

from __future__ import annotations

import pytest

from textbooklm.code_tasks import load_problems
from textbooklm.decontam.benchmarks import load_references
from textbooklm.decontam.config import DecontamConfig
from textbooklm.decontam.index import ContaminationIndex, Sample
from textbooklm.decontam.ngrams import NgramIndex, tokens
from textbooklm.decontam.report import tau_table
from textbooklm.embeddings import load_embedder

# HumanEval/144's solution with every variable renamed and both pairs of independent statements swapped.
RENAMED_REORDERED = '''def is_whole_product(frac_one, frac_two):
    top2, bottom2 = frac_two.split("/")
    top1, bottom1 = frac_one.split("/")
    lower = int(bottom1) * int(bottom2)
    upper = int(top1) * int(top2)
    if (upper/lower == int(upper/lower)):
        return True
    return False
'''

UNRELATED = '''def word_histogram(path):
    counts = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            for word in line.lower().split():
                counts[word] = counts.get(word, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked[:10]
'''


def _docstring(task_id: str) -> str:
    prompt = next(p.prompt for p in load_problems("humaneval") if p.task_id == task_id)
    return prompt.split('"""')[1]


@pytest.fixture(scope="module")
def index() -> ContaminationIndex:
    cfg = DecontamConfig(embedder="hashing")
    return ContaminationIndex(load_references(cfg), cfg, load_embedder("hashing"))


def test_renamed_and_reordered_solution_is_caught_by_ast_not_by_13grams(index):
    # The sample really is renamed: no 13-gram of its normalized tokens occurs in the problem.
    row = index.check([Sample("s", RENAMED_REORDERED)])[0]
    assert row["ngram_hits"] == 0
    assert row["ast_problem"] == "HumanEval/144"
    assert row["ast_tau"] >= 0.95
    assert (row["decision"], row["signal"], row["problem_id"]) == ("remove", "ast", "HumanEval/144")


def test_verbatim_docstring_is_caught_by_13grams(index):
    doc = _docstring("HumanEval/144")
    sample = f"def my_helper(q):\n    '''{doc}'''\n    return q\n"
    row = index.check([Sample("d", sample)])[0]
    assert row["ngram_problem"] == "HumanEval/144"
    assert row["ngram_hits"] >= 5
    assert (row["decision"], row["signal"]) == ("remove", "ngram")
    assert row["ast_tau"] is None  # the wrapper function is tiny: only the text gives it away


def test_unrelated_function_is_not_flagged(index):
    row = index.check([Sample("u", UNRELATED)])[0]
    assert row["decision"] == "keep"
    assert row["matches"] == []
    assert row["ngram_hits"] == 0
    assert row["ast_tau"] is None or row["ast_tau"] < 0.8


def test_common_ngrams_are_ignored():
    idx = NgramIndex(n=5, max_problems=1, min_content=2).build([
        ["shared words appear in both problems here", "alpha beta gamma delta epsilon"],
        ["shared words appear in both problems here", "zeta eta theta iota kappa"],
        ["for i in range len n for j"],
    ])
    assert idx.hits("shared words appear in both problems here") == {}
    assert idx.hits("alpha beta gamma delta epsilon") == {0: 1}
    assert idx.hits("for i in range len n for j") == {}  # boilerplate: too few content tokens
    assert idx.ignored_common >= 1 and idx.ignored_boilerplate >= 1
    assert tokens("Foo(bar_1, 'Baz')") == ["foo", "bar_1", "baz"]


def _mutants() -> list[Sample]:
    """Samples at graded distances from real solutions: exact, renamed, edited more and more."""
    out = []
    for p in load_problems("humaneval")[:60]:
        body = p.canonical_solution
        out.append(Sample(f"{p.task_id}/copy", p.prompt + body))
        out.append(Sample(f"{p.task_id}/edit1", "def f(a, b=None):\n" + body.replace("return", "x = 0\n    return", 1)
                          if body.startswith("    ") else p.prompt + body))
        lines = body.splitlines()
        out.append(Sample(f"{p.task_id}/half", "def f(a, b):\n" + "\n".join(lines[: max(1, len(lines) // 2)]) +
                          "\n    return None\n"))
    return out


def test_thresholds_are_monotonic():
    samples = _mutants()
    removed = {}
    for tau in (0.95, 0.9, 0.85, 0.8, 0.7):
        cfg = DecontamConfig(embedder="hashing", ast_threshold=tau, ngram_min_hits=None, embedding_threshold=0.9,
                             report_taus=[0.95, 0.9, 0.85, 0.8])
        rows = ContaminationIndex(load_references(cfg), cfg, load_embedder("hashing")).check(samples)
        removed[tau] = {r["id"] for r in rows if r["decision"] == "remove" and r["signal"] == "ast"}
    assert removed[0.95] <= removed[0.9] <= removed[0.85] <= removed[0.8] <= removed[0.7]
    assert len(removed[0.7]) > len(removed[0.95]) > 0
    # n-gram hit thresholds (a fixed n; shorter n is not monotonic: more of its n-grams are boilerplate).
    cfg = DecontamConfig(embedder="hashing", ast_threshold=None)
    rows = ContaminationIndex(load_references(cfg), cfg, None).check(samples[:60])
    hit = [{r["id"] for r in rows if r["ngram_hits"] >= k} for k in (20, 5, 1)]
    assert hit[0] <= hit[1] <= hit[2] and hit[0]
    # embedding cosine thresholds.
    cfg = DecontamConfig(embedder="hashing", ngram_min_hits=None, ast_threshold=None, embedding_report=0.5)
    rows = ContaminationIndex(load_references(cfg), cfg, load_embedder("hashing")).check(samples[:60])
    by = [{r["id"] for r in rows if r["embedding_cosine"] >= t} for t in (0.99, 0.9, 0.7)]
    assert by[0] <= by[1] <= by[2] and by[0]


def test_indexed_search_decides_like_exhaustive_comparison(index):
    samples = _mutants()[:45] + [Sample("u", UNRELATED), Sample("s", RENAMED_REORDERED)]
    fast = index.check(samples)
    before = index.pairs_computed
    slow = index.check(samples, exhaustive=True)
    exhaustive_pairs = index.pairs_computed - before
    assert [r["decision"] for r in fast] == [r["decision"] for r in slow]
    assert [r["matches"] for r in fast] == [r["matches"] for r in slow]
    assert before < exhaustive_pairs / 5


def test_a_one_statement_ast_match_does_not_decide_alone(index):
    # The demo's only removal: a one-line __eq__ with HumanEval/54's shape (return set(a) == set(b)).
    eq = "class Bag(list):\n    def __eq__(self, other):\n        return set(self) == set(other)\n"
    row = index.check([Sample("eq", eq)])[0]
    assert (row["ast_problem"], row["ast_tau"]) == ("HumanEval/54", 1.0)
    assert row["decision"] == "keep" and "1 statement(s) < ast_min_statements 3" in row["held_back"]
    assert row["pair"]["held_back"] and row["pair"]["training_snippet"].startswith("def __eq__")
    # The pruning table follows the same rule: the held-back match removes nothing at any tau.
    table = tau_table([row], ["HumanEval/54"], n_samples=1, ast_min_statements=3)
    assert all(t["removed"] == 0 and t["similar_problems"] == [] for t in table["taus"])
    assert tau_table([row], ["HumanEval/54"], n_samples=1)["taus"][0]["removed"] == 1  # without the rule
    # With another signal on the same problem (its docstring copied), the same function is removed.
    copied = f"def same(s0, s1):\n    '''{_docstring('HumanEval/54')}'''\n    return set(s0) == set(s1)\n"
    row = index.check([Sample("copy", copied)])[0]
    assert (row["decision"], row["problem_id"]) == ("remove", "HumanEval/54")
    assert row["pair"]["problem_text"].startswith("\n\ndef same_chars") and row["pair"]["training_snippet"]
    # And a larger function still decides by its AST alone (RENAMED_REORDERED has 6 statements).
    cfg = DecontamConfig(embedder="hashing", ast_min_statements=1)
    loose = ContaminationIndex(load_references(cfg), cfg, None).check([Sample("eq", eq)])[0]
    assert (loose["decision"], loose["signal"]) == ("remove", "ast")
