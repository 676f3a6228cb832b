"""Registry entries of the model area: tokenizer, token pack, pretraining, finetuning."""

from textbooklm.lm.config import PackConfig, TokenizerConfig, TrainConfig
from textbooklm.registry import StageSpec

STAGES = [
    StageSpec("tokenizer", TokenizerConfig, "textbooklm.lm.stage:run_tokenizer", reads="training", records=False,
              after=("decontam",), artefacts=("tokenizer.json",), check="textbooklm.lm.checks:check_tokenizer",
              report="textbooklm.lm.report_section:tokenizer_section",
              help="Build (codegen) or train (bpe) the tokenizer on the run's training data."),
    StageSpec("pack", PackConfig, "textbooklm.lm.stage:run_pack", inputs=("tokenizer",), reads="training",
              records=False, after=("decontam",), artefacts=("index.json",), check="textbooklm.lm.checks:check_pack",
              report="textbooklm.lm.report_section:pack_section",
              help="Tokenize and pack the pretraining mixture."),
    StageSpec("pretrain", TrainConfig, "textbooklm.lm.stage:run_pretrain", inputs=("pack",), artefacts=("train",),
              records=False,
              check="textbooklm.lm.checks:check_train", report="textbooklm.lm.report_section:pretrain_section",
              help="Pretrain the phi model on the pack."),
    StageSpec("finetune", TrainConfig, "textbooklm.lm.stage:run_finetune", optional=("pretrain", "tokenizer"),
              reads="training", after=("decontam",), artefacts=("train",), check="textbooklm.lm.checks:check_train",
              report="textbooklm.lm.report_section:finetune_section",
              records=False,
              help="Finetune the pretrained model on the exercises (loss on the completion)."),
]
