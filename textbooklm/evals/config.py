"""Config of the evaluation stage: which models, which benchmarks, how many samples, what limits."""

from __future__ import annotations

from pydantic import Field

from textbooklm.config_base import StrictModel
from textbooklm.sandbox.config import Limits


class ChoiceTask(StrictModel):
    """A multiple-choice benchmark file (ARC, PIQA, HellaSwag, WinoGrande, BoolQ, OpenBookQA, SIQA)."""

    task: str = Field(..., description="arc_easy, arc_challenge, piqa, hellaswag, winogrande, boolq, openbookqa, siqa.")
    path: str = Field(..., description="The benchmark's standard JSONL (or Parquet) file.")
    limit: int | None = Field(None, ge=1, description="Score only the first N questions.")


class HeldOutExercises(StrictModel):
    """The run's verified exercises that finetuning never saw: pass@k and the NLL of their reference bodies."""

    dataset: str = Field("exercises", description="Exercises stage of the run (its decontaminated copy) or folder.")
    fraction: float = Field(
        0.1, gt=0, lt=1, description="Held-out share of the exercises' sources (record.is_heldout_exercise: a "
        "mined exercise's source file, a teacher exercise's id); config check wants it equal to [finetune] "
        "data.val_fraction and [decontam] heldout_fraction, so one split holds everywhere.",
    )
    limit: int | None = Field(None, ge=1, description="Score only the first N held-out exercises.")


class CorpusValidation(StrictModel):
    """The pretraining pack's held-out documents, scored by every model: the same texts for each."""

    pack: str = Field("pack", description="The pretraining pack stage of this run (or a pack folder); its "
                      "validation split is decoded back into documents. No such pack: the set is skipped, and "
                      "results.json says why.")
    documents: int | None = Field(100, ge=2, description="Score this many documents, spread evenly over the "
                                  "split (None: all).")
    tokens_per_document: int = Field(1024, ge=1, description="Score each document's first N tokens (the model's "
                                     "own tokenizer), in windows of its context length.")


class EvalConfig(StrictModel):
    """Evaluate the run's models, each on the same sets: corpus validation documents, held-out exercises,
    HumanEval (pass@k and canonical-solution NLL), phi-1.5 benchmarks; with n, intervals, paired tests."""

    models: list[str] = Field(
        default_factory=lambda: ["finetune"],
        description="Stage names of this run holding a trained model (pretrain, finetune) or checkpoint folders.",
    )
    humaneval: bool = Field(True, description="HumanEval pass@k (the bundled 164 problems).")
    humaneval_limit: int | None = Field(None, ge=1, description="Only the first N HumanEval problems.")
    mbpp_path: str | None = Field(None, description="MBPP's standard JSONL: also report MBPP pass@k.")
    problems_path: str | None = Field(None, description="Any problems JSONL (e.g. held-out exercises).")
    heldout_exercises: HeldOutExercises | None = Field(
        None, description="Also score the run's held-out verified exercises (pass@k, reference NLL).")
    corpus_validation: CorpusValidation | None = Field(
        default_factory=CorpusValidation,
        description="NLL/token of every model on the pretraining pack's validation documents (none: off).")
    n_samples: int = Field(10, ge=1, description="Samples per problem (pass@1 and pass@k estimated from them).")
    temperature: float = Field(0.2, ge=0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(128, ge=1, description="Longest completion.")
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch.")
    canonical_nll: bool = Field(True, description="NLL per token of HumanEval's canonical solutions given prompts.")
    choice_tasks: list[ChoiceTask] = Field(default_factory=list, description="phi-1.5 common-sense benchmarks.")
    gsm8k_path: str | None = Field(None, description="GSM8K JSONL: the model writes a program, run in the sandbox.")
    gsm8k_limit: int | None = Field(None, ge=1, description="Only the first N GSM8K questions.")
    perplexity: list[str] = Field(
        default_factory=list, description="Text datasets (stage names, Dataset folders, .jsonl/.txt) to measure."
    )
    limits: Limits = Field(default_factory=lambda: Limits(timeout_s=5.0), description="Sandbox limits per program.")
    seed: int = Field(0, description="Sampling seed.")
