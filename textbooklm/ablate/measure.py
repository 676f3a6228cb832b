"""Measuring one checkpoint of one arm, the same way for every arm.

Cheap, smooth metrics at every curve point (the shared validation loss, the NLL of HumanEval's
canonical solutions), the costly sampled ones (HumanEval pass@1/@10, pass@1 on held-out verified
exercises) at the end of training unless asked for at every point. Model-written completions run
only in the sandbox, through the eval stage's own code path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from textbooklm.ablate.config import AblationEvalConfig
from textbooklm.ablate.data import ValidationSet
from textbooklm.evals.generate import SamplingSettings
from textbooklm.problems import Problem

VAL_LOSS = "validation loss (shared)"
NLL = "humaneval canonical NLL/token"
PASS1 = "humaneval pass@1"
PASS10 = "humaneval pass@10"
EXERCISES = "held-out exercises pass@1"
# Which way is better, per metric (the comparisons need it).
HIGHER_IS_BETTER = {VAL_LOSS: False, NLL: False, PASS1: True, PASS10: True, EXERCISES: True}


@torch.no_grad()
def validation_loss(model: torch.nn.Module, val: ValidationSet, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy (nats) over every token of the shared validation set."""
    device = next(model.parameters()).device
    vocab = model.cfg.vocab_size
    total, count = 0.0, 0
    for start in range(0, val.n_sequences, batch_size):
        rows = torch.from_numpy(np.ascontiguousarray(val.tokens[start : start + batch_size])).to(device)
        logits = model(rows[:, :-1])[..., :vocab].float()
        loss = F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="sum")
        total += float(loss)
        count += rows[:, 1:].numel()
    return total / max(count, 1)


def measure(folder: Path, out: Path, *, val: ValidationSet, humaneval: list[Problem], exercises: list[Problem],
            cfg: AblationEvalConfig, sampled: bool, device: str, workers: int | None) -> dict[str, float]:
    """Every metric of the checkpoint in ``folder``; sample files go to ``out`` (resumable)."""
    from textbooklm.evals.checkpoint_generator import CheckpointSampler
    from textbooklm.evals.stage import canonical_nll, code_task

    out.mkdir(parents=True, exist_ok=True)
    sampler = CheckpointSampler(folder, device=device)
    engine = sampler.inner
    metrics = {VAL_LOSS: validation_loss(engine.model, val)}
    if humaneval:
        metrics[NLL] = canonical_nll(engine, humaneval)["humaneval canonical NLL/token"]
    if sampled:
        settings = SamplingSettings(n=cfg.n_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                                    max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed)
        if humaneval and cfg.humaneval:
            got = code_task("model", "humaneval", humaneval, sampler, settings, cfg.limits, out, workers)
            metrics[PASS1] = got["humaneval pass@1"]
            if cfg.n_samples >= 10:
                metrics[PASS10] = got["humaneval pass@10"]
        if exercises:
            one = SamplingSettings(n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens,
                                   batch_size=cfg.batch_size, seed=cfg.seed)
            got = code_task("model", "exercises", exercises, sampler, one, cfg.limits, out, workers)
            metrics[EXERCISES] = got["exercises pass@1"]
    return {k: round(float(v), 6) for k, v in metrics.items()}
