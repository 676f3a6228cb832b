"""Registry entry of the corpus area (see :mod:`textbooklm.registry`)."""

from textbooklm.corpus.config import CorpusConfig
from textbooklm.registry import StageSpec

STAGES = [
    StageSpec(
        "corpus", CorpusConfig, "textbooklm.corpus.stage:run",
        help="Read code, reject bad files (each with a named reason), drop exact and near duplicates.",
        training_data="pretrain", cleaned_by_decontam=True, check="textbooklm.corpus.checks:check",
        report="textbooklm.corpus.report_section:corpus_section",
    ),
]
