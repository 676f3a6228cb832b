"""Config of the decontam stage: which benchmarks, which signals, which thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from textbooklm.config_base import StrictModel


class BenchmarkSpec(StrictModel):
    """One benchmark whose problems training data must not resemble."""

    task: Literal["humaneval", "mbpp", "problems"] = Field(
        "humaneval", description="humaneval (bundled), mbpp (standard JSONL) or problems (generic problems JSONL)."
    )
    path: str | None = Field(None, description="JSONL file of the problems (required for mbpp and problems).")

    @model_validator(mode="after")
    def _path_required(self) -> BenchmarkSpec:
        if self.task != "humaneval" and not self.path:
            raise ValueError(f"benchmark task '{self.task}' needs a path")
        return self


class DecontamConfig(StrictModel):
    """Signals and thresholds. A sample is removed when any signal reaches its threshold."""

    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=lambda: [BenchmarkSpec()], min_length=1,
        description="Benchmarks to compare against; each problem's prompt, solution and tests are references.",
    )
    ngram: int = Field(13, ge=3, description="n of the n-gram overlap signal, in normalized word tokens.")
    ngram_max_problems: int = Field(
        3, ge=1, description="Ignore n-grams occurring in more benchmark problems than this (boilerplate)."
    )
    ngram_min_content: int = Field(
        3, ge=0, description="Ignore n-grams with fewer non-stop-list tokens than this (e.g. 'for i in range len')."
    )
    ngram_min_hits: int | None = Field(
        1, ge=1, description="Remove a sample sharing at least this many indexed n-grams with one problem; "
        "null: report only.",
    )
    embedder: str = Field(
        "minilm", description="Embedder for the cosine signal: minilm, hashing[-DIM], st:PATH or lm:PATH "
        "(the project's own trained LM)."
    )
    embedding_threshold: float | None = Field(
        None, gt=0, le=1, description="Remove a sample whose cosine to a problem reaches this; null (default, as "
        "phi-1): the cosine is reported and listed, the AST rate decides.",
    )
    embedding_report: float = Field(
        0.9, gt=0, le=1, description="List a sample among the matches when its cosine to a problem reaches this."
    )
    ast_threshold: float | None = Field(
        0.9, gt=0, le=1, description="Remove a sample with a function whose AST match rate tau to a benchmark "
        "function reaches this; null: report only.",
    )
    ast_min_nodes: int = Field(
        12, ge=1, description="Functions with fewer normalized AST nodes are not compared (tiny ones all look alike)."
    )
    ast_max_nodes: int = Field(
        2000, ge=1, description="Functions with more nodes are not compared (bounds the edit-distance cost)."
    )
    ast_min_statements: int = Field(
        3, ge=1, description="An AST match where either function has fewer statements than this (a one-line "
        "`__eq__` against HumanEval/54's one-line body) does not remove alone: it needs the same problem among "
        "the sample's n-gram hits or listed embedding matches. It is still reported.",
    )
    max_functions: int = Field(32, ge=1, description="At most this many functions per sample are compared.")
    heldout_exercises: bool = Field(
        True, description="Treat the run's held-out exercises (the `exercises` input's held-out side, split by "
        "source file: record.is_heldout_exercise) as a benchmark: remove from every training dataset what matches "
        "them, with the same signals. Held-out exercises stay in the cleaned `exercises` copy, marked "
        "split = heldout, for finetuning's validation split and eval.",
    )
    heldout_fraction: float = Field(
        0.1, gt=0, lt=1, description="Held-out share of exercise sources; `config check` wants [finetune] "
        "data.val_fraction and [eval] heldout_exercises.fraction equal to it (one split everywhere).",
    )
    heldout_source_files: bool = Field(
        True, description="Also remove the whole corpus file each held-out exercise was mined from (signal "
        "`source`), not only the files whose text matches it.",
    )
    report_taus: list[float] = Field(
        default_factory=lambda: [0.95, 0.9, 0.85, 0.8], min_length=1,
        description="AST thresholds of the pruning report (phi-1 section 5.2 pruned at 0.95 down to 0.8).",
    )
    rows_per_task: int = Field(500, ge=1, description="Samples per parallel task (the unit of resume).")
    max_chars: int = Field(
        200_000, ge=1, description="Only the first this many characters of a sample are checked."
    )

    @field_validator("report_taus")
    @classmethod
    def _taus_in_range(cls, v: list[float]) -> list[float]:
        if any(not 0 < t <= 1 for t in v):
            raise ValueError("every report tau must be in (0, 1]")
        return sorted(set(v), reverse=True)

    @property
    def ast_floor(self) -> float:
        """The lowest AST rate anything is decided or reported at: pairs that cannot reach it are skipped."""
        return min([*self.report_taus, *([self.ast_threshold] if self.ast_threshold else [])])
