"""``textbooklm eval generate`` (samples to disk) and ``textbooklm eval execute`` (score them)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

eval_app = typer.Typer(help="Code evaluation: sample completions, then score them in the sandbox (pass@k).",
                       no_args_is_help=True)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@eval_app.command("generate")
def generate(
    model: str = typer.Argument(..., help="A Hugging Face causal-LM folder, or kind:ARG (hf:PATH, ...)."),
    task: str = typer.Option("humaneval", "--task", help="humaneval, mbpp, problems or gsm8k (through code)."),
    path: Path = typer.Option(None, "--path", help="Task JSONL (required for mbpp and problems)."),
    n: int = typer.Option(1, "--n", min=1, help="Samples per problem."),
    temperature: float = typer.Option(0.2, "--temperature", min=0.0, help="0 = greedy."),
    top_p: float = typer.Option(0.95, "--top-p"),
    max_new_tokens: int = typer.Option(384, "--max-new-tokens", min=1),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Sequences per forward batch."),
    seed: int = typer.Option(0, "--seed"),
    limit: int = typer.Option(0, "--limit", help="Only the first N problems (0: all)."),
    out: Path = typer.Option(..., "--out", "-o", help="Samples JSONL (appended to; resumes)."),
) -> None:
    """Sample N completions per problem, cut at stop sequences, and write them with a .meta.json."""
    from textbooklm.code_tasks import load_problems
    from textbooklm.evals.generate import SamplingSettings, generate_samples, make_generator
    from textbooklm.progress import progress_bar, summary_line

    try:
        problems = load_problems(task, path)
        generator = make_generator(model)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    if limit:
        problems = problems[:limit]
    settings = SamplingSettings(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                batch_size=batch_size, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"task": task, "path": str(path) if path else None, "problems": len(problems)}
    try:
        with progress_bar("generate", total=len(problems)) as advance:
            written = generate_samples(generator, problems, settings, out, meta, progress=advance)
    except ValueError as exc:  # samples from other settings in OUT, or a damaged OUT
        _fail(str(exc))
    summary_line(f"eval generate: {written} new samples for {len(problems)} {task} problems -> {out}")


@eval_app.command("execute")
def execute(
    samples: Path = typer.Argument(..., help="Samples JSONL from `eval generate` (task_id, completion)."),
    task: str = typer.Option(None, "--task", help="Default: the task named in SAMPLES.meta.json."),
    path: Path = typer.Option(None, "--path", help="Task JSONL; default: from SAMPLES.meta.json."),
    timeout: float = typer.Option(3.0, "--timeout", help="Wall-clock limit per program (floor), seconds."),
    memory_mb: int = typer.Option(4096, "--memory-mb", help="Address-space limit per program, MiB."),
    workers: int = typer.Option(0, "--workers", help="Sandbox workers (0: one per core)."),
    ks: str = typer.Option("1,10,100", "--k", help="Comma-separated k of pass@k (those <= n are reported)."),
    out: Path = typer.Option(None, "--out", "-o", help="Results JSON (default: SAMPLES.results.json)."),
) -> None:
    """Score every sample in the sandbox; write per-sample verdicts and pass@k with all limits used."""
    from textbooklm.code_tasks import load_problems
    from textbooklm.evals.execute import read_samples, score
    from textbooklm.progress import progress_bar, summary_line
    from textbooklm.sandbox import Limits
    from textbooklm.store import atomic_write_json

    meta_path = samples.with_name(samples.name + ".meta.json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    task = task or meta.get("task")
    if task is None:
        _fail(f"{samples}: no --task given and no {meta_path.name} naming one")
    path = path or (Path(meta["path"]) if meta.get("path") else None)
    try:
        problems = load_problems(task, path)
        records = read_samples(samples)
        k_values = tuple(int(k) for k in ks.split(",") if k.strip())
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    limits = Limits(timeout_s=timeout, memory_mb=memory_mb)
    with progress_bar("execute", total=len(records)) as advance:
        try:
            verdicts, summary = score(problems, records, limits, workers or None, k_values, progress=advance)
        except ValueError as exc:
            _fail(f"{samples}: {exc}")
    out = out or samples.with_name(samples.stem + ".results.json")
    with out.with_suffix(".jsonl").open("w", encoding="utf-8") as f:
        for v in verdicts:
            f.write(json.dumps(v) + "\n")
    summary.update(task=task, task_path=str(path) if path else None, samples_file=str(samples),
                   generation=meta or None)
    atomic_write_json(out, summary)
    stderr = summary["pass_at_k_stderr"]
    scores = ", ".join(f"{k} {v:.3f} ± {stderr.get(k, float('nan')):.3f}" for k, v in summary["pass_at_k"].items())
    empty = f", {summary['empty_share']:.0%} empty" if summary["empty_share"] is not None else ""
    summary_line(f"eval execute: {summary['samples']} samples of {summary['problems']} {task} problems: {scores} "
                 f"(n={summary['n']}{empty}; {summary['status_counts']}) -> {out}"
                 + (f"\n{summary['zero_note']}" if "zero_note" in summary else ""))


@eval_app.command("choice")
def choice(
    model: str = typer.Argument(..., help="A textbooklm checkpoint / run folder, or a Hugging Face folder (hf:PATH)."),
    task: str = typer.Option(..., "--task", help="arc_easy, arc_challenge, piqa, hellaswag, winogrande, boolq, "
                             "openbookqa or siqa."),
    path: Path = typer.Option(..., "--path", help="The benchmark's standard JSONL/Parquet file."),
    limit: int = typer.Option(0, "--limit", help="Only the first N questions (0: all)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write accuracy and per-question predictions here (JSON)."),
) -> None:
    """Multiple choice by log-likelihood: accuracy and length-normalized accuracy (lm-eval-harness style)."""
    from textbooklm.evals.choice import evaluate_choices
    from textbooklm.evals.choice_tasks import load_choice_task
    from textbooklm.evals.scoring import load_scorer
    from textbooklm.progress import summary_line

    try:
        items = load_choice_task(task, path)
        scorer = load_scorer(model)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    res = evaluate_choices(scorer, items[:limit] if limit else items)
    if out:
        out.write_text(json.dumps({"task": task, "path": str(path), **res}, indent=2))
    summary_line(f"eval choice: {task} n={res['n']} acc {res['acc']:.4f} acc_norm {res['acc_norm']:.4f}")


@eval_app.command("perplexity")
def perplexity_cmd(
    model: str = typer.Argument(..., help="A textbooklm checkpoint / run folder, or a Hugging Face folder (hf:PATH)."),
    path: Path = typer.Argument(..., help="A Dataset folder, .jsonl/.parquet (text column) or a .txt file."),
    column: str = typer.Option("text", "--column", help="Text column / key."),
    limit: int = typer.Option(0, "--limit", help="Only the first N documents (0: all)."),
) -> None:
    """Perplexity, NLL per token and bits per byte of MODEL on a text dataset."""
    from textbooklm.evals.perplexity import perplexity, read_texts
    from textbooklm.evals.scoring import load_scorer
    from textbooklm.progress import summary_line

    try:
        texts = read_texts(path, column, limit or None)
        scorer = load_scorer(model)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    res = perplexity(scorer, texts)
    summary_line(f"eval perplexity: {res['documents']} documents, {res['tokens']} tokens: perplexity "
                 f"{res['perplexity']:.3f}, {res['bits_per_byte']:.3f} bits/byte")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
