"""The `exercises` stage: HumanEval-style exercises, kept only when they are verified.

Two sources (``source``): ``teacher`` asks a teacher for one exercise per function name (below);
``corpus`` mines documented functions of the filtered corpus and writes their tests by running them
(corpus_exercises.py; one round per corpus shard, after the teacher's rounds, until ``corpus.count``
are verified). Both give the same rows and problems; ``provenance.synth.source`` says which.

phi-1's CodeExercises had no execution check ("GPT-3.5 data has a high error rate"); here every
exercise's own solution must pass its own tests in the sandbox, and optionally ``solutions - 1``
further solutions, sampled from the prompt alone, must pass them too (agreement: tests that several
independent solutions pass are more likely right than ones a single solution was written to fit).

Output ``OUT/`` (id, prompt, completion, text, entry_point, test, provenance): ``text`` is
``prompt + completion``, the docstring-completion training form. ``OUT/problems.jsonl`` holds the
kept exercises in the evals' problems format (task_id ``exercise/<name>``, canonical_solution =
completion). ``OUT/rejected/`` holds every failure with its reason: teacher-error, the parse
reasons of exercise.py (no-code, syntax-error, no-function, wrong-name, several-definitions,
no-docstring, no-solution, no-tests, too-few-tests), the sandbox verdicts (tests-failed, timeout,
memory, crashed), disagree, weak-tests (a trivial candidate or too many mutants of the solution pass
the tests: separation.py), duplicate, near-duplicate; and for mined ones the reasons of mining.py
and corpus_exercises.py (io, randomness, uses-globals, doctest-failed, raises, non-deterministic, ...).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.problems import Problem, write_problems_jsonl
from textbooklm.progress import summary_line
from textbooklm.sandbox import Program
from textbooklm.store import Dataset, atomic_write_bytes, atomic_write_json, finish_dataset
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
from textbooklm.synth.corpus_exercises import mine_round
from textbooklm.synth.diversity import coverage, diversity_report
from textbooklm.synth.docstring_rewrite import clean_reply, replace_docstring, rewrite_requests
from textbooklm.synth.driver import RoundSteps, drive_rounds
from textbooklm.synth.exercise import TOO_FEW_TESTS, ExerciseError, ParsedExercise, parse_exercise, reply_code
from textbooklm.synth.names import KINDS, VERBS, FunctionName, name_pool
from textbooklm.synth.prompts import EXERCISE_FIELDS, SOLUTION_FIELDS, PromptTemplate, words_line
from textbooklm.synth.rounds import (
    TEACHER_ERROR,
    LazySandbox,
    LazyTeacher,
    RoundStore,
    reasons_text,
    sample_id,
    short_hash,
)
from textbooklm.synth.seeds import SeedSampler, derived_seed, load_words
from textbooklm.synth.separation import (
    WEAK_TESTS,
    Exercise,
    SeparationRun,
    candidate_limits,
    separation_summary,
)
from textbooklm.teacher import Request, Teacher

SCHEMA = pa.schema([
    ("id", pa.string()), ("prompt", pa.string()), ("completion", pa.string()), ("text", pa.string()),
    ("entry_point", pa.string()), ("test", pa.string()), ("provenance", pa.string()),
])
REJECTED_SCHEMA = SCHEMA.append(pa.field("reason", pa.string())).append(pa.field("detail", pa.string()))
STAGE = "exercises"
VERDICT_REASON = {"failed": "tests-failed", "timeout": "timeout", "memory": "memory", "crashed": "crashed"}


def exercise_prompt(template: PromptTemplate, fn: FunctionName, audience: str, words: list[str], min_tests: int) -> str:
    return template.render(name=fn.name, signature=fn.signature, params=fn.params, topic=fn.topic,
                           audience=audience, words=", ".join(words), words_line=words_line(words),
                           min_tests=str(min_tests))


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


def solution_request(r: dict[str, Any], j: int, cfg: ExercisesConfig, sol_template: PromptTemplate,
                     run_seed: int) -> Request:
    """Request j (1-based) for another solution of row r's exercise, from its prompt alone."""
    return Request(messages=[{"role": "user", "content": sol_template.render(prompt=r["ex"].prompt.rstrip(),
                                                                              name=r["fn"].name)}],
                   max_tokens=cfg.solution_max_tokens or cfg.max_tokens, temperature=max(cfg.temperature, 0.7),
                   top_p=cfg.top_p, seed=derived_seed(STAGE, "solution", run_seed, r["prov"]["index"], j) % 2**31)


def consensus_round(parsed: list[dict[str, Any]], cfg: ExercisesConfig, sol_template: PromptTemplate,
                    t: Teacher, sandbox: LazySandbox, run_seed: int) -> dict[str, Any]:
    """Give each parsed exercise tests from agreeing solutions (consensus.py), or a rejection reason.

    Three sandbox passes, cheapest first so the teacher is asked only where it can matter: the
    exercise's own solution on every input (inputs where it raises or returns a non-literal are
    dropped; too few left: too-few-tests, and no extra solutions are requested), then the extra
    solutions on the inputs left; the caller then verifies the solution against the built tests.
    Returns the round's counts for the summary.
    """
    n_sol = cfg.n_solutions
    programs, where = [], []
    for r in parsed:
        for i, args in enumerate(r["ex"].inputs):
            programs.append(call_program(str(len(programs)), r["ex"].prompt + r["ex"].completion, r["fn"].name, args))
            where.append((r, i))
    own: dict[int, list[Outcome]] = {id(r): [] for r in parsed}
    for (r, _i), v in zip(where, sandbox.run(programs), strict=True):
        own[id(r)].append(outcome_of(v))

    candidates = []
    for r in parsed:
        usable = [i for i, o in enumerate(own[id(r)]) if own_drop_reason(o) is None]
        r["usable"] = usable
        if len(usable) < cfg.min_tests:
            first = decide(own[id(r)], [])
            r.update(reason=TOO_FEW_TESTS, detail=f"{len(usable)} of {len(r['ex'].inputs)} inputs give a literal value "
                     f"on the exercise's own solution, at least {cfg.min_tests} needed ({reasons_text(first.dropped)})")
            r["prov"]["consensus"] = {"tests_from": "consensus", "n_solutions": n_sol, "inputs": r["ex"].inputs,
                                      "input_origins": r["ex"].input_origins,
                                      "inputs_found": len(r["ex"].inputs), "inputs_agreed": 0,
                                      "dropped": dict(first.dropped), "solutions": []}
        else:
            candidates.append(r)

    extra = [(r, j) for r in candidates for j in range(1, n_sol)]
    requests = [solution_request(r, j, cfg, sol_template, run_seed) for r, j in extra]
    results = t.complete(requests) if requests else []
    sols: dict[int, list[dict[str, Any]]] = {id(r): [] for r in candidates}
    programs, where = [], []
    for (r, j), req, res in zip(extra, requests, results, strict=True):
        note = {"solution": j, "request_key": t.key(req), "hash": short_hash(res.text or ""), "status": "ok"}
        code = None
        if not res.ok:
            note["status"] = f"{TEACHER_ERROR}: {res.error}"
        else:
            try:
                code = solution_code(res.text, r["fn"].name)
            except ExerciseError as exc:
                note["status"] = f"{exc.reason}: {exc.detail}"
        sols[id(r)].append(note)
        if code is not None:
            for i in r["usable"]:
                programs.append(call_program(str(len(programs)), extra_code(r["ex"], code), r["fn"].name,
                                             r["ex"].inputs[i]))
                where.append((r, j, i))
    others: dict[int, list[list[Outcome | None]]] = {
        id(r): [[None] * len(r["ex"].inputs) for _ in range(n_sol - 1)] for r in candidates}
    for (r, j, i), v in zip(where, sandbox.run(programs), strict=True):
        others[id(r)][j - 1][i] = outcome_of(v)

    totals: Counter[str] = Counter()
    got = 0
    candidate_ids = {id(r) for r in candidates}
    for r in parsed:
        ex = r["ex"]
        if id(r) in candidate_ids:
            d = decide(own[id(r)], others[id(r)])
            agreed = [ex.inputs[i] for i in d.agreed]
            r["prov"]["consensus"] = {"tests_from": "consensus", "n_solutions": n_sol, "inputs": ex.inputs,
                                      "input_origins": ex.input_origins,
                                      "inputs_found": len(ex.inputs), "inputs_agreed": len(agreed),
                                      "dropped": dict(d.dropped), "solutions": sols[id(r)]}
            if len(agreed) >= cfg.min_tests:
                ex.test = consensus_tests(agreed, [own[id(r)][i] for i in d.agreed])
                ex.n_tests = len(agreed)
                got += 1
            else:
                unusable = [s["status"] for s in sols[id(r)] if s["status"] != "ok"]
                reason = DISAGREE if d.dropped[DISAGREE] else TOO_FEW_TESTS
                r.update(reason=reason, detail=f"{len(agreed)} of {len(ex.inputs)} inputs agreed by all {n_sol} "
                         f"solutions, at least {cfg.min_tests} needed ({reasons_text(d.dropped)})"
                         + (f"; unusable solution: {unusable[0]}" if unusable else ""))
        totals.update(r["prov"]["consensus"]["dropped"])
        totals["found"] += len(ex.inputs)
        totals["agreed"] += r["prov"]["consensus"]["inputs_agreed"]
        r.pop("usable", None)
    return {"exercises": got, "requests": len(requests), **totals}


def run_round(k: int, names: list[FunctionName], audiences: list[Any], cfg: ExercisesConfig,
              templates: tuple[PromptTemplate, PromptTemplate], teacher: LazyTeacher, sandbox: LazySandbox,
              run_seed: int, start: int,
              separation: SeparationRun | None = None) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Ask and check one round in one go (tests and callers without the driver)."""
    asked = ask_round(names, audiences, cfg, templates[0], teacher, run_seed, start)
    return check_round(k, names, audiences, asked, cfg, templates, teacher, sandbox, run_seed, start, separation)


def ask_round(names: list[FunctionName], audiences: list[Any], cfg: ExercisesConfig, template: PromptTemplate,
              teacher: LazyTeacher, run_seed: int, start: int) -> tuple[list[str], list[Request], list[Any]]:
    """Render and send one round's exercise prompts (the driver runs this while the previous round is checked)."""
    prompts = [exercise_prompt(template, fn, s.audience, s.words, cfg.min_tests) for fn, s in zip(names, audiences,
                                                                                                   strict=True)]
    requests = [
        Request(messages=[{"role": "user", "content": p}], max_tokens=cfg.max_tokens, temperature=cfg.temperature,
                top_p=cfg.top_p, seed=derived_seed(STAGE, run_seed, start + i) % 2**31)
        for i, p in enumerate(prompts)
    ]
    return prompts, requests, teacher.complete(requests)


def check_round(k: int, names: list[FunctionName], audiences: list[Any],
                asked: tuple[list[str], list[Request], list[Any]], cfg: ExercisesConfig,
                templates: tuple[PromptTemplate, PromptTemplate], teacher: LazyTeacher, sandbox: LazySandbox,
                run_seed: int, start: int,
                separation: SeparationRun | None = None) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Parse, agree on tests (asking for more solutions), verify and separate one round's exercises."""
    template, sol_template = templates
    prompts, requests, results = asked
    t = teacher  # complete/key through the lock: the next round may be asking on the driver's thread
    rows: list[dict[str, Any]] = []
    for i, (fn, s, p, req, res) in enumerate(zip(names, audiences, prompts, requests, results, strict=True)):
        prov = {
            "stage": STAGE, "source": "teacher", "round": k, "index": start + i, "name": fn.to_json(),
            "seed": {"audience": s.audience, "words": s.words},
            "teacher": {**teacher.describe(), "request_key": t.key(req), "tokens_out": res.tokens_out,
                        "finish_reason": res.finish_reason},
            "template": {"path": template.source, "hash": template.hash}, "prompt_hash": short_hash(p),
        }
        row: dict[str, Any] = {"fn": fn, "reply": res.text, "prov": prov, "ex": None, "reason": None, "detail": ""}
        if not res.ok:
            row.update(reason=TEACHER_ERROR, detail=res.error or "")
        else:
            try:
                row["ex"] = parse_exercise(res.text, fn.name, cfg.min_tests, cfg.tests_from, cfg.generate_inputs)
            except ExerciseError as exc:
                row.update(reason=exc.reason, detail=exc.detail)
        rows.append(row)

    parsed = [r for r in rows if r["ex"] is not None]
    consensus: dict[str, Any] = {}
    if cfg.tests_from == "consensus":
        consensus = consensus_round(parsed, cfg, sol_template, t, sandbox, run_seed)

    # Verify: each exercise's own solution against its own (or its consensus) tests.
    tested = [r for r in parsed if r["reason"] is None]
    verdicts = sandbox.run([program_of(r["ex"], str(j)) for j, r in enumerate(tested)])
    for r, v in zip(tested, verdicts, strict=True):
        r["prov"]["verification"] = {"status": v.status, "error": v.error, "duration_s": round(v.duration_s, 3),
                                     "n_tests": r["ex"].n_tests, "wall_limit_s": v.wall_limit_s}
        if not v.passed:
            r.update(reason=VERDICT_REASON.get(v.status, v.status), detail=v.error or v.status)
    passed_own = [r for r in tested if r["reason"] is None]
    n_sol = cfg.n_solutions

    # Agreement: further solutions from the prompt alone must pass the same tests.
    if cfg.tests_from == "teacher" and n_sol > 1 and passed_own:
        extra = [(r, j) for r in passed_own for j in range(1, n_sol)]
        sol_results = t.complete([solution_request(r, j, cfg, sol_template, run_seed) for r, j in extra])
        programs, owners, notes = [], [], {}
        for n, ((r, _j), res) in enumerate(zip(extra, sol_results, strict=True)):
            prog = alternative_program(r["ex"], res.text, str(n)) if res.ok else f"teacher: {res.error}"
            if isinstance(prog, str):
                notes.setdefault(id(r), []).append(prog)
            else:
                programs.append(prog)
                owners.append(r)
        for r, v in zip(owners, sandbox.run(programs), strict=True):
            if not v.passed:
                notes.setdefault(id(r), []).append(f"{v.status}: {v.error}")
        for r in passed_own:
            failed = notes.get(id(r), [])
            r["prov"]["agreement"] = {"solutions": n_sol, "agreeing": n_sol - len(failed), "failures": failed}
            if failed:
                r.update(reason="disagree",
                         detail=f"{len(failed)} of {n_sol - 1} other solutions failed the tests: {failed[0]}")

    # Separation: the tests must reject trivial candidates and most mutants of the solution (separation.py).
    # No strengthening here: a consensus test's value needs every solution's agreement, a teacher's its asserts.
    if separation is not None:
        todo = [r for r in parsed if r["reason"] is None]
        seps = separation.check([Exercise(r["ex"].prompt + r["ex"].completion, r["fn"].name, r["ex"].test,
                                          r["prov"]["verification"]["duration_s"]) for r in todo])
        for r, sep in zip(todo, seps, strict=True):
            r["prov"]["separation"] = {**sep.to_json(), "min_mutation_score": separation.cfg.min_mutation_score}
            weak = separation.weakness(sep)
            if weak:
                r.update(reason=WEAK_TESTS, detail=weak)

    kept, rejected = [], []
    for r in rows:
        ex: ParsedExercise | None = r["ex"]
        base = {
            "prompt": ex.prompt if ex else "", "completion": ex.completion if ex else "",
            "entry_point": r["fn"].name, "test": ex.test if ex else "",
        }
        if ex is not None:
            r["prov"]["parse"] = {"n_tests": ex.n_tests, "helpers": ex.helpers, "dropped_statements":
                                  ex.dropped_statements}
        if r["reason"] is None:
            text = ex.prompt + ex.completion  # type: ignore[union-attr]
            kept.append({"id": sample_id(text), **base, "text": text, "provenance": json.dumps({"synth": r["prov"]})})
        else:
            r["prov"]["reply"] = r["reply"]
            rid = sample_id(r["reply"] or f"{STAGE}:{r['prov']['index']}")
            rejected.append({"id": rid, **base, "text": r["reply"], "provenance": json.dumps({"synth": r["prov"]}),
                             "reason": r["reason"], "detail": (r["detail"] or "")[:500]})
    result = {
        "round": k, "asked": len(rows), "parsed": len(parsed), "passed_own_tests": len(passed_own), "kept": len(kept),
        "consensus": consensus,
        "rejected": dict(Counter(r["reason"] for r in rejected)),
        "kept_seeds": [{"topic": json.loads(r["provenance"])["synth"]["name"]["topic"],
                        **json.loads(r["provenance"])["synth"]["seed"]} for r in kept],
        "diversity": diversity_report([r["text"] for r in kept], ngram=cfg.diversity.ngram,
                                      num_perm=cfg.diversity.num_perm, bands=cfg.diversity.bands,
                                      threshold=cfg.diversity.threshold, openings_words=cfg.diversity.openings_words),
    }
    return kept, rejected, result


def consensus_text(rounds: list[dict[str, Any]], cfg: ExercisesConfig) -> str:
    """'12 got consensus tests from 3 solutions (inputs: 60 found, 31 agreed; dropped disagree 20, ...)'."""
    tot: Counter[str] = Counter()
    for r in rounds:
        tot.update(r.get("consensus") or {})
    dropped = {k: v for k, v in tot.items() if k not in ("exercises", "requests", "found", "agreed") and v}
    return (f"{tot['exercises']} got consensus tests from {cfg.n_solutions} solutions (inputs: {tot['found']} found, "
            f"{tot['agreed']} agreed" + (f"; dropped {reasons_text(dropped)}" if dropped else "") + ")")


def rewrite_docstrings(rows: list[dict[str, Any]], teacher: LazyTeacher, sandbox: LazySandbox,
                       cfg: ExercisesConfig, run_seed: int, k: int) -> None:
    """Ask the teacher for a new docstring of each mined exercise (docstring_rewrite.py); a usable one
    replaces the original when the exercise still passes its tests. Rows are updated in place."""
    if not rows:
        return
    t = teacher.get()
    requests = [Request(messages=[{"role": "user", "content": p}], max_tokens=cfg.max_tokens,
                        temperature=cfg.temperature, top_p=cfg.top_p,
                        seed=derived_seed(STAGE, "docstring", run_seed, k, i) % 2**31)
                for i, p in enumerate(rewrite_requests(rows))]
    notes: list[dict[str, Any]] = []
    candidates: list[tuple[int, str]] = []
    for i, (r, req, res) in enumerate(zip(rows, requests, t.complete(requests), strict=True)):
        note: dict[str, Any] = {"request_key": t.key(req)}
        notes.append(note)
        if not res.ok:
            note["kept_original"] = f"{TEACHER_ERROR}: {res.error}"
            continue
        doc, why = clean_reply(res.text)
        new_prompt = replace_docstring(r["prompt"], r["completion"], r["entry_point"], doc) if doc else None
        if new_prompt is None:
            note["kept_original"] = why or "the docstring could not be replaced"
        else:
            candidates.append((i, new_prompt))
    programs = [Program(id=str(i), code=p + rows[i]["completion"], test=rows[i]["test"],
                        entry_point=rows[i]["entry_point"]) for i, p in candidates]
    for (i, new_prompt), v in zip(candidates, sandbox.run(programs), strict=True):
        r = rows[i]
        if v.passed:
            notes[i]["original_prompt"] = r["prompt"]
            r.update(prompt=new_prompt, text=new_prompt + r["completion"], id=sample_id(new_prompt + r["completion"]))
        else:
            notes[i]["kept_original"] = f"re-verification {v.status}: {v.error}"
    for r, note in zip(rows, notes, strict=True):
        prov = json.loads(r["provenance"])
        prov["synth"]["docstring_rewrite"] = note
        r["provenance"] = json.dumps(prov)


def corpus_rounds(cfg: ExercisesConfig, corpus: Dataset | None, store: RoundStore, sandbox: LazySandbox,
                  run_seed: int, first: int, rounds: list[dict[str, Any]], teacher: LazyTeacher | None = None,
                  separation: SeparationRun | None = None) -> int:
    """Mine the filtered corpus one shard per round (rounds ``first``, ``first + 1``, ...) until
    ``corpus.count`` exercises are verified; returns the number of rounds in all. Marked rounds are
    read back, not re-run."""
    if corpus is None:
        raise ValueError("[exercises] source includes 'corpus', but the run has no filter stage: mining reads the "
                         "filtered corpus; add a [filter] section (and its corpus/judge/classify) or use "
                         "source = 'teacher'")
    mc = cfg.corpus
    kept = 0
    k = first
    for shard in corpus.shards():
        if kept >= mc.count:
            break
        result = store.done(k)
        if result is None:
            names = set(pq.read_schema(shard).names)
            if "text" not in names:
                raise ValueError(f"{shard}: the corpus to mine has no 'text' column (has {sorted(names)})")
            files = pq.read_table(shard, columns=[c for c in ("id", "text", "path") if c in names]).to_pylist()
            kept_rows, rejected, result = mine_round(
                k, files, min_tests=cfg.min_tests, inputs_per_function=mc.inputs, per_call_s=mc.per_call_s,
                min_lines=mc.min_lines, max_lines=mc.max_lines, max_per_file=mc.max_per_file, sandbox=sandbox,
                seed=run_seed, stage=STAGE, separation=separation)
            if mc.rewrite_docstring and teacher is not None:
                rewrite_docstrings(kept_rows, teacher, sandbox, cfg, run_seed, k)
            result["shard"] = shard.name
            store.write(k, kept_rows, rejected, result)
        kept += result["kept"]
        rounds.append(result)
        k += 1
    return k


def corpus_totals(rounds: list[dict[str, Any]]) -> dict[str, int]:
    """Files, functions, candidates and tests over the corpus rounds (for the summary)."""
    tot: Counter[str] = Counter()
    for r in rounds:
        if r.get("source") == "corpus":
            tot.update(r["mining"])
            tot["tests"] += r["inputs"].get("tests", 0)
            tot["kept"] += r["kept"]
    return {k: tot[k] for k in ("files", "functions", "documented", "candidates", "tests", "kept")}


def exercise_problems(rows: list[dict[str, Any]]) -> list[Problem]:
    """Kept exercises in the evals' problems format; task ids ``exercise/<name>``, made unique with the
    record id when two exercises (a mined one and a written one, two files) share a function name."""
    problems, seen = [], set()
    for r in rows:
        task_id = f"exercise/{r['entry_point']}"
        if task_id in seen:
            task_id += f"-{r['id'][:8]}"
        seen.add(task_id)
        source = json.loads(r["provenance"])["synth"].get("source", "teacher")
        problems.append(Problem(task_id=task_id, prompt=r["prompt"], entry_point=r["entry_point"], test=r["test"],
                                canonical_solution=r["completion"],
                                extra={"id": r["id"], "source": "synth.exercises", "origin": source}))
    return problems


def run(cfg: ExercisesConfig, inputs: dict[str, Dataset], out: Path, ctx: Any) -> Dataset:
    """Run the exercises stage into ``out`` (resuming an interrupted run without re-sending requests)."""
    out = Path(out)
    run_seed = ctx.run.seed
    names = name_pool(cfg.count, cfg.names_file, run_seed)
    s = cfg.seeds
    # Exercises take their topic from the function name; the sampler varies audience (and words).
    sampler = SeedSampler(["(from the function name)"], s.audiences, s.styles,
                          load_words(s.words_file) if s.random_words else [], n_words=s.random_words,
                          reweight=s.reweight, seed=derived_seed(STAGE, run_seed))
    templates = (PromptTemplate.load("exercise", cfg.template, EXERCISE_FIELDS),
                 PromptTemplate.load("solution", cfg.solution_template, SOLUTION_FIELDS))
    store = RoundStore(out, SCHEMA, REJECTED_SCHEMA)
    teacher = LazyTeacher(cfg.teacher, ctx, out, STAGE) if cfg.teacher is not None else None
    sandbox = LazySandbox(cfg.sandbox, ctx.run.workers)
    candidates = LazySandbox(candidate_limits(cfg.separation, cfg.sandbox), ctx.run.workers)
    separation = SeparationRun(cfg.separation, candidates, run_seed)
    n_rounds = -(-cfg.count // cfg.per_round) if "teacher" in cfg.sources else 0

    def batch(k: int) -> list[FunctionName]:
        return names[k * cfg.per_round: (k + 1) * cfg.per_round]

    steps = RoundSteps(
        plan=lambda k, cov: sampler.sample(len(batch(k)), k, cov, start=k * cfg.per_round),
        ask=lambda k, seeds: ask_round(batch(k), seeds, cfg, templates[0], teacher, run_seed, k * cfg.per_round),
        check=lambda k, seeds, asked: check_round(k, batch(k), seeds, asked, cfg, templates, teacher, sandbox,
                                                  run_seed, k * cfg.per_round, separation),
        kept_seeds=lambda marker: [{"topic": s["topic"], "audience": s["audience"], "style": "", "words": s["words"]}
                                   for s in marker["kept_seeds"]],
    )
    rounds: list[dict[str, Any]] = []
    try:
        # round k+1's exercise prompts are in flight while round k is checked (driver.py)
        for result in drive_rounds(n_rounds, store, steps):
            rounds.append({key: val for key, val in result.items() if key != "kept_seeds"})
        if "corpus" in cfg.sources:
            n_rounds = corpus_rounds(cfg, inputs.get("filter"), store, sandbox, run_seed, n_rounds, rounds, teacher,
                                     separation)
    finally:
        sandbox.close()
        candidates.close()
        teacher_line = teacher.summary() if teacher is not None else "teacher not used (corpus exercises only)"
        if teacher is not None:
            teacher.close()

    final = store.finish(n_rounds, cfg.diversity)  # streams the rounds; measures the kept set's diversity
    overall = final.pop("diversity")
    kept_ds = Dataset(out)
    kept_rows = list(kept_ds.iter_records()) if kept_ds.shards() else []
    problems = exercise_problems(kept_rows)
    tmp = out / ".problems.jsonl.tmp"
    write_problems_jsonl(tmp, problems)
    atomic_write_bytes(out / "problems.jsonl", tmp.read_bytes())
    tmp.unlink()

    all_provs = [json.loads(r["provenance"])["synth"] for r in kept_rows]
    provs = [p for p in all_provs if "name" in p]  # teacher exercises (corpus ones have no function-name seed)
    overall["coverage"] = {
        "names": coverage([p["name"]["name"] for p in provs], [n.name for n in names]),
        "kinds": coverage([p["name"]["kind"] for p in provs],
                          [*KINDS, "classic"] + (["user"] if cfg.names_file else [])),
        "verbs": coverage([p["name"]["verb"] for p in provs if p["name"]["verb"]], VERBS),
        "audiences": coverage([p["seed"]["audience"] for p in provs], s.audiences),
    }
    report = {"overall": overall, "rounds": [{"round": r["round"], **r.get("diversity", {})} for r in rounds]}
    atomic_write_json(out / "diversity.json", report)
    asked = sum(r["asked"] for r in rounds)
    parsed = sum(r["parsed"] for r in rounds)
    own = sum(r["passed_own_tests"] for r in rounds)
    cv = overall["coverage"]
    # One meaning of "in" for the line, status and the report: every candidate exercise decided on.
    candidates = final["kept"] + final["rejected"]
    from_teacher = sum(r["asked"] for r in rounds if r.get("source") != "corpus")
    head = (f"exercises: {candidates} candidates ({from_teacher} teacher replies, {candidates - from_teacher} "
            f"documented corpus functions), {final['kept']} verified and kept, {final['rejected']} rejected")
    line = (
        head
        + (f" ({reasons_text(final['rejected_by_reason'])})" if final["rejected"] else "")
        + (f"; {parsed} parsed, {consensus_text(rounds, cfg)}" if cfg.tests_from == "consensus" else
           f"; {parsed} parsed, {own} passed their own tests"
           + (f", {final['kept']} after {cfg.n_solutions}-solution agreement" if cfg.n_solutions > 1 else ""))
        + f"; distinct-3 {overall['distinct_3']:.2f}, near-dup rate {overall['near_duplicate_rate']:.0%}"
        + f"; names {cv['names']['used']}/{cv['names']['available']}, kinds {cv['kinds']['used']}/"
        f"{cv['kinds']['available']}, audiences {cv['audiences']['used']}/{cv['audiences']['available']}"
    ) if "teacher" in cfg.sources else (
        head + (f" ({reasons_text(final['rejected_by_reason'])})" if final["rejected"] else "")
    )
    sep_line, sep_summary = separation_summary(all_provs, final["rejected_by_reason"].get(WEAK_TESTS, 0),
                                               cfg.separation)
    line += sep_line
    by_source = Counter(p.get("source", "teacher") for p in all_provs)
    mined = corpus_totals(rounds)
    if "corpus" in cfg.sources:
        line += (f"; corpus: {mined['files']} files, {mined['documented']} documented functions, "
                 f"{mined['candidates']} candidates run, {by_source['corpus']} kept with {mined['tests']} tests from "
                 f"execution")
    summary = {"line": line, "asked": asked, "parsed": parsed, "passed_own_tests": own, **final,
               "counts": {"in": candidates, "kept": final["kept"], "dropped": final["rejected"],
                          "in_means": "candidate exercises (teacher replies and documented corpus functions)"},
               "kept_by_source": dict(by_source), "corpus_mining": mined, "separation": sep_summary,
               "verified_rate": round(final["kept"] / max(asked, 1), 4), "diversity": overall, "teacher": teacher_line,
               "problems_jsonl": str(out / "problems.jsonl")}
    finish_dataset(out / "rejected", stage=f"{STAGE}.rejected", config_hash=ctx.config_hash, summary=summary)
    ds = finish_dataset(out, stage=STAGE, config_hash=ctx.config_hash, parents=[str(v.path) for v in inputs.values()],
                        summary=summary)
    summary_line(teacher_line)
    summary_line(line)
    return ds
