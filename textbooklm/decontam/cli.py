"""``textbooklm decontam``: check any file of code samples, and print the pruning table of a run."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from textbooklm.decontam.config import BenchmarkSpec, DecontamConfig

decontam_app = typer.Typer(help="Find training samples too close to the benchmarks (n-grams, embeddings, ASTs).",
                           no_args_is_help=True)


def _doc(name: str) -> str:
    return DecontamConfig.model_fields[name].description or ""


def _sample(where: str, rec: object) -> tuple[str, str]:
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    code = rec.get("code", rec.get("text"))
    if "id" not in rec or not isinstance(code, str):
        raise ValueError(f"{where}: a sample needs \"id\" and a string \"code\" or \"text\"")
    return str(rec["id"]), code


def read_samples(path: Path) -> list[tuple[str, str]]:
    """(id, code) per JSONL line; each line needs "id" and "code" or "text".

    All or nothing: every bad line (bad UTF-8 or JSON, a lone surrogate, a missing field, a repeated
    id) is listed in one error naming file:line, and no sample is checked.
    """
    from textbooklm.jsonl import parse_jsonl

    return parse_jsonl(path, _sample, id_key="id")


def read_dataset_samples(path: Path, dataset: str | None) -> list[tuple[str, str]]:
    """(id, text) of a run's dataset: ``path`` a run folder with ``dataset`` a stage name (resolved by the
    run's naming rule, e.g. the cleaned copy once decontam ran), or ``path`` a dataset folder itself."""
    from textbooklm.store import Dataset

    if dataset is not None:
        from textbooklm.run import Run

        ds = Run(path).dataset(dataset)
    else:
        ds = Dataset(path)
    if not ds.is_finished:
        raise ValueError(f"{ds.path}: not a finished dataset (no manifest.json); give a run folder with --dataset "
                         "NAME, a dataset folder, or a JSONL file")
    names = set(ds.schema().names) if ds.schema() is not None else set()
    column = "text" if "text" in names else "code" if "code" in names else None
    if column is None or "id" not in names:
        raise ValueError(f"{ds.path}: a dataset to check needs an 'id' and a 'text' (or 'code') column "
                         f"(has {sorted(names)})")
    return [(str(r["id"]), r[column] or "") for r in ds.iter_records(columns=["id", column])]


def _benchmarks(names: list[str], paths: list[str]) -> list[BenchmarkSpec]:
    paths = list(paths or [])
    specs = []
    for name in names or ["humaneval"]:
        path = None if name == "humaneval" else (paths.pop(0) if paths else None)
        specs.append(BenchmarkSpec(task=name, path=path))
    return specs


@decontam_app.command("check")
def check(
    samples: Path = typer.Argument(..., help="JSONL of samples ({\"id\": ..., \"code\" or \"text\": ...} per "
                                   "line), a dataset folder (Parquet + manifest.json), or a run folder with "
                                   "--dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="MATCHES.jsonl: one row per sample with every signal."),
    dataset: str = typer.Option(None, "--dataset", help="With a run folder: the dataset to check, by stage name "
                                "(e.g. filter, textbooks, exercises; the run's naming rule picks the copy)."),
    benchmark: list[str] = typer.Option(["humaneval"], "--benchmark", help="humaneval, mbpp or problems "
                                        "(repeatable)."),
    benchmark_path: list[str] = typer.Option(None, "--benchmark-path", help="JSONL for each non-humaneval "
                                             "--benchmark, in order."),
    embedder: str = typer.Option("minilm", help=_doc("embedder")),
    ngram: int = typer.Option(13, help=_doc("ngram")),
    ast_threshold: float = typer.Option(0.9, help=_doc("ast_threshold")),
    embedding_threshold: float = typer.Option(None, help=_doc("embedding_threshold")),
    only_matches: bool = typer.Option(False, "--only-matches", help="Write only samples that matched a signal."),
) -> None:
    """Score every sample against the benchmarks and write the matches; print the pruning table."""
    from rich.markup import escape

    from textbooklm.decontam.benchmarks import load_references
    from textbooklm.decontam.index import ContaminationIndex, Sample
    from textbooklm.decontam.report import format_table, tau_table
    from textbooklm.embeddings import load_embedder
    from textbooklm.progress import console, progress_bar, summary_line
    from textbooklm.store import atomic_write_bytes

    try:
        cfg = DecontamConfig(benchmarks=_benchmarks(benchmark, benchmark_path), embedder=embedder, ngram=ngram,
                             ast_threshold=ast_threshold, embedding_threshold=embedding_threshold)
        rows_in = read_dataset_samples(samples, dataset) if samples.is_dir() else read_samples(samples)
        refs = load_references(cfg)
    except ValueError as exc:
        console.print(f"[red]decontam check:[/red] {escape(str(exc))}")  # user text is not markup
        raise typer.Exit(2) from None
    index = ContaminationIndex(refs, cfg, load_embedder(cfg.embedder))
    rows = []
    with progress_bar("decontam: check", total=len(rows_in)) as advance:
        for start in range(0, len(rows_in), 256):
            batch = [Sample(i, t) for i, t in rows_in[start : start + 256]]
            rows += index.check(batch)
            advance(len(batch))
    written = [r for r in rows if not only_matches or r["decision"] != "keep" or r["matches"]]
    atomic_write_bytes(out, "".join(json.dumps(r) + "\n" for r in written).encode())
    removed = sum(r["decision"] != "keep" for r in rows)
    summary_line(f"decontam check: {len(rows)} samples, {removed} would be removed, "
                 f"{sum(bool(r['matches']) for r in rows)} matched any signal, {index.pairs_computed} AST pairs "
                 f"compared; wrote {out}")
    report = tau_table(rows, [r.problem_id for r in refs], n_samples=len(rows), taus=cfg.report_taus,
                       ngram_min_hits=cfg.ngram_min_hits, embedding_threshold=cfg.embedding_threshold,
                       ast_min_statements=cfg.ast_min_statements)
    for line in format_table(report):
        typer.echo(line)


def load_report(target: Path, benchmark: list[str], benchmark_path: list[str], embedding_threshold: float | None,
                ngram_min_hits: int) -> dict:
    """A run folder (RUN/decontam/report.json), a stage folder, a report.json, or a MATCHES.jsonl."""
    from textbooklm.decontam.benchmarks import load_references
    from textbooklm.decontam.report import tau_table

    for candidate in (target / "decontam" / "report.json", target / "report.json", target):
        if candidate.is_file() and candidate.name == "report.json":
            return json.loads(candidate.read_text())
    if target.is_dir():
        raise ValueError(f"{target}: no decontam/report.json or report.json (has the decontam stage run?)")
    if not target.is_file():
        raise ValueError(f"{target}: no such file or folder")
    from textbooklm.jsonl import parse_jsonl

    def match_row(where: str, row: object) -> dict:
        if not isinstance(row, dict) or "matches" not in row:
            raise ValueError(f"{where}: not a row written by `decontam check` (no \"matches\")")
        return row

    rows = parse_jsonl(target, match_row)
    cfg = DecontamConfig(benchmarks=_benchmarks(benchmark, benchmark_path))
    ids = [r.problem_id for r in load_references(cfg)]
    return tau_table(rows, ids, n_samples=len(rows), ngram_min_hits=ngram_min_hits,
                     embedding_threshold=embedding_threshold, ast_min_statements=cfg.ast_min_statements)


@decontam_app.command("report")
def report(
    target: Path = typer.Argument(..., help="A run folder, the decontam stage folder, or a MATCHES.jsonl."),
    benchmark: list[str] = typer.Option(["humaneval"], "--benchmark", help="For a MATCHES.jsonl: the benchmarks "
                                        "it was checked against."),
    benchmark_path: list[str] = typer.Option(None, "--benchmark-path", help="JSONL of each non-humaneval one."),
    embedding_threshold: float = typer.Option(None, help=_doc("embedding_threshold")),
    ngram_min_hits: int = typer.Option(1, help=_doc("ngram_min_hits")),
    similar: bool = typer.Option(False, "--similar", help="Also list the similar problems at each tau."),
    json_out: Path = typer.Option(None, "--json", help="Also write the table as JSON here."),
) -> None:
    """Print, for tau in 0.95 .. 0.8, how many samples would be removed and how many problems are similar."""
    from rich.markup import escape

    from textbooklm.decontam.report import format_table
    from textbooklm.progress import console
    from textbooklm.store import atomic_write_json

    try:
        rep = load_report(target, benchmark, benchmark_path, embedding_threshold, ngram_min_hits)
    except ValueError as exc:
        console.print(f"[red]decontam report:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    for line in format_table(rep):
        typer.echo(line)
    if similar:
        for t in rep["taus"]:
            typer.echo(f"similar at tau {t['tau']:.2f}: {', '.join(t['similar_problems']) or '-'}")
    if json_out:
        atomic_write_json(json_out, rep)


def register(app: typer.Typer) -> None:
    app.add_typer(decontam_app, name="decontam")
