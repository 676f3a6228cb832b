"""Config of ``textbooklm ablate``: the arms (data recipes), the shared training settings, the seeds.

Why one training config for every arm: the question is whether the *data* matters, so everything
else (model shape, optimizer, batch, steps, token budget) is held fixed and written once. An arm
is a weighted mixture of datasets, or a finetuning of another arm (phi-1's CodeExercises step).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from textbooklm.config_base import StrictModel
from textbooklm.lm.config import PackSource, TrainConfig
from textbooklm.sandbox.config import Limits


class ArmConfig(StrictModel):
    """One data recipe."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
                      description="Short id, also the arm's folder name (e.g. 'A').")
    label: str = Field("", description="What the arm is, for tables and plots (e.g. 'filtered code').")
    sources: list[PackSource] = Field(
        ..., min_length=1,
        description="Datasets (stage names of the run, e.g. 'corpus', 'filter', 'textbooks', or folders) and "
        "token shares. For a finetuning arm: the prompt/completion data it is finetuned on.",
    )
    base: str | None = Field(
        None, description="Another arm's name: this arm finetunes that arm's model of each seed on `sources` "
        "with [ablate.finetune] (phi-1's exercises step). Unset: pretrain from scratch on `sources`.",
    )
    paper_direction: Literal["better", "worse", "none"] = Field(
        "better", description="What the papers report for the step from the previous arm to this one.",
    )
    paper_pass_at_1: float | None = Field(
        None, ge=0, le=100, description="HumanEval pass@1 (%) the papers report for this recipe, for the table.",
    )

    @property
    def title(self) -> str:
        """The label, or the mixture it stands for."""
        return self.label or " + ".join(s.dataset for s in self.sources)


def default_arms() -> list[ArmConfig]:
    """phi-1's comparison at 350M parameters: unfiltered -> filtered -> + textbooks -> + exercises finetuning.

    The pass@1 figures are the paper's (arXiv 2306.11644, section 2 and Figure 2.1)."""
    return [
        ArmConfig(name="A", label="corpus after dedup (unfiltered)", sources=[PackSource(dataset="corpus")],
                  paper_direction="none", paper_pass_at_1=12.19),
        ArmConfig(name="B", label="classifier-filtered corpus", sources=[PackSource(dataset="filter")],
                  paper_pass_at_1=17.68),
        # phi-1's CodeTextbook: ~6B filtered tokens + ~1B synthetic textbook tokens.
        ArmConfig(name="C", label="filtered + synthetic textbooks",
                  sources=[PackSource(dataset="filter", weight=6.0), PackSource(dataset="textbooks", weight=1.0)],
                  paper_pass_at_1=20.12),
        ArmConfig(name="D", label="C finetuned on verified exercises", sources=[PackSource(dataset="exercises")],
                  base="C", paper_pass_at_1=45.0),
    ]


class AblationEvalConfig(StrictModel):
    """How every arm is measured (identically)."""

    val_sequences: int = Field(
        64, ge=1, description="Sequences of the shared held-out set scored for the validation loss.")
    humaneval: bool = Field(True, description="Sample HumanEval pass@1 / pass@10 (canonical NLL: always).")
    humaneval_limit: int | None = Field(None, ge=1, description="Only the first N HumanEval problems.")
    pass_at_every_point: bool = Field(
        False, description="Sample pass@k at every curve point (costly); otherwise only at the end of training.")
    n_samples: int = Field(10, ge=1, description="Samples per problem (pass@10 needs at least 10).")
    temperature: float = Field(0.2, ge=0, description="Sampling temperature for pass@k.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(128, ge=1, description="Longest completion.")
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch.")
    exercises: str = Field(
        "exercises", description="Verified exercises (stage name or folder) whose held-out part is scored "
        "as problems (pass@1). Missing or empty: the metric is reported as absent.")
    holdout_fraction: float | None = Field(
        None, gt=0, lt=1, description="Share of exercise sources held out from finetuning and scored instead "
        "(record.is_heldout_exercise, the finetuning pack's rule). Unset: the run's [decontam] heldout_fraction "
        "(the exercises whose functions and source files decontam kept out of all training data), else 0.2. "
        "Larger than that fraction is an error: the extra exercises' files are in the pretraining data.")
    limits: Limits = Field(default_factory=lambda: Limits(timeout_s=5.0), description="Sandbox limits.")
    seed: int = Field(0, description="Sampling seed.")


class AblationConfig(StrictModel):
    """`textbooklm ablate`: equal-budget training of one model on several data recipes, several seeds."""

    arms: list[ArmConfig] = Field(
        default_factory=default_arms, description="Data recipes, in the order compared (each step is "
        "compared with the arm before it). Default: phi-1's A/B/C/D.")
    tokens: int = Field(..., ge=1, description="Train tokens every pretraining arm sees (the equal budget).")
    seeds: list[int] = Field([0, 1, 2], min_length=3,
                             description="Training seeds per arm (init, data order and, with resample, the "
                             "documents drawn); at least 3.")
    points: int = Field(4, ge=1, description="Measurements along training (the curves' points).")
    tokenizer: str = Field("tokenizer", description="tokenizer.json, or a stage/folder holding one.")
    validation: list[str] = Field(
        default_factory=lambda: ["corpus", "textbooks"],
        description="Datasets whose held-out documents (the pack's hash rule) form the shared validation "
        "set. The same rule keeps them out of every arm's training data.")
    val_fraction: float = Field(0.05, gt=0, lt=1, description="Share of documents held out in every pack.")
    pack_seed: int = Field(0, description="Seed of each arm's document sampling (seed s draws with pack_seed + s "
                           "when resample is on).")
    resample: bool = Field(
        True, description="Each training seed draws its own documents for a pretraining arm (pack_seed + seed), so "
        "the spread over seeds, and so every verdict, includes which documents the budget happened to take; "
        "false: one draw for every seed (the spread then comes from initialisation and order only, and a verdict "
        "is about that one sample of documents).")
    train: TrainConfig = Field(..., description="Pretraining settings, identical for every arm "
                               "(max_steps is derived from `tokens`).")
    finetune: TrainConfig | None = Field(None, description="Finetuning settings for arms with a `base`.")
    finetune_tokens: int | None = Field(
        None, ge=1, description="Finetuning tokens (default: finetune.max_steps as set).")
    eval: AblationEvalConfig = Field(default_factory=AblationEvalConfig)
    launcher: Literal["inprocess", "torchrun"] = Field(
        "inprocess", description="Train in this process (CPU, one GPU) or through torchrun (several GPUs).")
    nproc_per_node: int = Field(1, ge=1, description="torchrun --nproc_per_node.")
    torchrun_args: list[str] = Field(default_factory=list, description="Extra torchrun arguments (e.g. --nnodes).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where measurements run.")

    @model_validator(mode="after")
    def _check(self) -> AblationConfig:
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"arm names must be unique, repeated: {dupes}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must differ, got {self.seeds}")
        for i, arm in enumerate(self.arms):
            if arm.base is None:
                continue
            earlier = {a.name: a for a in self.arms[:i]}
            if arm.base not in earlier:
                raise ValueError(f"arm {arm.name!r}: base {arm.base!r} is not an earlier arm ({sorted(earlier)})")
            if earlier[arm.base].base is not None:
                raise ValueError(f"arm {arm.name!r}: base {arm.base!r} is itself a finetuning arm")
            if self.finetune is None:
                raise ValueError(f"arm {arm.name!r} finetunes {arm.base!r}: add an [ablate.finetune] section")
        return self
