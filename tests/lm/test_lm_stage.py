"""The area's pipeline stages end to end: tokenizer -> pack -> pretrain -> finetune -> HF export."""

from __future__ import annotations

import os

import pytest
import torch

from textbooklm.lm.config import PackConfig, PackSource, TokenizerConfig, TrainConfig
from textbooklm.lm.stage import run_finetune, run_pack, run_pretrain, run_tokenizer
from textbooklm.store import write_dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.mark.slow
def test_stages_tokenizer_pack_pretrain_finetune_export(tmp_path, code_docs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from textbooklm.model.checkpoint import load_model
    from textbooklm.model.hf import export_hf

    tok_ds = run_tokenizer(TokenizerConfig(vocab_size=400), {"corpus": code_docs}, tmp_path / "tokenizer")
    assert tok_ds.manifest["summary"]["line"].startswith("tokenizer: bpe, 400 tokens")
    pack_ds = run_pack(PackConfig(val_fraction=0.1), {"tokenizer": tok_ds, "corpus": code_docs}, tmp_path / "pack")
    assert pack_ds.column("dataset") == ["corpus"]
    train = {"model": {"preset": "nano"}, "batch_size": 4, "micro_batch_size": 4, "max_steps": 3,
             "save_every": 3, "eval_every": 3, "threads": 1}
    pre = run_pretrain(TrainConfig.model_validate(train), {"pack": pack_ds, "tokenizer": tok_ds},
                       tmp_path / "pretrain")
    assert pre.column("step")[-1] == 3 and "train: 3 steps" in pre.manifest["summary"]["line"]
    rows = [{"prompt": f"def f{i}(x):\n", "completion": f"    return {i}\n"} for i in range(120)]
    exercises = write_dataset(tmp_path / "exercises", rows, stage="t")
    ft_cfg = TrainConfig.model_validate({**train, "loss_on": "completion", "optimizer": "phi-1-finetune"})
    ft_cfg = ft_cfg.model_copy(update={"data": PackConfig(sources=[PackSource(dataset="exercises")])})
    # no tokenizer input: the one saved with the pretrained checkpoint is used
    ft = run_finetune(ft_cfg, {"pretrain": pre, "exercises": exercises}, tmp_path / "finetune")
    assert ft.is_finished and (tmp_path / "finetune" / "data" / "index.json").is_file()
    # finetuning started from the pretrained weights, not from scratch
    pre_model, _ = load_model(tmp_path / "pretrain" / "train" / "step-0000003")
    ft_model, folder = load_model(tmp_path / "finetune")
    assert (folder / "tokenizer.json").is_file()
    diff = (ft_model.lm_head.weight - pre_model.lm_head.weight).abs().max().item()
    assert 0 < diff < 0.1

    hf_dir = export_hf(ft_model, tmp_path / "hf", folder / "tokenizer.json")
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    hf_tok = AutoTokenizer.from_pretrained(hf_dir)
    ids = hf_tok("def f(x):\n    return x")["input_ids"]
    with torch.no_grad():
        assert (hf(torch.tensor([ids])).logits - ft_model(torch.tensor([ids]))).abs().max() < 1e-5


def test_finetune_with_no_exercises_is_skipped_and_says_so(tmp_path, bpe_tokenizer):
    """A weak teacher can leave no verified exercise: finetuning then trains nothing and says why."""
    from types import SimpleNamespace

    from textbooklm.lm.config import TrainConfig
    from textbooklm.lm.stage import run_finetune
    from textbooklm.store import finish_dataset

    empty = finish_dataset(tmp_path / "exercises", stage="exercises", config_hash="h")  # no shards at all
    cfg = TrainConfig.model_validate({"max_steps": 2, "loss_on": "completion", "data": {
        "sources": [{"dataset": "exercises"}], "loss_on": "completion", "tokenizer": str(bpe_tokenizer)}})
    ds = run_finetune(cfg, {"exercises": empty}, tmp_path / "finetune", SimpleNamespace(run_dir=tmp_path,
                                                                                        config_hash="h"))
    assert "skipped, no training tokens" in ds.manifest["summary"]["line"]
    assert not (tmp_path / "finetune" / "train").exists()
