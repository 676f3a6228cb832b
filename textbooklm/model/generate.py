"""Generation and scoring with a phi checkpoint: what ``textbooklm generate`` and the evals call.

* :func:`generate` — completions for a batch of prompts: left padding (each row's positions start
  at its first real token), a KV cache (each new token costs one position, not the whole prefix),
  temperature, nucleus (top-p) sampling, stop sequences, and the end-of-text token as a stop.
* :func:`loglikelihood` — per-token log-probabilities of continuations given prompts (HumanEval
  canonical-solution NLL, multiple-choice evals), batched with right padding, which leaves every
  real token's causal context untouched.
* :class:`CheckpointGenerator` — both behind one object built from a checkpoint path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from textbooklm.model.checkpoint import load_model
from textbooklm.model.model import KVCache, PhiForCausalLM
from textbooklm.model.tokenizer import TextTokenizer, load_tokenizer


def _sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> torch.Tensor:
    """One token id per row from last-position logits (B, V)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        drop = sorted_p.cumsum(dim=-1) - sorted_p >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        choice = torch.multinomial(sorted_p, 1, generator=gen)
        return sorted_i.gather(-1, choice).squeeze(-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


def _cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cuts = [i for s in stop if s and (i := text.find(s)) >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


@torch.no_grad()
def generate(
    model: PhiForCausalLM,
    tok: TextTokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: list[str] | None = None,
    seed: int | None = None,
) -> list[str]:
    """Completions (without the prompt, cut before the first stop sequence) for ``prompts``."""
    if not prompts:
        return []
    stop = list(stop or [])
    device = next(model.parameters()).device
    vocab = model.cfg.vocab_size
    limit = max(1, model.cfg.block_size - max_new_tokens)
    encoded = [(tok.encode(p) or [tok.eot_id])[-limit:] for p in prompts]
    B, P = len(encoded), max(len(e) for e in encoded)
    ids = torch.full((B, P), tok.eot_id, dtype=torch.long)
    valid = torch.zeros((B, P), dtype=torch.bool)
    for r, e in enumerate(encoded):
        ids[r, P - len(e):] = torch.tensor(e)
        valid[r, P - len(e):] = True
    ids, valid = ids.to(device), valid.to(device)
    positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
    causal = torch.ones(P, P, dtype=torch.bool, device=device).tril()
    eye = torch.eye(P, dtype=torch.bool, device=device)
    # Pads attend only to themselves (a row with no allowed key would give NaN).
    mask = (causal[None] & valid[:, None, :]) | eye[None]
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
    was_training = model.training
    model.eval()
    cache = KVCache(model.cfg.n_layer)
    logits = model(ids, positions=positions, mask=mask[:, None], cache=cache)[:, -1, :vocab]
    out_ids: list[list[int]] = [[] for _ in range(B)]
    done = [False] * B
    last_pos = positions[:, -1]
    for _ in range(max_new_tokens):
        nxt = _sample(logits, temperature, top_p, gen)
        for r in range(B):
            if done[r]:
                continue
            t = int(nxt[r])
            if t == tok.eot_id:
                done[r] = True
                continue
            out_ids[r].append(t)
            if stop and _cut_at_stop(tok.decode(out_ids[r][-64:]), stop)[1]:
                done[r] = True
        if all(done):
            break
        valid = torch.cat([valid, torch.ones(B, 1, dtype=torch.bool, device=device)], dim=1)
        last_pos = last_pos + 1
        logits = model(nxt[:, None], positions=last_pos[:, None], mask=valid[:, None, None, :],
                       cache=cache)[:, -1, :vocab]
    model.train(was_training)
    return [_cut_at_stop(tok.decode(o), stop)[0] for o in out_ids]


@dataclass
class ContinuationScore:
    """Log-probabilities (natural log) of a continuation's tokens given its prompt."""

    token_logprobs: list[float]
    is_greedy: bool  # every continuation token was the argmax (lm-eval-harness's "exact match")

    @property
    def total(self) -> float:
        return sum(self.token_logprobs)

    @property
    def n_tokens(self) -> int:
        return len(self.token_logprobs)


@torch.no_grad()
def loglikelihood(
    model: PhiForCausalLM,
    tok: TextTokenizer,
    pairs: list[tuple[str, str]],
    *,
    batch_size: int = 8,
) -> list[ContinuationScore]:
    """Score ``(prompt, continuation)`` pairs. Prompt and continuation are tokenized separately (the
    token boundary is where the prompt ends); an empty prompt is conditioned on end-of-text."""
    device = next(model.parameters()).device
    vocab, window = model.cfg.vocab_size, model.cfg.block_size
    items = []
    for prompt, cont in pairs:
        ctx = tok.encode(prompt) if prompt else [tok.eot_id]
        cids = tok.encode(cont)
        if not cids:
            raise ValueError(f"empty continuation for prompt {prompt[:60]!r}")
        full = (ctx + cids)[-(window + 1):]
        items.append((full, min(len(cids), len(full) - 1)))  # a continuation longer than the window is cut
    results: list[ContinuationScore | None] = [None] * len(items)
    order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        L = max(len(items[i][0]) for i in chunk) - 1
        x = torch.full((len(chunk), L), tok.eot_id, dtype=torch.long)
        for r, i in enumerate(chunk):
            seq = items[i][0]
            x[r, : len(seq) - 1] = torch.tensor(seq[:-1])
        logp = torch.log_softmax(model(x.to(device))[..., :vocab].float(), dim=-1).cpu()
        for r, i in enumerate(chunk):
            seq, n = items[i]
            targets = torch.tensor(seq[-n:])
            rows = logp[r, len(seq) - 1 - n : len(seq) - 1]
            lp = rows.gather(-1, targets[:, None]).squeeze(-1)
            results[i] = ContinuationScore(lp.tolist(), bool((rows.argmax(-1) == targets).all()))
    model.train(was_training)
    return results  # type: ignore[return-value]


class CheckpointGenerator:
    """A textbooklm (or Hugging Face phi) checkpoint as a completion and scoring engine for evals."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", tokenizer: str | Path | None = None):
        self.model, folder = load_model(checkpoint, device)
        self.tokenizer = load_tokenizer(tokenizer or folder)
        self.name = str(folder)

    def generate(self, prompts: list[str], *, max_new_tokens: int = 128, temperature: float = 0.0,
                 top_p: float = 1.0, stop: list[str] | None = None, seed: int | None = None) -> list[str]:
        return generate(self.model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_p=top_p, stop=stop, seed=seed)

    def loglikelihood(self, pairs: list[tuple[str, str]], batch_size: int = 8) -> list[ContinuationScore]:
        return loglikelihood(self.model, self.tokenizer, pairs, batch_size=batch_size)
