"""``textbooklm judge | classify | filter``: the quality stages on their own, on an existing run folder.

Each command takes the run's config from ``--config``, else from ``OUT/run.json`` (written by the
stages already run there, e.g. ``textbooklm corpus stdlib --out OUT``), applies its options to its own
section and runs just that stage through the pipeline, so the result is the same as ``textbooklm run``
and a repeated command with the same options does nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from textbooklm.quality.config import (
    ClassifyConfig,
    HeuristicJudgeConfig,
    JudgeConfig,
    LLMJudgeConfig,
    QualityFilterConfig,
)

OUT_HELP = "Run folder holding the upstream stages (e.g. made by `textbooklm corpus stdlib --out OUT`)."
CONFIG_HELP = "Pipeline TOML; default: the config recorded in OUT/run.json."


def _doc(model: type, name: str) -> str:
    return model.model_fields[name].description or ""


def _fail(message: str) -> None:
    """A plain one-line error (no box: the message names paths that must stay greppable) and exit 2."""
    from textbooklm.progress import console

    console.print(f"error: {message}", style="red", markup=False, soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def _base_config(out: Path, config: Path | None) -> dict[str, Any]:
    from textbooklm.pipeline_cli import _load_or_exit

    if config is not None:
        return _load_or_exit(config).model_dump(mode="json")
    record = out / "run.json"
    if not record.is_file():
        _fail(f"{out}: no run.json; run `textbooklm corpus ... --out {out}` first or pass --config")
    return json.loads(record.read_text())["config"]


def _run(raw: dict[str, Any], out: Path, stage: str, needs: list[str]) -> None:
    from textbooklm.config import ConfigError, parse_config
    from textbooklm.pipeline_cli import run_or_exit
    from textbooklm.store import Dataset

    for name in needs:
        if not Dataset(out / name).is_finished:
            _fail(f"{out}/{name}: stage {name!r} has not finished in this run folder; run it first")
        if raw.get(name) is None:
            _fail(f"the config has no [{name}] section (needed upstream of {stage})")
    try:
        cfg = parse_config(raw, source=str(out / "run.json"))
    except ConfigError as exc:
        _fail(str(exc))
    run_or_exit(cfg, out, only=[stage])


def _set(section: dict[str, Any], **values: Any) -> None:
    section.update({k: v for k, v in values.items() if v is not None})


def judge(
    out: Path = typer.Option(..., "--out", "-o", help=OUT_HELP),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
    judges: str = typer.Option(None, help="Comma-separated: heuristic, llm. " + _doc(JudgeConfig, "judges")),
    label_from: str = typer.Option(None, help=_doc(JudgeConfig, "label_from")),
    teacher: str = typer.Option(None, help=_doc(JudgeConfig, "teacher") + " 'smollm2' works without a teachers entry."),
    heuristic_sample: int = typer.Option(None, help=_doc(HeuristicJudgeConfig, "sample")),
    heuristic_threshold: float = typer.Option(None, help=_doc(HeuristicJudgeConfig, "threshold")),
    prompt: str = typer.Option(None, help=_doc(LLMJudgeConfig, "prompt")),
    scale: str = typer.Option(None, help=_doc(LLMJudgeConfig, "scale")),
    llm_sample: int = typer.Option(None, help=_doc(LLMJudgeConfig, "sample")),
    max_file_tokens: int = typer.Option(None, help=_doc(LLMJudgeConfig, "max_file_tokens")),
    method: str = typer.Option(None, help=_doc(LLMJudgeConfig, "method")),
    llm_threshold: float = typer.Option(None, help=_doc(LLMJudgeConfig, "threshold")),
) -> None:
    """Judge the educational value of corpus records (a sample, or all): heuristic and/or an LLM."""
    raw = _base_config(out, config)
    section = raw.get("judge") or {}
    _set(section, judges=judges.split(",") if judges else None, label_from=label_from, teacher=teacher)
    _set(section.setdefault("heuristic", {}), sample=heuristic_sample, threshold=heuristic_threshold)
    _set(section.setdefault("llm", {}), prompt=prompt, scale=scale, sample=llm_sample,
         max_file_tokens=max_file_tokens, method=method, threshold=llm_threshold)
    if section.get("teacher") == "smollm2" and "smollm2" not in (raw.get("teachers") or {}):
        raw.setdefault("teachers", {})["smollm2"] = {"backend": "local", "model": "smollm2"}
    raw["judge"] = section
    _run(raw, out, "judge", ["corpus"])


def classify(
    out: Path = typer.Option(..., "--out", "-o", help=OUT_HELP),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
    embedder: str = typer.Option(None, help=_doc(ClassifyConfig, "embedder")),
    heads: str = typer.Option(None, help="Comma-separated. " + _doc(ClassifyConfig, "heads")),
    folds: int = typer.Option(None, help=_doc(ClassifyConfig, "folds")),
    test_fraction: float = typer.Option(None, help=_doc(ClassifyConfig, "test_fraction")),
    n_estimators: int = typer.Option(None, help=_doc(ClassifyConfig, "n_estimators")),
    max_depth: int = typer.Option(None, help=_doc(ClassifyConfig, "max_depth")),
    ridge_alpha: float = typer.Option(None, help=_doc(ClassifyConfig, "ridge_alpha")),
) -> None:
    """Train the quality classifier on the judged records; print out-of-fold metrics next to the baselines."""
    raw = _base_config(out, config)
    section = raw.get("classify") or {}
    if folds is not None:
        section.pop("test_fraction", None)  # the option names the folds; an older test_fraction must not clash
    if test_fraction is not None:
        section.pop("folds", None)
    _set(section, embedder=embedder, heads=heads.split(",") if heads else None, folds=folds,
         test_fraction=test_fraction, n_estimators=n_estimators, max_depth=max_depth, ridge_alpha=ridge_alpha)
    raw["classify"] = section
    _run(raw, out, "classify", ["corpus", "judge"])


def filter_(
    out: Path = typer.Option(..., "--out", "-o", help=OUT_HELP),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
    threshold: float = typer.Option(None, help=_doc(QualityFilterConfig, "threshold")),
    top_fraction: float = typer.Option(None, help=_doc(QualityFilterConfig, "top_fraction")),
    batch_size: int = typer.Option(None, help=_doc(QualityFilterConfig, "batch_size")),
) -> None:
    """Score the whole corpus with the classifier; keep the educational records, reject the rest."""
    raw = _base_config(out, config)
    section = raw.get("filter") or {}
    if threshold is not None:
        section["top_fraction"] = None
    if top_fraction is not None:
        section["threshold"] = None
    _set(section, threshold=threshold, top_fraction=top_fraction, batch_size=batch_size)
    raw["filter"] = section
    _run(raw, out, "filter", ["corpus", "classify"])


def register(app: typer.Typer) -> None:
    app.command("judge")(judge)
    app.command("classify")(classify)
    app.command("filter")(filter_)
