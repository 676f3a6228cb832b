"""Exercises mined from the corpus, with tests from executing the original function in the sandbox.

Why: no offline teacher writes right tests (measured: 0 of 16 to 1 of 16 verified), and no hosted
one writes only right ones. A real function is right by construction; what it computes on an input
is, by definition, the expected value. So (mining.py finds the candidates, input_gen.py the inputs):

1. one sandbox program per candidate runs the ORIGINAL function on every input twice (each call
   under its own ``per_call_s`` alarm) and, when the docstring has ``>>>`` examples, runs them as
   doctests; it prints one marked JSON line per input and one for the doctests;
2. here, each input's outcome is judged: raised, too slow, result not a small literal (its repr
   must round-trip through ast.literal_eval and stay under MAX_RESULT_REPR), or two runs disagree
   (the function is rejected: ``non-deterministic``); the rest become
   ``assert candidate(<input>) == <value>``, the value printed with sets and dicts in sorted order
   (stable_repr.py: the same text whatever the hash seed);
3. the exercise is kept with at least ``min_tests`` such tests, more than one distinct value
   (``constant-output`` otherwise: tests a constant function would pass teach nothing) and not
   every input returned unchanged (``identity-output``: ``return x`` would pass them), and
   verified like every exercise: ``prompt + completion`` against its tests in a fresh sandbox run;
4. the tests must reject trivial candidates and most mutants of the function (separation.py); weak
   ones first get inputs on which the function and a surviving candidate differ (strengthen.py).

Rejection reasons (besides mining.py's static ones): doctest-failed, raises (on every input),
too-slow, probe-failed (the program failed before any call), non-deterministic, constant-output,
identity-output, too-few-tests, tests-failed, timeout, memory, crashed, weak-tests.
"""

from __future__ import annotations

import ast
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from textbooklm.sandbox import Program
from textbooklm.sandbox import Result as SandboxResult
from textbooklm.synth.candidate import Candidate
from textbooklm.synth.consensus import literal
from textbooklm.synth.exercise import ParsedExercise
from textbooklm.synth.input_gen import GeneratedInput, doctest_calls, doctest_imports, generate_inputs, names_read
from textbooklm.synth.mining import MinedFunction, Rejection, mine_functions
from textbooklm.synth.rounds import sample_id
from textbooklm.synth.separation import WEAK_TESTS, SeparationRun
from textbooklm.synth.stable_repr import STABLE_REPR_SOURCE

MARK = "@@textbooklm-mine@@"
MAX_RESULT_REPR = 200  # a test's expected value stays readable

DOCTEST_FAILED, RAISES, TOO_SLOW = "doctest-failed", "raises", "too-slow"
NON_DETERMINISTIC, CONSTANT_OUTPUT, TOO_FEW_TESTS = "non-deterministic", "constant-output", "too-few-tests"
IDENTITY_OUTPUT = "identity-output"


def probe_program(cand: MinedFunction, inputs: list[GeneratedInput], pid: str, per_call_s: float,
                  run_doctests: bool = True, setup: list[str] | None = None) -> Program:
    """The sandbox program that calls the original function on each input twice, then its doctests.
    ``setup``: import lines the inputs need (from the doctests), run first inside ``check``."""
    calls = "".join(f"        (lambda: candidate({i.args})),\n" for i in inputs)
    test = (
        "def check(candidate):\n"
        + "".join(f"    {line}\n" for line in setup or [])
        + "    import json as _j, signal as _s, time as _t\n"
        + "".join(f"    {line}\n" for line in STABLE_REPR_SOURCE.splitlines())
        + "    class _Slow(BaseException):\n"
        "        pass\n"
        "    def _alarm(*_a):\n"
        "        raise _Slow()\n"
        "    _s.signal(_s.SIGALRM, _alarm)\n"
        "    def _once(_c):\n"
        "        _s.setitimer(_s.ITIMER_REAL, " + repr(per_call_s) + ")\n"
        "        _t0 = _t.perf_counter()\n"
        "        try:\n"
        "            _v = _c()\n"
        "            _r = ['value', stable_repr(_v)[:" + str(MAX_RESULT_REPR + 1) + "]]\n"
        "        except _Slow:\n"
        "            _r = ['slow', '']\n"
        "        except RecursionError:\n"
        "            _r = ['raises', 'RecursionError']\n"
        "        except Exception as _e:\n"
        "            _r = ['raises', type(_e).__name__]\n"
        "        finally:\n"
        "            _s.setitimer(_s.ITIMER_REAL, 0)\n"
        "        return _r + [round(_t.perf_counter() - _t0, 6)]\n"
        "    _calls = [\n" + calls + "    ]\n"
        "    for _i, _c in enumerate(_calls):\n"
        "        _a = _once(_c)\n"
        "        _b = _once(_c) if _a[0] != 'slow' else _a\n"
        f"        print({MARK!r} + _j.dumps(['call', _i, _a, _b]), flush=True)\n"
    )
    if run_doctests:
        test += (
            "    _doc = candidate.__doc__ or ''\n"
            "    if '>>>' in _doc:\n"
            "        import doctest as _d, io as _io\n"
            "        _buf = _io.StringIO()\n"
            "        _s.setitimer(_s.ITIMER_REAL, " + repr(max(2.0, 4 * per_call_s)) + ")\n"
            "        try:\n"
            "            _dt = _d.DocTestParser().get_doctest(_doc, dict(globals()), candidate.__name__, None, 0)\n"
            "            _res = _d.DocTestRunner(verbose=False, optionflags=_d.ELLIPSIS | _d.NORMALIZE_WHITESPACE)"
            ".run(_dt, out=_buf.write)\n"
            "            _dres = [_res.failed, _res.attempted, _buf.getvalue()[-400:]]\n"
            "        except _Slow:\n"
            "            _dres = [-1, 0, 'the doctests ran too long']\n"
            "        except Exception as _e:\n"
            "            _dres = [-1, 0, type(_e).__name__ + ': ' + str(_e)[:200]]\n"
            "        finally:\n"
            "            _s.setitimer(_s.ITIMER_REAL, 0)\n"
            f"        print({MARK!r} + _j.dumps(['doctest'] + _dres), flush=True)\n"
        )
    # Every call may take per_call_s twice, plus the doctests: the program's wall limit must cover that.
    return Program(id=pid, code=cand.code, test=test, entry_point=cand.name,
                   reference_s=(2 * len(inputs) * per_call_s + 3.0) / 4.0)


@dataclass
class Probe:
    """What the probe program reported: per input the two runs' [kind, text, seconds], and the doctests."""

    status: str
    error: str
    calls: dict[int, tuple[list[Any], list[Any]]] = field(default_factory=dict)
    doctest: tuple[int, int, str] | None = None  # (failed, attempted, output); failed -1: could not run


def read_probe(result: SandboxResult) -> Probe:
    probe = Probe(result.status, result.error)
    for line in result.stdout.splitlines():
        if not line.startswith(MARK):
            continue
        try:
            rec = json.loads(line[len(MARK):])
        except ValueError:
            continue
        if not isinstance(rec, list) or not rec:  # the function printed something that looks like ours
            continue
        if rec[0] == "call" and len(rec) == 4:
            probe.calls[int(rec[1])] = (rec[2], rec[3])
        elif rec[0] == "doctest" and len(rec) == 4:
            probe.doctest = (int(rec[1]), int(rec[2]), str(rec[3]))
    return probe


@dataclass
class Judgement:
    """Tests built from a probe, or why there are none."""

    tests: list[dict[str, str]]  # {"args", "origin", "expected"}
    dropped: Counter[str]
    reason: str | None = None
    detail: str = ""


def judge(inputs: list[GeneratedInput], probe: Probe, min_tests: int) -> Judgement:
    """Turn a probe into assert tests, or a rejection reason (see the module docstring)."""
    dropped: Counter[str] = Counter()
    if probe.doctest is not None and probe.doctest[0] != 0:
        failed, attempted, text = probe.doctest
        what = f"{failed} of {attempted} doctest examples failed" if failed > 0 else "the doctests could not run"
        return Judgement([], dropped, DOCTEST_FAILED, f"{what}: {' '.join(text.split())[:300]}")
    if probe.status != "passed" and not probe.calls:
        return Judgement([], dropped, _probe_reason(probe.status), probe.error or probe.status)
    tests: list[dict[str, str]] = []
    values: set[str] = set()
    for i, inp in enumerate(inputs):
        got = probe.calls.get(i)
        if got is None:
            dropped["no-result"] += 1
            continue
        a, b = got
        if a[0] == "slow" or b[0] == "slow":
            dropped["slow"] += 1
            continue
        if a[0] != b[0] or a[1] != b[1]:
            return Judgement([], dropped, NON_DETERMINISTIC,
                             f"f({inp.args}) gave {a[1]!r} then {b[1]!r} ({a[0]}, {b[0]})"[:300])
        if a[0] == "raises":
            dropped["raises"] += 1
            continue
        ok, value = literal(a[1])
        if not ok or len(a[1]) > MAX_RESULT_REPR or not round_trips(value):
            dropped["not-literal"] += 1
            continue
        tests.append({"args": inp.args, "origin": inp.origin, "expected": a[1]})
        values.add(a[1])
    if not tests:
        if dropped["raises"] and dropped["raises"] == len(inputs):
            return Judgement([], dropped, RAISES, f"raised on all {len(inputs)} inputs")
        if dropped["slow"] and not (dropped.keys() - {"slow", "no-result"}):
            return Judgement([], dropped, TOO_SLOW, f"{dropped['slow']} of {len(inputs)} inputs ran too long")
        if probe.status != "passed":
            return Judgement([], dropped, _probe_reason(probe.status), probe.error or probe.status)
    if tests and len(values) < 2:
        return Judgement(tests, dropped, CONSTANT_OUTPUT,
                         f"all {len(tests)} usable inputs give {next(iter(values))[:100]}")
    if tests and all(t["expected"] == t["args"] for t in tests):
        return Judgement(tests, dropped, IDENTITY_OUTPUT, f"all {len(tests)} usable inputs come back unchanged")
    if len(tests) < min_tests:
        return Judgement(tests, dropped, TOO_FEW_TESTS, f"{len(tests)} of {len(inputs)} inputs give a small literal "
                         f"value, at least {min_tests} needed ({_counts(dropped)})")
    return Judgement(tests, dropped)


def _probe_reason(status: str) -> str:
    """A probe that did not finish: too-slow (timeout), probe-failed (e.g. the carried code raised before any
    call), memory, crashed."""
    return {"timeout": TOO_SLOW, "failed": "probe-failed"}.get(status, status)


def round_trips(value: Any) -> bool:
    """Whether a value's repr reads back as the same value (so it can be written into a test)."""
    try:
        return ast.literal_eval(repr(value)) == value
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _counts(c: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.most_common()) or "none dropped"


def observed_check(tests: list[dict[str, str]], setup: list[str] | None = None) -> str:
    """HumanEval-style ``check(candidate)`` from observed (input, value) pairs (after the ``setup`` imports
    that doctest-derived inputs need, only when some input uses one)."""
    used = [ln for ln in setup or [] if any(_binds(ln) & names_read(t["args"]) for t in tests)]
    return "def check(candidate):\n" + "".join(f"    {ln}\n" for ln in used) + "".join(
        f"    assert candidate({t['args']}) == {t['expected']}\n" for t in tests)


def _binds(import_line: str) -> set[str]:
    node = ast.parse(import_line).body[0]
    return {(a.asname or a.name).split(".")[0] for a in node.names}  # type: ignore[attr-defined]


def candidate_inputs(cand: MinedFunction, limit: int, seed: int) -> list[GeneratedInput]:
    """Doctest calls and generated inputs of one candidate (nothing executed)."""
    assert cand.func is not None
    docs = doctest_calls(ast.get_docstring(cand.func), cand.name)
    return generate_inputs(cand.func, limit=limit, seed=seed, doctests=docs)


@dataclass
class Mined:
    """A mined candidate's own part (:attr:`Candidate.mined`): the function (mining.py), the inputs tried on
    it and the import lines they need (set by :func:`plan_round`), and the tests its runs gave (set by
    :func:`judge_round`, grown in place by strengthening)."""

    function: MinedFunction
    inputs: list[GeneratedInput] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    tests: list[dict[str, str]] = field(default_factory=list)  # {"args", "origin", "expected"}

    @property
    def check(self) -> str:
        """Its tests as the exercise stores them (a HumanEval ``check``)."""
        return observed_check(self.tests, self.setup)


def _set_row(c: Candidate, test: str) -> None:
    """A mined candidate's row columns as it stands now: a kept one's id is its code's content id, a rejected
    one's also names the file and function (the same code rejected in two files is two rows)."""
    fn = c.mine.function
    rid = sample_id(fn.code) if c.alive else sample_id(f"{fn.file_id}:{fn.name}:{fn.code}")
    c.fields = {"id": rid, "prompt": fn.prompt, "completion": fn.completion, "text": fn.code, "entry_point": fn.name,
                "test": test}


def _statically_rejected(k: int, index: int, r: Rejection, stage: str) -> Candidate:
    """A function mining.py rejected, as a candidate: its source as the row's text, nothing to run."""
    c = Candidate.from_corpus(k, index, None)
    c.notes = {"stage": stage, "source": "corpus", "round": k,
               "mined": {"source_path": r.path, "source_id": r.file_id, "function": r.name, "lineno": r.lineno}}
    c.fields = {"id": sample_id(f"{r.file_id}:{r.name}:{r.source}"), "prompt": "", "completion": "", "text": r.source,
                "entry_point": r.name, "test": ""}
    c.reject(r.reason, r.detail)
    return c


def plan_round(k: int, files: list[dict[str, Any]], *, min_lines: int, max_lines: int, max_per_file: int,
               inputs_per_function: int, seed: int, stage: str = "exercises") -> tuple[list[Candidate], Counter[str]]:
    """Step 1, nothing run: the round's files (records with id, text, path) as candidates, in file order.

    Every documented top-level function is one: those mining.py rejects come already rejected (with its
    reason); the first ``max_per_file`` others of a file get their inputs (doctest calls, then generated)
    and the import lines those need; the rest are only counted (``over-per-file-cap``). Returns the
    candidates and the mining counts (files, functions, documented, ..., candidates: the ones left to run).
    """
    counts: Counter[str] = Counter()
    cands: list[Candidate] = []
    for rec in files:
        found, rej, c = mine_functions(rec.get("text") or "", rec.get("path") or "", rec.get("id") or "",
                                       min_lines=min_lines, max_lines=max_lines)
        counts.update(c)
        cands += [_statically_rejected(k, len(cands) + n, r, stage) for n, r in enumerate(rej)]
        for fn in found[:max_per_file]:
            setup = doctest_imports(ast.get_docstring(fn.func)) if fn.func is not None else []
            cand = Candidate.from_corpus(k, len(cands), Mined(fn, candidate_inputs(fn, inputs_per_function, seed),
                                                               setup))
            cand.notes = {"stage": stage, "source": "corpus", "round": k, "mined": fn.provenance()}
            cands.append(cand)
        counts["over-per-file-cap"] += max(0, len(found) - max_per_file)
    counts["candidates"] = sum(c.alive for c in cands)
    return cands, counts


def probe_round(cands: list[Candidate], sandbox: Any, per_call_s: float) -> list[SandboxResult]:
    """Step 2, in the sandbox: the probe program of each live candidate (its original function on every input,
    twice, then its doctests: :func:`probe_program`); the results in the live candidates' order."""
    live = [c for c in cands if c.alive]
    return sandbox.run([probe_program(c.mine.function, c.mine.inputs, str(j), per_call_s, setup=c.mine.setup)
                        for j, c in enumerate(live)])


def judge_round(cands: list[Candidate], probes: list[SandboxResult], min_tests: int) -> Counter[str]:
    """Step 3: each live candidate's probe (in :func:`probe_round`'s order) judged (:func:`judge`): its tests,
    or a rejection with its row. Notes ``inputs``, ``doctest`` and ``tests``; returns the round's input counts."""
    counts: Counter[str] = Counter()
    for c, res in zip([c for c in cands if c.alive], probes, strict=True):
        m = c.mine
        probe = read_probe(res)
        j = judge(m.inputs, probe, min_tests) if m.inputs else Judgement(
            [], Counter(), TOO_FEW_TESTS, "no inputs could be generated from its signature")
        counts["generated"] += len(m.inputs)
        counts["tests"] += len(j.tests) if j.reason is None else 0
        counts.update(j.dropped)
        m.tests = j.tests
        c.notes.update(inputs={"generated": len(m.inputs), "origins": dict(Counter(i.origin for i in m.inputs)),
                               "dropped": dict(j.dropped), "probe_status": res.status,
                               "probe_s": round(res.duration_s, 3)},
                       doctest=list(probe.doctest[:2]) if probe.doctest else None, tests=m.tests)
        if j.reason is not None:
            c.reject(j.reason, j.detail)
            _set_row(c, m.check if m.tests else "")
    return counts


def verify_round(cands: list[Candidate], sandbox: Any) -> list[Candidate]:
    """Step 4, a fresh sandbox run: each live candidate as it will be stored (prompt + completion, then its
    tests), through the teacher exercises' own step (exercise_verify.verify_own: note ``verification``,
    reasons tests-failed, timeout, memory, crashed). Returns the ones that pass."""
    from textbooklm.synth.exercise_verify import verify_own

    live = [c for c in cands if c.alive]
    for c in live:
        fn = c.mine.function
        c.parsed = ParsedExercise(fn.name, fn.prompt, fn.completion, c.mine.check, len(c.mine.tests))
    passed = verify_own(live, sandbox)
    for c in live:
        if not c.alive:
            _set_row(c, c.ex.test)
    return passed


def separate_round(cands: list[Candidate], separation: SeparationRun, sandbox: Any, *, per_call_s: float,
                   seed: int) -> None:
    """Step 5: the live candidates' tests must reject trivial code and most mutants (separation.py); weak ones
    first get inputs on which the function and a survivor differ (strengthen.py: their tests grow in place,
    ``sandbox`` re-verifies them), then what is still weak is rejected as weak-tests. Notes ``separation``."""
    from textbooklm.synth.strengthen import MinedExercise, separate_mined

    live = [c for c in cands if c.alive]
    items = [MinedExercise(c.mine.function, c.mine.tests, c.mine.setup, c.notes,
                           c.notes["verification"]["duration_s"]) for c in live]
    for c, weak in zip(live, separate_mined(items, separation, sandbox, per_call_s=per_call_s, seed=seed),
                       strict=True):
        if weak is not None:
            c.reject(WEAK_TESTS, weak)


def finish_round(cands: list[Candidate]) -> None:
    """Step 6: the verified candidates' rows, with their tests as they ended (strengthening may have added some)."""
    for c in cands:
        c.notes["tests"] = c.mine.tests
        _set_row(c, c.mine.check)


def _split(cands: list[Candidate]) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """The candidates still in the running, and the rows of the others (in order)."""
    return [c for c in cands if c.alive], [c.to_row() for c in cands if not c.alive]


def mine_candidates(k: int, files: list[dict[str, Any]], *, min_tests: int, inputs_per_function: int,
                    per_call_s: float, min_lines: int, max_lines: int, max_per_file: int, sandbox: Any, seed: int,
                    stage: str = "exercises", separation: SeparationRun | None = None,
                    ) -> tuple[list[Candidate], list[dict[str, Any]], dict[str, Any]]:
    """:func:`mine_round`'s steps, the kept ones left as candidates (a later step, the teacher's docstring
    rewrite, may still change them): kept candidates, rejected rows, the round's counts.

    Rejected rows come by the step that rejected them (mining.py's static reasons, the probe's, the
    verification's, weak-tests), each step's in file order.
    """
    cands, counts = plan_round(k, files, min_lines=min_lines, max_lines=max_lines, max_per_file=max_per_file,
                               inputs_per_function=inputs_per_function, seed=seed, stage=stage)
    live, rejected = _split(cands)
    input_counts = judge_round(live, probe_round(live, sandbox, per_call_s), min_tests)
    live, rows = _split(live)
    rejected += rows
    verify_round(live, sandbox)
    live, rows = _split(live)
    rejected += rows
    t0 = time.perf_counter()
    if separation is not None:
        separate_round(live, separation, sandbox, per_call_s=per_call_s, seed=seed)
    separation_s = round(time.perf_counter() - t0, 2)
    finish_round(live)
    kept, rows = _split(live)
    rejected += rows
    result = {"round": k, "source": "corpus", "files": len(files), "asked": counts["candidates"],
              "parsed": counts["candidates"], "passed_own_tests": len(kept), "kept": len(kept), "mining": dict(counts),
              "inputs": dict(input_counts), "rejected": dict(Counter(r["reason"] for r in rejected)), "kept_seeds": [],
              "separation_s": separation_s}
    return kept, rejected, result


def mine_round(k: int, files: list[dict[str, Any]], *, min_tests: int, inputs_per_function: int, per_call_s: float,
               min_lines: int, max_lines: int, max_per_file: int, sandbox: Any, seed: int,
               stage: str = "exercises", separation: SeparationRun | None = None,
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Mine one round's files (records with id, text, path): kept exercise rows, rejected rows, counts.

    The steps, each a function of its own on the round's candidates (candidate.py): :func:`plan_round`,
    :func:`probe_round`, :func:`judge_round`, :func:`verify_round`, :func:`separate_round` (only with
    ``separation``), :func:`finish_round`. ``sandbox.run(programs)`` runs the probes and the verifications
    (a LazySandbox or SandboxPool). Rows have the exercises stage's columns (id, prompt, completion, text,
    entry_point, test, provenance; rejected ones add reason and detail), made by ``Candidate.to_row``.
    """
    kept, rejected, result = mine_candidates(k, files, min_tests=min_tests, inputs_per_function=inputs_per_function,
                                             per_call_s=per_call_s, min_lines=min_lines, max_lines=max_lines,
                                             max_per_file=max_per_file, sandbox=sandbox, seed=seed, stage=stage,
                                             separation=separation)
    return [c.to_row() for c in kept], rejected, result
