"""The corpus validation documents: the pretraining pack's held-out documents, scored by every model.

Why: a training run's own validation loss is measured on *its* data (pretraining: held-out corpus
documents; finetuning: held-out exercises), so "validation loss 4.83 -> 4.41" across the two runs
compares different texts. Here every evaluated model scores the same documents, one by one, so the
figures compare and each document is a unit for the bootstrap interval and the paired test.

The documents are read back from the pack's ``val`` split (documents end with end-of-text there)
and decoded with the pack's tokenizer, so they are exactly the texts pretraining held out (the
packer's per-document hash split), whatever the source datasets hold now. Each model re-encodes the
text with its own tokenizer and scores its first ``tokens_per_document`` tokens in windows of its
context length (the first window conditioned on end-of-text, as a document starts in training).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def validation_documents(pack: Path, limit: int | None) -> list[str]:
    """The pack's validation documents as text, ``limit`` of them spread evenly over the split (source order)."""
    from textbooklm.model.tokenizer import load_tokenizer

    index_path = Path(pack) / "index.json"
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{pack}: not a token pack (no index.json); run the pack stage") from None
    tok_path = index.get("tokenizer")
    if not tok_path or not Path(tok_path).is_file():
        raise FileNotFoundError(f"{index_path}: its tokenizer {tok_path!r} is not there to decode the documents")
    tok = load_tokenizer(tok_path)
    dtype, eot = np.dtype(index["dtype"]), int(index["eot_id"])
    shards = [np.fromfile(Path(pack) / s["tokens"], dtype=dtype) for s in index["splits"]["val"]["shards"]]
    flat = np.concatenate(shards) if shards else np.zeros(0, dtype)
    ends = np.flatnonzero(flat == eot)
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, np.int64)
    spans = [(int(a), int(b)) for a, b in zip(starts, ends, strict=True) if b > a]
    if limit is not None and len(spans) > limit:
        spans = [spans[i] for i in np.linspace(0, len(spans) - 1, limit).round().astype(int)]
    return [tok.decode(flat[a:b].tolist()) for a, b in spans]


def document_nll(engine: Any, texts: list[str], tokens_per_document: int,
                 batch_size: int = 8) -> list[tuple[float, int]]:
    """Per document: (nats summed, tokens scored) under ``engine``'s model and tokenizer."""
    import torch
    import torch.nn.functional as F

    model, tok = engine.model, engine.tokenizer
    window, vocab = model.cfg.block_size, model.cfg.vocab_size
    device = next(model.parameters()).device
    pieces: list[tuple[int, list[int]]] = []  # (document, window of inputs + targets)
    for d, text in enumerate(texts):
        ids = [tok.eot_id, *tok.encode(text)[:tokens_per_document]]
        for start in range(0, len(ids) - 1, window):
            pieces.append((d, ids[start:start + window + 1]))
    totals = [[0.0, 0] for _ in texts]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for b in range(0, len(pieces), batch_size):
            chunk = pieces[b:b + batch_size]
            length = max(len(p) for _, p in chunk) - 1
            x = torch.full((len(chunk), length), tok.eot_id, dtype=torch.long)
            y = torch.full((len(chunk), length), -100, dtype=torch.long)  # right padding: ignored targets
            for r, (_, p) in enumerate(chunk):
                x[r, :len(p) - 1] = torch.tensor(p[:-1])
                y[r, :len(p) - 1] = torch.tensor(p[1:])
            logits = model(x.to(device))[..., :vocab].float()
            nll = F.cross_entropy(logits.transpose(1, 2), y.to(device), reduction="none", ignore_index=-100).cpu()
            for r, (d, p) in enumerate(chunk):
                totals[d][0] += float(nll[r, :len(p) - 1].sum())
                totals[d][1] += len(p) - 1
    model.train(was_training)
    return [(float(n), int(t)) for n, t in totals]
