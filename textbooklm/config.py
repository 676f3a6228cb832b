"""Typed configuration: one pydantic model per stage, one pipeline model, loaded from TOML.

Why strict: a typo in a config key silently falling back to a default is the most expensive bug a
data pipeline can have (a run of days with the wrong setting), so unknown keys are errors and every
error names the file, the dotted key and the reason.

Each stage's model lives beside the stage (``textbooklm/<area>/config.py``) and is collected here in
:class:`PipelineConfig`. Field descriptions double as ``--help`` text for the CLI.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from textbooklm.ablate.config import AblationConfig
from textbooklm.config_base import StrictModel
from textbooklm.corpus.config import CorpusConfig
from textbooklm.decontam.config import DecontamConfig
from textbooklm.evals.config import EvalConfig
from textbooklm.lm.config import PackConfig, TokenizerConfig, TrainConfig
from textbooklm.quality.config import ClassifyConfig, JudgeConfig, QualityFilterConfig
from textbooklm.report.config import ReportConfig
from textbooklm.synth.config import ExercisesConfig, TextbooksConfig
from textbooklm.teacher.config import StageEstimate, TeacherConfig


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


class PipelineConfig(StrictModel):
    """A whole run: shared settings plus one optional section per stage, in data-flow order.

    A stage whose section is absent does not run.
    """

    run: RunConfig = Field(default_factory=RunConfig)
    teachers: dict[str, TeacherConfig] = Field(
        default_factory=dict, description="Named teacher LLMs; stages refer to them by name."
    )
    cost: dict[str, StageEstimate] = Field(
        default_factory=dict, description="Planned teacher work per stage, for `textbooklm cost` (no effect on runs)."
    )
    corpus: CorpusConfig | None = None
    judge: JudgeConfig | None = None
    classify: ClassifyConfig | None = None
    filter: QualityFilterConfig | None = None
    textbooks: TextbooksConfig | None = None
    exercises: ExercisesConfig | None = None
    decontam: DecontamConfig | None = None
    tokenizer: TokenizerConfig | None = None
    pack: PackConfig | None = None
    pretrain: TrainConfig | None = None
    finetune: TrainConfig | None = None
    eval: EvalConfig | None = None
    report: ReportConfig | None = None  # always the last stage
    ablate: AblationConfig | None = Field(
        None, description="Not a stage: `textbooklm ablate CONFIG --run RUN` trains and compares data recipes."
    )


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, the key and the reason."""


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``FILE: key.path: reason (got VALUE)``."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        reason = e["msg"]
        if e["type"] == "extra_forbidden":
            reason = "unknown key"
        got = e.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        lines.append(f"{source}: {key}: {reason}{shown}")
    return "\n".join(lines)


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline TOML file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(raw, source=str(path))


def parse_config(raw: dict[str, Any], source: str = "<config>") -> PipelineConfig:
    """Validate an already-parsed mapping (used by tests and by ``config show``)."""
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc


def config_hash(section: BaseModel | dict | None, *upstream: str) -> str:
    """Stable hash of a stage's config plus the hashes of the stages it reads from.

    Chaining the upstream hashes means changing one stage's config re-runs it and every stage after.
    """
    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    blob = json.dumps({"config": data, "upstream": list(upstream)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
