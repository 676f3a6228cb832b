"""Weak tests of a mined exercise made stronger: inputs on which the reference and a surviving candidate differ.

Why: a mined function's tests come from inputs generated from its signature; when a trivial candidate
or too many mutants pass them (separation.py), the inputs missed the behaviour that tells them apart
(``bisect_left`` tested only where ``lo`` is the answer). Before rejecting the exercise, more inputs
are made (variants of the tests' own inputs, one argument changed, and inputs generated with
another seed) and both the reference and every survivor are probed on
them (the same probe program as mining: each call twice, under its own alarm). An input becomes a
test when the reference gives a small deterministic literal there and some survivor gives anything
else (another value, an exception, a timeout): differential testing, as evalplus does against its
mutants. The fewest such inputs that reject every survivor they can are added (greedy set cover),
so tests grow only by what separates. The caller then verifies the reference and re-runs the check
on the new tests; what still does not separate is rejected as ``weak-tests``.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

from textbooklm.sandbox import Program
from textbooklm.synth.consensus import literal
from textbooklm.synth.corpus_exercises import (
    MAX_RESULT_REPR,
    Probe,
    observed_check,
    probe_program,
    read_probe,
    round_trips,
)
from textbooklm.synth.input_gen import MAX_VALUE_REPR, GeneratedInput, generate_inputs, mutations
from textbooklm.synth.mining import MinedFunction
from textbooklm.synth.separation import Exercise, SeparationRun
from textbooklm.synth.stable_repr import stable_repr


@dataclass
class WeakExercise:
    """A mined exercise whose tests did not separate, and the candidates that passed them."""

    cand: MinedFunction
    tests: list[dict[str, str]]  # {"args", "origin", "expected"}
    survivors: list[str]  # sources of the candidates that passed (each redefines the entry point)
    setup: list[str]  # import lines the doctest-derived inputs need


@dataclass
class Strengthening:
    """What strengthening found for one exercise: the added tests and how many inputs were tried."""

    added: list[dict[str, str]]
    tried: int
    separated: int  # survivors that some added input rejects

    def to_json(self) -> dict[str, int]:
        return {"inputs_tried": self.tried, "tests_added": len(self.added), "survivors_separated": self.separated}


def variants(value: Any) -> list[Any]:
    """Shapes a generator rarely reaches (larger and negative ints, indented and multi-line strings,
    repeated and sorted lists), then evalplus-style mutations of one argument value (input_gen.py's)."""
    out: list[Any] = []
    if isinstance(value, str) and value:
        out += ["  " + value.replace(" ", "\n  "), value + "\n" + value, value.title(), value.swapcase()]
    elif isinstance(value, int) and not isinstance(value, bool):
        out += [value * 10 + 7, -value - 3]
    elif isinstance(value, list) and value:
        out += [value + value, value[:1] * 3]
        try:
            out.append(sorted(value))
        except TypeError:
            pass
    return out + list(mutations(value))


def _mutated_args(args: str) -> list[tuple[int, str]]:
    """(rank, argument text) with one literal argument replaced by one of its variants, the others unchanged;
    rank is the variant's position, so the first variants of every argument come first."""
    try:
        call = ast.parse(f"_({args})", mode="eval").body
    except SyntaxError:
        return []
    assert isinstance(call, ast.Call)
    slots: list[ast.expr] = [*call.args, *(k.value for k in call.keywords)]
    out = []
    for i, node in enumerate(slots):
        try:
            value = ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        for rank, v in enumerate(variants(value)):
            text = stable_repr(v)
            if len(text) > MAX_VALUE_REPR:
                continue
            parts = [ast.unparse(n) for n in call.args]
            kws = [f"{k.arg}={ast.unparse(k.value)}" for k in call.keywords]
            if i < len(call.args):
                parts[i] = text
            else:
                kws[i - len(call.args)] = f"{call.keywords[i - len(call.args)].arg}={text}"
            out.append((rank, ", ".join(parts + kws)))
    return out


def extra_inputs(cand: MinedFunction, tests: list[dict[str, str]], n: int, seed: int) -> list[GeneratedInput]:
    """Up to ``n`` inputs not already among the tests: variants of the tests' own inputs (one argument
    changed at a time: inputs the function accepts, moved a little) interleaved with freshly generated
    ones (another seed than mining's)."""
    if cand.func is None or n <= 0:
        return []
    have = {t["args"] for t in tests}
    ranked = sorted((rank, i, a) for i, t in enumerate(tests) for rank, a in _mutated_args(t["args"]))
    mutated = [GeneratedInput(a, "mutation") for _r, _i, a in ranked]
    fresh = generate_inputs(cand.func, limit=len(have) + n, seed=seed + 1, doctests=[])
    out: list[GeneratedInput] = []
    for g in (x for pair in zip_longest(mutated, fresh) for x in pair if x is not None):
        if g.args not in have and len(out) < n:
            have.add(g.args)
            out.append(g)
    return out


def _reference_value(probe: Probe, i: int) -> str | None:
    """The reference's value text on input i when it can be a test (deterministic small literal), else None."""
    got = probe.calls.get(i)
    if got is None:
        return None
    a, b = got
    if a[0] != "value" or a[:2] != b[:2] or len(a[1]) > MAX_RESULT_REPR:
        return None
    ok, value = literal(a[1])
    return a[1] if ok and round_trips(value) else None


def _differs(probe: Probe, i: int, expected: str) -> bool:
    """Whether a survivor's outcome on input i is not the reference's value (missing results do not count)."""
    got = probe.calls.get(i)
    if got is None:
        return False
    return got[0][0] != "value" or got[0][1] != expected


def cover(kills: list[set[int]]) -> list[int]:
    """Greedy set cover: input indexes, each rejecting the most survivors not yet rejected (ties: first)."""
    chosen: list[int] = []
    left = set().union(*kills) if kills else set()
    while left:
        best = max(range(len(kills)), key=lambda i: (len(kills[i] & left), -i))
        if not kills[best] & left:
            break
        chosen.append(best)
        left -= kills[best]
    return chosen


def strengthen(weak: Sequence[WeakExercise], sandbox: Any, *, n_inputs: int, per_call_s: float,
               seed: int) -> list[Strengthening]:
    """Probe each weak exercise's reference and survivors on extra inputs (one sandbox batch); the tests to add."""
    plans = [extra_inputs(w.cand, w.tests, n_inputs, seed) for w in weak]
    programs, owners = [], []
    for k, (w, ins) in enumerate(zip(weak, plans, strict=True)):
        if not ins:
            continue
        ref = probe_program(w.cand, ins, f"{k}:ref", per_call_s, run_doctests=False, setup=w.setup)
        programs.append(ref)
        owners.append((k, -1))
        for s, source in enumerate(w.survivors):
            programs.append(dataclasses.replace(ref, id=f"{k}:{s}", code=w.cand.code + "\n\n" + source))
            owners.append((k, s))
    probes: dict[tuple[int, int], Probe] = {}
    for owner, res in zip(owners, sandbox.run(programs) if programs else [], strict=True):
        probes[owner] = read_probe(res)
    out = []
    for k, (w, ins) in enumerate(zip(weak, plans, strict=True)):
        ref = probes.get((k, -1))
        if ref is None:
            out.append(Strengthening([], len(ins), 0))
            continue
        values = [_reference_value(ref, i) for i in range(len(ins))]
        kills = [{s for s in range(len(w.survivors)) if (k, s) in probes and _differs(probes[(k, s)], i, v)}
                 if v is not None else set() for i, v in enumerate(values)]
        chosen = cover(kills)
        added = [{"args": ins[i].args, "origin": "separating-" + ins[i].origin, "expected": values[i] or ""}
                 for i in chosen]
        out.append(Strengthening(added, len(ins), len(set().union(*(kills[i] for i in chosen)))))
    return out


@dataclass
class MinedExercise:
    """A verified mined exercise on its way to the separation check (its tests may grow)."""

    cand: MinedFunction
    tests: list[dict[str, str]]
    setup: list[str]
    prov: dict[str, Any]
    reference_s: float | None = None

    def exercise(self, tests: list[dict[str, str]] | None = None) -> Exercise:
        return Exercise(self.cand.code, self.cand.name, observed_check(tests or self.tests, self.setup),
                        self.reference_s)


def separate_mined(items: Sequence[MinedExercise], run: SeparationRun, sandbox: Any, *, per_call_s: float,
                   seed: int) -> list[str | None]:
    """Check every item's tests (separation.py), strengthen the weak ones, re-verify and re-check those;
    set ``prov["separation"]`` and grow ``tests`` in place. Returns each item's weakness (None: separates).

    Three sandbox batches at most, whatever the number of exercises: the candidates, the probes on
    extra inputs, then the re-verification (``sandbox``) with the re-check (``run.sandbox``).
    """
    seps = run.check([it.exercise() for it in items])
    notes: list[dict[str, Any] | None] = [None] * len(items)
    weak = [i for i, s in enumerate(seps) if run.weakness(s)]
    if weak and run.cfg.extra_inputs > 0:
        found = strengthen([WeakExercise(items[i].cand, items[i].tests, seps[i].survivor_sources, items[i].setup)
                            for i in weak], sandbox, n_inputs=run.cfg.extra_inputs, per_call_s=per_call_s, seed=seed)
        for i, st in zip(weak, found, strict=True):
            notes[i] = {**st.to_json(), "before": seps[i].to_json()}
        grown = [(i, items[i].tests + st.added) for i, st in zip(weak, found, strict=True) if st.added]
        verdicts = sandbox.run([Program(id=str(i), code=items[i].cand.code, test=observed_check(t, items[i].setup),
                                        entry_point=items[i].cand.name) for i, t in grown]) if grown else []
        rechecked = run.check([items[i].exercise(t) for i, t in grown])
        for (i, tests), v, sep in zip(grown, verdicts, rechecked, strict=True):
            if v.passed:
                items[i].tests[:] = tests
                items[i].prov["verification"]["n_tests"] = len(tests)
                seps[i] = sep
            else:  # the reference failed its grown tests (should not happen): keep the tests it passed
                notes[i]["re_verification"] = f"{v.status}: {v.error}"[:300]  # type: ignore[index]
    for it, sep, note in zip(items, seps, notes, strict=True):
        it.prov["separation"] = {**sep.to_json(), "min_mutation_score": run.cfg.min_mutation_score,
                                 **({"strengthened": note} if note else {})}
    return [run.weakness(s) for s in seps]
