"""``textbooklm synth textbooks`` and ``textbooklm synth exercises``: run one synthesis stage.

Each command builds the same PipelineConfig the pipeline uses (from ``--config`` if given, with
command-line overrides) and runs that one stage into ``OUT/<stage>/``, so a command run and a
pipeline run of the same settings produce the same files and share the same request cache.
"""

from __future__ import annotations

from pathlib import Path

import typer

from textbooklm.synth.config import ExercisesConfig, TextbooksConfig

synth_app = typer.Typer(help="Synthetic textbooks and execution-verified exercises written by a teacher.",
                        no_args_is_help=True)


def _doc(model: type, name: str) -> str:
    return model.model_fields[name].description or ""


def _run(stage: str, config: Path | None, out: Path, overrides: dict, seed: int | None, workers: int | None) -> None:
    from textbooklm.config import PipelineConfig, RunConfig
    from textbooklm.pipeline_cli import _load_or_exit, run_or_exit
    from textbooklm.teacher import TeacherConfig

    cfg = _load_or_exit(config) if config else PipelineConfig(run=RunConfig())
    model = TextbooksConfig if stage == "textbooks" else ExercisesConfig
    section = getattr(cfg, stage) or model()
    data = section.model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    run = cfg.run.model_dump()
    run.update({k: v for k, v in {"seed": seed, "workers": workers}.items() if v is not None})
    teachers = dict(cfg.teachers)
    if data["teacher"] not in teachers and data["teacher"] == "smollm2":
        teachers["smollm2"] = TeacherConfig(backend="local", model="smollm2")  # the offline default
    try:
        body = cfg.model_dump()
        body.update(run=RunConfig(**run).model_dump(), teachers={k: v.model_dump() for k, v in teachers.items()})
        body[stage] = model.model_validate(data).model_dump()
        cfg = PipelineConfig.model_validate(body)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if data["teacher"] not in cfg.teachers:
        raise typer.BadParameter(f"teacher {data['teacher']!r} is not configured; add [teachers.{data['teacher']}]")
    run_or_exit(cfg, out, only=[stage])


@synth_app.command("textbooks")
def textbooks(
    out: Path = typer.Option(..., "--out", "-o", help="Run folder; the stage writes OUT/textbooks/."),
    config: Path = typer.Option(None, "--config", help="Take [textbooks], [teachers] and [run] from this TOML."),
    teacher: str = typer.Option(None, help=_doc(TextbooksConfig, "teacher")),
    count: int = typer.Option(None, help=_doc(TextbooksConfig, "count")),
    per_round: int = typer.Option(None, help=_doc(TextbooksConfig, "per_round")),
    max_tokens: int = typer.Option(None, help=_doc(TextbooksConfig, "max_tokens")),
    temperature: float = typer.Option(None, help=_doc(TextbooksConfig, "temperature")),
    template: str = typer.Option(None, help=_doc(TextbooksConfig, "template")),
    drop_failing_code: bool = typer.Option(None, "--drop-failing-code/--keep-failing-code",
                                           help=_doc(TextbooksConfig, "drop_failing_code")),
    seed: int = typer.Option(None, help="Run seed (seed sampler, sampling)."),
    workers: int = typer.Option(None, help="Sandbox workers; 0 = one per core."),
) -> None:
    """A teacher writes textbook sections from diverse seeds; their Python blocks run in the sandbox.

    Re-running with the same options does nothing; an interrupted run resumes without re-sending requests.
    """
    _run("textbooks", config, out, {"teacher": teacher, "count": count, "per_round": per_round,
                                     "max_tokens": max_tokens, "temperature": temperature, "template": template,
                                     "drop_failing_code": drop_failing_code}, seed, workers)


@synth_app.command("exercises")
def exercises(
    out: Path = typer.Option(..., "--out", "-o", help="Run folder; the stage writes OUT/exercises/."),
    config: Path = typer.Option(None, "--config", help="Take [exercises], [teachers] and [run] from this TOML."),
    teacher: str = typer.Option(None, help=_doc(ExercisesConfig, "teacher")),
    count: int = typer.Option(None, help=_doc(ExercisesConfig, "count")),
    per_round: int = typer.Option(None, help=_doc(ExercisesConfig, "per_round")),
    max_tokens: int = typer.Option(None, help=_doc(ExercisesConfig, "max_tokens")),
    temperature: float = typer.Option(None, help=_doc(ExercisesConfig, "temperature")),
    names_file: str = typer.Option(None, help=_doc(ExercisesConfig, "names_file")),
    solutions: int = typer.Option(None, help=_doc(ExercisesConfig, "solutions")),
    tests_from: str = typer.Option(None, help=_doc(ExercisesConfig, "tests_from")),
    solution_max_tokens: int = typer.Option(None, help=_doc(ExercisesConfig, "solution_max_tokens")),
    min_tests: int = typer.Option(None, help=_doc(ExercisesConfig, "min_tests")),
    seed: int = typer.Option(None, help="Run seed (name pool, seed sampler, sampling)."),
    workers: int = typer.Option(None, help="Sandbox workers; 0 = one per core."),
) -> None:
    """One HumanEval-style exercise per function name; kept only when its solution passes its tests.

    Writes OUT/exercises/ (training rows), OUT/exercises/problems.jsonl (evals format) and rejected/.
    """
    _run("exercises", config, out, {"teacher": teacher, "count": count, "per_round": per_round,
                                     "max_tokens": max_tokens, "temperature": temperature, "names_file": names_file,
                                     "solutions": solutions, "min_tests": min_tests,
                                     "tests_from": tests_from, "solution_max_tokens": solution_max_tokens},
         seed, workers)


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")
