"""``config check`` of the model stages: dataset names resolve, tokenizer and checkpoint paths exist."""

from __future__ import annotations

from pathlib import Path

from textbooklm.lm.config import PackConfig, TokenizerConfig, TrainConfig
from textbooklm.run_check import Checker


def check_tokenizer(cfg: TokenizerConfig, c: Checker) -> None:
    for i, name in enumerate(cfg.sources):
        c.dataset(f"sources.{i}", name)
    c.path("gpt2_files", cfg.gpt2_files, "dir")


def check_pack(cfg: PackConfig, c: Checker, prefix: str = "") -> None:
    for i, src in enumerate(cfg.sources):
        c.dataset(f"{prefix}sources.{i}.dataset", src.dataset)
    if cfg.tokenizer is not None and not Path(cfg.tokenizer).exists():
        c.dataset(f"{prefix}tokenizer", cfg.tokenizer)


def check_train(cfg: TrainConfig, c: Checker) -> None:
    if cfg.data is not None:
        check_pack(cfg.data, c, prefix="data.")
    if cfg.init_from is not None and not Path(cfg.init_from).exists():
        c.model("init_from", cfg.init_from)
