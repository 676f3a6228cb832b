"""Repetition in a pack is a number with a cap: epochs per source, ``max_epochs``, and the per-document
table (``documents.parquet``) that says how many times each input document was packed.

Real Parquet datasets of standard-library files and the session's real BPE tokenizer (conftest).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lm_corpus import stdlib_texts

from textbooklm.lm.config import PackConfig, PackSource
from textbooklm.lm.pack import DOCUMENTS, pack
from textbooklm.lm.stage import run_pack
from textbooklm.model.tokenizer import load_tokenizer
from textbooklm.store import Dataset, write_dataset


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    """A big source (20 files) and a small one (3 files), each document with an id."""
    root = tmp_path_factory.mktemp("rep")
    big = write_dataset(root / "big", [{"id": f"big-{i}", "text": t} for i, t in enumerate(stdlib_texts(20, 100))],
                        stage="t")
    small = write_dataset(root / "small", [{"id": f"small-{i}", "text": t}
                                           for i, t in enumerate(stdlib_texts(3, 130))], stage="t")
    return big, small


def _train_documents(folder, index, tok) -> Counter:
    """How many times each document text occurs in the packed train stream (decoded)."""
    texts: Counter = Counter()
    for shard in index["splits"]["train"]["shards"]:
        tokens = np.fromfile(folder / shard["tokens"], dtype=index["dtype"])
        texts.update(tok.decode(tokens).split("<|endoftext|>")[:-1])
    return texts


def test_source_over_max_epochs_is_capped_and_the_summary_says_so(tmp_path, two_sources, bpe_tokenizer):
    tok = load_tokenizer(bpe_tokenizer)
    big, small = two_sources
    sources = [("big", big, 0.5), ("small", small, 0.5)]
    uncapped = pack(sources, tok, tmp_path / "free", val_fraction=0.0, total_tokens=1, seed=1)
    small_tokens = uncapped["sources"][1]["train_tokens"]
    big_tokens = uncapped["sources"][0]["train_tokens"]
    total = 10 * small_tokens  # 'small' asked for 5 epochs by its weight
    assert 2 * big_tokens > total, "fixture: big must have room for what small gives up"
    free = pack(sources, tok, tmp_path / "free", val_fraction=0.0, total_tokens=total, seed=1)
    assert free["sources"][1]["packed"]["epochs"] >= 5 and not free["sources"][1]["packed"]["capped"]

    index = pack(sources, tok, tmp_path / "capped", val_fraction=0.0, total_tokens=total, max_epochs=2, seed=1)
    s_big, s_small = (s["packed"] for s in index["sources"])
    # The cap holds exactly (whole passes), and no small document is packed more than twice.
    assert s_small["capped"] and s_small["max_epochs"] == 2
    assert s_small["tokens"] == 2 * small_tokens and s_small["epochs"] == pytest.approx(2.0)
    assert s_small["max_copies"] == 2 and s_small["asked_epochs"] == pytest.approx(5.0, rel=0.01)
    # The freed tokens went to 'big': the pack keeps the size asked for, and reports it truthfully.
    assert not s_big["capped"] and s_big["tokens"] >= total - 2 * small_tokens
    train = index["splits"]["train"]["tokens"]
    assert train == s_big["tokens"] + s_small["tokens"] and train >= total
    assert "capped at max_epochs 2" in index["line"] and "small" in index["line"]
    assert len(index["warnings"]) == 1 and index["warnings"][0].startswith("small:")
    assert "the rest went to big" in index["warnings"][0]
    on_disk = json.loads((tmp_path / "capped" / "index.json").read_text())
    assert on_disk["sources"][1]["packed"]["capped"] and on_disk["warnings"] == index["warnings"]
    # Every source at its cap: the pack is smaller than asked, and the line says so.
    both = pack(sources, tok, tmp_path / "both", val_fraction=0.0, total_tokens=total, max_epochs=[0.5, 2], seed=1)
    assert all(s["packed"]["capped"] for s in both["sources"])
    assert both["splits"]["train"]["tokens"] < total and "every source is at its cap" in both["line"]


def test_a_source_without_train_tokens_gives_its_share_to_the_others(tmp_path, two_sources, bpe_tokenizer):
    big, _ = two_sources
    empty = write_dataset(tmp_path / "empty", [], stage="t",  # e.g. a stage that kept nothing
                          schema=pa.schema([("id", pa.string()), ("text", pa.string())]))
    index = pack([("big", big, 0.5), ("empty", empty, 0.5)], load_tokenizer(bpe_tokenizer), tmp_path / "p",
                 val_fraction=0.0, total_tokens=20_000, max_epochs=None, seed=0)
    s_big, s_empty = (s["packed"] for s in index["sources"])
    assert s_empty["capped"] and s_empty["tokens"] == 0 and s_empty["asked_epochs"] is None
    assert s_big["tokens"] >= 20_000 == index["asked_train_tokens"]
    assert index["warnings"][0].startswith("empty:") and "no train tokens" in index["warnings"][0]


def test_epochs_per_source_measured_on_a_real_pack(tmp_path, two_sources, bpe_tokenizer):
    tok = load_tokenizer(bpe_tokenizer)
    big, small = two_sources
    probe = pack([("small", small, 1.0)], tok, tmp_path / "probe", val_fraction=0.0)
    small_tokens = probe["sources"][0]["train_tokens"]
    # small: 50% of 7 x its tokens = 3.5 epochs asked, under a cap of 4.
    index = pack([("big", big, 0.5), ("small", small, 0.5)], tok, tmp_path / "p", val_fraction=0.0,
                 total_tokens=7 * small_tokens, max_epochs=4, seed=2)
    seen = _train_documents(tmp_path / "p", index, tok)
    for src, ds in zip(index["sources"], (big, small), strict=True):
        packed = sum(seen[t] * len(tok.encode(t)) + seen[t] for t in set(ds.column("text")))  # + one eot each
        assert packed == src["packed"]["tokens"]
        assert src["packed"]["epochs"] == pytest.approx(packed / src["train_tokens"])
    small_epochs = index["sources"][1]["packed"]["epochs"]
    assert 3.5 <= small_epochs < 4 and not index["sources"][1]["packed"]["capped"]
    assert f"{small_epochs:.2f} epochs" in index["line"]


def test_documents_table_matches_the_packed_tokens(tmp_path, two_sources, bpe_tokenizer):
    tok = load_tokenizer(bpe_tokenizer)
    big, small = two_sources
    out = tmp_path / "p"
    index = pack([("big", big, 0.7), ("small", small, 0.3)], tok, out, val_fraction=0.2,
                 total_tokens=2 * index_tokens(big, small, tok), max_epochs=3, seed=4)
    table = pq.read_table(out / DOCUMENTS).to_pylist()
    assert index["documents_table"] == DOCUMENTS
    assert len(table) == big.num_rows + small.num_rows
    texts = {r["id"]: r["text"] for ds in (big, small) for r in ds.iter_records()}
    assert {r["id"] for r in table} == set(texts)
    seen = _train_documents(out, index, tok)
    val_seen: Counter = Counter()
    for shard in index["splits"]["val"]["shards"]:
        stream = tok.decode(np.fromfile(out / shard["tokens"], dtype=index["dtype"]))
        val_seen.update(stream.split("<|endoftext|>")[:-1])
    for row in table:
        text = texts[row["id"]]
        assert row["packed_train"] == seen[text], row
        assert row["packed_val"] == val_seen[text] == (row["split"] == "val"), row
        assert row["tokens"] == len(tok.encode(text)) + 1
    # The table's copies add up to the stream: tokens and documents per split, and per source.
    assert sum(r["tokens"] * r["packed_train"] for r in table) == index["splits"]["train"]["tokens"]
    assert sum(r["packed_train"] for r in table) == index["splits"]["train"]["documents"]
    assert sum(r["tokens"] * r["packed_val"] for r in table) == index["splits"]["val"]["tokens"]
    for src in index["sources"]:
        rows = [r for r in table if r["source"] == src["dataset"]]
        assert sum(r["packed_train"] for r in rows) == src["packed"]["documents"]
        assert max(r["packed_train"] for r in rows) == src["packed"]["max_copies"] <= 3
    assert any(r["packed_train"] > 1 for r in table) and any(r["split"] == "val" for r in table)


def index_tokens(big, small, tok) -> int:
    return sum(len(tok.encode(t)) + 1 for ds in (big, small) for t in ds.column("text"))


def test_pack_stage_config_caps_per_source_and_records_the_mixture(tmp_path, two_sources, bpe_tokenizer):
    big, small = two_sources
    assert PackConfig().max_epochs == 4  # the pipeline's default cap
    total = 2 * index_tokens(big, small, load_tokenizer(bpe_tokenizer))
    cfg = PackConfig(sources=[PackSource(dataset=str(big.path), weight=0.6),
                              PackSource(dataset=str(small.path), weight=0.4, max_epochs=1.5)],
                     tokenizer=str(bpe_tokenizer), val_fraction=0.0, total_tokens=total)
    ds = run_pack(cfg, {}, tmp_path / "stage")
    rows = {r["dataset"]: r for r in ds.iter_records()}
    assert rows[str(small.path)]["capped"] and rows[str(small.path)]["max_epochs"] == 1.5
    assert rows[str(small.path)]["epochs"] <= 1.5 + 1e-9 and not rows[str(big.path)]["capped"]
    summary = Dataset(tmp_path / "stage").manifest["summary"]
    assert summary["epochs by source"][str(small.path)] == pytest.approx(rows[str(small.path)]["epochs"], abs=1e-3)
    assert summary["train tokens by source"][str(big.path)] == rows[str(big.path)]["train_tokens_packed"]
    assert summary["warnings"] and "capped at max_epochs 1.5" in summary["line"]
    # What the capped source's last pass left short of its cap went to 'big' too: the size asked for holds.
    assert summary["tokens"] >= summary["asked_train_tokens"] == total
