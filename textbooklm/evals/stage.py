"""The ``eval`` stage: measure the run's models the way the papers did.

Per model (a training stage of this run, or a checkpoint folder): HumanEval / MBPP / problems
pass@k (samples written to disk first, then executed in the sandbox), the NLL of HumanEval's
canonical solutions given their prompts (a smooth signal that moves long before pass@1 does for a
tiny model), the validation loss from training, and optionally the phi-1.5 benchmarks (multiple
choice, GSM8K through code) and perplexity. Everything lands in ``OUT/results.json`` (read by the
report) and one row per (model, metric) in the output Dataset.

Re-running after an interruption continues the sample files where they stopped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from textbooklm.code_tasks import load_problems
from textbooklm.evals.choice import evaluate_choices
from textbooklm.evals.choice_tasks import load_choice_task
from textbooklm.evals.config import EvalConfig
from textbooklm.evals.execute import read_samples, score
from textbooklm.evals.generate import SamplingSettings, generate_samples
from textbooklm.evals.heldout import heldout_problems
from textbooklm.evals.perplexity import perplexity, read_texts
from textbooklm.problems import Problem
from textbooklm.progress import progress_bar, summary_line
from textbooklm.store import Dataset, atomic_write_json, write_dataset


def _val_loss(folder: Path) -> float | None:
    """Last validation loss logged by the training run in ``folder`` (if it was a training stage)."""
    from textbooklm.model.train_log import read_metrics

    for run in (folder / "train", folder):
        if (run / "metrics.csv").is_file():
            vals = [float(r["val_loss"]) for r in read_metrics(run) if r.get("val_loss") not in (None, "")]
            return vals[-1] if vals else None
    return None


def code_task(label: str, task: str, problems: list[Problem], sampler: Any, settings: SamplingSettings,
              limits: Any, out: Path, workers: int | None) -> dict[str, float]:
    """Sample completions (resuming ``OUT/LABEL.TASK.samples.jsonl``), run them in the sandbox, pass@k in %."""
    samples_path = out / f"{label}.{task}.samples.jsonl"
    with progress_bar(f"eval {label}: {task} generate", total=len(problems)) as advance:
        generate_samples(sampler, problems, settings, samples_path, {"task": task}, progress=advance)
    samples = read_samples(samples_path)
    with progress_bar(f"eval {label}: {task} execute", total=len(samples)) as advance:
        records, summary = score(problems, samples, limits, workers, ks=(1, 10, 100), progress=advance)
    with (out / f"{label}.{task}.results.jsonl").open("w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    atomic_write_json(out / f"{label}.{task}.results.json", summary)
    return {f"{task} {k}": v * 100 for k, v in summary["pass_at_k"].items()}


def _code_task(label: str, task: str, problems: list[Problem], sampler: Any, cfg: EvalConfig, out: Path,
               workers: int | None, n: int, temperature: float) -> dict[str, float]:
    settings = SamplingSettings(n=n, temperature=temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                batch_size=cfg.batch_size, seed=cfg.seed)
    return code_task(label, task, problems, sampler, settings, cfg.limits, out, workers)


def canonical_nll(scorer: Any, problems: list[Problem], name: str = "humaneval canonical") -> dict[str, float]:
    """Negative log-likelihood of the problems' known-good solutions given their prompts."""
    pairs = [(p.prompt, p.canonical_solution) for p in problems if p.canonical_solution]
    scores = scorer.loglikelihood(pairs, batch_size=8)
    total = -sum(s.total for s in scores)
    tokens = sum(s.n_tokens for s in scores)
    return {f"{name} NLL/token": total / max(1, tokens), f"{name} NLL/problem": total / max(1, len(scores))}


def evaluate_model(label: str, folder: Path, cfg: EvalConfig, out: Path, run_dir: Path,
                   workers: int | None, heldout: list[Problem] | None = None) -> dict[str, float]:
    """Every configured measurement of one model; returns ``{metric: value}``."""
    from textbooklm.evals.checkpoint_generator import CheckpointSampler

    sampler = CheckpointSampler(folder)
    scorer = sampler.inner
    metrics: dict[str, float] = {}
    if cfg.humaneval:
        problems = load_problems("humaneval")[: cfg.humaneval_limit]
        metrics.update(_code_task(label, "humaneval", problems, sampler, cfg, out, workers, cfg.n_samples,
                                  cfg.temperature))
        if cfg.canonical_nll:
            metrics.update(canonical_nll(scorer, problems))
    for task, path in (("mbpp", cfg.mbpp_path), ("problems", cfg.problems_path)):
        if path:
            metrics.update(_code_task(label, task, load_problems(task, path), sampler, cfg, out, workers,
                                      cfg.n_samples, cfg.temperature))
    if heldout:
        metrics.update(_code_task(label, "exercises", heldout, sampler, cfg, out, workers, cfg.n_samples,
                                  cfg.temperature))
        metrics.update(canonical_nll(scorer, heldout, "exercises reference"))
    if cfg.gsm8k_path:
        problems = load_problems("gsm8k", cfg.gsm8k_path)[: cfg.gsm8k_limit]
        got = _code_task(label, "gsm8k", problems, sampler, cfg, out, workers, 1, 0.0)
        metrics["gsm8k accuracy (via code)"] = got["gsm8k pass@1"]
    for ct in cfg.choice_tasks:
        items = load_choice_task(ct.task, ct.path)[: ct.limit]
        res = evaluate_choices(scorer, items)
        metrics[f"{ct.task} acc"] = res["acc"]
        metrics[f"{ct.task} acc_norm"] = res["acc_norm"]
        atomic_write_json(out / f"{label}.{ct.task}.predictions.json", res["predictions"])
    for name in cfg.perplexity:
        target = Path(run_dir) / name if (Path(run_dir) / name).is_dir() else Path(name)
        ppl = perplexity(scorer, read_texts(target, limit=200))
        metrics[f"perplexity {name}"] = ppl["perplexity"]
    val = _val_loss(folder)
    if val is not None:
        metrics["validation loss"] = val
    return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in metrics.items()}


def run(cfg: EvalConfig, inputs: dict[str, Dataset], out: Path, ctx: Any) -> Dataset:
    out.mkdir(parents=True, exist_ok=True)
    workers = ctx.run.workers or None
    from textbooklm.model.checkpoint import resolve_checkpoint

    heldout = None
    if cfg.heldout_exercises is not None:
        h = cfg.heldout_exercises
        ds = Dataset(h.dataset) if Path(h.dataset).is_dir() else ctx.dataset(h.dataset)
        heldout = heldout_problems(ds, h.fraction, h.limit)
        atomic_write_json(out / "heldout_exercises.json", {"dataset": str(ds.path), "fraction": h.fraction,
                                                           "task_ids": [p.task_id for p in heldout]})
    per_model: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for name in cfg.models:
        folder = ctx.owner.model_folder(name)
        label = Path(name).name
        try:
            resolve_checkpoint(folder)
        except FileNotFoundError as exc:  # e.g. a finetune stage that had nothing to train on
            skipped[label] = str(exc)
            continue
        per_model[label] = evaluate_model(label, folder, cfg, out, ctx.run_dir, workers, heldout)
    flat = {f"{m}: {k}": v for m, metrics in per_model.items() for k, v in metrics.items()}
    atomic_write_json(out / "results.json", {"models": per_model, "metrics": flat, "skipped": skipped,
                                             "settings": cfg.model_dump(mode="json")})
    rows = [{"model": m, "metric": k, "value": float(v)} for m, ms in per_model.items() for k, v in ms.items()]
    parts = []
    for m, ms in per_model.items():
        shown = [f"{k} {v:.2f}" for k, v in ms.items() if "pass@" in k or k == "validation loss"
                 or k.startswith("humaneval canonical NLL/token") or k == "exercises reference NLL/token"]
        parts.append(f"{m}: " + ", ".join(shown))
    parts += [f"{m}: no model to evaluate" for m in skipped]
    if heldout is not None:
        parts.append(f"{len(heldout)} held-out exercises")
    line = "eval: " + "; ".join(parts)
    ds = write_dataset(out, rows, stage="eval", config_hash=ctx.config_hash, summary={"line": line, **flat})
    summary_line(line)
    return ds
