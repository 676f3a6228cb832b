"""What the samples were: empty completions, why the rest failed, and the sentence a zero needs.

Why: "pass@1 = 0" reads as "the model writes wrong code", but a tiny model's zero is often a model
that writes nothing at all (its first token ends the function: a newline then ``def``, or
end-of-text). The two zeros mean different things about the data recipe, so every pass@k is shown
with its share of empty (whitespace-only) completions, and a zero with one sentence saying what the
samples were: how many empty, and the most common failures of the rest (the exception type of the
failing test, or the sandbox limit that stopped it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


def is_empty(completion: str) -> bool:
    """Empty or whitespace only: the body adds nothing to the prompt's signature and docstring."""
    return not completion.strip()


def failure_kind(status: str, error: str) -> str:
    """A short name for why a non-empty sample failed: the exception type, or the limit that stopped it."""
    if status == "failed":
        head = (error or "").split(":", 1)[0].split(" at ", 1)[0].strip()
        return head if head.isidentifier() else "failed"
    return {"timeout": "timeout", "memory": "memory limit", "crashed": "crashed"}.get(status, status)


def _shares(counts: Counter[str], total: int, top: int = 3) -> str:
    ranked = counts.most_common()
    shown = [f"{c / total:.0%} {kind}" for kind, c in ranked[:top]]
    rest = sum(c for _, c in ranked[top:])
    if rest:
        shown.append(f"{rest / total:.0%} other")
    return ", ".join(shown)


def describe_outcomes(samples: Iterable[Mapping[str, Any]], verdicts: Iterable[Mapping[str, Any]],
                      pass_at_1: float | None) -> dict[str, Any]:
    """Counts of empty samples and of failure kinds among the others, and the sentence for a zero pass@1.

    ``samples`` and ``verdicts`` are in the same order (one verdict per sample, as ``score`` makes them).
    """
    total = empty = passed = 0
    kinds: Counter[str] = Counter()
    for s, v in zip(samples, verdicts, strict=True):
        total += 1
        if is_empty(s["completion"]):
            empty += 1
        elif v["passed"]:
            passed += 1
        else:
            kinds[failure_kind(v["status"], v.get("error") or "")] += 1
    out: dict[str, Any] = {"samples": total, "empty": empty, "empty_share": empty / total if total else None,
                           "failure_kinds": dict(kinds.most_common())}
    if pass_at_1 == 0 and total:
        out["zero_note"] = zero_sentence(total, empty, kinds)
    return out


def zero_sentence(total: int, empty: int, kinds: Counter[str]) -> str:
    """e.g. "pass@1 = 0: 89% of 1640 samples were empty; the rest failed their tests (73% NameError, ...)"."""
    if empty == total:
        return f"pass@1 = 0: 100% of {total} samples were empty (whitespace only)"
    failed = sum(kinds.values())
    why = f" ({_shares(kinds, failed)})" if failed else ""
    if empty == 0:
        return f"pass@1 = 0: none of {total} samples was empty; all failed their tests{why}"
    return f"pass@1 = 0: {empty / total:.0%} of {total} samples were empty; the rest failed their tests{why}"
