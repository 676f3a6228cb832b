"""Registry entries of the synthesis area: textbooks and verified exercises written by a teacher."""

from textbooklm.registry import StageSpec
from textbooklm.synth.config import ExercisesConfig, TextbooksConfig

STAGES = [
    StageSpec("textbooks", TextbooksConfig, "textbooklm.synth.textbooks_stage:run", optional=("filter",),
              help="A teacher writes textbook sections from diverse seeds; their code blocks run in the sandbox.",
              training_data="pretrain", cleaned_by_decontam=True, check="textbooklm.synth.checks:check",
              report="textbooklm.synth.report_section:textbooks_section"),
    StageSpec("exercises", ExercisesConfig, "textbooklm.synth.exercises_stage:run", optional=("filter",),
              help="HumanEval-style exercises, kept only when their solutions pass tests run in the sandbox.",
              training_data="finetune", cleaned_by_decontam=True, artefacts=("problems.jsonl",),
              check="textbooklm.synth.checks:check", report="textbooklm.synth.report_section:exercises_section"),
]
