"""Counting prompt tokens the way the teacher's model does, or saying that it can't and keeping slack.

Why: a judge cuts each file to ``max_file_tokens`` before sending it. Counting words and punctuation
undercounts a BPE tokenizer on code (measured on SmolLM2: ~1.4 tokens per such word), so a 2,000-token
cut sent 2,788-token prompts that the server refused. In order of preference:

1. ``tokenizer``: the model's own tokenizer, when it is on this machine (the local backend's, or a
   served model named by its local folder): exact, with character offsets, one call per text;
2. ``server``: the server's ``POST /tokenize`` (vLLM; llama.cpp's server answers the same path):
   exact counts, one small request per text, shrinking the head until it fits;
3. ``estimate``: words and punctuation marks, keeping ``1 / WORD_TOKEN_MARGIN`` of the budget.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# BPE tokens per word-or-punctuation token allowed for when no tokenizer is known (SmolLM2 on the
# standard library's code: 1.39; 1.5 leaves room for denser text).
WORD_TOKEN_MARGIN = 1.5


@dataclass
class PromptCounter:
    """How prompt tokens are counted for one teacher (see the module docstring)."""

    how: str  # "tokenizer" | "server" | "estimate"
    ends: Callable[[str], list[int]] | None = None  # token end offsets (exact cut)
    count: Callable[[str], int | None] | None = None  # token count (cut by shrinking); None: failed
    context: int | None = None  # the model's context length, where known (prompt + reply must fit)

    def tokens(self, text: str) -> int | None:
        """Tokens of ``text`` by whichever counter there is (None for the estimate)."""
        if self.ends is not None:
            return len(self.ends(text))
        return self.count(text) if self.count is not None else None

    def describe(self) -> str:
        if self.how == "estimate":
            return f"estimated (words and punctuation, {1 / WORD_TOKEN_MARGIN:.2f} of the budget kept as margin)"
        return {"tokenizer": "the model's tokenizer", "server": "the server's /tokenize"}[self.how]


def offsets_counter(tokenizer: Any) -> Callable[[str], list[int]] | None:
    """End offsets of each token under a fast Hugging Face tokenizer (None for a slow one)."""
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        return None

    def ends(text: str) -> list[int]:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [end for _, end in enc["offset_mapping"]]

    return ends


def folder_tokenizer(model: str) -> Any:
    """The tokenizer of a served model named by its local folder, else None."""
    folder = Path(model).expanduser()
    if not (folder / "tokenizer.json").exists() and not (folder / "tokenizer_config.json").exists():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def server_root(base_url: str) -> str:
    """``http://host:8000/v1`` -> ``http://host:8000`` (vLLM's /tokenize sits at the root)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def tokenize_count(base_url: str, model: str, key: str | None, text: str, timeout_s: float = 30.0) -> int | None:
    """Tokens of ``text`` by the server's ``POST /tokenize``; None when the server has no such endpoint."""
    return tokenize(base_url, model, key, text, timeout_s)[0]


def tokenize(
    base_url: str, model: str, key: str | None, text: str, timeout_s: float = 30.0
) -> tuple[int | None, int | None]:
    """(tokens of ``text``, the model's context length) by ``POST /tokenize``; Nones where unknown."""
    body = json.dumps({"model": model, "prompt": text, "add_special_tokens": False, "content": text}).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(server_root(base_url) + "/tokenize", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as reply:
            data = json.loads(reply.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    context = data.get("max_model_len") if isinstance(data.get("max_model_len"), int) else None
    if isinstance(data.get("count"), int):
        return data["count"], context
    if isinstance(data.get("tokens"), list):  # llama.cpp's server
        return len(data["tokens"]), context
    return None, None


def prompt_counter(backend: Any) -> PromptCounter:
    """The best way to count prompt tokens for ``backend`` (a teacher's backend)."""
    ends = offsets_counter(getattr(backend, "tokenizer", None))
    if ends is not None:
        model_config = getattr(getattr(backend, "lm", None), "config", None)
        context = getattr(model_config, "max_position_embeddings", None)
        return PromptCounter("tokenizer", ends=ends, context=context if isinstance(context, int) else None)
    cfg = getattr(backend, "cfg", None)
    if getattr(backend, "name", "") == "openai" and cfg is not None:
        tok = folder_tokenizer(cfg.model)
        if (ends := offsets_counter(tok)) is not None:
            return PromptCounter("tokenizer", ends=ends)
        if cfg.base_url:
            key = getattr(backend, "_key", None)
            probe, context = tokenize(cfg.base_url, cfg.model, key, "def f(): pass", timeout_s=cfg.timeout_s)
            if probe is not None:
                return PromptCounter(
                    "server", count=lambda text: tokenize_count(cfg.base_url, cfg.model, key, text, cfg.timeout_s),
                    context=context,
                )
    return PromptCounter("estimate")
