"""N-gram overlap on normalized tokens, with n-grams too common to mean anything ignored.

Normalized tokens are the words of the text, lower-cased: identifiers, keywords, numbers and the
words inside strings and comments; punctuation and whitespace are dropped. A verbatim copy of a
docstring or of a solution therefore shares long n-grams with the benchmark whatever its
formatting, while code with renamed variables does not (that is the AST signal's job).

An n-gram is ignored (neither indexed nor counted) when

* it occurs in more than ``max_problems`` benchmark problems (``def check candidate assert
  candidate ...`` is in every HumanEval test), or
* fewer than ``min_content`` of its tokens are content words: a stop-list of Python keywords,
  common builtins, test boilerplate and one-character names makes up the rest
  (``for i in range len n``: every program has it).
"""

from __future__ import annotations

import keyword
import re
from collections import defaultdict
from collections.abc import Iterable

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")

STOP_TOKENS = frozenset(
    [k.lower() for k in keyword.kwlist]
    + """self cls args kwargs print len range int str float bool list dict set tuple enumerate zip map
    filter sorted sum min max abs append extend pop join split strip items keys values get isinstance
    type object return none true false typing import from list optional any union check candidate
    assert metadata author dataset test tests the a an of to is in and or if for it be that this with
    as on by are""".split()
)


def tokens(text: str) -> list[str]:
    """Lower-cased words and numbers of ``text`` (see the module docstring)."""
    return [t.lower() for t in _WORD.findall(text)]


def ngrams(toks: list[str], n: int) -> set[str]:
    """Distinct n-grams of a token list, joined by spaces."""
    return {" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def is_content(token: str) -> bool:
    return len(token) > 1 and not token.isdigit() and token not in STOP_TOKENS


class NgramIndex:
    """Which benchmark problems each informative n-gram occurs in."""

    def __init__(self, n: int = 13, max_problems: int = 3, min_content: int = 3):
        self.n = n
        self.max_problems = max_problems
        self.min_content = min_content
        self.postings: dict[str, list[int]] = {}
        self.problem_ngrams: list[int] = []
        self.ignored_common = 0
        self.ignored_boilerplate = 0

    def informative(self, gram: str) -> bool:
        return sum(is_content(t) for t in gram.split(" ")) >= self.min_content

    def build(self, problem_texts: Iterable[Iterable[str]]) -> NgramIndex:
        """``problem_texts[k]``: the reference texts (prompt, solution, tests) of problem k."""
        where: dict[str, set[int]] = defaultdict(set)
        count = 0
        for k, texts in enumerate(problem_texts):
            grams: set[str] = set()
            for text in texts:
                grams |= ngrams(tokens(text), self.n)
            for g in grams:
                where[g].add(k)
            count = k + 1
        per_problem = [0] * count
        for g, probs in where.items():
            if len(probs) > self.max_problems:
                self.ignored_common += 1
            elif not self.informative(g):
                self.ignored_boilerplate += 1
            else:
                self.postings[g] = sorted(probs)
                for k in probs:
                    per_problem[k] += 1
        self.problem_ngrams = per_problem
        return self

    def hits(self, text: str) -> dict[int, int]:
        """{problem index: number of distinct indexed n-grams of ``text`` it shares}."""
        out: dict[int, int] = defaultdict(int)
        postings = self.postings
        for g in ngrams(tokens(text), self.n):
            probs = postings.get(g)
            if probs:
                for k in probs:
                    out[k] += 1
        return dict(out)


def shared_passage(index: NgramIndex, text: str, problem: int, context: int = 80) -> str:
    """The passage of ``text`` around its first indexed n-gram shared with ``problem`` (the evidence shown).

    Words are found again with their character spans, so the passage is the sample's own text (its
    formatting and case), not the normalized tokens; ``context`` characters are kept on either side.
    """
    spans = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
    n = index.n
    for i in range(len(spans) - n + 1):
        gram = " ".join(t for _, _, t in spans[i : i + n])
        if problem in index.postings.get(gram, ()):
            start, end = spans[i][0], spans[i + n - 1][1]
            return text[max(0, start - context) : end + context]
    return ""
