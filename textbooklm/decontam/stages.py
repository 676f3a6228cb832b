"""Registry entry of decontamination: it writes cleaned copies of every dataset marked cleanable."""

from textbooklm.decontam.config import DecontamConfig
from textbooklm.registry import StageSpec

STAGES = [
    StageSpec("decontam", DecontamConfig, "textbooklm.decontam.stage:run", reads="cleanable", cleans=True,
              help="Remove training samples too close to the benchmarks (n-grams, embeddings, AST match).",
              artefacts=("report.json", "pairs.json", "heldout.json"), check="textbooklm.decontam.checks:check",
              report="textbooklm.decontam.report_section:decontam_section"),
]
