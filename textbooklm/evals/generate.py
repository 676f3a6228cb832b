"""Sampling completions from a model and writing them to disk.

A model is anything satisfying the ``Generator`` protocol: prompts in, ``n`` completions per prompt
out. Backends are chosen from the MODEL string by ``make_generator``:

- ``hf:PATH`` or a folder holding ``config.json``: a Hugging Face causal LM (``HFGenerator``);
- other kinds register a factory: ``register_generator("ckpt", factory)`` makes ``ckpt:PATH``
  work (the textbooklm checkpoint and teacher backends plug in this way).

Completions are cut at the first stop sequence (``\\ndef``, ``\\nclass``, ``\\nif``, ``\\nprint``,
``\\n#``, as in the Codex paper), so a sample is the body of the prompted function only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

STOP_SEQUENCES: tuple[str, ...] = ("\ndef", "\nclass", "\nif", "\nprint", "\n#")


@dataclass
class SamplingSettings:
    n: int = 1
    temperature: float = 0.2
    top_p: float = 0.95
    max_new_tokens: int = 384
    batch_size: int = 8
    seed: int = 0
    stop: tuple[str, ...] = STOP_SEQUENCES


@runtime_checkable
class Generator(Protocol):
    """Prompts in, ``settings.n`` completions per prompt out (completion text only, not the prompt)."""

    name: str

    def generate(self, prompts: list[str], settings: SamplingSettings) -> list[list[str]]: ...


def truncate_at_stop(completion: str, stop: tuple[str, ...] | list[str] = STOP_SEQUENCES) -> str:
    """Cut at the earliest stop sequence."""
    cut = len(completion)
    for s in stop:
        i = completion.find(s)
        if i != -1:
            cut = min(cut, i)
    return completion[:cut]


GeneratorFactory = Callable[[str, dict[str, Any]], Generator]
_REGISTRY: dict[str, GeneratorFactory] = {}


def register_generator(kind: str, factory: GeneratorFactory) -> None:
    """Make ``kind:ARG`` model strings build ``factory(ARG, options)``."""
    _REGISTRY[kind] = factory


def make_generator(model: str, options: dict[str, Any] | None = None) -> Generator:
    """Build a generator from a MODEL string (``kind:arg`` or a HF folder path)."""
    options = options or {}
    import textbooklm.evals.checkpoint_generator  # noqa: F401  (registers ckpt:)

    kind, sep, arg = model.partition(":")
    if sep and kind in _REGISTRY:
        return _REGISTRY[kind](arg, options)
    folder = Path(model)
    if folder.is_dir() and ((folder / "textbooklm.json").exists() or (folder / "train" / "latest.json").exists()
                            or (folder / "latest.json").exists()):
        return _REGISTRY["ckpt"](model, options)
    if folder.is_dir() and (folder / "config.json").exists():
        return _REGISTRY["hf"](model, options)
    known = ", ".join(f"{k}:..." for k in sorted(_REGISTRY))
    raise ValueError(f"cannot make a model from {model!r}: not a Hugging Face folder (no config.json) and "
                     f"not one of {known}")


class HFGenerator:
    """A transformers causal LM from a local folder: batched, left-padded, sampled (or greedy at T=0)."""

    def __init__(self, folder: str, device: str | None = None, dtype: str = "float32") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = f"hf:{folder}"
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.tokenizer.padding_side = "left"  # decoder-only: pad on the left so generation continues the text
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()

    def generate(self, prompts: list[str], settings: SamplingSettings) -> list[list[str]]:
        torch = self.torch
        torch.manual_seed(settings.seed)
        greedy = settings.temperature <= 0
        per_prompt = 1 if greedy else settings.n  # greedy samples are identical: decode once
        jobs = [(i, p) for i, p in enumerate(prompts) for _ in range(per_prompt)]
        out: list[list[str]] = [[] for _ in prompts]
        for start in range(0, len(jobs), settings.batch_size):
            chunk = jobs[start:start + settings.batch_size]
            enc = self.tokenizer([p for _, p in chunk], return_tensors="pt", padding=True).to(self.device)
            kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens,
                                      "pad_token_id": self.tokenizer.pad_token_id}
            if greedy:
                kwargs["do_sample"] = False
            else:
                kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
            if settings.stop:
                kwargs.update(stop_strings=list(settings.stop), tokenizer=self.tokenizer)
            with torch.no_grad():
                tokens = self.model.generate(**enc, **kwargs)
            new = tokens[:, enc["input_ids"].shape[1]:]
            for (i, _), text in zip(chunk, self.tokenizer.batch_decode(new, skip_special_tokens=True),
                                    strict=True):
                out[i].append(truncate_at_stop(text, settings.stop))
        if greedy:
            out = [c * settings.n for c in out]
        return out


register_generator("hf", lambda arg, options: HFGenerator(arg, **options))


# Settings that change what a completion is; batch_size only changes how many run at once.
_SAME_SAMPLES = ("model", "task", "path", "n", "temperature", "top_p", "max_new_tokens", "seed", "stop")


def _sampling_key(meta: dict[str, Any]) -> dict[str, Any]:
    flat = {**meta, **meta.get("sampling", {})}
    return {k: (list(flat[k]) if isinstance(flat.get(k), (list, tuple)) else flat.get(k)) for k in _SAME_SAMPLES}


def _check_resumable(out: Path, meta_path: Path, wanted: dict[str, Any]) -> None:
    """Refuse to add samples to a file whose samples were made with other settings (or unknown ones).

    Without this, a re-run with another temperature or model would top up the old file and its
    pass@k would silently mix two settings under the new meta file's label.
    """
    if not out.exists() or out.stat().st_size == 0:
        return
    try:
        old = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict):
        raise ValueError(f"{out}: already holds samples but has no {meta_path.name} saying how they were made; "
                         f"choose another output file or delete it")
    before, now = _sampling_key(old), _sampling_key(wanted)
    changed = [f"{k} {before[k]!r} (now {now[k]!r})" for k in _SAME_SAMPLES if before[k] != now[k]]
    if changed:
        raise ValueError(f"{out}: holds samples made with other settings: {', '.join(changed)}; "
                         f"choose another output file or delete it")


def _completed(out: Path) -> dict[str, int]:
    """Samples per task_id already in ``out``; a line torn by a kill mid-write is cut off the file.

    Lines are appended and flushed in order, so a kill can only leave a last line without its
    newline; that tail is dropped (and sampled again). A bad complete line is not ours to repair
    and is an error naming it.
    """
    done: dict[str, int] = {}
    if not out.exists():
        return done
    data = out.read_bytes()
    *complete, tail = data.split(b"\n")
    for n, raw in enumerate(complete, 1):
        if not raw.strip():
            continue
        try:
            tid = json.loads(raw)["task_id"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{out}:{n}: not a sample line (JSON with a task_id); the file is damaged") from None
        done[tid] = done.get(tid, 0) + 1
    if tail:
        with out.open("r+b") as fh:
            fh.truncate(len(data) - len(tail))
    return done


def generate_samples(generator: Generator, problems: list, settings: SamplingSettings, out: Path,
                     meta: dict[str, Any], progress: Callable[[int], None] | None = None) -> int:
    """Write ``{"task_id","completion_id","completion"}`` lines, plus OUT.meta.json with every setting.

    Resumable: task_ids already complete in OUT are skipped, so an interrupted run continues (a
    line torn by kill -9 is sampled again). Samples made with other settings are refused, not mixed.
    """
    from dataclasses import asdict

    from textbooklm.store import atomic_write_json

    meta_path = out.with_name(out.name + ".meta.json")
    wanted = {**meta, "model": generator.name, "sampling": asdict(settings)}
    _check_resumable(out, meta_path, wanted)
    done = _completed(out)
    todo = [p for p in problems if done.get(p.task_id, 0) < settings.n]
    atomic_write_json(meta_path, wanted)
    written = 0
    step = max(1, settings.batch_size // max(1, settings.n if settings.temperature > 0 else 1))
    with out.open("a", encoding="utf-8") as f:
        for start in range(0, len(todo), step):
            batch = todo[start:start + step]
            completions = generator.generate([p.prompt for p in batch], settings)
            for problem, comps in zip(batch, completions, strict=True):
                for j, c in enumerate(comps[done.get(problem.task_id, 0):], start=done.get(problem.task_id, 0)):
                    f.write(json.dumps({"task_id": problem.task_id, "completion_id": j, "completion": c}) + "\n")
                    written += 1
            f.flush()
            if progress:
                progress(len(batch))
    return written
