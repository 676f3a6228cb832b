"""Typed configuration: one pydantic model per stage, one pipeline model derived from the registry.

Why strict: a typo in a config key silently falling back to a default is the most expensive bug a
data pipeline can have (a run of days with the wrong setting), so unknown keys are errors, no value
is coerced (``true`` is not 1), and every error names the file, the dotted key and the reason.

Each stage's model lives beside the stage (``textbooklm/<area>/config.py``) and is named by its
registry entry (``textbooklm/<area>/stages.py``); :func:`pipeline_model` builds the pipeline model
with one optional section per registered stage. Field descriptions double as ``--help`` text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, create_model

from textbooklm import registry
from textbooklm.ablate.config import AblationConfig
from textbooklm.config_base import ConfigError, StrictModel, config_hash, format_validation_error, read_toml
from textbooklm.teacher.config import StageEstimate, TeacherConfig

__all__ = ["ConfigError", "PipelineConfig", "RunConfig", "config_hash", "format_validation_error", "load_config",
           "parse_config", "pipeline_model"]


class RunConfig(StrictModel):
    """Settings shared by every stage of a run."""

    executor: Literal["local", "ray"] = Field(
        "local", description="Where data stages run: a local process pool, or Ray (pip install .[ray])."
    )
    workers: int = Field(0, ge=0, description="Worker processes for data stages; 0 means one per CPU core.")
    ray_address: str | None = Field(
        None, description="Ray cluster address ('auto' to join a running cluster); unset starts a local one."
    )
    seed: int = Field(0, description="Seed for every sampled decision in the run.")
    teacher_cache: str | None = Field(
        None, description="Folder of the teacher request cache, e.g. one shared by all your runs; unset: "
        "$TEXTBOOKLM_TEACHER_CACHE, else RUN/_cache. Never inside a stage folder: re-runs never re-send."
    )


class PipelineBase(StrictModel):
    """What every run has besides its stages: shared settings, named teachers, cost plan, ablation."""

    run: RunConfig = Field(default_factory=RunConfig)
    teachers: dict[str, TeacherConfig] = Field(
        default_factory=dict, description="Named teacher LLMs; stages refer to them by name."
    )
    cost: dict[str, StageEstimate] = Field(
        default_factory=dict, description="Planned teacher work per stage, for `textbooklm cost` (no effect on runs)."
    )
    ablate: AblationConfig | None = Field(
        None, description="Not a stage: `textbooklm ablate CONFIG --run RUN` trains and compares data recipes."
    )


_MODELS: dict[int, type[PipelineBase]] = {}


def pipeline_model() -> type[PipelineBase]:
    """The pipeline config model: :class:`PipelineBase` plus one optional section per registered stage.

    A stage whose section is absent does not run. Rebuilt when a stage is registered (plugins, tests).
    """
    version = registry.version()
    if version not in _MODELS:
        fields: dict[str, Any] = {
            spec.name: (spec.config | None, Field(None, description=spec.help)) for spec in registry.stages()
        }
        _MODELS[version] = create_model("PipelineConfig", __base__=PipelineBase, **fields)
    return _MODELS[version]


# The model of the built-in stages, for type hints and direct construction (``PipelineConfig(run=...)``).
PipelineConfig = pipeline_model()


def load_config(path: str | Path) -> PipelineBase:
    """Read and validate a pipeline TOML file."""
    return parse_config(read_toml(path), source=str(path))


def parse_config(raw: dict[str, Any], source: str = "<config>") -> PipelineBase:
    """Validate an already-parsed mapping (used by tests and by ``config show``)."""
    try:
        return pipeline_model().model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc
