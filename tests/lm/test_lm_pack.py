"""Packing: end-of-text-joined memmapped shards, split by document, mixtures, loss masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lm_corpus import stdlib_texts

from textbooklm.lm.pack import PackedTokens, is_validation, pack, token_dtype
from textbooklm.model.tokenizer import load_tokenizer
from textbooklm.store import write_dataset


def test_pack_layout_split_and_round_trip(code_pack, code_docs, bpe_tokenizer):
    index = json.loads((code_pack / "index.json").read_text())
    tok = load_tokenizer(bpe_tokenizer)
    assert index["dtype"] == "uint16" and not index["has_mask"]
    train, val = index["splits"]["train"], index["splits"]["val"]
    assert len(train["shards"]) > 1 and all(s["n"] <= 50_000 for s in train["shards"])
    assert train["documents"] + val["documents"] == code_docs.num_rows and val["documents"] > 0
    # Every document is on exactly the side its hash says, and decodes back exactly.
    streams = {}
    for split in ("train", "val"):
        streams[split] = np.concatenate([np.fromfile(code_pack / s["tokens"], dtype=np.uint16)
                                         for s in index["splits"][split]["shards"]])
        assert len(streams[split]) == index["splits"][split]["tokens"]
        assert streams[split][-1] == tok.eot_id
    decoded = {split: set(tok.decode(s).split("<|endoftext|>")[:-1]) for split, s in streams.items()}
    for text in code_docs.column("text"):
        side = "val" if is_validation(text, 0.1) else "train"
        assert text in decoded[side] and text not in decoded["val" if side == "train" else "train"]


def test_packed_tokens_sequences(code_pack):
    data = PackedTokens(code_pack, "train", 32)
    x, y, m = data.get(np.array([0, len(data) - 1]))
    assert x.shape == y.shape == m.shape == (2, 32)
    assert (x[:, 1:] == y[:, :-1]).all() and m.all()


def test_uint32_when_vocab_needs_it():
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


def test_mixture_weights_are_token_shares(tmp_path, bpe_tokenizer):
    tok = load_tokenizer(bpe_tokenizer)
    big = write_dataset(tmp_path / "big", [{"text": t} for t in stdlib_texts(30, 40)], stage="t")
    small = write_dataset(tmp_path / "small", [{"text": t} for t in stdlib_texts(10, 80)], stage="t")
    # 80% big / 20% small with everything of 'big' used once: small fits without repeats.
    index = pack([("big", big, 0.8), ("small", small, 0.2)], tok, tmp_path / "p", val_fraction=0.0, seed=3)
    shares = [s["packed"]["tokens"] / index["splits"]["train"]["tokens"] for s in index["sources"]]
    assert shares[0] == pytest.approx(0.8, abs=0.08) and shares[1] == pytest.approx(0.2, abs=0.08)
    assert max(s["packed"]["epochs"] for s in index["sources"]) <= 1
    assert max(s["packed"]["max_copies"] for s in index["sources"]) == 1
    # Asking for more tokens than a source holds repeats it (phi-1.5's synthetic data, several epochs).
    total = index["sources"][1]["train_tokens"] * 10
    index = pack([("big", big, 0.5), ("small", small, 0.5)], tok, tmp_path / "p2", val_fraction=0.0,
                 total_tokens=total, seed=3)
    assert index["sources"][1]["packed"]["epochs"] >= 4
    assert index["splits"]["train"]["tokens"] >= total


def test_prompt_completion_loss_mask(tmp_path, bpe_tokenizer):
    tok = load_tokenizer(bpe_tokenizer)
    rows = [{"prompt": f'def f{i}(x):\n    """Return x plus {i}."""\n', "completion": f"    return x + {i}\n"}
            for i in range(50)]
    ds = write_dataset(tmp_path / "ex", rows, stage="t")
    index = pack([("ex", ds, 1.0)], tok, tmp_path / "p", loss_on="completion", val_fraction=0.0)
    assert index["has_mask"]
    shard = index["splits"]["train"]["shards"][0]
    tokens = np.fromfile(tmp_path / "p" / shard["tokens"], dtype=np.uint16)
    mask = np.fromfile(tmp_path / "p" / shard["mask"], dtype=np.uint8)
    assert len(tokens) == len(mask)
    # The trained-on tokens decode to exactly the completions (each followed by end-of-text).
    trained = tok.decode(tokens[mask == 1])
    assert sorted(trained.split("<|endoftext|>")[:-1]) == sorted(r["completion"] for r in rows)


def test_bad_columns_named(tmp_path, bpe_tokenizer):
    ds = write_dataset(tmp_path / "bad", [{"code": "x = 1"}], stage="t")
    with pytest.raises(ValueError, match="bad.*'text' column"):
        pack([("bad", ds, 1.0)], load_tokenizer(bpe_tokenizer), tmp_path / "p")


def test_pack_cli_weights_and_errors(tmp_path, code_docs, bpe_tokenizer):
    from typer.testing import CliRunner

    from textbooklm.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["pack", f"{code_docs.path}:2", "-t", str(bpe_tokenizer.parent), "-o",
                              str(tmp_path / "p"), "--val-fraction", "0"])
    assert res.exit_code == 0, res.output
    index = json.loads((tmp_path / "p" / "index.json").read_text())
    assert index["sources"][0]["weight"] == 2.0 and index["splits"]["val"]["tokens"] == 0
    res = runner.invoke(app, ["pack", str(tmp_path / "missing"), "-t", str(bpe_tokenizer), "-o", str(tmp_path / "q")])
    assert res.exit_code == 2 and "no such dataset folder" in res.output


def test_large_vocabulary_packs_as_uint32(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from textbooklm.model.tokenizer import EOT, TextTokenizer

    vocab = {EOT: 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(70_000)}}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = TextTokenizer(raw)
    docs = write_dataset(tmp_path / "d", [{"text": " ".join(f"w{69_900 + i + j}" for j in range(40))}
                                          for i in range(20)], stage="t")
    index = pack([("d", docs, 1.0)], tok, tmp_path / "p", val_fraction=0.0)
    assert index["dtype"] == "uint32"
    x, y, _ = PackedTokens(tmp_path / "p", "train", 16).get(np.arange(3))
    assert x.max() > 69_900  # ids above uint16 survive the round trip
    assert set(np.unique(x)) <= {0} | set(range(69_902, 69_962))
