"""Do an exercise's tests separate its reference from wrong code? Trivial candidates and mutants, run.

Why: an exercise passes verification when its reference passes its tests; that says nothing about
whether the tests would fail anything else. Tests that ``return x`` or a constant pass, or that most
one-token changes of the reference pass, are weak: as training data they teach a guess, as an
evaluation they reward one (issue 23). So every verified exercise's tests are also run, in the
sandbox, against

* its trivial candidates (trivial.py): each must FAIL, or the exercise is weak whatever else holds;
* up to ``mutants`` mutants of its reference (mutants.py): the share they kill is its mutation score.

An exercise is weak (reason ``weak-tests``) when a trivial candidate passes or its mutation score is
below ``min_mutation_score``; an exercise none of whose code could be mutated has no score and is
judged on the trivial candidates alone. All candidates of all exercises of a round go to the sandbox
in one batch, in their own pool whose wall limit (``timeout_s``, raised for a slow reference as every
sandbox limit is) is short: a mutant that loops forever is killed, and should cost little.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from textbooklm.sandbox import Limits, Program
from textbooklm.synth.config import SeparationConfig
from textbooklm.synth.mutants import Mutant, entry_function, make_mutants
from textbooklm.synth.trivial import TrivialCandidate, trivial_candidates

WEAK_TESTS = "weak-tests"


@dataclass(frozen=True)
class Exercise:
    """What the check needs of one verified exercise."""

    code: str  # prompt + completion: imports, helpers and the reference
    entry_point: str
    test: str  # def check(candidate): ...
    reference_s: float | None = None  # the reference's verification time (scales the wall limit)


@dataclass
class Separation:
    """Which trivial candidates and mutants an exercise's tests let through."""

    trivial: int = 0
    trivial_passed: list[str] = field(default_factory=list)
    mutants: int = 0
    killed: int = 0
    survivors: list[str] = field(default_factory=list)  # "kind: description" of each surviving mutant
    survivor_sources: list[str] = field(default_factory=list)  # candidates that passed, as source (strengthening)

    @property
    def score(self) -> float | None:
        """Killed mutants / mutants (None when no mutant could be made)."""
        return self.killed / self.mutants if self.mutants else None

    def weakness(self, min_score: float) -> str | None:
        """Why the tests are weak (the rejection detail), or None when they separate."""
        parts = []
        if self.trivial_passed:
            parts.append(f"passed by {len(self.trivial_passed)} of {self.trivial} trivial candidates ("
                         + ", ".join(self.trivial_passed[:3]) + ")")
        s = self.score
        if s is not None and s < min_score:
            parts.append(f"mutation score {self.killed}/{self.mutants} = {s:.2f} < {min_score:.2f} (surviving: "
                         + "; ".join(self.survivors[:3]) + ")")
        return "; ".join(parts) or None

    def to_json(self) -> dict[str, Any]:
        s = self.score
        return {"trivial": self.trivial, "trivial_passed": self.trivial_passed, "mutants": self.mutants,
                "killed": self.killed, "mutation_score": None if s is None else round(s, 3),
                "survivors": self.survivors}


def candidates_of(ex: Exercise, n_mutants: int, seed: int,
                  trivial: bool = True) -> list[tuple[str, str, TrivialCandidate | Mutant]]:
    """(group, label, candidate) for one exercise: its trivial candidates, then its mutants."""
    func = entry_function(ex.code, ex.entry_point)
    if func is None:
        return []
    out: list[tuple[str, str, TrivialCandidate | Mutant]] = []
    if trivial:
        out += [("trivial", t.name, t) for t in trivial_candidates(func, ex.test)]
    out += [("mutant", f"{m.kind}: {m.description}", m) for m in make_mutants(func, n_mutants, seed)]
    return out


def candidate_program(ex: Exercise, source: str, pid: str) -> Program:
    """The exercise's code, then the candidate (which redefines the entry point), against its tests."""
    return Program(id=pid, code=ex.code + "\n\n" + source, test=ex.test, entry_point=ex.entry_point,
                   reference_s=ex.reference_s)


def check_separation(exercises: Sequence[Exercise], sandbox: Any, n_mutants: int = 8, seed: int = 0,
                     trivial: bool = True) -> list[Separation]:
    """Run every exercise's candidates in one sandbox batch (``sandbox.run``); one Separation per exercise.

    A candidate "passes" only with the verdict ``passed``; failed, timeout, memory and crashed all count
    as rejected (killed), as evalplus counts them.
    """
    plans = [candidates_of(ex, n_mutants, seed, trivial) for ex in exercises]
    programs = [candidate_program(ex, c.source, f"{i}:{j}")
                for i, (ex, plan) in enumerate(zip(exercises, plans, strict=True))
                for j, (_g, _l, c) in enumerate(plan)]
    verdicts = iter(sandbox.run(programs) if programs else [])
    out = []
    for plan in plans:
        sep = Separation()
        for group, label, cand in plan:
            passed = next(verdicts).passed
            if group == "trivial":
                sep.trivial += 1
                if passed:
                    sep.trivial_passed.append(label)
            else:
                sep.mutants += 1
                if passed:
                    sep.survivors.append(label)
                else:
                    sep.killed += 1
            if passed:
                sep.survivor_sources.append(cand.source)
        out.append(sep)
    return out


def score_distribution(scores: Sequence[float | None]) -> dict[str, int]:
    """Mutation scores in bins for the summary: ``none`` (no mutant), ``<0.5``, ``0.5-0.8``, ``0.8-1``, ``1``."""
    bins = {"1": 0, "0.8-1": 0, "0.5-0.8": 0, "<0.5": 0, "none": 0}
    for s in scores:
        key = "none" if s is None else "1" if s >= 1 else "0.8-1" if s >= 0.8 else "0.5-0.8" if s >= 0.5 else "<0.5"
        bins[key] += 1
    return bins


@dataclass
class SeparationRun:
    """The check as a stage runs it: its settings, the seed, and the sandbox (short wall limit) for candidates."""

    cfg: SeparationConfig
    sandbox: Any  # .run(programs) -> results; a LazySandbox or SandboxPool with the candidates' limits
    seed: int = 0

    def check(self, exercises: Sequence[Exercise]) -> list[Separation]:
        if not exercises or (not self.cfg.trivial and self.cfg.mutants == 0):
            return [Separation() for _ in exercises]
        return check_separation(exercises, self.sandbox, self.cfg.mutants, self.seed, self.cfg.trivial)

    def weakness(self, sep: Separation) -> str | None:
        return sep.weakness(self.cfg.min_mutation_score)


def candidate_limits(cfg: SeparationConfig, limits: Limits) -> Limits:
    """The stage's sandbox limits with the candidates' short wall limit (memory and the rest unchanged)."""
    return limits.model_copy(update={"timeout_s": cfg.timeout_s})


def separation_summary(provs: Sequence[dict[str, Any]], weak_rejected: int,
                       cfg: SeparationConfig) -> tuple[str, dict[str, Any]]:
    """The summary line's part and the summary's numbers: kept exercises' mutation-score distribution,
    how many were kept only after strengthening, how many were rejected as weak-tests."""
    checked = [p["separation"] for p in provs if "separation" in p]
    scores = [s["mutation_score"] for s in checked]
    known = sorted(s for s in scores if s is not None)
    dist = score_distribution(scores)
    strengthened = sum(1 for s in checked if s.get("strengthened"))
    median = known[len(known) // 2] if known else None
    summary = {"checked_kept": len(checked), "weak_tests_rejected": weak_rejected, "kept_after_strengthening":
               strengthened, "mutation_scores": dist, "median_mutation_score": median,
               "killed": sum(s["killed"] for s in checked), "mutants": sum(s["mutants"] for s in checked),
               "mutants_per_exercise": cfg.mutants, "min_mutation_score": cfg.min_mutation_score}
    if not checked and not weak_rejected:
        return "", summary
    line = (f"; tests vs trivial code and up to {cfg.mutants} mutants: {weak_rejected} rejected as weak-tests, "
            f"{strengthened} kept after added inputs; kept mutation scores "
            + ", ".join(f"{k}: {v}" for k, v in dist.items() if v)
            + (f" (median {median:.2f}, {summary['killed']}/{summary['mutants']} mutants killed)" if known else ""))
    return line, summary
