"""Two real tiny checkpoints through the eval stage: both measured on the same sets (corpus validation
documents read back from a real token pack, held-out exercises, HumanEval), with n, intervals, sampling
settings, a paired comparison per metric, the empty share next to pass@k, a zero explained, and a
training run's own validation loss kept out of the comparison rows."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from textbooklm.config import parse_config
from textbooklm.evals.config import EvalConfig
from textbooklm.evals.report_section import eval_tables as _eval_tables
from textbooklm.evals.stage import run
from textbooklm.lm.pack import pack
from textbooklm.model.checkpoint import save_model
from textbooklm.model.model import PhiConfig, PhiForCausalLM
from textbooklm.model.tokenizer import load_tokenizer
from textbooklm.model.train_log import COLUMNS
from textbooklm.pipeline import context_for
from textbooklm.run import Run
from textbooklm.store import write_dataset

CODE = ["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i)\n",
        "class Point:\n    def __init__(self, x):\n        self.x = x\n"]


def _model(root, tok_json, name: str, newline_id: int | None):
    """A 1-layer phi model; with ``newline_id`` its head always predicts that token (a model that writes nothing)."""
    torch.manual_seed(0)
    vocab = Tokenizer.from_file(str(tok_json)).get_vocab_size()
    model = PhiForCausalLM(PhiConfig(vocab_size=vocab, n_layer=1, n_embd=32, n_head=2, n_inner=64, block_size=128))
    if newline_id is not None:
        with torch.no_grad():
            model.lm_head.weight.zero_()
            model.lm_head.bias.zero_()
            model.lm_head.bias[newline_id] = 30.0
    folder = root / name
    folder.mkdir()
    save_model(folder, model.state_dict(), model.cfg, tok_json)
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("samesets")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CODE * 30, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok_json = root / "tokenizer.json"
    tok.save(str(tok_json))
    newline = _model(root, tok_json, "newline", tok.token_to_id("Ċ"))  # byte-level BPE's "\n"
    other = _model(root, tok_json, "random", None)
    # The newline model was "trained": its own log ends at val_loss 9.5, on its own split.
    rows = [dict.fromkeys(COLUMNS, "") | {"step": "10", "tokens": "100", "loss": "9.9", "val_loss": "9.5"}]
    with (newline / "metrics.csv").open("w") as fh:
        fh.write(",".join(COLUMNS) + "\n" + "".join(",".join(r[c] for c in COLUMNS) + "\n" for r in rows))
    docs = write_dataset(root / "corpus", [{"id": f"d{i}", "text": f"# file {i}\n" + CODE[i % 3] * (1 + i % 4)}
                                           for i in range(60)], stage="corpus")
    pack([("corpus", docs, 1.0)], load_tokenizer(tok_json), root / "pack", val_fraction=0.3,
         tokenizer_path=str(tok_json))
    exercises = []
    for i in range(40):
        prompt = f'def add_{i}(a, b):\n    """Add {i} to a + b."""\n'
        exercises.append({"id": f"e{i}", "prompt": prompt, "completion": f"    return a + b + {i}\n",
                          "text": prompt, "entry_point": f"add_{i}",
                          "test": f"def check(candidate):\n    assert candidate(1, 2) == {3 + i}\n"})
    ex = write_dataset(root / "exercises", exercises, stage="exercises")
    cfg = EvalConfig(models=[str(newline), str(other)], humaneval_limit=4, n_samples=2, temperature=0.8,
                     max_new_tokens=8, batch_size=8, heldout_exercises={"dataset": str(ex.path), "fraction": 0.25},
                     corpus_validation={"pack": str(root / "pack"), "documents": 12, "tokens_per_document": 200})
    ctx = context_for(Run(root, parse_config({"run": {"workers": 2}})), "eval")
    ds = run(cfg, {}, root / "eval", ctx)
    return root / "eval", json.loads((root / "eval" / "results.json").read_text()), ds


SETS = ["corpus validation NLL/token", "exercises pass@1", "exercises reference NLL/token", "humaneval pass@1",
        "humaneval canonical NLL/token"]


@pytest.mark.slow
def test_both_models_are_measured_on_the_same_sets(setup):
    out, results, _ = setup
    a, b = results["measurements"]["newline"], results["measurements"]["random"]
    assert set(results["sets"]) == {"corpus validation", "exercises", "humaneval"}
    for metric in SETS:
        assert a[metric]["n"] == b[metric]["n"] >= 2 and a[metric]["ids_sha"] == b[metric]["ids_sha"], metric
    assert a["humaneval pass@1"]["n"] == 4 and a["corpus validation NLL/token"]["n"] == 12
    units_a = json.loads((out / "newline.units.json").read_text())
    units_b = json.loads((out / "random.units.json").read_text())
    assert all(units_a[m]["ids"] == units_b[m]["ids"] for m in SETS)
    # Same documents, same tokenizer: the same number of tokens scored per document.
    assert units_a["corpus validation NLL/token"]["den"] == units_b["corpus validation NLL/token"]["den"]
    for metric in SETS:  # every figure has its uncertainty
        m = a[metric]
        assert ("stderr" in m) if "pass@" in metric else (m["interval"][0] <= m["value"] <= m["interval"][1])
    sampling = a["humaneval pass@1"]["sampling"]
    assert sampling["temperature"] == 0.8 and sampling["n"] == 2 and sampling["max_new_tokens"] == 8
    assert "\ndef" in sampling["stop"] and a["humaneval pass@1"]["samples_per_problem"] == 2
    # One paired comparison per metric, on the same units, worded like ablate's verdicts.
    comps = {c["metric"]: c for c in results["comparisons"]}
    assert set(SETS) <= set(comps) and all(comps[m]["step"] == "newline -> random" for m in SETS)
    c = comps["corpus validation NLL/token"]
    assert c["n"] == 12 and c["unit"] == "documents" and c["effect"] in ("better", "worse", "within the noise")
    assert c["verdict"].startswith("newline -> random, corpus validation NLL/token: ")


@pytest.mark.slow
def test_a_model_that_writes_only_newlines_is_100_percent_empty(setup):
    _, results, ds = setup
    got = results["measurements"]["newline"]["humaneval pass@1"]
    assert got["value"] == 0 and got["empty_share"] == 1.0 and got["samples"] == 8
    assert got["zero_note"] == "pass@1 = 0: 100% of 8 samples were empty (whitespace only)"
    assert results["measurements"]["random"]["humaneval pass@1"]["empty_share"] < 1.0
    line = ds.manifest["summary"]["line"]
    assert "newline: " in line and "humaneval pass@1 0.00 ± 0.00 (n=4, 100% empty)" in line
    html = _eval_tables(results)
    assert "0 ± 0 (n=4 x 2, 100% empty)" in html and "100% of 8 samples were empty" in html


@pytest.mark.slow
def test_a_training_runs_own_validation_loss_is_not_a_comparison_row(setup):
    _, results, _ = setup
    own = results["training_validation_loss"]["newline"]
    assert own["last validation loss"] == 9.5 and "own" in own["measured on"]
    assert "random" not in results["training_validation_loss"]
    assert not [k for m in results["models"].values() for k in m if "validation loss" in k]
    assert not [c for c in results["comparisons"] if "validation loss" in c["metric"]]
