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
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from textbooklm.codeblocks import extract_blocks
from textbooklm.progress import summary_line
from textbooklm.sandbox import Program
from textbooklm.store import Dataset, atomic_write_json, finish_dataset
from textbooklm.synth.config import TextbooksConfig
from textbooklm.synth.diversity import coverage_from_counts, diversity_report
from textbooklm.synth.driver import RoundSteps, drive_rounds
from textbooklm.synth.prompts import TEXTBOOK_FIELDS, PromptTemplate, render_textbook
from textbooklm.synth.rounds import (
    TEACHER_ERROR,
    LazySandbox,
    LazyTeacher,
    RoundStore,
    load_excerpts,
    reasons_text,
    sample_id,
    short_hash,
)
from textbooklm.synth.seeds import Seed, SeedSampler, derived_seed, load_topics, load_words
from textbooklm.synth.textbook_checks import is_cut_off, prompt_echo, salvage_cut_off, unexercised
from textbooklm.teacher import Request

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


def judge_kept(rows: list[dict[str, Any]], cfg: TextbooksConfig, score: JudgeFn) -> dict[str, Any]:
    """Score the rows still kept with the run's judge; set ``reason`` on the low and the unscored ones.

    Each row's provenance gets its verdict (score, path, label mass), so a kept textbook says why it
    was kept. Returns the judge's meta (prompt, model, threshold used).
    """
    todo = [r for r in rows if r["reason"] is None]
    verdicts, meta = score([r["text"] for r in todo])
    threshold = cfg.judge_min_score if cfg.judge_min_score is not None else meta["threshold"]
    meta = {**meta, "threshold": threshold}
    if meta.get("teacher_line"):
        summary_line(meta["teacher_line"])
    for row, v in zip(todo, verdicts, strict=True):
        row["prov"]["judge"] = {"score": v.get("score"), "path": v.get("path"), "mass": v.get("mass"),
                                "threshold": threshold, "prompt": meta["prompt"], "model": meta["model"]}
        if v.get("score") is None:
            row["reason"], row["detail"] = JUDGE_FAILED, f"the judge gave no score: {v.get('reason')}"
        elif v["score"] < threshold:
            row["reason"] = LOW_VALUE
            row["detail"] = (f"judge score {v['score']:.2f} < {threshold:.2f} ({meta['prompt']} prompt, "
                             f"{meta['model']})")
    return meta


@dataclass(frozen=True)
class Asked:
    """One round's prompts, the requests sent and the teacher's results (what ``check_round`` reads)."""

    prompts: list[str]
    requests: list[Request]
    results: list[Any]
    template: PromptTemplate


def ask_round(seeds: list[Seed], cfg: TextbooksConfig, template: PromptTemplate, teacher: LazyTeacher,
              run_seed: int) -> Asked:
    """Render and send one round's prompts (the driver runs this while the previous round is checked)."""
    prompts = [render_textbook(template, s) for s in seeds]
    requests = [
        Request(messages=[{"role": "user", "content": p}], max_tokens=cfg.max_tokens, temperature=cfg.temperature,
                top_p=cfg.top_p, seed=derived_seed(STAGE, run_seed, s.index) % 2**31)
        for p, s in zip(prompts, seeds, strict=True)
    ]
    return Asked(prompts, requests, teacher.complete(requests), template)


def run_round(k: int, seeds: list[Seed], cfg: TextbooksConfig, template: PromptTemplate, teacher: LazyTeacher,
              sandbox: LazySandbox | None, run_seed: int,
              judge: JudgeFn | None = None) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Ask and check one round in one go (tests and callers without the driver)."""
    return check_round(k, seeds, ask_round(seeds, cfg, template, teacher, run_seed), cfg, teacher, sandbox, judge)


def check_round(k: int, seeds: list[Seed], asked: Asked, cfg: TextbooksConfig, teacher: LazyTeacher,
                sandbox: LazySandbox | None, judge: JudgeFn | None = None
                ) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Screen, run the code blocks of, judge and sort one round's replies."""
    prompts, requests, results, template = asked.prompts, asked.requests, asked.results, asked.template
    t = teacher.get()
    rows = []
    all_programs: list[Program] = []
    for s, p, req, res in zip(seeds, prompts, requests, results, strict=True):
        text = res.text.strip() + "\n" if res.ok else ""
        text, pre_reason, pre_detail, screen = screen_reply(text, p, res.finish_reason, cfg) if res.ok else (
            text, None, "", {})
        tid = sample_id(text) if text.strip() else sample_id(f"{STAGE}:{s.index}:{p}")
        blocks, programs = check_code(text, tid, sandbox) if res.ok and pre_reason is None else ([], [])
        all_programs += programs
        prov = {
            "stage": STAGE, "round": k, "seed": s.to_json(),
            "teacher": {**teacher.describe(), "request_key": t.key(req), "tokens_in": res.tokens_in,
                        "tokens_out": res.tokens_out, "finish_reason": res.finish_reason},
            "template": {"path": template.source, "hash": template.hash}, "prompt_hash": short_hash(p),
            **screen,
        }
        rows.append({"id": tid, "text": text, "seed": s, "prov": prov, "blocks": blocks, "res": res,
                     "pre": (pre_reason, pre_detail)})
    verdicts = {r.id: r for r in (sandbox.run(all_programs) if sandbox else [])}
    for row in rows:
        for b in row["blocks"]:
            v = verdicts.get(f"{row['id']}#{b['index']}")
            if v is not None:
                b.update(status=v.status, error=v.error, duration_s=round(v.duration_s, 3))
        mark_exercised(row["blocks"])
        summary = code_summary(row["blocks"])
        row["prov"]["code"] = {**summary, "results": row["blocks"]}
        reason, detail = None, ""
        if not row["res"].ok:
            reason, detail = TEACHER_ERROR, row["res"].error or ""
        elif row["pre"][0] is not None:
            reason, detail = row["pre"]
        elif len(row["text"].strip()) < cfg.min_chars:
            reason, detail = "too-short", f"{len(row['text'].strip())} characters, at least {cfg.min_chars} needed"
        elif cfg.require_code and summary["python"] == 0:
            reason, detail = "no-code", "no Python code block"
        elif cfg.drop_failing_code and (summary["parse"] < summary["python"] or summary["failed"]):
            bad = next(b for b in row["blocks"] if b["is_python"] and (not b["parses"] or b.get("status") not in
                                                                      (None, "passed", "not-run")))
            reason = "code-failed"
            detail = f"block {bad['index']}: " + (bad["syntax_error"] or f"{bad.get('status')}: {bad.get('error', '')}")
        row["reason"], row["detail"] = reason, detail
    judged = judge_kept(rows, cfg, judge) if judge is not None else None
    kept, rejected = [], []
    for row in rows:
        rec = {"id": row["id"], "text": row["text"], "seed": json.dumps(row["seed"].to_json()),
               "provenance": json.dumps({"synth": row["prov"]})}
        if row["reason"] is None:
            kept.append(rec)
        else:
            rejected.append({**rec, "reason": row["reason"], "detail": row["detail"][:500]})
    code = Counter()
    for row in rows:
        code.update(code_summary(row["blocks"]))
    result = {
        "round": k, "asked": len(seeds), "kept": len(kept),
        "rejected": dict(Counter(r["reason"] for r in rejected)),
        "kept_seeds": [json.loads(r["seed"]) for r in kept], "code": dict(code),
        "judge": None if judged is None else {key: val for key, val in judged.items() if key != "teacher_line"},
        "diversity": diversity_report([r["text"] for r in kept], ngram=cfg.diversity.ngram,
                                      num_perm=cfg.diversity.num_perm, bands=cfg.diversity.bands,
                                      threshold=cfg.diversity.threshold, openings_words=cfg.diversity.openings_words),
    }
    return kept, rejected, result


def _judge_text(rounds: list[dict[str, Any]]) -> str:
    """``; judged by ...`` for the summary line, when the textbooks were judged."""
    metas = [r["judge"] for r in rounds if r.get("judge")]
    if not metas:
        return ""
    m = metas[0]
    return f"; judged by the run's llm judge ({m['prompt']} prompt, {m['model']}), kept at >= {m['threshold']:.2f}"


def run(cfg: TextbooksConfig, inputs: dict[str, Dataset], out: Path, ctx: Any) -> Dataset:
    """Run the textbooks stage into ``out`` (resuming an interrupted run without re-sending requests)."""
    out = Path(out)
    run_seed = ctx.run.seed
    excerpts = load_excerpts(inputs.get("filter"), 256, cfg.seeds.excerpt_chars, run_seed) \
        if cfg.seeds.excerpt_fraction > 0 else []
    sampler = build_sampler(cfg, run_seed, excerpts)
    template = PromptTemplate.load("textbook", cfg.template, TEXTBOOK_FIELDS)
    store = RoundStore(out, SCHEMA, REJECTED_SCHEMA)
    teacher = LazyTeacher(cfg.teacher, ctx, out, STAGE)
    sandbox = LazySandbox(cfg.sandbox, ctx.run.workers) if cfg.run_code else None
    judge = (lambda texts: ctx.score_texts("judge", texts)) if cfg.judge else None
    n_rounds = -(-cfg.count // cfg.per_round)
    steps = RoundSteps(
        plan=lambda k, cov: sampler.sample(min(cfg.per_round, cfg.count - k * cfg.per_round), k, cov,
                                           start=k * cfg.per_round),
        ask=lambda k, seeds: ask_round(seeds, cfg, template, teacher, run_seed),
        check=lambda k, seeds, asked: check_round(k, seeds, asked, cfg, teacher, sandbox, judge),
        kept_seeds=lambda marker: marker["kept_seeds"],
    )
    rounds: list[dict[str, Any]] = []
    try:
        # round k+1's requests are in flight while round k is checked (driver.py)
        for result in drive_rounds(n_rounds, store, steps, pipeline=cfg.pipeline):
            # the kept seeds live on in the driver's coverage; keeping them per round grew with the count
            rounds.append({key: val for key, val in result.items() if key != "kept_seeds"})
    finally:
        if sandbox is not None:
            sandbox.close()
        teacher_line = teacher.summary()
        teacher.close()
    finish_start = time.monotonic()
    final = store.finish(n_rounds, cfg.diversity)  # streams the rounds; measures the kept set's diversity
    overall = final.pop("diversity")
    used: dict[str, Counter[str]] = {f: Counter() for f in ("topic", "audience", "style", "words")}
    excerpts_used = 0
    kept_ds = Dataset(out)
    for shard in kept_ds.shards():  # one shard's seeds at a time: memory flat in the count
        for raw in pq.read_table(shard, columns=["seed"]).column("seed").to_pylist():
            seed = json.loads(raw)
            for f in ("topic", "audience", "style"):
                used[f][seed[f]] += 1
            used["words"].update(seed["words"])
            excerpts_used += bool(seed.get("excerpt"))
    overall["coverage"] = {
        "topics": coverage_from_counts(used["topic"], sampler.topics),
        "audiences": coverage_from_counts(used["audience"], sampler.audiences),
        "styles": coverage_from_counts(used["style"], sampler.styles),
        "words": coverage_from_counts(used["words"], sampler.words or None),
        "excerpts": excerpts_used,
    }
    code: Counter[str] = Counter()
    for r in rounds:
        code.update(r["code"])
    report = {"overall": overall, "rounds": [{"round": r["round"], **r["diversity"]} for r in rounds]}
    atomic_write_json(out / "diversity.json", report)
    asked = sum(r["asked"] for r in rounds)
    cv = overall["coverage"]
    line = (
        f"textbooks: {asked} asked, {final['kept']} kept, {final['rejected']} rejected"
        + (f" ({reasons_text(final['rejected_by_reason'])})" if final["rejected"] else "")
        + f"; python blocks {code['python']}: {code['parse']} parse, {code['runnable']} runnable, "
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
    summary = {"line": line, "asked": asked, **final, "code_blocks": dict(code), "diversity": overall,
               "teacher": teacher_line, "finish_s": round(time.monotonic() - finish_start, 3)}
    finish_dataset(out / "rejected", stage=f"{STAGE}.rejected", config_hash=ctx.config_hash, summary=summary)
    ds = finish_dataset(out, stage=STAGE, config_hash=ctx.config_hash, parents=[str(v.path) for v in inputs.values()],
                        summary=summary)
    summary_line(teacher_line)
    summary_line(line)
    return ds
