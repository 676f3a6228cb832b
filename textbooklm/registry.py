"""The stage registry: every pipeline stage declared once, everything else derived from it.

Each area declares its stages in ``textbooklm/<area>/stages.py`` as a list ``STAGES`` of
:class:`StageSpec`. From those entries come the pipeline config (one optional section per stage),
the data-flow order, the inputs decontam cleans, the default training sources of ``tokenizer``,
``pack`` and ``finetune``, the CLI's generated stage commands, and the report's sections. Adding a
stage is one module with ``run(config, inputs, out, ctx)`` plus one entry.

Why a registry: which dataset a name means, what is training data and what decontam cleans used to
be decided in five places that disagreed, and the raw corpus reached training. Now every one of
those questions is answered from here (and by :class:`textbooklm.run.Run`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel

TrainingKind = Literal["pretrain", "finetune"]

# Areas whose ``stages.py`` declares stages, in data-flow order.
AREAS = [
    "textbooklm.corpus.stages",
    "textbooklm.quality.stages",
    "textbooklm.synth.stages",
    "textbooklm.decontam.stages",
    "textbooklm.lm.stages",
    "textbooklm.evals.stages",
    "textbooklm.report.stages",
]


@dataclass(frozen=True)
class StageSpec:
    """One pipeline stage: its name (= config section = folder), config model, function and data flow.

    * ``inputs``: stages it reads and needs configured before it; ``optional``: read when configured.
    * ``after``: not read, but a change there re-runs this stage (its hash includes theirs).
    * ``training_data``: its output is training text, for pretraining or for finetuning.
    * ``cleaned_by_decontam``: decontam writes a cleaned copy, which later stages read instead.
    * ``replaces``: its output stands for that stage's output for every stage after it (``filter``
      replaces ``corpus``: after a filter, "corpus" means the filtered corpus, never the raw one).
    * ``reads``: derived optional inputs: ``"cleanable"`` (every dataset decontam cleans, for
      decontam), ``"training"`` (every training dataset), ``"all"`` (every stage, for the report).
    * ``artefacts``: files or folders beside the dataset that others use (``tokenizer.json``, ...).
    * ``check``: ``"module:function"`` ``(section, checker) -> None`` that validates the section's
      references before a run (paths, teacher and dataset names); see :mod:`textbooklm.run_check`.
    * ``report``: ``"module:function"`` ``(view) -> Section | str``: the stage's report section, from its
      own area (``<area>/report_section.py``); ``view`` is a :class:`textbooklm.reporting.view.RunView`
      (the run, read through ``Run``) and a :class:`textbooklm.reporting.section.Section` also hands
      story lines and warnings up to the report's first screen.
    * ``scorer``: ``"module:function"`` ``(section, texts, ctx) -> (verdicts, meta)`` scoring any texts
      the way this stage does; other stages call it through ``ctx.score_texts(name, texts)`` and
      list ``name`` in their section's ``consulted_stages()`` (so a change there re-runs them).
    * ``records``: its Dataset holds records (kept/dropped counts mean something); False for stages
      whose Dataset is a small table about an artefact (tokenizer, pack, training runs, eval, report).
    """

    name: str
    config: type[BaseModel]
    target: str | Callable[..., Any]
    help: str = ""
    inputs: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    reads: Literal["cleanable", "training", "all"] | None = None
    training_data: TrainingKind | None = None
    cleaned_by_decontam: bool = False
    cleans: bool = False
    replaces: str | None = None
    artefacts: tuple[str, ...] = ()
    check: str | Callable[..., Any] | None = None
    report: str | Callable[..., Any] | None = None
    scorer: str | Callable[..., Any] | None = None
    records: bool = True

    def load(self) -> Callable[..., Any]:
        """The stage function, imported only when the stage runs (heavy imports stay lazy)."""
        return _resolve(self.target)


def _resolve(target: str | Callable[..., Any]) -> Callable[..., Any]:
    """``"module:function"`` imported now, or a callable as given (a plugin's or a test's)."""
    if callable(target):
        return target
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


_STAGES: list[StageSpec] = []
_LOADED = False
_VERSION = 0  # bumped on every registration: derived models (the pipeline config) rebuild


def _load_areas() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for area in AREAS:
        for spec in importlib.import_module(area).STAGES:
            _add(spec, before="report" if spec.name != "report" else None)


def _add(spec: StageSpec, before: str | None) -> None:
    global _VERSION
    if any(s.name == spec.name for s in _STAGES):
        raise ValueError(f"stage {spec.name!r} is registered twice")
    names = [s.name for s in _STAGES]
    at = names.index(before) if before in names else len(_STAGES)
    _STAGES.insert(at, spec)
    _VERSION += 1


def register(spec: StageSpec, before: str | None = "report") -> StageSpec:
    """Add a stage (e.g. a plugin's or a test's) before ``before`` (the report stays last)."""
    _load_areas()
    _add(spec, before)
    return spec


def unregister(name: str) -> None:
    """Remove a registered stage (tests that register a toy stage clean up with this)."""
    global _VERSION
    _load_areas()
    _STAGES[:] = [s for s in _STAGES if s.name != name]
    _VERSION += 1


def version() -> int:
    _load_areas()
    return _VERSION


def stages() -> list[StageSpec]:
    """Every registered stage in data-flow order, derived inputs (``reads``) filled in."""
    _load_areas()
    out: list[StageSpec] = []
    for i, spec in enumerate(_STAGES):
        if spec.reads is not None:
            earlier = _STAGES[:i]
            if spec.reads == "cleanable":
                picked = [s.name for s in earlier if s.cleaned_by_decontam]
            elif spec.reads == "training":
                picked = [s.name for s in earlier if s.training_data is not None]
            else:
                picked = [s.name for s in earlier]
            extra = tuple(n for n in picked if n not in spec.inputs and n not in spec.optional)
            spec = replace(spec, optional=spec.optional + extra)
        out.append(spec)
    return out


def get(name: str) -> StageSpec:
    for spec in stages():
        if spec.name == name:
            return spec
    raise KeyError(f"no stage named {name!r}; stages: {', '.join(names())}")


def names() -> list[str]:
    return [s.name for s in stages()]


def cleaner() -> StageSpec | None:
    """The stage that writes cleaned copies (decontam), if one is registered."""
    return next((s for s in stages() if s.cleans), None)


def resolve_hook(target: str | Callable[..., Any] | None) -> Callable[..., Any] | None:
    return _resolve(target) if target else None
