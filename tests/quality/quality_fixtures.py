"""A small code corpus with clearly educational and clearly non-educational files, varied enough that
exact and near dedup keep them all."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ["total", "price", "count", "name", "score", "items", "values", "result", "width", "height",
         "speed", "distance", "balance", "rate", "index", "limit", "amount", "weight", "level", "label"]


def good_file(i: int, rng: random.Random) -> str:
    a, b, c = rng.sample(WORDS, 3)
    return f'''"""Lesson {i}: computing the {a} from {b} and {c}, step by step."""


def compute_{a}_{i}({b}: float, {c}: float) -> float:
    """Return the {a} for the given {b} and {c}.

    >>> compute_{a}_{i}(2, 3) > 0
    True
    """
    # Multiply first, then add, so the order of operations is explicit.
    product = {b} * {c}
    return product + {i}


def describe_{a}_{i}({b}: float) -> str:
    """Explain the {a} in words (useful when printing results for a reader)."""
    # A formatted string keeps the message readable.
    return f"The {a} is {{{b}:.2f}}"


if __name__ == "__main__":
    print(describe_{a}_{i}(compute_{a}_{i}({rng.randint(1, 9)}, {rng.randint(1, 9)})))
'''


def bad_file(i: int, rng: random.Random) -> str:
    if i % 2:
        rows = "".join(f"    ({rng.randint(0, 10**6)}, {rng.random():.6f}, '{rng.choice(WORDS)}{j}'),\n"
                       for j in range(40))
        return f"# Lookup table {i}.\nDATA_{i} = [\n{rows}]\n"
    body = "".join(f"    q{j}=a*{rng.randint(2, 99)}+b-{j}\n" for j in range(30))
    return f"def f{i}(a,b):\n{body}    return q0\n"


def make_corpus_folder(root: Path, n_good: int = 30, n_bad: int = 30, seed: int = 0) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_good):
        (root / f"good_{i:03d}.py").write_text(good_file(i, rng))
    for i in range(n_bad):
        (root / f"bad_{i:03d}.py").write_text(bad_file(i, rng))
    return root


def base_config(folder: Path, **sections) -> dict:
    return {
        "run": {"workers": 1, "seed": 0},
        "corpus": {"files_per_shard": 10, "sources": [{"kind": "folder", "path": str(folder)}],
                   "dedup": {"near": False}},
        **sections,
    }
