"""Registry entry of evaluation: HumanEval/MBPP pass@k, multiple choice, perplexity of run models."""

from textbooklm.evals.config import EvalConfig
from textbooklm.registry import StageSpec

STAGES = [
    StageSpec("eval", EvalConfig, "textbooklm.evals.stage:run", optional=("pack", "pretrain", "finetune"),
              records=False, help="Evaluate the run's models on the same sets (corpus validation documents, "
              "held-out exercises, HumanEval): pass@k, NLLs, intervals, paired comparisons.",
              check="textbooklm.evals.checks:check", report="textbooklm.evals.report_section:eval_section"),
]
