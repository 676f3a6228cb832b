"""The `textbooks` stage: a teacher writes short textbook sections, each from its own seed; every
Python block is parsed, the runnable ones are executed in the sandbox, and each block's result is
stored with the textbook.

Output ``OUT/`` (id, text, seed, provenance) and ``OUT/rejected/`` (the same + reason, detail), plus
``OUT/diversity.json`` (per round and overall: distinct n-grams, near-duplicate rate, coverage of
topics / audiences / styles / words, most repeated openings). Rejection reasons: teacher-error,
cut-off (ended at max_tokens mid-sentence or mid-block, and no complete section of min_chars to
keep), prompt-echo (repeats the prompt), too-short, no-code (with require_code), code-failed (with
drop_failing_code), low-educational-value and judge-failed (with judge: the run's LLM judge scored it
below judge_min_score, or could not score it), duplicate, near-duplicate.

Blocks run like a notebook: block ``i`` runs after the runnable blocks before it, so a later block
may use an earlier block's definitions; its status is that program's verdict. A block that passed
counts as "ran ok" only when it executes the code it defines (a call, an assert, a print of a
result, here or in a later block): a block of stubs nothing calls is ``defined_only``
(``exercised: false`` with the reason in its result).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pyarrow as pa

from textbooklm.codeblocks import extract_blocks
from textbooklm.lazy_services import LazySandbox, LazyTeacher
from textbooklm.progress import summary_line
from textbooklm.sandbox import Program
from textbooklm.stage_context import StageContext
from textbooklm.store import Dataset
from textbooklm.synth.candidate import Candidate, ask, split_rows, teacher_notes
from textbooklm.synth.check_worker import worker_context, worker_sandbox
from textbooklm.synth.config import TextbooksConfig
from textbooklm.synth.diversity import coverage_from_counts, diversity_report
from textbooklm.synth.driver import RoundSteps
from textbooklm.synth.prompts import TEXTBOOK_FIELDS, PromptTemplate, render_textbook
from textbooklm.synth.round_stage import Services, dedup, drive, kept_column, write_stage
from textbooklm.synth.rounds import TEACHER_ERROR, RoundStore, load_excerpts, sample_id, short_hash
from textbooklm.synth.seeds import Seed, SeedSampler, derived_seed, load_topics, load_words
from textbooklm.synth.textbook_checks import is_cut_off, prompt_echo, salvage_cut_off, unexercised
from textbooklm.teacher import Request
from textbooklm.teacher.fanout import spread

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("seed", pa.string()), ("provenance", pa.string())])
REJECTED_SCHEMA = SCHEMA.append(pa.field("reason", pa.string())).append(pa.field("detail", pa.string()))
STAGE = "textbooks"
CUT_OFF, PROMPT_ECHO = "cut-off", "prompt-echo"
LOW_VALUE, JUDGE_FAILED = "low-educational-value", "judge-failed"
# texts -> (one verdict per text, the judge's meta): ctx.score_texts("judge", ...) in a run
JudgeFn = Callable[[list[str]], tuple[list[dict[str, Any]], dict[str, Any]]]


def build_sampler(cfg: TextbooksConfig, seed: int, excerpts: list[dict[str, str]]) -> SeedSampler:
    s = cfg.seeds
    return SeedSampler(
        load_topics(s.topics_file), s.audiences, s.styles, load_words(s.words_file) if s.random_words else [],
        n_words=s.random_words, reweight=s.reweight, excerpts=excerpts, excerpt_fraction=s.excerpt_fraction, seed=seed,
    )


def check_code(text: str, tid: str, sandbox: LazySandbox | None) -> tuple[list[dict[str, Any]], list[Program]]:
    """Blocks of one textbook, and the sandbox programs for its runnable ones (cumulative, notebook-like)."""
    blocks = [b.to_json() for b in extract_blocks(text)]
    programs = []
    prefix: list[str] = []
    for b in blocks:
        if not b["runnable"]:
            continue
        if sandbox is None:
            b["status"] = "not-run"
            continue
        programs.append(Program(id=f"{tid}#{b['index']}", code="\n\n".join([*prefix, b["code"]])))
        prefix.append(b["code"])
    return blocks, programs


def screen_reply(text: str, prompt: str, finish_reason: str | None,
                 cfg: TextbooksConfig) -> tuple[str, str | None, str, dict[str, Any]]:
    """(text to keep, rejection reason or None, detail, provenance notes) for the cut-off and echo checks.

    A reply cut off at max_tokens mid-sentence or mid-block keeps its last complete section when that
    is still ``min_chars`` long (textbook_checks.py), else it is ``cut-off``; a reply that repeats at
    least ``max_prompt_echo`` of the prompt's word 8-grams (or opens with the prompt) is ``prompt-echo``.
    """
    notes: dict[str, Any] = {}
    if cfg.drop_cut_off and is_cut_off(text, finish_reason):
        salvaged = salvage_cut_off(text)
        if salvaged is None or len(salvaged.strip()) < cfg.min_chars:
            left = len(salvaged.strip()) if salvaged else 0
            return text, CUT_OFF, (f"ended at max_tokens mid-sentence or mid-block; {left} characters of complete "
                                   f"sections, at least {cfg.min_chars} needed"), {"cut_off": {"salvaged_chars": left}}
        notes["cut_off"] = {"original_chars": len(text), "salvaged_chars": len(salvaged)}
        text = salvaged
    echo = prompt_echo(text, prompt)
    notes["prompt_echo"] = round(echo, 3)
    if echo >= cfg.max_prompt_echo:
        return text, PROMPT_ECHO, f"{echo:.0%} of the prompt's word 8-grams are repeated in the reply", notes
    return text, None, "", notes


def mark_exercised(blocks: list[dict[str, Any]]) -> None:
    """Set ``exercised`` on each block that ran without error: whether it (or a later block) executes the
    code it defines (textbook_checks.unexercised); ``not_exercised`` says why not."""
    runnable = [b for b in blocks if b["runnable"]]
    for k, b in enumerate(runnable):
        if b.get("status") != "passed":
            continue
        why = unexercised(b["code"], [later["code"] for later in runnable[k + 1:]])
        b["exercised"] = not why
        if why:
            b["not_exercised"] = why


def code_summary(blocks: list[dict[str, Any]]) -> dict[str, int]:
    """Block counts; ``passed`` counts only blocks that ran without error AND executed their code, ``defined_only``
    the ones that ran without error but only define code nothing calls (stubs)."""
    py = [b for b in blocks if b["is_python"]]
    return {
        "blocks": len(blocks),
        "python": len(py),
        "parse": sum(b["parses"] for b in py),
        "runnable": sum(b["runnable"] for b in py),
        "passed": sum(b.get("status") == "passed" and b.get("exercised", True) for b in py),
        "defined_only": sum(b.get("status") == "passed" and not b.get("exercised", True) for b in py),
        "failed": sum(b.get("status") not in (None, "passed", "not-run") for b in py),
    }


def plan_round(k: int, seeds: list[Seed], cfg: TextbooksConfig, template: PromptTemplate,
               run_seed: int) -> list[Candidate]:
    """The plan step: one candidate per seed, its prompt rendered and its request built (nothing sent)."""
    cands = []
    for s in seeds:
        prompt = render_textbook(template, s)
        request = Request(messages=[{"role": "user", "content": prompt}], max_tokens=cfg.max_tokens,
                          temperature=cfg.temperature, top_p=cfg.top_p,
                          seed=derived_seed(STAGE, run_seed, s.index) % 2**31)
        cands.append(Candidate(round=k, index=s.index, seed=s, prompt=prompt, request=request))
    return cands


def screen_round(cands: list[Candidate], cfg: TextbooksConfig, teacher: LazyTeacher, template: PromptTemplate,
                 sandbox: LazySandbox | None) -> list[Program]:
    """The parse step: screen each reply (teacher error, cut-off, echo), find its code blocks and write the
    provenance of who answered; returns the sandbox programs of the runnable blocks (notebook-like)."""
    programs: list[Program] = []
    for c in cands:
        res = c.reply
        assert res is not None, f"textbook {c.index} was not asked"
        text = res.text.strip() + "\n" if res.ok else ""
        screen: dict[str, Any] = {}
        if not res.ok:
            c.reject(TEACHER_ERROR, res.error or "")
        else:
            text, reason, detail, screen = screen_reply(text, c.prompt, res.finish_reason, cfg)
            if reason is not None:
                c.reject(reason, detail)
        tid = sample_id(text) if text.strip() else sample_id(f"{STAGE}:{c.index}:{c.prompt}")
        c.fields = {"id": tid, "text": text, "seed": json.dumps(c.seed.to_json())}
        if c.alive:
            c.blocks, mine = check_code(text, tid, sandbox)
            programs += mine
        c.notes = {"stage": STAGE, "round": c.round, "seed": c.seed.to_json(),
                   "teacher": teacher_notes(c, teacher, "tokens_in"),
                   "template": {"path": template.source, "hash": template.hash},
                   "prompt_hash": short_hash(c.prompt), **screen}
    return programs


def code_reason(c: Candidate, summary: dict[str, int], cfg: TextbooksConfig) -> tuple[str, str] | None:
    """Why a screened textbook is rejected for its length or its code (None: it is not)."""
    n = len(c.fields["text"].strip())
    if n < cfg.min_chars:
        return "too-short", f"{n} characters, at least {cfg.min_chars} needed"
    if cfg.require_code and summary["python"] == 0:
        return "no-code", "no Python code block"
    if cfg.drop_failing_code and (summary["parse"] < summary["python"] or summary["failed"]):
        bad = next(b for b in c.blocks if b["is_python"] and (not b["parses"] or b.get("status") not in
                                                              (None, "passed", "not-run")))
        return "code-failed", f"block {bad['index']}: " + (bad["syntax_error"] or
                                                           f"{bad.get('status')}: {bad.get('error', '')}")
    return None


def run_code(cands: list[Candidate], programs: list[Program], cfg: TextbooksConfig,
             sandbox: LazySandbox | None) -> Counter[str]:
    """The verify step: run the blocks, record each block's verdict and the code summary, reject on the
    length and code rules. Returns the round's block counts."""
    verdicts = {r.id: r for r in (sandbox.run(programs) if sandbox else [])}
    code: Counter[str] = Counter()
    for c in cands:
        for b in c.blocks:
            v = verdicts.get(f"{c.fields['id']}#{b['index']}")
            if v is not None:
                b.update(status=v.status, error=v.error, duration_s=round(v.duration_s, 3))
        mark_exercised(c.blocks)
        summary = code_summary(c.blocks)
        code.update(summary)
        c.notes["code"] = {**summary, "results": c.blocks}
        why = code_reason(c, summary, cfg) if c.alive else None
        if why is not None:
            c.reject(*why)
    return code


def judge_kept(cands: list[Candidate], cfg: TextbooksConfig, score: JudgeFn) -> dict[str, Any]:
    """The judge step: score the candidates still kept with the run's judge; reject the low and unscored ones.

    Each candidate's provenance gets its verdict (score, path, label mass), so a kept textbook says why it
    was kept. Returns the judge's meta (prompt, model, threshold used).
    """
    todo = [c for c in cands if c.alive]
    verdicts, meta = score([c.fields["text"] for c in todo])
    threshold = cfg.judge_min_score if cfg.judge_min_score is not None else meta["threshold"]
    meta = {**meta, "threshold": threshold}
    if meta.get("teacher_line"):
        summary_line(meta["teacher_line"])
    for c, v in zip(todo, verdicts, strict=True):
        c.notes["judge"] = {"score": v.get("score"), "path": v.get("path"), "mass": v.get("mass"),
                            "threshold": threshold, "prompt": meta["prompt"], "model": meta["model"]}
        if v.get("score") is None:
            c.reject(JUDGE_FAILED, f"the judge gave no score: {v.get('reason')}")
        elif v["score"] < threshold:
            c.reject(LOW_VALUE, f"judge score {v['score']:.2f} < {threshold:.2f} ({meta['prompt']} prompt, "
                                f"{meta['model']})")
    return {key: val for key, val in meta.items() if key != "teacher_line"}


def check_round(k: int, cands: list[Candidate], cfg: TextbooksConfig, teacher: LazyTeacher, template: PromptTemplate,
                sandbox: LazySandbox | None, judge: JudgeFn | None = None
                ) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Screen, run the code blocks of, judge and sort one round's answered candidates."""
    code = run_code(cands, screen_round(cands, cfg, teacher, template, sandbox), cfg, sandbox)
    judged = judge_kept(cands, cfg, judge) if judge is not None else None
    kept, rejected = split_rows(cands)
    d = cfg.diversity
    result = {
        "round": k, "asked": len(cands), "kept": len(kept),
        "rejected": dict(Counter(r["reason"] for r in rejected)),
        "kept_seeds": [c.seed.to_json() for c in cands if c.alive], "code": dict(code), "judge": judged,
        "diversity": diversity_report([r["text"] for r in kept], ngram=d.ngram, num_perm=d.num_perm, bands=d.bands,
                                      threshold=d.threshold, openings_words=d.openings_words),
    }
    return kept, rejected, result


def check_task(task: dict[str, Any]) -> dict[str, Any]:
    """Round ``task["round"]``'s check in an executor worker (``checks = "executor"``): the same
    :func:`check_round` as on the driver, with this worker's warm sandbox and context (check_worker.py).
    Writes the round's files and returns its marker, which the executor writes last (rounds.py)."""
    cfg: TextbooksConfig = task["cfg"]
    ctx = worker_context(task["ctx"])
    sandbox = worker_sandbox(cfg.sandbox, ctx.run.workers) if cfg.run_code else None
    # only stamps provenance (name, backend, model, request key): never built in the worker
    teacher = LazyTeacher(task["teacher_cfg"], None, STAGE, task["teacher_name"])
    judge = (lambda texts: ctx.score_texts("judge", texts)) if cfg.judge else None
    kept, rejected, marker = check_round(task["round"], task["cands"], cfg, teacher, task["template"], sandbox, judge)
    marker["checked_by"] = f"{socket.gethostname()}:{os.getpid()}"  # which worker (Ray node) checked the round
    return RoundStore(Path(task["out"]), SCHEMA, REJECTED_SCHEMA).write_parts(task["round"], kept, rejected, marker)


def _judge_text(rounds: list[dict[str, Any]]) -> str:
    """``; judged by ...`` for the summary line, when the textbooks were judged."""
    metas = [r["judge"] for r in rounds if r.get("judge")]
    if not metas:
        return ""
    m = metas[0]
    return f"; judged by the run's llm judge ({m['prompt']} prompt, {m['model']}), kept at >= {m['threshold']:.2f}"


def seed_coverage(out: Path, sampler: SeedSampler) -> dict[str, Any]:
    """How much of the topics, audiences, styles and words the kept textbooks used (read shard by shard)."""
    used: dict[str, Counter[str]] = {f: Counter() for f in ("topic", "audience", "style", "words")}
    excerpts_used = 0
    for raw in kept_column(out, "seed"):
        seed = json.loads(raw)
        for f in ("topic", "audience", "style"):
            used[f][seed[f]] += 1
        used["words"].update(seed["words"])
        excerpts_used += bool(seed.get("excerpt"))
    return {
        "topics": coverage_from_counts(used["topic"], sampler.topics),
        "audiences": coverage_from_counts(used["audience"], sampler.audiences),
        "styles": coverage_from_counts(used["style"], sampler.styles),
        "words": coverage_from_counts(used["words"], sampler.words or None),
        "excerpts": excerpts_used,
    }


def summary_tail(code: Counter[str], overall: dict[str, Any], rounds: list[dict[str, Any]]) -> str:
    """The line after the ledger's counts: code blocks, diversity, coverage, opening, judge."""
    cv = overall["coverage"]
    return (
        f"python blocks {code['python']}: {code['parse']} parse, {code['runnable']} runnable, "
        f"{code['passed']} ran ok executing their code, {code['defined_only']} only define code nothing calls, "
        f"{code['failed']} failed"
        + f"; distinct-2 {overall['distinct_2']:.2f}, near-dup rate {overall['near_duplicate_rate']:.0%}"
        + f"; topics {cv['topics']['used']}/{cv['topics']['available']}, audiences "
        f"{cv['audiences']['used']}/{cv['audiences']['available']}, styles {cv['styles']['used']}/"
        f"{cv['styles']['available']}"
        + (f"; top opening {overall['top_openings'][0][0]!r} x{overall['top_openings'][0][1]}"
           if overall["top_openings"] else "")
        + _judge_text(rounds)
    )


def run(cfg: TextbooksConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext) -> Dataset:
    """Run the textbooks stage into ``out`` (resuming an interrupted run without re-sending requests)."""
    out = Path(out)
    run_seed = ctx.seed
    excerpts = load_excerpts(inputs.get("filter"), 256, cfg.seeds.excerpt_chars, run_seed) \
        if cfg.seeds.excerpt_fraction > 0 else []
    sampler = build_sampler(cfg, run_seed, excerpts)
    template = PromptTemplate.load("textbook", cfg.template, TEXTBOOK_FIELDS)
    store = RoundStore(out, SCHEMA, REJECTED_SCHEMA)
    teacher = spread(ctx.lazy_teacher(cfg.teacher, STAGE), ctx, STAGE, out / "_work")  # drivers > 1: fanout.py
    sandbox = ctx.lazy_sandbox(cfg.sandbox) if cfg.run_code else None
    judge = (lambda texts: ctx.score_texts("judge", texts)) if cfg.judge else None
    n_rounds = -(-cfg.count // cfg.per_round)
    services = Services(teacher, [sandbox])
    try:
        with ctx.submitter() if cfg.checks == "executor" else nullcontext() as submitter:
            def start_check(k: int, cands: list[Candidate], answered: list[Candidate]) -> Future:
                task = {"key": store.round_key(k), "round": k, "cands": answered, "cfg": cfg, "ctx": ctx,
                        "template": template, "out": str(out), "teacher_cfg": teacher.cfg,
                        "teacher_name": teacher.describe()["name"]}
                return submitter.submit(check_task, task, store.markers)

            steps = RoundSteps(
                plan=lambda k, cov: plan_round(k, sampler.sample(min(cfg.per_round, cfg.count - k * cfg.per_round),
                                                                 k, cov, start=k * cfg.per_round),
                                               cfg, template, run_seed),
                ask=lambda k, cands: ask(teacher, cands),
                check=lambda k, cands, answered: check_round(k, answered, cfg, teacher, template, sandbox, judge),
                kept_seeds=lambda marker: marker["kept_seeds"],
                start_check=start_check if submitter is not None else None,
            )
            # the next rounds' requests are in flight while earlier rounds are checked (driver.py)
            rounds = list(drive(n_rounds, store, steps, pipeline=cfg.pipeline, ahead=cfg.rounds_ahead))
    finally:
        teacher_line = services.close()
    finish_start = time.monotonic()
    ledger, final = dedup(ctx, store, n_rounds, cfg.diversity, "textbooks asked")
    overall = final.pop("diversity")
    overall["coverage"] = seed_coverage(out, sampler)
    code: Counter[str] = Counter()
    for r in rounds:
        code.update(r["code"])
    report = {"overall": overall, "rounds": [{"round": r["round"], **r["diversity"]} for r in rounds]}
    return write_stage(ctx, out, STAGE, inputs, ledger, report, summary_tail(code, overall, rounds), teacher_line,
                       asked=sum(r["asked"] for r in rounds), **final, code_blocks=dict(code), diversity=overall,
                       finish_s=round(time.monotonic() - finish_start, 3))
