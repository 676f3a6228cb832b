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
import os
import socket
from collections import Counter
from concurrent.futures import Future
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pyarrow as pa

from textbooklm.problems import Problem, write_problems_jsonl
from textbooklm.stage_context import StageContext
from textbooklm.store import Dataset, atomic_write_bytes
from textbooklm.synth.candidate import Candidate, ask, split_rows, teacher_notes
from textbooklm.synth.check_worker import worker_context, worker_sandbox, worker_teacher
from textbooklm.synth.config import ExercisesConfig
from textbooklm.synth.corpus_rounds import corpus_rounds, corpus_totals
from textbooklm.synth.diversity import coverage, diversity_report
from textbooklm.synth.driver import RoundSteps
from textbooklm.synth.exercise import ExerciseError, parse_exercise
from textbooklm.synth.exercise_verify import (
    STAGE,
    ExerciseTools,
    agree,
    consensus_round,
    separate,
    verify_own,
)
from textbooklm.synth.names import KINDS, VERBS, FunctionName, name_pool
from textbooklm.synth.prompts import EXERCISE_FIELDS, SOLUTION_FIELDS, PromptTemplate, words_line
from textbooklm.synth.round_stage import Services, dedup, drive, kept_column, write_stage
from textbooklm.synth.rounds import TEACHER_ERROR, RoundStore, reasons_text, sample_id, short_hash
from textbooklm.synth.seeds import Seed, SeedSampler, derived_seed, load_words
from textbooklm.synth.separation import WEAK_TESTS, SeparationRun, candidate_limits, separation_summary
from textbooklm.teacher import Request
from textbooklm.teacher.fanout import stage_ledger

SCHEMA = pa.schema([
    ("id", pa.string()), ("prompt", pa.string()), ("completion", pa.string()), ("text", pa.string()),
    ("entry_point", pa.string()), ("test", pa.string()), ("provenance", pa.string()),
])
REJECTED_SCHEMA = SCHEMA.append(pa.field("reason", pa.string())).append(pa.field("detail", pa.string()))
IN_MEANS = "candidate exercises"  # teacher replies and documented corpus functions, decided on


def exercise_prompt(template: PromptTemplate, fn: FunctionName, audience: str, words: list[str], min_tests: int) -> str:
    return template.render(name=fn.name, signature=fn.signature, params=fn.params, topic=fn.topic,
                           audience=audience, words=", ".join(words), words_line=words_line(words),
                           min_tests=str(min_tests))


# -- the steps of a teacher round: plan, ask (candidate.ask), parse, verify (exercise_verify.py) ----------------
def plan_round(k: int, names: list[FunctionName], seeds: list[Seed], cfg: ExercisesConfig, template: PromptTemplate,
               run_seed: int, start: int) -> list[Candidate]:
    """The plan step: one candidate per function name (with its drawn audience and words), nothing sent."""
    cands = []
    for i, (fn, s) in enumerate(zip(names, seeds, strict=True)):
        prompt = exercise_prompt(template, fn, s.audience, s.words, cfg.min_tests)
        request = Request(messages=[{"role": "user", "content": prompt}], max_tokens=cfg.max_tokens,
                          temperature=cfg.temperature, top_p=cfg.top_p,
                          seed=derived_seed(STAGE, run_seed, start + i) % 2**31)
        cands.append(Candidate(round=k, index=start + i, seed=s, prompt=prompt, request=request, name=fn))
    return cands


def parse_round(cands: list[Candidate], tools: ExerciseTools) -> list[Candidate]:
    """The parse step: who answered (provenance), and each reply's exercise or why it is none; returns
    the parsed candidates."""
    cfg, template = tools.cfg, tools.template
    for c in cands:
        res = c.reply
        assert res is not None, f"exercise {c.index} was not asked"
        c.notes = {"stage": STAGE, "source": "teacher", "round": c.round, "index": c.index, "name": c.fn.to_json(),
                   "seed": {"audience": c.seed.audience, "words": c.seed.words},
                   "teacher": teacher_notes(c, tools.ask),
                   "template": {"path": template.source, "hash": template.hash}, "prompt_hash": short_hash(c.prompt)}
        if not res.ok:
            c.reject(TEACHER_ERROR, res.error or "")
            continue
        try:
            c.parsed = parse_exercise(res.text, c.fn.name, cfg.min_tests, cfg.tests_from, cfg.generate_inputs)
        except ExerciseError as exc:
            c.reject(exc.reason, exc.detail)
    return [c for c in cands if c.parsed is not None]


def set_fields(c: Candidate) -> None:
    """The row's columns: a kept exercise is its prompt + completion; a rejected one keeps the reply."""
    ex = c.parsed
    base = {"prompt": ex.prompt if ex else "", "completion": ex.completion if ex else "", "entry_point": c.fn.name,
            "test": ex.test if ex else ""}
    if ex is not None:
        c.notes["parse"] = {"n_tests": ex.n_tests, "helpers": ex.helpers, "dropped_statements": ex.dropped_statements}
    reply = c.reply.text if c.reply is not None else ""
    if c.alive and ex is not None:
        text = ex.prompt + ex.completion
        c.fields = {"id": sample_id(text), **base, "text": text}
    else:
        c.notes["reply"] = reply
        c.fields = {"id": sample_id(reply or f"{STAGE}:{c.index}"), **base, "text": reply}


def check_round(k: int, cands: list[Candidate], tools: ExerciseTools) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Parse, agree on tests (asking for more solutions), verify and separate one round's answered candidates."""
    cfg = tools.cfg
    parsed = parse_round(cands, tools)
    consensus = consensus_round(parsed, tools) if cfg.tests_from == "consensus" else {}
    passed_own = verify_own(parsed, tools.sandbox)
    if cfg.tests_from == "teacher":
        agree(passed_own, tools)
    if tools.separation is not None:
        separate(parsed, tools.separation)
    for c in cands:
        set_fields(c)
    kept, rejected = split_rows(cands)
    d = cfg.diversity
    result = {
        "round": k, "asked": len(cands), "parsed": len(parsed), "passed_own_tests": len(passed_own), "kept": len(kept),
        "consensus": consensus, "rejected": dict(Counter(r["reason"] for r in rejected)),
        "kept_seeds": [{"topic": c.fn.topic, "audience": c.seed.audience, "words": c.seed.words}
                       for c in cands if c.alive],
        "diversity": diversity_report([r["text"] for r in kept], ngram=d.ngram, num_perm=d.num_perm, bands=d.bands,
                                      threshold=d.threshold, openings_words=d.openings_words),
    }
    return kept, rejected, result


def check_task(task: dict[str, Any]) -> dict[str, Any]:
    """Round ``task["round"]``'s check in an executor worker (``checks = "executor"``): the same
    :func:`check_round` as on the driver, with this worker's warm sandboxes and teacher (check_worker.py; the
    teacher writes its own cache file). Writes the round's files and returns its marker, which the executor
    writes last (rounds.py)."""
    cfg: ExercisesConfig = task["cfg"]
    ctx = worker_context(task["ctx"])
    teacher = (worker_teacher(task["teacher_cfg"], task["cache_dir"], STAGE, task["teacher_name"])
               if task["teacher_cfg"] is not None else None)
    tools = ExerciseTools(cfg, teacher, worker_sandbox(cfg.sandbox, ctx.run.workers), task["template"],
                          task["solution_template"], task["run_seed"],
                          SeparationRun(cfg.separation,
                                        worker_sandbox(candidate_limits(cfg.separation, cfg.sandbox), ctx.run.workers),
                                        task["run_seed"]))
    kept, rejected, marker = check_round(task["round"], task["cands"], tools)
    marker["checked_by"] = f"{socket.gethostname()}:{os.getpid()}"  # which worker (Ray node) checked the round
    return RoundStore(Path(task["out"]), SCHEMA, REJECTED_SCHEMA).write_parts(task["round"], kept, rejected, marker)


# -- the stage -----------------------------------------------------------------------------------------------
def consensus_text(rounds: list[dict[str, Any]], cfg: ExercisesConfig) -> str:
    """'12 got consensus tests from 3 solutions (inputs: 60 found, 31 agreed; dropped disagree 20, ...)'."""
    tot: Counter[str] = Counter()
    for r in rounds:
        tot.update(r.get("consensus") or {})
    dropped = {k: v for k, v in tot.items() if k not in ("exercises", "requests", "found", "agreed") and v}
    return (f"{tot['exercises']} got consensus tests from {cfg.n_solutions} solutions (inputs: {tot['found']} found, "
            f"{tot['agreed']} agreed" + (f"; dropped {reasons_text(dropped)}" if dropped else "") + ")")


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


def write_problems(out: Path) -> None:
    """``OUT/problems.jsonl``: the kept exercises in the evals' format (written atomically)."""
    kept_ds = Dataset(out)
    problems = exercise_problems(list(kept_ds.iter_records()) if kept_ds.shards() else [])
    tmp = out / ".problems.jsonl.tmp"
    write_problems_jsonl(tmp, problems)
    atomic_write_bytes(out / "problems.jsonl", tmp.read_bytes())
    tmp.unlink()


def name_coverage(provs: list[dict[str, Any]], names: list[FunctionName], cfg: ExercisesConfig) -> dict[str, Any]:
    """How much of the names, kinds, verbs and audiences the kept teacher exercises used."""
    provs = [p for p in provs if "name" in p]  # teacher exercises (corpus ones have no function-name seed)
    return {
        "names": coverage([p["name"]["name"] for p in provs], [n.name for n in names]),
        "kinds": coverage([p["name"]["kind"] for p in provs],
                          [*KINDS, "classic"] + (["user"] if cfg.names_file else [])),
        "verbs": coverage([p["name"]["verb"] for p in provs if p["name"]["verb"]], VERBS),
        "audiences": coverage([p["seed"]["audience"] for p in provs], cfg.seeds.audiences),
    }


def summary_tail(rounds: list[dict[str, Any]], final: dict[str, Any], overall: dict[str, Any],
                 cfg: ExercisesConfig, candidates: int) -> str:
    """The line after the ledger's counts: where candidates came from, parse/consensus/agreement, diversity."""
    from_teacher = sum(r["asked"] for r in rounds if r.get("source") != "corpus")
    tail = f"{from_teacher} teacher replies, {candidates - from_teacher} documented corpus functions"
    if "teacher" not in cfg.sources:
        return tail
    parsed = sum(r["parsed"] for r in rounds)
    own = sum(r["passed_own_tests"] for r in rounds)
    cv = overall["coverage"]
    return (
        tail
        + (f"; {parsed} parsed, {consensus_text(rounds, cfg)}" if cfg.tests_from == "consensus" else
           f"; {parsed} parsed, {own} passed their own tests"
           + (f", {final['kept']} after {cfg.n_solutions}-solution agreement" if cfg.n_solutions > 1 else ""))
        + f"; distinct-3 {overall['distinct_3']:.2f}, near-dup rate {overall['near_duplicate_rate']:.0%}"
        + f"; names {cv['names']['used']}/{cv['names']['available']}, kinds {cv['kinds']['used']}/"
        f"{cv['kinds']['available']}, audiences {cv['audiences']['used']}/{cv['audiences']['available']}"
    )


def run(cfg: ExercisesConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext) -> Dataset:
    """Run the exercises stage into ``out`` (resuming an interrupted run without re-sending requests)."""
    out = Path(out)
    run_seed = ctx.seed
    names = name_pool(cfg.count, cfg.names_file, run_seed)
    s = cfg.seeds
    # Exercises take their topic from the function name; the sampler varies audience (and words).
    sampler = SeedSampler(["(from the function name)"], s.audiences, s.styles,
                          load_words(s.words_file) if s.random_words else [], n_words=s.random_words,
                          reweight=s.reweight, seed=derived_seed(STAGE, run_seed))
    store = RoundStore(out, SCHEMA, REJECTED_SCHEMA)
    candidates_sandbox = ctx.lazy_sandbox(candidate_limits(cfg.separation, cfg.sandbox))
    tools = ExerciseTools(cfg, ctx.lazy_teacher(cfg.teacher, STAGE) if cfg.teacher is not None else None,
                          ctx.lazy_sandbox(cfg.sandbox), PromptTemplate.load("exercise", cfg.template, EXERCISE_FIELDS),
                          PromptTemplate.load("solution", cfg.solution_template, SOLUTION_FIELDS), run_seed,
                          SeparationRun(cfg.separation, candidates_sandbox, run_seed))
    n_rounds = -(-cfg.count // cfg.per_round) if "teacher" in cfg.sources else 0

    def plan(k: int, cov: Any) -> list[Candidate]:
        batch = names[k * cfg.per_round: (k + 1) * cfg.per_round]
        return plan_round(k, batch, sampler.sample(len(batch), k, cov, start=k * cfg.per_round), cfg, tools.template,
                          run_seed, k * cfg.per_round)

    services = Services(tools.teacher, [tools.sandbox, candidates_sandbox],
                        no_teacher="teacher not used (corpus exercises only)")
    try:
        with ctx.submitter() if cfg.checks == "executor" and n_rounds else nullcontext() as submitter:
            def start_check(k: int, cands: list[Candidate], answered: list[Candidate]) -> Future:
                teacher = tools.teacher
                task = {"key": store.round_key(k), "round": k, "cands": answered, "cfg": cfg, "ctx": ctx,
                        "out": str(out), "template": tools.template, "solution_template": tools.solution_template,
                        "run_seed": run_seed, "cache_dir": str(ctx.owner.teacher_cache_dir),
                        "teacher_cfg": teacher.cfg if teacher is not None else None,
                        "teacher_name": teacher.describe()["name"] if teacher is not None else ""}
                return submitter.submit(check_task, task, store.markers)

            steps = RoundSteps(
                plan=plan,
                ask=lambda k, cands: ask(tools.ask, cands),
                check=lambda k, cands, answered: check_round(k, answered, tools),
                kept_seeds=lambda marker: [{"topic": s["topic"], "audience": s["audience"], "style": "",
                                            "words": s["words"]} for s in marker["kept_seeds"]],
                start_check=start_check if submitter is not None else None,
            )
            # the next rounds' exercise prompts are in flight while earlier rounds are checked (driver.py)
            rounds = list(drive(n_rounds, store, steps, ahead=cfg.rounds_ahead))
        if "corpus" in cfg.sources:
            n_rounds = corpus_rounds(cfg, inputs.get("filter"), store, tools.sandbox, run_seed, n_rounds, rounds,
                                     tools.teacher, tools.separation)
    finally:
        teacher_line = services.close()
    if cfg.checks == "executor" and tools.teacher is not None and n_rounds:
        # the workers' extra solutions went into their own cache files: the stage's ledger sums every file
        teacher_line = (stage_ledger(tools.teacher.cfg, ctx.owner.teacher_cache_dir, STAGE).summary()
                        + " (this stage, summed over the driver and the checking workers)")

    ledger, final = dedup(ctx, store, n_rounds, cfg.diversity, IN_MEANS)
    overall = final.pop("diversity")
    write_problems(out)
    all_provs = [json.loads(p)["synth"] for p in kept_column(out, "provenance")]
    overall["coverage"] = name_coverage(all_provs, names, cfg)
    report = {"overall": overall, "rounds": [{"round": r["round"], **r.get("diversity", {})} for r in rounds]}
    candidates = final["kept"] + final["rejected"]
    asked = sum(r["asked"] for r in rounds)
    sep_line, sep_summary = separation_summary(all_provs, final["rejected_by_reason"].get(WEAK_TESTS, 0),
                                               cfg.separation)
    by_source = Counter(p.get("source", "teacher") for p in all_provs)
    mined = corpus_totals(rounds)
    tail = summary_tail(rounds, final, overall, cfg, candidates) + sep_line
    if "corpus" in cfg.sources:
        tail += (f"; corpus: {mined['files']} files, {mined['documented']} documented functions, "
                 f"{mined['candidates']} candidates run, {by_source['corpus']} kept with {mined['tests']} tests from "
                 f"execution")
    return write_stage(ctx, out, STAGE, inputs, ledger, report, tail, teacher_line, asked=asked,
                       parsed=sum(r["parsed"] for r in rounds),
                       passed_own_tests=sum(r["passed_own_tests"] for r in rounds),
                       **final, kept_by_source=dict(by_source), corpus_mining=mined, separation=sep_summary,
                       verified_rate=round(final["kept"] / max(asked, 1), 4), diversity=overall,
                       problems_jsonl=str(out / "problems.jsonl"))
