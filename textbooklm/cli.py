"""The ``textbooklm`` command. Thin: every command parses arguments and calls the library.

Each area keeps its commands beside its code in ``textbooklm/<area>/cli.py``, which exposes
``register(app)``; this file only lists the areas. Heavy imports (torch, transformers) happen inside
command bodies so ``textbooklm --help`` stays instant.
"""

from __future__ import annotations

import importlib
import os

import typer

app = typer.Typer(
    name="textbooklm",
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
