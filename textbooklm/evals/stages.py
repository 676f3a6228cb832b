"""Registry entry of evaluation: HumanEval/MBPP pass@k, multiple choice, perplexity of run models."""

from textbooklm.evals.config import EvalConfig
from textbooklm.registry import StageSpec

STAGES = [
    StageSpec("eval", EvalConfig, "textbooklm.evals.stage:run", optional=("pretrain", "finetune"), records=False,
              help="Evaluate the run's models (pass@k, canonical NLL, multiple choice, perplexity).",
              check="textbooklm.evals.checks:check"),
]
