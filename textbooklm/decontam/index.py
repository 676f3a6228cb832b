"""The contamination index: every signal against every benchmark problem, for batches of samples.

Cheap signals run on every sample (n-gram postings lookup, one embedding matrix product). The AST
match rate is exact but costs a tree edit distance per pair (~100 pairs/s in pure Python), so it is
computed only for candidate pairs the shape index lets through: a matrix of label counts of all
benchmark functions gives, for a sample function, an upper bound on tau against every benchmark
function in one vectorized ``minimum().sum()`` (see ``trees.match_rate_upper_bound``). Because the
bound is exact, no pair that could reach the lowest threshold of interest is ever skipped, so the
decisions are identical to exhaustive pairwise comparison (the benchmark checks this).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from textbooklm.decontam.benchmarks import Reference
from textbooklm.decontam.config import DecontamConfig
from textbooklm.decontam.ngrams import NgramIndex, shared_passage
from textbooklm.decontam.trees import FunctionTree, function_trees, match_rate, parse_functions
from textbooklm.embeddings import Embedder

MAX_EMBED_UNITS = 8  # functions embedded per sample (the rest are still compared by n-grams and AST)
EMBED_CHARS = 4000  # a text without functions is embedded from its first characters


@dataclass
class Sample:
    id: str
    text: str


PAIR_CHARS = 1500  # characters of each side of a matched pair kept as evidence


@dataclass(frozen=True)
class AstMatch:
    """A sample's best AST match against one problem: its rate, the sample function, the smaller body."""

    tau: float
    function: str
    statements: int  # statements of the smaller of the two functions
    source: str  # the sample function's text (the evidence)


class ContaminationIndex:
    """Built once per process from the benchmark references; ``check`` scores batches of samples."""

    def __init__(self, refs: Sequence[Reference], cfg: DecontamConfig, embedder: Embedder | None,
                 source_files: dict[str, str] | None = None):
        """``source_files``: {corpus record id: problem id} of held-out exercises' source files (signal ``source``)."""
        self.cfg = cfg
        self.refs = list(refs)
        self.ids = [r.problem_id for r in self.refs]
        position = {pid: k for k, pid in enumerate(self.ids)}
        self.source_files = {rid: position[pid] for rid, pid in (source_files or {}).items() if pid in position}
        self.ngrams = NgramIndex(cfg.ngram, cfg.ngram_max_problems, cfg.ngram_min_content).build(
            r.texts for r in self.refs
        )
        self.embedder = embedder
        if embedder is not None:
            texts = [t for r in self.refs for t in (r.code, r.texts[2])]
            self.ref_vectors = embedder.embed(texts)
            self.ref_problem = np.repeat(np.arange(len(self.refs)), 2)
        # Shape index: one row of label counts per benchmark function.
        self.functions: list[FunctionTree] = [f for r in self.refs for f in r.functions]
        self.function_problem = np.array([k for k, r in enumerate(self.refs) for _ in r.functions], dtype=np.int64)
        vocab = sorted({lab for f in self.functions for lab in f.counts})
        self.vocab = {lab: i for i, lab in enumerate(vocab)}
        self.shape = np.zeros((len(self.functions), len(vocab)), dtype=np.int32)
        for row, f in enumerate(self.functions):
            for lab, n in f.counts.items():
                self.shape[row, self.vocab[lab]] = n
        self.sizes = np.array([f.size for f in self.functions], dtype=np.int64)
        self.pairs_computed = 0

    # -- signals --------------------------------------------------------------------------------
    def ast_candidates(self, tree: FunctionTree, floor: float) -> np.ndarray:
        """Benchmark functions whose exact upper bound on tau against ``tree`` reaches ``floor``."""
        if not len(self.functions):
            return np.zeros(0, dtype=np.int64)
        vec = np.zeros(len(self.vocab), dtype=np.int32)
        for lab, n in tree.counts.items():
            col = self.vocab.get(lab)
            if col is not None:
                vec[col] = n
        common = np.minimum(self.shape, vec).sum(axis=1)
        bound = common / np.maximum(self.sizes, tree.size)
        return np.flatnonzero(bound >= floor - 1e-9)

    def ast_scores(self, trees: list[FunctionTree], exhaustive: bool = False) -> dict[int, AstMatch]:
        """{problem index: its best match} over candidate (or all) pairs."""
        best: dict[int, AstMatch] = {}
        floor = self.cfg.ast_floor
        for tree in trees:
            cand = range(len(self.functions)) if exhaustive else self.ast_candidates(tree, floor)
            for f in cand:
                ref = self.functions[f]
                tau = match_rate(tree, ref)
                self.pairs_computed += 1
                k = int(self.function_problem[f])
                if k not in best or tau > best[k].tau:
                    best[k] = AstMatch(tau, tree.name, min(tree.statements, ref.statements), tree.source)
        return best

    def embed_units(self, samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
        """Embedding rows for each sample's functions (or its text when it has none)."""
        texts: list[str] = []
        owner: list[int] = []
        for s_idx, s in enumerate(samples):
            units = [src for _, src in parse_functions(s.text, MAX_EMBED_UNITS) if src.strip()]
            for u in units or [s.text[:EMBED_CHARS]]:
                texts.append(u)
                owner.append(s_idx)
        assert self.embedder is not None
        return self.embedder.embed(texts), np.array(owner, dtype=np.int64)

    # -- all signals, one decision per sample -------------------------------------------------
    def check(self, samples: Sequence[Sample], exhaustive: bool = False) -> list[dict[str, Any]]:
        """One result dict per sample (see ``result_row`` for the keys)."""
        cfg = self.cfg
        cos_best: list[tuple[float, int]] = [(0.0, -1)] * len(samples)
        cos_all: list[dict[int, float]] = [{} for _ in samples]
        if self.embedder is not None and samples:
            vecs, owner = self.embed_units(samples)
            sims = vecs @ self.ref_vectors.T  # [units, refs]
            per_problem = np.full((len(vecs), len(self.refs)), -1.0, dtype=np.float32)
            np.maximum.at(per_problem.T, self.ref_problem, sims.T)
            for s_idx in range(len(samples)):
                rows = per_problem[owner == s_idx]
                if not len(rows):
                    continue
                sample_best = rows.max(axis=0)
                k = int(sample_best.argmax())
                cos_best[s_idx] = (float(sample_best[k]), k)
                listed = np.flatnonzero(sample_best >= cfg.embedding_report)
                cos_all[s_idx] = {int(j): float(sample_best[j]) for j in listed}
        results = []
        for s_idx, s in enumerate(samples):
            text = s.text[: cfg.max_chars]
            hits = self.ngrams.hits(text)
            trees = function_trees(text, cfg.ast_min_nodes, cfg.ast_max_nodes, cfg.max_functions)
            ast_best = self.ast_scores(trees, exhaustive)
            row = self.result_row(s, hits, cos_best[s_idx], cos_all[s_idx], ast_best, len(trees))
            row["pair"] = self.pair(row, text, ast_best)
            results.append(row)
        return results

    def pair(self, row: dict[str, Any], text: str, ast_best: dict[int, AstMatch]) -> dict[str, Any] | None:
        """The evidence of a decision: the training passage and the benchmark problem it matched.

        Written for every removal, and for an AST match at the threshold that was held back as too small
        (so a reader sees why it was not removed). None for a sample nothing decided about.
        """
        signal, pid = row["signal"], row["problem_id"]
        if signal is None and row.get("held_back") is None:
            return None
        if signal is None:
            signal, pid = "ast", row["ast_problem"]
        k = self.ids.index(pid)
        if signal == "ngram":
            snippet, score = shared_passage(self.ngrams, text, k), row["ngram_hits"]
        elif signal == "ast":
            snippet, score = ast_best[k].source, row["ast_tau"]
        elif signal == "source":  # the file: shown from the held-out function's definition on
            snippet, score = _from_definition(text, self.refs[k].code), 1.0
        else:
            snippet, score = text[:EMBED_CHARS], row["embedding_cosine"]
        ref = self.refs[k]
        return {"signal": signal, "score": score, "problem_id": pid, "benchmark": ref.benchmark,
                "problem_text": ref.code[:PAIR_CHARS], "training_snippet": snippet[:PAIR_CHARS],
                "decision": row["decision"], "held_back": row.get("held_back")}

    def result_row(self, s: Sample, hits: dict[int, int], cos: tuple[float, int], cos_listed: dict[int, float],
                   ast_best: dict[int, AstMatch], n_functions: int) -> dict[str, Any]:
        cfg = self.cfg
        row: dict[str, Any] = {"id": s.id, "n_functions": n_functions}
        # n-grams: the problem sharing the most informative n-grams.
        if hits:
            k = max(hits, key=lambda j: (hits[j], -j))
            row.update(ngram_problem=self.ids[k], ngram_hits=hits[k],
                       ngram_overlap=round(hits[k] / max(self.ngrams.problem_ngrams[k], 1), 4))
        else:
            row.update(ngram_problem=None, ngram_hits=0, ngram_overlap=0.0)
        row.update(embedding_problem=self.ids[cos[1]] if cos[1] >= 0 else None,
                   embedding_cosine=round(cos[0], 4))
        ast_raw, ast_k = None, -1
        if ast_best:
            ast_k = max(ast_best, key=lambda j: (ast_best[j].tau, -j))
            ast_raw = ast_best[ast_k].tau
            row.update(ast_problem=self.ids[ast_k], ast_tau=round(ast_raw, 4), ast_function=ast_best[ast_k].function)
        else:
            row.update(ast_problem=None, ast_tau=None, ast_function=None)
        # Every (problem, signal, score) at or above its reporting level: the pruning report needs all
        # of them, not only the closest, to say which problems have a similar training sample.
        matches = [[self.ids[k], "ngram", n] for k, n in sorted(hits.items())]
        matches += [[self.ids[k], "embedding", round(c, 4)] for k, c in sorted(cos_listed.items())]
        # An AST match carries the smaller function's statement count: the pruning report applies the
        # same ast_min_statements rule as the decision.
        matches += [[self.ids[k], "ast", round(m.tau, 4), m.statements] for k, m in sorted(ast_best.items())
                    if m.tau >= cfg.ast_floor]
        source = self.source_files.get(s.id)
        if source is not None:
            matches.append([self.ids[source], "source", 1.0])
        row["matches"] = matches
        decision, signal, problem = "keep", None, None
        ast_hit = cfg.ast_threshold is not None and ast_raw is not None and ast_raw >= cfg.ast_threshold
        row["held_back"] = None
        if ast_hit and ast_best[ast_k].statements < cfg.ast_min_statements and not (
                ast_k in hits or ast_k in cos_listed):
            # A tiny function's shape is shared by unrelated code: reported, never decisive alone.
            ast_hit = False
            row["held_back"] = (f"AST tau {row['ast_tau']} on a function of {ast_best[ast_k].statements} "
                                f"statement(s) < ast_min_statements {cfg.ast_min_statements}, no other signal")
        if source is not None:
            decision, signal, problem = "remove", "source", self.ids[source]
        elif cfg.ngram_min_hits is not None and row["ngram_hits"] >= cfg.ngram_min_hits:
            decision, signal, problem = "remove", "ngram", row["ngram_problem"]
        elif ast_hit:
            decision, signal, problem = "remove", "ast", row["ast_problem"]
        elif cfg.embedding_threshold is not None and cos[0] >= cfg.embedding_threshold:
            decision, signal, problem = "remove", "embedding", row["embedding_problem"]
        row.update(decision=decision, signal=signal, problem_id=problem)
        return row


def _from_definition(text: str, reference: str) -> str:
    """``text`` from the first ``def`` of a function the reference defines (else the whole text)."""
    import re

    for name in re.findall(r"^\s*(?:async\s+)?def\s+(\w+)\s*\(", reference, re.M)[::-1]:
        at = re.search(rf"^[ \t]*(?:async\s+)?def\s+{re.escape(name)}\s*\(", text, re.M)
        if at:
            return text[at.start():]
    return text
