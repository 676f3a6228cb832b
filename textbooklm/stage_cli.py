"""``textbooklm stage NAME``: one command per registered stage, generated from its config model.

Every scalar field of the stage's config (nested ones too: ``--dedup-threshold``) becomes an
option whose help is the field's description, so the config docs and ``--help`` cannot drift apart;
``--set key.path=VALUE`` (a TOML value) reaches lists and tables. The command builds the same
pipeline config the pipeline uses (``--config`` if given, plus the overrides) and runs that one stage
into ``OUT/<stage>/``, so a command run and a pipeline run of the same settings give the same files.

The commands are made when the CLI is invoked, from the registry as it is then: a stage registered by
a plugin (or a test) has its command without any CLI code. The areas' hand-written commands
(``textbooklm corpus PATHS``, ``textbooklm synth exercises``, ...) stay as richer front doors.
"""

from __future__ import annotations

import inspect
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import click
import typer
from pydantic import BaseModel
from typer.core import TyperGroup

from textbooklm import registry

SCALARS = (int, float, str, bool)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (annotation, False)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def leaf_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, str]]:
    """(path, option type, help) of every scalar field, nested models flattened."""
    out = []
    for name, field in model.model_fields.items():
        ann, _ = _unwrap(field.annotation)
        path = (*prefix, name)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += leaf_fields(ann, path)
        elif ann in SCALARS:
            out.append((path, ann, field.description or ""))
        elif typing.get_origin(ann) is Literal and all(isinstance(a, str) for a in typing.get_args(ann)):
            choices = "|".join(typing.get_args(ann))
            out.append((path, str, f"{field.description or ''} ({choices})"))
    return out


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def _set(body: dict[str, Any], path: tuple[str, ...] | list[str], value: Any) -> None:
    for key in path[:-1]:
        body = body.setdefault(key, {})
    body[path[-1]] = value


def build_config(stage: str, config: Path | None, overrides: dict[tuple[str, ...], Any],
                 run: dict[str, Any]) -> Any:
    """The pipeline config of a one-stage command: the file's (or defaults) plus the overrides."""
    from textbooklm.config import load_config, pipeline_model

    base = load_config(config) if config else pipeline_model()()
    body = base.model_dump(mode="json", exclude_none=True)
    section = body.get(stage) or {}
    for path, value in overrides.items():
        _set(section, path, value)
    body[stage] = section
    body["run"] = {**body.get("run", {}), **run}
    teachers = body.setdefault("teachers", {})
    for key, value in section.items():
        if (key == "teacher" or key.endswith("_teacher")) and value == "smollm2" and value not in teachers:
            teachers["smollm2"] = {"backend": "local", "model": "smollm2"}  # the offline default
    return pipeline_model().model_validate(body)


def make_command(spec: registry.StageSpec) -> click.Command:
    """The click command of one stage, its options generated from the stage's config model."""
    leaves = leaf_fields(spec.config)
    out_help = f"Run folder; the stage writes OUT/{spec.name}/."
    params = [
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Path,
                          default=typer.Option(..., "--out", "-o", help=out_help)),
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
                          default=typer.Option(None, "--config", help="Sections from this TOML; options override.")),
        inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, annotation=list[str] | None,
                          default=typer.Option(None, "--set", help="KEY.PATH=VALUE (a TOML value) for any field.")),
        inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, annotation=int | None,
                          default=typer.Option(None, "--seed", help="Run seed.")),
        inspect.Parameter("workers", inspect.Parameter.KEYWORD_ONLY, annotation=int | None,
                          default=typer.Option(None, "--workers", help="Worker processes; 0 = one per core.")),
    ]
    names: dict[str, tuple[str, ...]] = {}
    for path, kind, help_text in leaves:
        ident = "f__" + "__".join(path)
        flag = "-".join(path).replace("_", "-")
        names[ident] = path
        decl = (f"--{flag}/--no-{flag}",) if kind is bool else (f"--{flag}",)
        params.append(inspect.Parameter(ident, inspect.Parameter.KEYWORD_ONLY, annotation=kind | None,
                                        default=typer.Option(None, *decl, help=help_text)))

    def command(**kw: Any) -> None:
        from textbooklm.config_base import ConfigError
        from textbooklm.pipeline_cli import run_or_exit

        overrides = {names[k]: v for k, v in kw.items() if k in names and v is not None}
        for item in kw.get("set_") or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise typer.BadParameter(f"--set {item!r}: expected KEY.PATH=VALUE")
            overrides[tuple(key.strip().split("."))] = _toml_value(value.strip())
        run = {k: kw[k] for k in ("seed", "workers") if kw.get(k) is not None}
        try:
            cfg = build_config(spec.name, kw.get("config"), overrides, run)
        except (ConfigError, ValueError) as exc:
            raise typer.BadParameter(str(exc)) from None
        run_or_exit(cfg, kw["out"], only=[spec.name], source=str(kw.get("config") or "options"))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = spec.help or f"Run the {spec.name} stage."
    one = typer.Typer(rich_markup_mode=None, add_completion=False)
    one.command(spec.name)(command)
    return typer.main.get_command(one)


class StageGroup(TyperGroup):
    """Lists the registry's stages at invocation time (plugins and tests included)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return registry.names()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        try:
            spec = registry.get(cmd_name)
        except KeyError:
            return None
        return make_command(spec)


stage_app = typer.Typer(cls=StageGroup, no_args_is_help=True, rich_markup_mode=None,
                        help="Run one stage, options generated from its config model (see `stage NAME --help`).")


def register(app: typer.Typer) -> None:
    app.add_typer(stage_app, name="stage")
