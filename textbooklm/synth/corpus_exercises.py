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
from textbooklm.synth.consensus import literal
from textbooklm.synth.input_gen import GeneratedInput, doctest_calls, doctest_imports, generate_inputs, names_read
from textbooklm.synth.mining import Candidate
from textbooklm.synth.separation import WEAK_TESTS, SeparationRun
from textbooklm.synth.stable_repr import STABLE_REPR_SOURCE

MARK = "@@textbooklm-mine@@"
MAX_RESULT_REPR = 200  # a test's expected value stays readable

DOCTEST_FAILED, RAISES, TOO_SLOW = "doctest-failed", "raises", "too-slow"
NON_DETERMINISTIC, CONSTANT_OUTPUT, TOO_FEW_TESTS = "non-deterministic", "constant-output", "too-few-tests"
IDENTITY_OUTPUT = "identity-output"


def probe_program(cand: Candidate, inputs: list[GeneratedInput], pid: str, per_call_s: float,
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


def candidate_inputs(cand: Candidate, limit: int, seed: int) -> list[GeneratedInput]:
    """Doctest calls and generated inputs of one candidate (nothing executed)."""
    assert cand.func is not None
    docs = doctest_calls(ast.get_docstring(cand.func), cand.name)
    return generate_inputs(cand.func, limit=limit, seed=seed, doctests=docs)


def mine_round(k: int, files: list[dict[str, Any]], *, min_tests: int, inputs_per_function: int, per_call_s: float,
               min_lines: int, max_lines: int, max_per_file: int, sandbox: Any, seed: int,
               stage: str = "exercises", separation: SeparationRun | None = None,
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Mine one round's files (records with id, text, path): kept exercise rows, rejected rows, counts.

    ``sandbox.run(programs)`` runs the probes and the verifications (a LazySandbox or SandboxPool);
    ``separation`` (None: skipped) checks the verified ones' tests against trivial candidates and mutants.
    Rows have the exercises stage's columns (id, prompt, completion, text, entry_point, test,
    provenance; rejected ones add reason and detail).
    """
    from textbooklm.synth.mining import mine_functions
    from textbooklm.synth.rounds import sample_id
    from textbooklm.synth.strengthen import MinedExercise, separate_mined

    counts: Counter[str] = Counter()
    cands: list[Candidate] = []
    rejected: list[dict[str, Any]] = []

    def reject_row(prov: dict[str, Any], source: str, name: str, reason: str, detail: str,
                   prompt: str = "", completion: str = "", test: str = "") -> dict[str, Any]:
        return {"id": sample_id(f"{prov['mined'].get('source_id', '')}:{name}:{source}"), "prompt": prompt,
                "completion": completion, "text": source, "entry_point": name, "test": test,
                "provenance": json.dumps({"synth": prov}), "reason": reason, "detail": detail[:500]}

    for rec in files:
        found, rej, c = mine_functions(rec.get("text") or "", rec.get("path") or "", rec.get("id") or "",
                                       min_lines=min_lines, max_lines=max_lines)
        counts.update(c)
        for r in rej:
            prov = {"stage": stage, "source": "corpus", "round": k,
                    "mined": {"source_path": r.path, "source_id": r.file_id, "function": r.name, "lineno": r.lineno}}
            rejected.append(reject_row(prov, r.source, r.name, r.reason, r.detail))
        cands += found[:max_per_file]
        counts["over-per-file-cap"] += max(0, len(found) - max_per_file)
    counts["candidates"] = len(cands)

    plans = [(c, candidate_inputs(c, inputs_per_function, seed)) for c in cands]
    setups = [doctest_imports(ast.get_docstring(c.func)) if c.func is not None else [] for c in cands]
    probes = sandbox.run([probe_program(c, ins, str(j), per_call_s, setup=setups[j])
                          for j, (c, ins) in enumerate(plans)])
    kept_plans: list[tuple[Candidate, Judgement, dict[str, Any]]] = []
    input_counts: Counter[str] = Counter()
    setups_of = {id(c): su for c, su in zip(cands, setups, strict=True)}
    for (c, ins), res, setup in zip(plans, probes, setups, strict=True):
        probe = read_probe(res)
        j = judge(ins, probe, min_tests) if ins else Judgement([], Counter(), TOO_FEW_TESTS,
                                                                 "no inputs could be generated from its signature")
        input_counts["generated"] += len(ins)
        input_counts["tests"] += len(j.tests) if j.reason is None else 0
        input_counts.update(j.dropped)
        prov = {"stage": stage, "source": "corpus", "round": k, "mined": c.provenance(),
                "inputs": {"generated": len(ins), "origins": dict(Counter(i.origin for i in ins)),
                           "dropped": dict(j.dropped), "probe_status": res.status,
                           "probe_s": round(res.duration_s, 3)},
                "doctest": list(probe.doctest[:2]) if probe.doctest else None,
                "tests": j.tests}
        if j.reason is not None:
            rejected.append(reject_row(prov, c.code, c.name, j.reason, j.detail, c.prompt, c.completion,
                                       observed_check(j.tests, setup) if j.tests else ""))
        else:
            kept_plans.append((c, j, prov))

    # Verification: the exercise as it will be stored (prompt + completion, then its tests) in a fresh run.
    programs = [Program(id=str(n), code=c.code, test=observed_check(j.tests, setups_of[id(c)]),
                        entry_point=c.name) for n, (c, j, _p) in enumerate(kept_plans)]
    reasons = {"failed": "tests-failed", "timeout": "timeout", "memory": "memory", "crashed": "crashed"}
    verified: list[MinedExercise] = []
    for (c, j, prov), v in zip(kept_plans, sandbox.run(programs), strict=True):
        prov["verification"] = {"status": v.status, "error": v.error, "duration_s": round(v.duration_s, 3),
                                "n_tests": len(j.tests), "wall_limit_s": v.wall_limit_s}
        if v.passed:
            verified.append(MinedExercise(c, j.tests, setups_of[id(c)], prov, v.duration_s))
        else:
            rejected.append(reject_row(prov, c.code, c.name, reasons.get(v.status, v.status), v.error or v.status,
                                       c.prompt, c.completion, observed_check(j.tests, setups_of[id(c)])))
    # Do the tests reject trivial and mutated versions of the function? Weak ones get more inputs first.
    t0 = time.perf_counter()
    weakness = separate_mined(verified, separation, sandbox, per_call_s=per_call_s, seed=seed) \
        if separation is not None else [None] * len(verified)
    separation_s = round(time.perf_counter() - t0, 2)
    kept: list[dict[str, Any]] = []
    for it, weak in zip(verified, weakness, strict=True):
        c, test = it.cand, observed_check(it.tests, it.setup)
        it.prov["tests"] = it.tests
        if weak is None:
            kept.append({"id": sample_id(c.code), "prompt": c.prompt, "completion": c.completion, "text": c.code,
                         "entry_point": c.name, "test": test, "provenance": json.dumps({"synth": it.prov})})
        else:
            rejected.append(reject_row(it.prov, c.code, c.name, WEAK_TESTS, weak, c.prompt, c.completion, test))
    result = {"round": k, "source": "corpus", "files": len(files), "asked": len(cands), "parsed": len(cands),
              "passed_own_tests": len(kept), "kept": len(kept), "mining": dict(counts), "inputs": dict(input_counts),
              "rejected": dict(Counter(r["reason"] for r in rejected)), "kept_seeds": [], "separation_s": separation_s}
    return kept, rejected, result
