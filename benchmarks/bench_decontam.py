"""Decontamination: indexed candidate search vs exhaustive pairwise AST comparison, against HumanEval.

20,000 generated code samples (mutated and composed functions: renamed variables, swapped
statements, inserted lines, changed operators, functions glued together, plus near copies of
HumanEval solutions) are checked with the candidate index (exact label-count bound on tau). The
anchor computes the tree edit distance of every sample function against every HumanEval function
(what the AST signal would cost without an index), on a subsample; both must make identical
decisions there. Prints each side's samples/s and the ratio last.

    .venv/bin/python benchmarks/bench_decontam.py [--samples 20000] [--subsample 40]
"""

from __future__ import annotations

import argparse
import random
import re
import time

from textbooklm.code_tasks import load_problems
from textbooklm.decontam.benchmarks import load_references
from textbooklm.decontam.config import DecontamConfig
from textbooklm.decontam.index import ContaminationIndex, Sample

NAMES = ["data", "items", "values", "result", "acc", "total", "count", "idx", "node", "key", "val", "buf", "tmp"]
BODIES = [
    "    {a} = []\n    for {b} in {c}:\n        if {b} % 2 == 0:\n            {a}.append({b} * {b})\n    return {a}\n",
    "    {a} = 0\n    {b} = 1\n    while {b} < {c}:\n        {a} += {b}\n        {b} *= 2\n    return {a}\n",
    "    {a} = {{}}\n    for {b} in {c}:\n        {a}[{b}] = {a}.get({b}, 0) + 1\n    return max({a}, key={a}.get)\n",
    "    if not {c}:\n        return None\n    {a} = sorted({c})\n    {b} = len({a}) // 2\n    return {a}[{b}]\n",
    "    {a} = ''\n    for {b} in str({c}):\n        if {b}.isalpha():\n"
    "            {a} += {b}.upper()\n    return {a}\n",
    "    try:\n        {a} = int({c})\n    except ValueError:\n        {a} = -1\n    return {a} * 3 - 1\n",
]


def mutate(code: str, rng: random.Random) -> str:
    """Rename identifiers, maybe tweak an operator or insert a statement (keeps it parseable)."""
    words = sorted(set(re.findall(r"\b[a-z_][a-z0-9_]*\b", code)) - {"def", "return", "for", "in", "if", "else",
                   "while", "not", "and", "or", "len", "range", "int", "str", "sorted", "max", "min", "try",
                   "except", "none", "true", "false", "import", "from", "lambda", "elif", "is", "with", "as"})
    mapping = {w: f"{w}_{rng.randint(0, 99)}" for w in words if rng.random() < 0.7}
    code = re.sub(r"\b[a-z_][a-z0-9_]*\b", lambda m: mapping.get(m.group(0), m.group(0)), code)
    if rng.random() < 0.3:
        code = code.replace(" + ", " - ", 1)
    return code


def generate(n: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    problems = load_problems("humaneval")
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.05:  # a near copy of a HumanEval solution
            p = rng.choice(problems)
            code = mutate(p.prompt.split('"""')[0].rstrip() + "\n" + p.canonical_solution, rng)
        else:
            k = 1 if r < 0.8 else rng.randint(2, 3)  # some samples compose several functions
            parts = []
            for _ in range(k):
                a, b, c = rng.sample(NAMES, 3)
                body = rng.choice(BODIES).format(a=a, b=b, c=c)
                if rng.random() < 0.5:
                    body = f"    {rng.choice(NAMES)}_log = {rng.randint(0, 9)}\n" + body
                parts.append(f"def f{i}_{len(parts)}({c}, {rng.choice(NAMES)}x=None):\n" + body)
            code = mutate("\n\n".join(parts), rng)
        out.append(Sample(f"s{i}", code))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--subsample", type=int, default=40)
    ap.add_argument("--embedder", default="hashing")
    args = ap.parse_args()
    cfg = DecontamConfig(embedder=args.embedder)
    from textbooklm.embeddings import load_embedder

    index = ContaminationIndex(load_references(cfg), cfg, load_embedder(cfg.embedder))
    samples = generate(args.samples)

    t0 = time.perf_counter()
    rows = []
    for start in range(0, len(samples), 500):
        rows += index.check(samples[start : start + 500])
    indexed_s = time.perf_counter() - t0
    removed = sum(r["decision"] == "remove" for r in rows)
    print(f"indexed: {len(samples)} samples in {indexed_s:.1f} s = {len(samples) / indexed_s:,.1f} samples/s "
          f"({index.pairs_computed} AST pairs, {removed} removed)")

    # Anchor on a subsample that includes near copies (the interesting decisions) and ordinary samples.
    near = [i for i, r in enumerate(rows) if r["decision"] == "remove"]
    rng = random.Random(1)
    pick = sorted(set(rng.sample(near, min(len(near), args.subsample // 4)))
                  | set(rng.sample(range(len(samples)), args.subsample - min(len(near), args.subsample // 4))))
    sub = [samples[i] for i in pick]
    t0 = time.perf_counter()
    fast = index.check(sub)
    fast_s = time.perf_counter() - t0
    before = index.pairs_computed
    t0 = time.perf_counter()
    slow = index.check(sub, exhaustive=True)
    slow_s = time.perf_counter() - t0
    same = all((a["decision"], a["signal"], a["problem_id"], a["matches"]) ==
               (b["decision"], b["signal"], b["problem_id"], b["matches"]) for a, b in zip(fast, slow, strict=True))
    print(f"exhaustive: {len(sub)} samples in {slow_s:.1f} s = {len(sub) / slow_s:,.2f} samples/s "
          f"({index.pairs_computed - before} AST pairs); indexed on the same subsample: {len(sub) / fast_s:,.1f}/s")
    print(f"identical decisions on the subsample: {same} "
          f"({sum(r['decision'] == 'remove' for r in slow)} of {len(sub)} removed)")
    if not same:
        raise SystemExit("decisions differ between indexed and exhaustive search")
    rate_indexed = len(samples) / indexed_s
    print(f"decontam: {rate_indexed / (len(sub) / slow_s):,.0f}x exhaustive pairwise AST "
          f"({len(samples)} samples vs HumanEval, {args.embedder} embedder, 1 process)")


if __name__ == "__main__":
    main()
