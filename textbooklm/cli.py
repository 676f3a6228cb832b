"""The ``textbooklm`` command. Thin: every command parses arguments and calls the library.

Each area keeps its commands beside its code in ``textbooklm/<area>/cli.py``, which exposes
``register(app)``; this file only lists the areas. Heavy imports (torch, transformers) happen inside
command bodies so ``textbooklm --help`` stays instant.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    import click

# Commands that drive a whole run (the rest are stage commands or stand-alone tools).
PIPELINE_COMMANDS = ("run", "status", "config", "cache", "stage", "report", "ablate")


class GroupedHelp(TyperGroup):
    """``textbooklm --help`` lists the commands in three groups: the pipeline, one command per stage
    area (in data-flow order), and stand-alone tools, instead of one flat list of 24."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from textbooklm import registry

        stages = set(registry.names())
        groups: dict[str, list[tuple[str, str]]] = {"Pipeline": [], "Stage": [], "Tool": []}
        limit = formatter.width - 6 - max(len(n) for n in self.list_commands(ctx))
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            subs = set(cmd.list_commands(ctx)) if hasattr(cmd, "list_commands") else set()
            is_stage = name in stages or bool(subs & stages)  # `synth textbooks`, `synth exercises`
            group = "Pipeline" if name in PIPELINE_COMMANDS else "Stage" if is_stage else "Tool"
            groups[group].append((name, cmd.get_short_help_str(limit)))
        for title, rows in groups.items():
            if rows:
                with formatter.section(f"{title} commands"):
                    formatter.write_dl(rows)

app = typer.Typer(
    name="textbooklm",
    cls=GroupedHelp,
    help="Textbook-quality data for small language models: the phi-1 / phi-1.5 recipe as stages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts say [run], [teachers.NAME]: plain text, never rich markup
)

# Areas in data-flow order; each module defines register(app: typer.Typer) -> None.
AREAS = [
    "textbooklm.pipeline_cli",
    "textbooklm.stage_cli",
    "textbooklm.corpus.cli",
    "textbooklm.quality.cli",
    "textbooklm.teacher.cli",
    "textbooklm.synth.cli",
    "textbooklm.lm.cli",
    "textbooklm.sandbox.cli",
    "textbooklm.evals.cli",
    "textbooklm.decontam.cli",
    "textbooklm.report.cli",
    "textbooklm.ablate.cli",
]

for _module in AREAS:
    importlib.import_module(_module).register(app)


def make_child_pythons_safe() -> None:
    """Every Python this command starts (multiprocessing's fork server and resource tracker, loky,
    Ray, torchrun) runs as with ``-P``: its cwd is not put on sys.path. Why: those start with ``-c`` or
    ``-m``, which would import from the cwd, and a user may run the command from a folder that
    model-written programs can write (``/tmp``)."""
    os.environ["PYTHONSAFEPATH"] = "1"


def main() -> None:  # pragma: no cover - console-script entry
    make_child_pythons_safe()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
