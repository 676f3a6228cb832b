"""Perplexity of a model on any text dataset (a textbooklm Dataset folder, JSONL, or plain text).

Long texts are cut at line boundaries into pieces of at most ``chunk_chars`` characters, each
scored on its own (conditioned on end-of-text), so no piece overflows the model's window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read_texts(path: str | Path, column: str = "text", limit: int | None = None) -> list[str]:
    """Texts from a Dataset folder (Parquet shards), a .jsonl/.parquet file, or a .txt file."""
    path = Path(path)
    texts: list[str] = []
    if path.is_dir():
        from textbooklm.store import Dataset

        texts = [t for t in Dataset(path).column(column) if t]
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        texts = [t for t in pq.read_table(path, columns=[column]).column(column).to_pylist() if t]
    elif path.suffix == ".jsonl":
        from textbooklm.jsonl import parse_jsonl

        def text_of(where: str, rec: object) -> str:
            if not isinstance(rec, dict) or not isinstance(rec.get(column), str):
                raise ValueError(f"{where}: no string {column!r} key")
            return rec[column]

        # The one JSONL reader: every bad line (bad UTF-8 or JSON, a lone surrogate the tokenizer
        # would choke on) is named at once as FILE:LINE.
        texts = parse_jsonl(path, text_of)
    elif path.is_file():
        texts = [path.read_text(encoding="utf-8")]
    else:
        raise ValueError(f"{path}: no such file or folder")
    return texts[:limit] if limit else texts


def chunks(text: str, chunk_chars: int) -> Iterable[str]:
    piece = ""
    for line in text.splitlines(keepends=True):
        while len(line) > chunk_chars:  # a single huge line: hard cut
            if piece:
                yield piece
                piece = ""
            yield line[:chunk_chars]
            line = line[chunk_chars:]
        if len(piece) + len(line) > chunk_chars and piece:
            yield piece
            piece = ""
        piece += line
    if piece.strip():
        yield piece


def perplexity(scorer: Any, texts: list[str], chunk_chars: int = 2000, batch_size: int = 8) -> dict[str, float]:
    """Token perplexity, mean NLL per token (nats) and bits per byte over ``texts``."""
    pieces = [c for t in texts for c in chunks(t, chunk_chars)]
    scores = scorer.loglikelihood([("", p) for p in pieces], batch_size=batch_size) if pieces else []
    nll = -sum(s.total for s in scores)
    tokens = sum(s.n_tokens for s in scores)
    n_bytes = sum(len(p.encode("utf-8")) for p in pieces)
    return {
        "documents": len(texts),
        "pieces": len(pieces),
        "tokens": tokens,
        "nll_per_token": nll / max(1, tokens),
        "perplexity": math.exp(nll / max(1, tokens)),
        "bits_per_byte": nll / math.log(2) / max(1, n_bytes),
    }
