"""The textbooklm checkpoint as an evals ``Generator`` (model strings ``ckpt:PATH`` or a checkpoint folder).

A thin adapter: sampling settings in, ``n`` completions per prompt out, batched, through the
model's own KV-cached generation (:mod:`textbooklm.model.generate`).
"""

from __future__ import annotations

from pathlib import Path

from textbooklm.evals.generate import SamplingSettings, register_generator, truncate_at_stop


class CheckpointSampler:
    def __init__(self, path: str | Path, device: str = "cpu"):
        from textbooklm.model.generate import CheckpointGenerator

        self.inner = CheckpointGenerator(path, device)
        self.name = f"ckpt:{self.inner.name}"

    def generate(self, prompts: list[str], settings: SamplingSettings) -> list[list[str]]:
        greedy = settings.temperature <= 0
        per_prompt = 1 if greedy else settings.n  # greedy samples are identical: decode once
        jobs = [i for i in range(len(prompts)) for _ in range(per_prompt)]
        out: list[list[str]] = [[] for _ in prompts]
        for start in range(0, len(jobs), settings.batch_size):
            chunk = jobs[start : start + settings.batch_size]
            texts = self.inner.generate([prompts[i] for i in chunk], max_new_tokens=settings.max_new_tokens,
                                        temperature=settings.temperature, top_p=settings.top_p,
                                        stop=list(settings.stop), seed=settings.seed + start)
            for i, text in zip(chunk, texts, strict=True):
                out[i].append(truncate_at_stop(text, settings.stop))
        return [c * settings.n for c in out] if greedy else out


register_generator("ckpt", lambda arg, options: CheckpointSampler(arg, **options))
