"""The pruning report: per AST threshold tau, how many samples go and which problems are "similar".

phi-1 (Table 3) split HumanEval into problems with a similar training sample and the rest, and
reported pass@k on each part; this table is what the run report reads to make that split. A
problem is similar at tau when some sample matches it by AST rate >= tau, or by n-grams or
embedding cosine at the configured thresholds (those do not depend on tau).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def _fixed_signal(match: Sequence[Any], ngram_min_hits: int | None, embedding_threshold: float | None) -> bool:
    _, signal, score = match[:3]
    if signal == "source":  # the held-out exercise's own source file
        return True
    if signal == "ngram":
        return ngram_min_hits is not None and score >= ngram_min_hits
    if signal == "embedding":
        return embedding_threshold is not None and score >= embedding_threshold
    return False


def tau_table(
    rows: Iterable[dict[str, Any]],
    problem_ids: Sequence[str],
    *,
    n_samples: int,
    taus: Sequence[float] = (0.95, 0.9, 0.85, 0.8),
    ngram_min_hits: int | None = 1,
    embedding_threshold: float | None = None,
    ast_min_statements: int = 1,
) -> dict[str, Any]:
    """``rows``: match rows (each with ``matches`` = [[problem, signal, score(, statements)], ...]).

    An AST match whose smaller function has fewer than ``ast_min_statements`` statements counts only
    when the same row also lists another signal for that problem (the stage's decision rule).
    """
    rows = list(rows)
    table = []
    for tau in sorted(taus, reverse=True):
        removed = by_ast = 0
        similar: set[str] = set()
        for row in rows:
            fixed = [m for m in row["matches"] if _fixed_signal(m, ngram_min_hits, embedding_threshold)]
            seconded = {m[0] for m in row["matches"] if m[1] in ("ngram", "embedding")}
            ast = [m for m in row["matches"] if m[1] == "ast" and m[2] >= tau
                   and (len(m) < 4 or m[3] >= ast_min_statements or m[0] in seconded)]
            if fixed or ast:
                removed += 1
                by_ast += bool(ast)
            similar.update(m[0] for m in fixed + ast)
        ordered = [p for p in problem_ids if p in similar] + sorted(similar - set(problem_ids))
        table.append({
            "tau": tau, "removed": removed, "removed_by_ast": by_ast,
            "removed_fraction": round(removed / n_samples, 6) if n_samples else 0.0,
            "n_similar": len(similar), "n_non_similar": len(problem_ids) - len(similar & set(problem_ids)),
            "similar_problems": ordered,
        })
    return {
        "n_samples": n_samples, "n_problems": len(problem_ids), "problems": list(problem_ids),
        "ngram_min_hits": ngram_min_hits, "embedding_threshold": embedding_threshold, "taus": table,
    }


def format_table(report: dict[str, Any]) -> list[str]:
    """Plain-text lines of the tau table (the CLI prints them; tests read them)."""
    lines = [f"{report['n_samples']} samples checked against {report['n_problems']} problems",
             f"{'tau':>5}  {'removed':>8}  {'by AST':>7}  {'similar':>8}  {'non-similar':>11}"]
    for t in report["taus"]:
        lines.append(f"{t['tau']:>5.2f}  {t['removed']:>8}  {t['removed_by_ast']:>7}  {t['n_similar']:>8}  "
                     f"{t['n_non_similar']:>11}")
    return lines
