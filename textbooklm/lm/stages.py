"""Registry entries of the model area: tokenizer, token pack, pretraining, finetuning."""

from textbooklm.lm.config import PackConfig, TokenizerConfig, TrainConfig
from textbooklm.registry import StageSpec

STAGES = [
    StageSpec("tokenizer", TokenizerConfig, "textbooklm.lm.stage:run_tokenizer", reads="training", records=False,
              after=("decontam",), artefacts=("tokenizer.json",), check="textbooklm.lm.checks:check_tokenizer",
              help="Build (codegen) or train (bpe) the tokenizer on the run's training data."),
    StageSpec("pack", PackConfig, "textbooklm.lm.stage:run_pack", inputs=("tokenizer",), reads="training",
              records=False, after=("decontam",), artefacts=("index.json",), check="textbooklm.lm.checks:check_pack",
              help="Tokenize and pack the pretraining mixture."),
    StageSpec("pretrain", TrainConfig, "textbooklm.lm.stage:run_pretrain", inputs=("pack",), artefacts=("train",),
              records=False,
              check="textbooklm.lm.checks:check_train",
              help="Pretrain the phi model on the pack."),
    StageSpec("finetune", TrainConfig, "textbooklm.lm.stage:run_finetune", optional=("pretrain", "tokenizer"),
              reads="training", after=("decontam",), artefacts=("train",), check="textbooklm.lm.checks:check_train",
              records=False,
              help="Finetune the pretrained model on the exercises (loss on the completion)."),
]
