"""Config of the quality stages: ``[judge]``, ``[classify]`` and ``[filter]``.

Every judge turns a record into a score normalised to [0, 1] (``high``/``low`` -> P(high); the 0-5
rubric -> grade / 5; the heuristic judge is built in [0, 1]), so one threshold convention serves all
of them: label = 1 (educational) when the score reaches the judge's ``threshold``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from textbooklm.config_base import StrictModel

JudgeName = Literal["heuristic", "llm"]
BUILTIN_PROMPTS = {"phi1": "high-low", "fineweb-edu": "0-5"}


class HeuristicJudgeConfig(StrictModel):
    """The offline judge: a weighted score from measurable features of the file."""

    sample: int = Field(0, ge=0, description="Records scored by the heuristic judge; 0 means every record.")
    threshold: float = Field(
        0.7, ge=0, le=1,
        description="Heuristic score (0..1) at or above which a record is labelled educational (0.7 labels about "
        "a third of the standard library educational).",
    )


class LLMJudgeConfig(StrictModel):
    """The LLM judge: a prompt template sent through the teacher layer to a sample of records."""

    prompt: str = Field(
        "phi1",
        description="'phi1' (high/low educational value, the paper's question), 'fineweb-edu' (additive 0-5 "
        "rubric) or the path of your own template file with a {code} placeholder.",
    )
    scale: Literal["high-low", "0-5"] | None = Field(
        None, description="Answer scale of a custom template file; built-in prompts know their own."
    )
    sample: int = Field(32, ge=0, description="Records sent to the LLM judge (seeded, stratified by source).")
    max_file_tokens: int = Field(
        384, ge=16, description="Files are cut to this many tokens (the head is kept) before judging."
    )
    method: Literal["choices", "generate"] = Field(
        "choices",
        description="'choices': one forward pass scoring each answer label (expected value over their "
        "probabilities; falls back to generating when the endpoint gives no logprobs); 'generate': "
        "generate a reply and parse the score from its text.",
    )
    max_reply_tokens: int = Field(
        256, ge=1, description="Reply length allowed when generating (the rubric asks for a justification)."
    )
    threshold: float | None = Field(
        None, ge=0, le=1,
        description="Normalised score at or above which a record is educational; unset: 0.5 for high/low, "
        "0.6 (3 of 5, FineWeb-Edu's cut) for the 0-5 rubric.",
    )

    @model_validator(mode="after")
    def _check(self) -> LLMJudgeConfig:
        if self.prompt not in BUILTIN_PROMPTS and self.scale is None:
            raise ValueError(f"llm judge prompt {self.prompt!r} is a custom template: set scale ('high-low' or '0-5')")
        return self

    def resolved_scale(self) -> str:
        return self.scale or BUILTIN_PROMPTS[self.prompt]

    def resolved_threshold(self) -> float:
        if self.threshold is not None:
            return self.threshold
        return 0.5 if self.resolved_scale() == "high-low" else 0.6


class JudgeConfig(StrictModel):
    """Which judges score which records, and whose score becomes the training label."""

    judges: list[JudgeName] = Field(
        default_factory=lambda: ["heuristic"],
        description="Judges to run: 'heuristic' (offline, fast) and/or 'llm' (through a teacher).",
    )
    label_from: JudgeName = Field(
        "heuristic", description="The judge whose binary label the classifier learns (must be in judges)."
    )
    teacher: str | None = Field(None, description="Name of the teachers.NAME entry the llm judge uses.")
    heuristic: HeuristicJudgeConfig = Field(default_factory=HeuristicJudgeConfig)
    llm: LLMJudgeConfig = Field(default_factory=LLMJudgeConfig)

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        if not self.judges:
            raise ValueError("judge.judges must name at least one judge ('heuristic', 'llm')")
        if len(set(self.judges)) != len(self.judges):
            raise ValueError(f"judge.judges lists a judge twice: {self.judges}")
        if self.label_from not in self.judges:
            raise ValueError(f"judge.label_from {self.label_from!r} is not among judge.judges {self.judges}")
        if "llm" in self.judges and not self.teacher:
            raise ValueError("judge.judges has 'llm': set judge.teacher to a [teachers] entry")
        return self


class ClassifyConfig(StrictModel):
    """The classifier that learns the judge's labels from embeddings."""

    embedder: str = Field(
        "minilm",
        description="Embeddings: 'minilm' (all-MiniLM-L6-v2, offline), 'static' (a model2vec static embedder "
        "distilled offline from that MiniLM once and cached; no transformer at run time: 30-345x MiniLM's records/s "
        "at the same held-out F1 on the stdlib), "
        "'hashing[-DIM]' (no model), 'st:PATH' (a sentence-transformers folder), 'static:PATH' (a model2vec folder) "
        "or 'lm:PATH' (a trained LM's hidden states).",
    )
    heads: list[Literal["random_forest", "ridge"]] = Field(
        default_factory=lambda: ["random_forest", "ridge"],
        description="Heads to train and report; the FIRST is saved for the filter (random forest: phi-1; "
        "ridge regression on the judge score: FineWeb-Edu).",
    )
    folds: int = Field(
        5, ge=2, le=50,
        description="k of the k-fold scoring: every labelled record is scored by the model trained on the other "
        "k-1 folds (never by one that saw its label); those out-of-fold scores give the metrics and the filter's "
        "decisions on labelled records. The saved model, trained on every label, scores the unlabelled rest.",
    )
    test_fraction: float | None = Field(
        None, gt=0, le=0.5,
        description="Older spelling of folds: each fold holds out this share, so folds = round(1 / test_fraction) "
        "(0.2 -> 5). Set folds instead; both set must agree.",
    )
    n_estimators: int = Field(100, ge=1, description="Trees in the random forest.")
    max_depth: int | None = Field(None, ge=1, description="Depth limit of each tree; unset grows them fully.")
    min_samples_leaf: int = Field(1, ge=1, description="Fewest training records in a random-forest leaf.")
    class_weight: Literal["balanced", "none"] = Field(
        "balanced",
        description="'balanced' weighs each class by its inverse frequency, so a rare 'educational' label "
        "still moves the forest's 0.5 cut (on the stdlib: held-out F1 0.56 vs 0.41 unweighted).",
    )
    ridge_alpha: float = Field(1.0, gt=0, description="L2 strength of the ridge head.")
    max_chars: int = Field(
        2000, ge=64, description="Characters of each file embedded (MiniLM reads at most 256 tokens anyway)."
    )
    batch_size: int = Field(64, ge=1, description="Texts embedded per batch.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="Numbers the sentence-transformers embedder computes in, here and in the filter (saved with "
        "the classifier): 'bf16' runs the transformer in bfloat16 (about 2x faster on a CPU with AVX512-BF16; "
        "on the stdlib the same keep/drop decision as float32 for 99.9% of files), 'fp32' is exact, 'auto' "
        "picks bf16 only where the CPU has native bf16.",
    )

    @model_validator(mode="after")
    def _folds_from_test_fraction(self) -> ClassifyConfig:
        if self.test_fraction is not None:
            derived = max(2, round(1 / self.test_fraction))
            if "folds" in self.model_fields_set and self.folds != derived:  # a saved config has both, agreeing
                raise ValueError(f"classify: folds = {self.folds} but test_fraction = {self.test_fraction} (its older "
                                 f"spelling) means {derived} folds; set one of them")
            if derived != self.folds:
                object.__setattr__(self, "folds", derived)  # validate_assignment would re-run this validator
        return self


class QualityFilterConfig(StrictModel):
    """Score every corpus record with the classifier and keep the educational ones."""

    threshold: float | None = Field(
        None, ge=0, le=1,
        description="Keep records scoring at least this; unset uses the classifier's own decision cut.",
    )
    top_fraction: float | None = Field(
        None, gt=0, le=1, description="Instead of a threshold: keep this fraction of records, best first."
    )
    batch_size: int = Field(64, ge=1, description="Texts embedded per batch.")

    @model_validator(mode="after")
    def _check(self) -> QualityFilterConfig:
        if self.threshold is not None and self.top_fraction is not None:
            raise ValueError("filter: set threshold or top_fraction, not both")
        return self
