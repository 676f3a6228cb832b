"""The eval stage on a real (tiny, random) textbooklm checkpoint: samples on disk, sandboxed
execution, canonical-solution NLL, multiple choice, GSM8K through code, perplexity, results.json."""

import json
import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from textbooklm.config import parse_config
from textbooklm.evals.config import EvalConfig
from textbooklm.evals.stage import run
from textbooklm.model.checkpoint import save_model
from textbooklm.model.model import PhiConfig, PhiForCausalLM
from textbooklm.pipeline import context_for
from textbooklm.run import Run


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalckpt")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    text = ["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i)\n"] * 30
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(root / "tokenizer.json"))
    torch.manual_seed(0)
    model = PhiForCausalLM(PhiConfig(vocab_size=tok.get_vocab_size(), n_layer=1, n_embd=32, n_head=2, n_inner=64,
                                     block_size=256))
    folder = root / "model"
    folder.mkdir()
    save_model(folder, model.state_dict(), model.cfg, root / "tokenizer.json")
    return folder


@pytest.mark.slow
def test_eval_stage_end_to_end(tmp_path, tiny_checkpoint):
    (tmp_path / "boolq.jsonl").write_text(json.dumps({"question": "is it", "passage": "It is.", "answer": True}) + "\n")
    (tmp_path / "gsm.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n")
    (tmp_path / "texts.jsonl").write_text(json.dumps({"text": "def add(a, b):\n    return a + b\n"}) + "\n")
    cfg = EvalConfig(models=[str(tiny_checkpoint)], humaneval_limit=3, n_samples=2, max_new_tokens=12,
                     batch_size=4, choice_tasks=[{"task": "boolq", "path": str(tmp_path / "boolq.jsonl")}],
                     gsm8k_path=str(tmp_path / "gsm.jsonl"), perplexity=[str(tmp_path / "texts.jsonl")])
    ctx = context_for(Run(tmp_path, parse_config({"run": {"workers": 2}})), "eval")
    out = tmp_path / "eval"
    ds = run(cfg, {}, out, ctx)
    results = json.loads((out / "results.json").read_text())
    metrics = results["models"]["model"]
    assert 0 <= metrics["humaneval pass@1"] <= 100 and "humaneval pass@2" not in metrics
    assert metrics["humaneval canonical NLL/token"] > 0 and math.isfinite(metrics["humaneval canonical NLL/token"])
    assert 0 <= metrics["boolq acc"] <= 1 and 0 <= metrics["gsm8k accuracy (via code)"] <= 100
    assert metrics["perplexity " + str(tmp_path / "texts.jsonl")] > 1
    samples = [json.loads(x) for x in (out / "model.humaneval.samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 * 2 and {s["task_id"] for s in samples} == {"HumanEval/0", "HumanEval/1", "HumanEval/2"}
    summary = json.loads((out / "model.humaneval.results.json").read_text())
    assert summary["limits"]["timeout_s"] == 5.0 and summary["samples"] == 6  # every limit is recorded
    assert ds.num_rows == len(metrics) and "humaneval pass@1" in ds.manifest["summary"]["line"]
    counts = ds.manifest["summary"]["counts"]  # the ledger: one model measured, the units it was scored on
    assert (counts["in"], counts["kept"], counts["dropped"], counts["in_means"]) == (1, 1, 0, "models to evaluate")
    assert counts["counters"]["problems scored"] == 3 + 1  # HumanEval's 3 and GSM8K's 1
    assert ds.manifest["summary"]["line"].startswith("eval: 1 models to evaluate -> 1 kept, 0 dropped; model: ")
    # A re-run continues from the samples on disk instead of sampling again.
    before = (out / "model.humaneval.samples.jsonl").read_text()
    run(cfg, {}, out, ctx)
    assert (out / "model.humaneval.samples.jsonl").read_text() == before


def test_a_model_without_a_checkpoint_is_dropped_with_its_reason(tmp_path):
    """A finetune stage with nothing to train on leaves no checkpoint: eval says so in rejected/, not silently."""
    from textbooklm.stage_stats import stage_stats
    from textbooklm.store import Dataset

    missing = tmp_path / "no-model"
    cfg = EvalConfig(models=[str(missing)], humaneval_limit=1)
    out = tmp_path / "eval"
    ds = run(cfg, {}, out, context_for(Run(tmp_path, parse_config({"run": {"workers": 1}})), "eval"))
    summary = ds.manifest["summary"]
    assert summary["counts"]["dropped_by_reason"] == {"no-checkpoint": 1} and summary["counts"]["kept"] == 0
    assert summary["line"].startswith("eval: 1 models to evaluate -> 0 kept, 1 dropped (no-checkpoint 1); ")
    assert "no-model: no model to evaluate" in summary["line"]
    rows = Dataset(out / "rejected").to_table().to_pylist()
    assert [(r["model"], r["reason"]) for r in rows] == [(str(missing), "no-checkpoint")] and rows[0]["detail"]
    assert stage_stats("eval", out, summary, 1.0)["dropped"] == 1


def test_choice_and_perplexity_commands(tmp_path, tiny_checkpoint):
    from typer.testing import CliRunner

    from textbooklm.cli import app

    (tmp_path / "arc.jsonl").write_text(json.dumps({"id": "q", "question": {"stem": "2+2?", "choices": [
        {"label": "A", "text": "4"}, {"label": "B", "text": "5"}]}, "answerKey": "A"}) + "\n")
    res = CliRunner().invoke(app, ["eval", "choice", str(tiny_checkpoint), "--task", "arc_easy", "--path",
                                   str(tmp_path / "arc.jsonl"), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 1
    (tmp_path / "t.txt").write_text("def add(a, b):\n    return a + b\n")
    res = CliRunner().invoke(app, ["eval", "perplexity", str(tiny_checkpoint), str(tmp_path / "t.txt")])
    assert res.exit_code == 0 and "perplexity" in res.output
    res = CliRunner().invoke(app, ["eval", "choice", str(tiny_checkpoint), "--task", "mmlu", "--path",
                                   str(tmp_path / "arc.jsonl")])
    assert res.exit_code == 2 and "unknown multiple-choice task" in res.output
