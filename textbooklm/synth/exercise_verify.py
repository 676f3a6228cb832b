"""The exercises stage's verify steps, each on a round's parsed candidates (candidate.py).

In the order a round runs them: :func:`consensus_round` (``tests_from = "consensus"``: tests from
inputs several solutions agree on), :func:`verify_own` (the exercise's own solution against its
tests), :func:`agree` (``tests_from = "teacher"`` with ``solutions > 1``: further solutions, written
from the prompt alone, must pass the same tests), :func:`separate` (the tests must reject trivial
code and most mutants: separation.py). Each sets ``reason``/``detail`` on the candidates it rejects
and adds its provenance note; none touches a candidate already rejected.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from textbooklm.lazy_services import LazySandbox, LazyTeacher
from textbooklm.sandbox import Program
from textbooklm.synth.candidate import Candidate
from textbooklm.synth.config import ExercisesConfig
from textbooklm.synth.consensus import (
    DISAGREE,
    Outcome,
    call_program,
    consensus_tests,
    decide,
    extra_code,
    outcome_of,
    own_drop_reason,
    solution_code,
)
from textbooklm.synth.exercise import TOO_FEW_TESTS, ExerciseError, ParsedExercise, reply_code
from textbooklm.synth.prompts import PromptTemplate
from textbooklm.synth.rounds import TEACHER_ERROR, reasons_text, short_hash
from textbooklm.synth.seeds import derived_seed
from textbooklm.synth.separation import WEAK_TESTS, Exercise, SeparationRun
from textbooklm.teacher import Request

STAGE = "exercises"
VERDICT_REASON = {"failed": "tests-failed", "timeout": "timeout", "memory": "memory", "crashed": "crashed"}


@dataclass
class ExerciseTools:
    """What a round's steps use besides the candidates: config, teacher, sandboxes, templates, run seed."""

    cfg: ExercisesConfig
    teacher: LazyTeacher | None  # None: corpus exercises only
    sandbox: LazySandbox
    template: PromptTemplate
    solution_template: PromptTemplate
    run_seed: int
    separation: SeparationRun | None = None

    @property
    def ask(self) -> LazyTeacher:
        if self.teacher is None:
            raise ValueError("[exercises] the teacher's exercises need a teacher (set exercises.teacher)")
        return self.teacher


def program_of(ex: ParsedExercise, pid: str) -> Program:
    return Program(id=pid, code=ex.prompt + ex.completion, test=ex.test, entry_point=ex.entry_point)


def alternative_program(ex: ParsedExercise, reply: str, pid: str) -> Program | str:
    """Another solution run against the exercise's tests: the original code first (helpers, imports),
    then the reply's code, which redefines the entry point. A reply that does not is a detail string."""
    try:
        code = reply_code(reply)
    except ExerciseError as exc:
        return f"{exc.reason}: {exc.detail}"
    if f"def {ex.entry_point}(" not in code:
        return f"the solution does not define {ex.entry_point}"
    return Program(id=pid, code=ex.prompt + ex.completion + "\n\n" + code, test=ex.test, entry_point=ex.entry_point)


def solution_request(c: Candidate, j: int, tools: ExerciseTools) -> Request:
    """Request j (1-based) for another solution of ``c``'s exercise, from its prompt alone."""
    cfg = tools.cfg
    return Request(messages=[{"role": "user", "content": tools.solution_template.render(
        prompt=c.ex.prompt.rstrip(), name=c.fn.name)}], max_tokens=cfg.solution_max_tokens or cfg.max_tokens,
        temperature=max(cfg.temperature, 0.7), top_p=cfg.top_p,
        seed=derived_seed(STAGE, "solution", tools.run_seed, c.index, j) % 2**31)


def _consensus_note(c: Candidate, n_sol: int, agreed: int, dropped: dict[str, int],
                    solutions: list[dict[str, Any]]) -> dict[str, Any]:
    ex = c.ex
    return {"tests_from": "consensus", "n_solutions": n_sol, "inputs": ex.inputs, "input_origins": ex.input_origins,
            "inputs_found": len(ex.inputs), "inputs_agreed": agreed, "dropped": dict(dropped), "solutions": solutions}


def _own_outcomes(parsed: list[Candidate], sandbox: LazySandbox) -> list[list[Outcome]]:
    """Each exercise's own solution called on each of its inputs (one sandbox pass for the round)."""
    programs, where = [], []
    for n, c in enumerate(parsed):
        for args in c.ex.inputs:
            programs.append(call_program(str(len(programs)), c.ex.prompt + c.ex.completion, c.fn.name, args))
            where.append(n)
    own: list[list[Outcome]] = [[] for _ in parsed]
    for n, v in zip(where, sandbox.run(programs), strict=True):
        own[n].append(outcome_of(v))
    return own


def consensus_round(parsed: list[Candidate], tools: ExerciseTools) -> dict[str, Any]:
    """Give each parsed exercise tests from agreeing solutions (consensus.py), or a rejection reason.

    Three sandbox passes, cheapest first so the teacher is asked only where it can matter: the
    exercise's own solution on every input (inputs where it raises or returns a non-literal are
    dropped; too few left: too-few-tests, and no extra solutions are requested), then the extra
    solutions on the inputs left; :func:`verify_own` then runs the solution against the built tests.
    Returns the round's counts for the summary.
    """
    cfg, t, sandbox = tools.cfg, tools.ask, tools.sandbox
    n_sol = cfg.n_solutions
    own = _own_outcomes(parsed, sandbox)
    usable = [[i for i, o in enumerate(outs) if own_drop_reason(o) is None] for outs in own]
    chosen: list[int] = []  # positions in ``parsed`` with enough usable inputs
    for n, c in enumerate(parsed):
        if len(usable[n]) >= cfg.min_tests:
            chosen.append(n)
            continue
        first = decide(own[n], [])
        c.reject(TOO_FEW_TESTS, f"{len(usable[n])} of {len(c.ex.inputs)} inputs give a literal value on the "
                 f"exercise's own solution, at least {cfg.min_tests} needed ({reasons_text(first.dropped)})")
        c.notes["consensus"] = _consensus_note(c, n_sol, 0, first.dropped, [])

    extra = [(n, j) for n in chosen for j in range(1, n_sol)]
    requests = [solution_request(parsed[n], j, tools) for n, j in extra]
    results = t.complete(requests) if requests else []
    sols: dict[int, list[dict[str, Any]]] = {n: [] for n in chosen}
    programs, where = [], []
    for (n, j), req, res in zip(extra, requests, results, strict=True):
        c = parsed[n]
        note = {"solution": j, "request_key": t.key(req), "hash": short_hash(res.text or ""), "status": "ok"}
        code = None
        if not res.ok:
            note["status"] = f"{TEACHER_ERROR}: {res.error}"
        else:
            try:
                code = solution_code(res.text, c.fn.name)
            except ExerciseError as exc:
                note["status"] = f"{exc.reason}: {exc.detail}"
        sols[n].append(note)
        if code is not None:
            for i in usable[n]:
                programs.append(call_program(str(len(programs)), extra_code(c.ex, code), c.fn.name, c.ex.inputs[i]))
                where.append((n, j, i))
    others: dict[int, list[list[Outcome | None]]] = {
        n: [[None] * len(parsed[n].ex.inputs) for _ in range(n_sol - 1)] for n in chosen}
    for (n, j, i), v in zip(where, sandbox.run(programs), strict=True):
        others[n][j - 1][i] = outcome_of(v)

    totals: Counter[str] = Counter()
    got = 0
    for n, c in enumerate(parsed):
        ex = c.ex
        if n in others:
            d = decide(own[n], others[n])
            agreed = [ex.inputs[i] for i in d.agreed]
            c.notes["consensus"] = _consensus_note(c, n_sol, len(agreed), d.dropped, sols[n])
            if len(agreed) >= cfg.min_tests:
                ex.test = consensus_tests(agreed, [own[n][i] for i in d.agreed])
                ex.n_tests = len(agreed)
                got += 1
            else:
                unusable = [s["status"] for s in sols[n] if s["status"] != "ok"]
                c.reject(DISAGREE if d.dropped[DISAGREE] else TOO_FEW_TESTS,
                         f"{len(agreed)} of {len(ex.inputs)} inputs agreed by all {n_sol} solutions, at least "
                         f"{cfg.min_tests} needed ({reasons_text(d.dropped)})"
                         + (f"; unusable solution: {unusable[0]}" if unusable else ""))
        totals.update(c.notes["consensus"]["dropped"])
        totals["found"] += len(ex.inputs)
        totals["agreed"] += c.notes["consensus"]["inputs_agreed"]
    return {"exercises": got, "requests": len(requests), **totals}


def verify_own(parsed: list[Candidate], sandbox: LazySandbox) -> list[Candidate]:
    """Each exercise's own solution against its own (or its consensus) tests; returns the ones that pass."""
    tested = [c for c in parsed if c.alive]
    for c, v in zip(tested, sandbox.run([program_of(c.ex, str(j)) for j, c in enumerate(tested)]), strict=True):
        c.notes["verification"] = {"status": v.status, "error": v.error, "duration_s": round(v.duration_s, 3),
                                   "n_tests": c.ex.n_tests, "wall_limit_s": v.wall_limit_s}
        if not v.passed:
            c.reject(VERDICT_REASON.get(v.status, v.status), v.error or v.status)
    return [c for c in tested if c.alive]


def agree(passed: list[Candidate], tools: ExerciseTools) -> None:
    """``solutions - 1`` further solutions, from the prompt alone, must pass the same tests (else disagree)."""
    n_sol = tools.cfg.n_solutions
    if n_sol < 2 or not passed:
        return
    extra = [(n, j) for n in range(len(passed)) for j in range(1, n_sol)]
    results = tools.ask.complete([solution_request(passed[n], j, tools) for n, j in extra])
    failures: list[list[str]] = [[] for _ in passed]
    programs, owners = [], []
    for m, ((n, _j), res) in enumerate(zip(extra, results, strict=True)):
        prog = alternative_program(passed[n].ex, res.text, str(m)) if res.ok else f"teacher: {res.error}"
        if isinstance(prog, str):
            failures[n].append(prog)
        else:
            programs.append(prog)
            owners.append(n)
    for n, v in zip(owners, tools.sandbox.run(programs), strict=True):
        if not v.passed:
            failures[n].append(f"{v.status}: {v.error}")
    for c, failed in zip(passed, failures, strict=True):
        c.notes["agreement"] = {"solutions": n_sol, "agreeing": n_sol - len(failed), "failures": failed}
        if failed:
            c.reject(DISAGREE, f"{len(failed)} of {n_sol - 1} other solutions failed the tests: {failed[0]}")


def separate(parsed: list[Candidate], separation: SeparationRun) -> None:
    """The tests must reject trivial candidates and most mutants of the solution (separation.py; no
    strengthening here: a consensus test's value needs every solution's agreement, a teacher's its asserts)."""
    todo = [c for c in parsed if c.alive]
    seps = separation.check([Exercise(c.ex.prompt + c.ex.completion, c.fn.name, c.ex.test,
                                      c.notes["verification"]["duration_s"]) for c in todo])
    for c, sep in zip(todo, seps, strict=True):
        c.notes["separation"] = {**sep.to_json(), "min_mutation_score": separation.cfg.min_mutation_score}
        weak = separation.weakness(sep)
        if weak:
            c.reject(WEAK_TESTS, weak)
