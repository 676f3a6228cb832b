"""The ``local`` backend: a transformers causal LM on this machine, generating in batches.

Prompts are rendered with the model's chat template, sorted by length (less padding), and generated
``batch_size`` at a time with LEFT padding: every row's last prompt token then sits in the same
column, so one ``generate`` call continues all of them, which is several times faster per token on
a CPU than one prompt at a time. Rows are only batched with rows of the same sampling parameters.

Scoring requests (``Request.choices``): when every label has a one-token spelling, one forward pass
over the prompts reads the next-token distribution, and each label's probability is the sum over every
token that equals it with spaces and case ignored ("High", " high", "high"), as the openai backend
sums the variants among a server's top logprobs; the labels' covered mass is kept in the result.
Otherwise every (prompt + choice) sequence is run once and the choices' total log-probabilities
compared, so multi-token choices score correctly too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from textbooklm.teacher.backend import Finish, Job
from textbooklm.teacher.config import TeacherConfig
from textbooklm.teacher.smollm2 import resolve_model_folder
from textbooklm.teacher.types import REASON_LOCAL, Request, Result

log = logging.getLogger("textbooklm.teacher")


class LocalBackend:
    """A Hugging Face causal LM loaded from a local folder (``smollm2`` by default)."""

    name = "local"

    def __init__(self, cfg: TeacherConfig) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.model = cfg.model
        self.queue_size = cfg.batch_size * 2
        self.folder: Path = resolve_model_folder(cfg.model)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(self.folder, dtype=torch.float32).to(cfg.device)
        self.lm.eval()
        self.torch = torch
        self._vocab_keys: list[str] | None = None  # every token's text, spaces and case ignored

    # -- prompts -----------------------------------------------------------------------------
    def prompt_text(self, request: Request) -> str:
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                list(request.messages), add_generation_prompt=True, tokenize=False
            )
        return "\n\n".join(m["content"] for m in request.messages) + "\n\n"

    def prompt_ids(self, request: Request) -> list[int]:
        return self.tokenizer(self.prompt_text(request), add_special_tokens=False)["input_ids"]

    def input_token_bound(self, request: Request) -> int:
        return len(self.prompt_ids(request))

    def order(self, jobs: list[Job]) -> list[Job]:
        return sorted(jobs, key=lambda j: (self._signature(j.request), len(self.prompt_text(j.request))))

    @staticmethod
    def _signature(request: Request) -> tuple:
        """Rows batch together only if they generate the same way."""
        if request.choices:
            return ("score",)
        return ("gen", request.max_tokens, request.temperature, request.top_p)

    # -- serving -----------------------------------------------------------------------------
    async def serve(self, queue: asyncio.Queue[Job | None], finish: Finish) -> None:
        done = False
        while not done:
            first = await queue.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < self.cfg.batch_size:
                try:
                    nxt = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is None:
                    done = True
                    break
                jobs.append(nxt)
            groups: dict[tuple, list[Job]] = defaultdict(list)
            for job in jobs:
                groups[self._signature(job.request)].append(job)
            for sig, group in groups.items():
                start = time.monotonic()
                try:
                    if sig[0] == "score":
                        results = await asyncio.to_thread(self.score_batch, group)
                    else:
                        results = await asyncio.to_thread(self.generate_batch, group)
                except Exception as exc:  # e.g. out of memory: these requests fail, the stage goes on
                    log.exception("local teacher batch of %d failed", len(group))
                    results = [Result(key=j.key, error=f"{REASON_LOCAL}: {type(exc).__name__}: {exc}")
                               for j in group]
                latency = time.monotonic() - start
                for job, result in zip(group, results, strict=True):
                    result.latency_s = latency
                    result.attempts = 1
                    await finish(job, result)

    def generate_batch(self, jobs: list[Job]) -> list[Result]:
        """One left-padded ``generate`` call for rows sharing max_tokens / temperature / top_p."""
        torch = self.torch
        req0 = jobs[0].request
        enc = self.tokenizer(
            [self.prompt_text(j.request) for j in jobs],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        ).to(self.cfg.device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": req0.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if req0.temperature > 0:
            kwargs.update(do_sample=True, temperature=req0.temperature, top_p=req0.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        seeds = [j.request.seed for j in jobs if j.request.seed is not None]
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            if seeds:
                # One generator drives the whole batch, so a seed reproduces a sample only together
                # with the same batch-mates; the cache is what makes re-runs identical.
                digest = hashlib.sha256(repr(seeds).encode()).digest()
                torch.manual_seed(int.from_bytes(digest[:8], "little"))
            out = self.lm.generate(**enc, **kwargs)
        width = enc["input_ids"].shape[1]
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        return [
            self._decode(job, out[i, width:].tolist(), int(prompt_tokens[i])) for i, job in enumerate(jobs)
        ]

    def _decode(self, job: Job, new_ids: list[int], prompt_tokens: int) -> Result:
        eos = self.tokenizer.eos_token_id
        finish_reason = "length"
        if eos in new_ids:
            new_ids = new_ids[: new_ids.index(eos)]
            finish_reason = "stop"
        tokens_out = len(new_ids) + (1 if finish_reason == "stop" else 0)
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        for stop in job.request.stop or ():
            cut = text.find(stop)
            if cut >= 0:
                text = text[:cut]
                finish_reason = "stop"
        return Result(key=job.key, text=text, tokens_in=prompt_tokens, tokens_out=tokens_out,
                      finish_reason=finish_reason)

    def label_variants(self, choices: tuple[str, ...]) -> list[list[int]] | None:
        """Token ids spelling each label (spaces and case ignored); None if one has no one-token form."""
        from textbooklm.teacher.openai_backend import label_key

        if self._vocab_keys is None:
            size = len(self.tokenizer)
            self._vocab_keys = [label_key(t) for t in self.tokenizer.batch_decode([[i] for i in range(size)])]
        wanted = [label_key(c) for c in choices]
        found: list[list[int]] = [[] for _ in choices]
        for token_id, key in enumerate(self._vocab_keys):
            for i, w in enumerate(wanted):
                if key == w:
                    found[i].append(token_id)
        return found if all(found) else None

    def score_batch(self, jobs: list[Job]) -> list[Result]:
        """Log-probability of each choice after its prompt; softmax over a prompt's choices.

        When every choice is one token (labels such as "0".."5", "high"/"low"), one forward pass over
        the prompts alone gives all of them from the last position. Otherwise every (prompt + choice)
        row is run once. Only the positions that are read go through log-softmax.
        """
        torch = self.torch
        prompts = [self.prompt_ids(job.request) for job in jobs]
        prompt_lens = [len(p) for p in prompts]
        choice_ids = [[self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in job.request.choices or ()]
                      for job in jobs]
        variants = [self.label_variants(job.request.choices or ()) for job in jobs]
        single = all(v is not None for v in variants)
        if single:
            rows = prompts
            spans = [(len(p), len(p) + 1) for p in prompts]
        else:
            rows, spans = [], []
            for prompt, per_job in zip(prompts, choice_ids, strict=True):
                for ids in per_job:
                    rows.append(prompt + ids)
                    spans.append((len(prompt), len(prompt) + len(ids)))
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # right padding: positions then match the unpadded sequence
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        with torch.inference_mode():
            dev = self.cfg.device
            logits = self.lm(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
        totals = []
        if single:
            for i, (a, _) in enumerate(spans):
                # token at position t is predicted by the logits at t-1: the prompt's last position
                prob = torch.softmax(logits[i, a - 1].float(), dim=-1).cpu()
                totals.extend(float(prob[ids].sum().log()) for ids in variants[i] or ())
        else:
            for i, (a, b) in enumerate(spans):
                logp = torch.log_softmax(logits[i, a - 1 : b - 1].float(), dim=-1).cpu()
                totals.append(float(logp.gather(1, ids[i, a:b][:, None]).sum()))
        results = []
        k = 0
        for job, n_prompt in zip(jobs, prompt_lens, strict=True):
            n = len(job.request.choices or ())
            scores = torch.tensor(totals[k : k + n], dtype=torch.float64)
            k += n
            probs = torch.softmax(scores, dim=0).tolist()
            best = max(range(n), key=lambda i: probs[i])
            results.append(
                Result(key=job.key, text=(job.request.choices or ())[best], tokens_in=n_prompt, tokens_out=1,
                       finish_reason="stop", choice_probs=probs, choice_mass=float(scores.exp().sum()))
            )
        return results

    async def aclose(self) -> None:
        return None
