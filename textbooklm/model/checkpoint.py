"""Checkpoint folders: weights in safetensors, everything else in JSON. Never pickle.

A model folder (what ``generate``, export and evals read)::

    model.safetensors      weights (textbooklm names)
    textbooklm.json        {"format": "textbooklm.phi/1", "model": PhiConfig fields}
    tokenizer.json         the tokenizer the model was trained with

A training checkpoint adds ``optimizer.safetensors`` (AdamW moments, keyed by parameter name),
``rng-rank<R>.safetensors`` (each process's torch RNG) and ``state.json`` (step, data position,
scheduler, optimizer hyper-parameters). Folders are written under a temporary name and renamed, so
a SIGKILL mid-save leaves the previous checkpoint intact; ``latest.json`` in the run folder names
the newest complete one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from textbooklm.model.model import PhiConfig, PhiForCausalLM
from textbooklm.store import atomic_write_json

FORMAT = "textbooklm.phi/1"
META = "textbooklm.json"
LATEST = "latest.json"


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


def unwrap(model: torch.nn.Module) -> PhiForCausalLM:
    """The PhiForCausalLM inside DDP / torch.compile wrappers."""
    while not isinstance(model, PhiForCausalLM):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def save_model(folder: Path, state_dict: dict[str, torch.Tensor], cfg: PhiConfig, tokenizer_json: Path | None) -> None:
    """Write the model part of a checkpoint into ``folder`` (which must exist)."""
    save_file(_contiguous(state_dict), str(folder / "model.safetensors"), metadata={"format": "pt"})
    atomic_write_json(folder / META, {"format": FORMAT, "model": cfg.to_dict()})
    if tokenizer_json is not None and Path(tokenizer_json).is_file():
        shutil.copyfile(tokenizer_json, folder / "tokenizer.json")


def resolve_checkpoint(path: str | Path) -> Path:
    """A model folder from: a model/checkpoint folder, a training run folder (its newest checkpoint),
    or a pipeline stage folder holding a run."""
    path = Path(path)
    if (path / META).is_file() or (path / "config.json").is_file():
        return path
    for candidate in (path, path / "train"):
        latest = candidate / LATEST
        if latest.is_file():
            return candidate / json.loads(latest.read_text())["checkpoint"]
    if (path / "final" / META).is_file():
        return path / "final"
    raise FileNotFoundError(f"{path}: no textbooklm checkpoint ({META}), Hugging Face model (config.json) "
                            f"or training run ({LATEST}) here")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[PhiForCausalLM, Path]:
    """Load a textbooklm or Hugging Face phi checkpoint; returns the model (eval mode) and its folder."""
    folder = resolve_checkpoint(path)
    if not (folder / META).is_file():
        from textbooklm.model.hf import import_hf

        model = import_hf(folder)
    else:
        meta = json.loads((folder / META).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder / META}: unknown format {meta.get('format')!r} (expected {FORMAT})")
        model = PhiForCausalLM(PhiConfig.from_dict(meta["model"]))
        state = load_file(str(folder / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{folder}/model.safetensors: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device).eval(), folder


def save_training_checkpoint(
    run_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    cfg: PhiConfig,
    optim_state: dict[str, torch.Tensor],
    state: dict[str, Any],
    rng_states: dict[int, dict[str, torch.Tensor]],
    tokenizer_json: Path | None,
    keep: int,
) -> Path:
    """Write ``step-NNNNNNN/`` atomically, point ``latest.json`` at it, prune old ones."""
    name = f"step-{step:07d}"
    final = run_dir / name
    tmp = run_dir / f".{name}.tmp"
    for stale in run_dir.glob(".step-*.tmp"):  # left by a kill mid-save
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(tmp, model_state, cfg, tokenizer_json)
    save_file(optim_state, str(tmp / "optimizer.safetensors"))
    for rank, tensors in rng_states.items():
        save_file(_contiguous(tensors), str(tmp / f"rng-rank{rank}.safetensors"))
    atomic_write_json(tmp / "state.json", state)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    atomic_write_json(run_dir / LATEST, {"checkpoint": name, "step": step})
    steps = sorted(p for p in run_dir.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_training_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete training checkpoint of ``run_dir``, or None for a fresh run."""
    latest = run_dir / LATEST
    if not latest.is_file():
        return None
    folder = run_dir / json.loads(latest.read_text())["checkpoint"]
    return folder if (folder / "state.json").is_file() else None
