"""Registry entries of the quality area: judge a sample, train a classifier, filter the corpus."""

from textbooklm.quality.config import ClassifyConfig, JudgeConfig, QualityFilterConfig
from textbooklm.registry import StageSpec

STAGES = [
    StageSpec("judge", JudgeConfig, "textbooklm.quality.judge_stage:run", inputs=("corpus",),
              help="Rate the educational value of corpus files (heuristic and/or LLM judge).",
              check="textbooklm.quality.checks:check_judge", scorer="textbooklm.quality.judge_texts:score_texts",
              report="textbooklm.quality.report_section:judge_section"),
    StageSpec("classify", ClassifyConfig, "textbooklm.quality.classify_stage:run", inputs=("corpus", "judge"),
              help="Train the quality classifier on the judged sample's embeddings.",
              artefacts=("classifier.json",), report="textbooklm.quality.report_section:classify_section"),
    # The filtered corpus stands for the corpus for every stage after it (never the raw one).
    StageSpec("filter", QualityFilterConfig, "textbooklm.quality.filter_stage:run", inputs=("corpus", "classify"),
              help="Apply the classifier to every corpus file; keep the educational ones.",
              training_data="pretrain", cleaned_by_decontam=True, replaces="corpus",
              report="textbooklm.quality.report_section:filter_section"),
]
