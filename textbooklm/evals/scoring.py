"""Log-likelihood scorers: the engine behind multiple-choice accuracy, perplexity and solution NLL.

``load_scorer(MODEL)`` accepts a textbooklm checkpoint folder (through
:class:`textbooklm.model.generate.CheckpointGenerator`) or any Hugging Face causal-LM folder
(:class:`HFScorer`). Both return, per ``(prompt, continuation)`` pair, the log-probabilities of the
continuation's tokens, with the token boundary where the prompt ends.
"""

from __future__ import annotations

import os
from pathlib import Path

from textbooklm.model.generate import ContinuationScore

# The same per-token record the textbooklm model's scorer returns.
Score = ContinuationScore


class HFScorer:
    """A transformers causal LM from a local folder, scored with right padding in batches."""

    def __init__(self, folder: str | Path, device: str = "cpu", max_length: int | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(device).eval()
        self.device = device
        self.max_length = max_length or int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.name = str(folder)
        bos = self.tokenizer.bos_token_id
        self.start_id = bos if bos is not None else self.tokenizer.eos_token_id

    def loglikelihood(self, pairs: list[tuple[str, str]], batch_size: int = 8) -> list[Score]:
        torch = self.torch
        items = []
        for prompt, cont in pairs:
            ctx = self.tokenizer.encode(prompt, add_special_tokens=False) if prompt else [self.start_id]
            cids = self.tokenizer.encode(cont, add_special_tokens=False)
            if not cids:
                raise ValueError(f"empty continuation for prompt {prompt[:60]!r}")
            full = (ctx + cids)[-(self.max_length + 1) :]
            items.append((full, min(len(cids), len(full) - 1)))  # a continuation longer than the window is cut
        out: list[Score | None] = [None] * len(items)
        order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            length = max(len(items[i][0]) for i in chunk) - 1
            x = torch.full((len(chunk), length), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), length), dtype=torch.long)
            for r, i in enumerate(chunk):
                seq = items[i][0][:-1]
                x[r, : len(seq)] = torch.tensor(seq)
                mask[r, : len(seq)] = 1
            with torch.no_grad():
                logits = self.model(input_ids=x.to(self.device), attention_mask=mask.to(self.device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for r, i in enumerate(chunk):
                seq, n = items[i]
                targets = torch.tensor(seq[-n:])
                rows = logp[r, len(seq) - 1 - n : len(seq) - 1]
                lp = rows.gather(-1, targets[:, None]).squeeze(-1)
                out[i] = Score(lp.tolist(), bool((rows.argmax(-1) == targets).all()))
        return out  # type: ignore[return-value]


def load_scorer(model: str | Path, device: str = "cpu"):
    """A textbooklm checkpoint (``model.safetensors`` + ``model.json``/``config.json`` of ours) or an HF folder."""
    folder = Path(str(model).removeprefix("ckpt:").removeprefix("hf:"))
    if not folder.is_dir():
        raise ValueError(f"{model}: not a model folder")
    if str(model).startswith("hf:"):
        return HFScorer(folder, device)
    try:
        from textbooklm.model.generate import CheckpointGenerator

        return CheckpointGenerator(folder, device)
    except (ValueError, FileNotFoundError, KeyError):
        return HFScorer(folder, device)
