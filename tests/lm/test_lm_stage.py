"""The area's pipeline stages end to end: tokenizer -> pack -> pretrain -> finetune -> HF export."""

from __future__ import annotations

import os

import pytest
import torch

from textbooklm.lm.config import PackConfig, PackSource, TokenizerConfig, TrainConfig
from textbooklm.lm.stage import run_finetune, run_pack, run_pretrain, run_tokenizer
from textbooklm.store import Dataset, write_dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.mark.slow
def test_stages_tokenizer_pack_pretrain_finetune_export(tmp_path, code_docs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from textbooklm.model.checkpoint import load_model
    from textbooklm.model.hf import export_hf

    n = code_docs.num_rows
    tok_ds = run_tokenizer(TokenizerConfig(vocab_size=400), {"corpus": code_docs}, tmp_path / "tokenizer")
    assert tok_ds.manifest["summary"]["line"].startswith(
        f"tokenizer: {n} documents read -> {n} kept, 0 dropped; bpe, 400 tokens, trained on {n} documents")
    pack_ds = run_pack(PackConfig(val_fraction=0.1), {"tokenizer": tok_ds, "corpus": code_docs}, tmp_path / "pack")
    assert pack_ds.column("dataset") == ["corpus"]
    counts = pack_ds.manifest["summary"]["counts"]  # one source, used whole: every document packed
    assert (counts["in"], counts["kept"], counts["dropped"]) == (n, n, 0)
    assert counts["counters"]["packed_tokens"] == pack_ds.manifest["summary"]["tokens"]
    train = {"model": {"preset": "nano"}, "batch_size": 4, "micro_batch_size": 4, "max_steps": 3,
             "save_every": 3, "eval_every": 3, "threads": 1}
    pre = run_pretrain(TrainConfig.model_validate(train), {"pack": pack_ds, "tokenizer": tok_ds},
                       tmp_path / "pretrain")
    summary = pre.manifest["summary"]
    assert pre.column("step")[-1] == 3 and summary["line"].startswith("pretrain: 3 steps, ")
    assert summary["counts"]["counters"] == {"steps": 3, "tokens": summary["tokens"]} and summary["counts"]["in"] == 0
    rows = [{"prompt": f"def f{i}(x):\n", "completion": f"    return {i}\n"} for i in range(120)]
    exercises = write_dataset(tmp_path / "exercises", rows, stage="t")
    ft_cfg = TrainConfig.model_validate({**train, "loss_on": "completion", "optimizer": "phi-1-finetune"})
    ft_cfg = ft_cfg.model_copy(update={"data": PackConfig(sources=[PackSource(dataset="exercises")])})
    # no tokenizer input: the one saved with the pretrained checkpoint is used
    ft = run_finetune(ft_cfg, {"pretrain": pre, "exercises": exercises}, tmp_path / "finetune")
    assert ft.is_finished and (tmp_path / "finetune" / "data" / "index.json").is_file()
    counts = ft.manifest["summary"]["counts"]  # the exercises of its own pack, then training's counters
    assert counts["in"] == counts["kept"] == 120 and counts["counters"]["steps"] == 3
    assert ft.manifest["summary"]["line"].startswith("finetune: 120 documents read into its own pack -> 120 kept")
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
    from textbooklm.config import parse_config
    from textbooklm.lm.config import TrainConfig
    from textbooklm.lm.stage import run_finetune
    from textbooklm.pipeline import context_for
    from textbooklm.run import Run
    from textbooklm.store import finish_dataset

    empty = finish_dataset(tmp_path / "exercises", stage="exercises", config_hash="h")  # no shards at all
    cfg = TrainConfig.model_validate({"max_steps": 2, "loss_on": "completion", "data": {
        "sources": [{"dataset": "exercises"}], "loss_on": "completion", "tokenizer": str(bpe_tokenizer)}})
    ctx = context_for(Run(tmp_path, parse_config({"run": {"workers": 1}})), "finetune")
    ds = run_finetune(cfg, {"exercises": empty}, tmp_path / "finetune", ctx)
    summary = ds.manifest["summary"]
    assert summary["line"] == ("finetune: skipped, no training tokens in exercises (nothing passed the earlier "
                               "stages)")
    assert summary["counts"]["in"] == 0 and Dataset(tmp_path / "finetune" / "rejected").is_finished
    assert not (tmp_path / "finetune" / "train").exists()


def test_pack_ledger_drops_the_documents_the_mixture_did_not_draw(tmp_path, code_docs, bpe_tokenizer):
    """Asked for fewer tokens than the source holds, the pack leaves documents out: each is in rejected/."""
    import pyarrow.parquet as pq

    from textbooklm.stage_stats import stage_stats

    cfg = PackConfig(sources=[PackSource(dataset=str(code_docs.path))], tokenizer=str(bpe_tokenizer),
                     val_fraction=0.0, total_tokens=2_000, max_epochs=1.0)
    out = tmp_path / "pack"
    ds = run_pack(cfg, {}, out)
    docs = pq.read_table(out / "documents.parquet").to_pylist()
    undrawn = {r["id"] for r in docs if r["packed_train"] == 0}
    assert undrawn and len(undrawn) < len(docs)
    summary = ds.manifest["summary"]
    counts = summary["counts"]
    assert (counts["in"], counts["kept"], counts["dropped"]) == (len(docs), len(docs) - len(undrawn), len(undrawn))
    assert counts["dropped_by_reason"] == {"not-drawn": len(undrawn)}
    rejected = Dataset(out / "rejected").to_table().to_pylist()
    assert {r["id"] for r in rejected} == undrawn and all(r["reason"] == "not-drawn" for r in rejected)
    assert "drew no copy of this document" in rejected[0]["detail"]
    assert summary["line"].startswith(f"pack: {len(docs)} documents read -> ")
    assert f"dropped (not-drawn {len(undrawn)}); {summary['tokens']:,} train tokens" in summary["line"]
    stats = stage_stats("pack", out, summary, 1.0)  # checks the ledger against rejected/'s rows
    assert stats["dropped"] == len(undrawn) and stats["tokens"] == summary["tokens"]
    # Packing again into the same folder counts every document once.
    assert run_pack(cfg, {}, out).manifest["summary"]["counts"] == counts
