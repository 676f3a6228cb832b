"""Estimate a run's teacher tokens and dollars before it starts, and read teachers from a pipeline TOML.

The estimate is plain arithmetic on a per-stage plan (requests x tokens per request x price), kept
explicit so a user can check it by hand. The phi-1 scale in 2023 prices, as a plan::

    [teachers.gpt4]   backend = "openai", model = "gpt-4-0613"
    [teachers.gpt35]  backend = "openai", model = "gpt-3.5-turbo-0613"
    [cost.judge]      teacher = "gpt4",  requests = 100_000,   input_tokens_per_request = 1000,
                      output_tokens_per_request = 5
    [cost.textbooks]  teacher = "gpt35", requests = 1_300_000, input_tokens_per_request = 150,
                      output_tokens_per_request = 1000

gives ~$3,000 for judging (100M tokens in) and ~$2,900 for writing (1.3B tokens out), the paper's
order of magnitude ($3,000 + $2,500).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from textbooklm.config_base import ConfigError, format_validation_error
from textbooklm.teacher.config import StageEstimate, TeacherConfig


@dataclass
class CostRow:
    """One stage's planned teacher use."""

    stage: str
    teacher: str
    model: str
    requests: int
    tokens_in: float
    tokens_out: float
    usd: float | None
    budget_usd: float | None

    @property
    def over_budget(self) -> bool:
        return self.usd is not None and self.budget_usd is not None and self.usd > self.budget_usd


def parse_teachers(raw: dict[str, Any], source: str) -> dict[str, TeacherConfig]:
    """The ``[teachers.NAME]`` tables of a pipeline config, validated (errors name file and key)."""
    section = raw.get("teachers", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: teachers: must be a table of named teachers")
    out: dict[str, TeacherConfig] = {}
    problems = []
    for name, body in section.items():
        try:
            out[name] = TeacherConfig.model_validate(body)
        except ValidationError as exc:
            problems.append(format_validation_error(exc, source, f"teachers.{name}"))
    if problems:
        raise ConfigError("\n".join(problems))
    return out


def parse_cost_plan(
    raw: dict[str, Any], source: str, teachers: dict[str, TeacherConfig]
) -> dict[str, StageEstimate]:
    """The ``[cost.STAGE]`` tables: planned requests and tokens per request for each stage."""
    section = raw.get("cost", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: cost: must be a table of stages")
    plan: dict[str, StageEstimate] = {}
    for stage, body in section.items():
        try:
            est = StageEstimate.model_validate(body)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, source, f"cost.{stage}")) from None
        if est.teacher not in teachers:
            known = ", ".join(sorted(teachers)) or "none defined"
            raise ConfigError(f"{source}: cost.{stage}.teacher: no teacher named {est.teacher!r} ({known})")
        plan[stage] = est
    return plan


def estimate(teachers: dict[str, TeacherConfig], plan: dict[str, StageEstimate]) -> list[CostRow]:
    rows = []
    for stage, est in plan.items():
        cfg = teachers[est.teacher]
        tokens_in = est.requests * est.input_tokens_per_request
        tokens_out = est.requests * est.output_tokens_per_request
        price = cfg.resolved_price()
        rows.append(
            CostRow(
                stage=stage,
                teacher=est.teacher,
                model=cfg.model,
                requests=est.requests,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                usd=None if price is None else price.cost(tokens_in, tokens_out),
                budget_usd=cfg.budget_usd,
            )
        )
    return rows
