"""Shared fixtures of the lm tests: a small real corpus (stdlib files as a Parquet Dataset), a BPE
tokenizer trained on it, and a token pack, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from lm_corpus import stdlib_texts

from textbooklm.lm.pack import pack
from textbooklm.model.tokenizer import train_bpe
from textbooklm.store import Dataset, write_dataset


@pytest.fixture(scope="session")
def lm_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lm")


@pytest.fixture(scope="session")
def code_docs(lm_root) -> Dataset:
    return write_dataset(lm_root / "code", [{"id": str(i), "text": t} for i, t in enumerate(stdlib_texts(40))],
                         stage="test", rows_per_shard=15)


@pytest.fixture(scope="session")
def bpe_tokenizer(lm_root, code_docs) -> Path:
    tok = train_bpe(code_docs.column("text"), 512)
    path = lm_root / "tokenizer.json"
    tok.save(path)
    return path


@pytest.fixture(scope="session")
def code_pack(lm_root, code_docs, bpe_tokenizer) -> Path:
    from textbooklm.model.tokenizer import load_tokenizer

    out = lm_root / "pack"
    pack([("code", code_docs, 1.0)], load_tokenizer(bpe_tokenizer), out, val_fraction=0.1,
         tokens_per_shard=50_000, tokenizer_path=str(bpe_tokenizer))
    return out
