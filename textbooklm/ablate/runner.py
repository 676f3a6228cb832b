"""``textbooklm ablate``: every arm x seed trained and measured, resumable, then the comparison.

Layout under ``RUN/ablation/``::

    validation/<hash>/             the shared held-out tokens (tokens.bin + meta.json)
    <arm>/arm.json                 the arm's definition and hash (a change wipes the arm's folder)
    <arm>/pack/                    its token pack (equal budget; finetuning arms: the exercises' train part)
    <arm>/pack-seed-<s>/           with ``resample``: seed s's own draw of documents (pretraining arms)
    <arm>/seed-<s>/train/          the training run (checkpoints at every curve point)
    <arm>/seed-<s>/eval-<hash>/    one JSON per measured point (+ sample files while sampling)
    points.csv, table.csv, comparisons.csv, summary.json, plots/*.png

Why this resumes cleanly: packs and the validation set are written last-file-atomically, training
resumes bit-exactly from its newest checkpoint, and a point counts as measured only once its JSON
is atomically in place; a re-run skips whatever exists and redoes nothing twice.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textbooklm.ablate.config import AblationConfig, ArmConfig
from textbooklm.ablate.data import (
    build_validation,
    fingerprint,
    heldout_exercises,
    pack_arm,
    resolve_dataset,
    resolve_tokenizer,
)
from textbooklm.ablate.measure import measure
from textbooklm.ablate.train_job import launch
from textbooklm.config import config_hash
from textbooklm.lm.config import TrainConfig
from textbooklm.model.checkpoint import LATEST
from textbooklm.progress import console, summary_line
from textbooklm.store import atomic_write_json

FOLDER = "ablation"


@dataclass
class ArmPlan:
    """What one arm trains: its config without the seed, its steps and where the curve points fall."""

    arm: ArmConfig
    folder: Path
    train: TrainConfig
    points: list[int]  # steps measured
    tokens_per_step: int
    tokens_before: int  # tokens its starting model had seen (the base arm's budget for finetuning)
    skipped: str | None = None
    pack_per_seed: bool = False  # resample: each seed trains on its own draw (pack-seed-<s>)

    def pack(self, seed: int) -> Path:
        return self.folder / (f"pack-seed-{seed}" if self.pack_per_seed else "pack")


def _point_steps(max_steps: int, points: int) -> list[int]:
    every = max(1, -(-max_steps // points))
    steps = list(range(every, max_steps, every))[: points - 1]
    return [*steps, max_steps]


def _train_settings(cfg: TrainConfig, max_steps: int, points: list[int]) -> TrainConfig:
    every = points[0]
    return cfg.model_copy(update={"max_steps": max_steps, "save_every": every, "eval_every": max_steps,
                                  "keep_checkpoints": len(points) + 1})


def _finished(run: Path, max_steps: int) -> bool:
    latest = run / LATEST
    return latest.is_file() and json.loads(latest.read_text()).get("step") == max_steps


def _prepare_folder(folder: Path, definition: dict[str, Any]) -> str:
    """Create (or keep) an arm folder; a different definition than last time wipes it first."""
    digest = config_hash(definition)
    record = folder / "arm.json"
    if record.is_file() and json.loads(record.read_text()).get("hash") != digest:
        console.print(f"[yellow]{folder.name}: its definition changed since the last run; starting it over[/yellow]")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, {"hash": digest, **definition})
    return digest


def holdout_fraction(asked: float | None, run_dir: Path) -> float:
    """The exercises' held-out share: as asked, else the run's decontam one, never more than decontam's.

    Why: decontam removed the functions and source files of the run's held-out exercises (at its
    ``heldout_fraction``) from every training dataset; an exercise held out only here would be scored as
    unseen while its source file is in the pretraining arms' data.
    """
    from textbooklm.run import Run

    run_cfg = Run(run_dir).cfg
    dc = getattr(run_cfg, "decontam", None) if run_cfg is not None else None
    cleaned = dc.heldout_fraction if dc is not None and dc.heldout_exercises else None
    if asked is None:
        return cleaned if cleaned is not None else 0.2
    if cleaned is not None and asked > cleaned:
        raise ValueError(f"ablate.eval.holdout_fraction {asked} is larger than the run's [decontam] heldout_fraction "
                         f"{cleaned}: the exercises in between would be scored as held out while their source files "
                         "are in the pretraining data; leave it unset or set it <= " + f"{cleaned}")
    return asked


def run_ablation(cfg: AblationConfig, run_dir: Path, workers: int | None = None) -> dict[str, Any]:
    """Train and measure every arm x seed (resuming), then write tables, plots and the summary."""
    from textbooklm.code_tasks import load_problems
    from textbooklm.model.tokenizer import load_tokenizer

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder (run `textbooklm run` first)")
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(
        update={"holdout_fraction": holdout_fraction(cfg.eval.holdout_fraction, run_dir)})})
    root = run_dir / FOLDER
    root.mkdir(exist_ok=True)
    tok_path = resolve_tokenizer(cfg.tokenizer, run_dir)
    tok = load_tokenizer(tok_path)
    device = _device(cfg.device)

    opt = cfg.train.resolved()
    B = int(opt["batch_size"])  # type: ignore[arg-type]
    T = int(cfg.train.model.resolved()["block_size"])
    max_steps = cfg.tokens // (B * T)
    if max_steps < cfg.points:
        raise ValueError(f"ablate.tokens = {cfg.tokens:,} gives {max_steps} steps of {B} x {T} tokens, fewer than "
                         f"ablate.points = {cfg.points}; raise the budget or lower the batch")

    # -- shared measurements ---------------------------------------------------------------------
    val_sets = [(n, resolve_dataset(n, run_dir, "ablate.validation", clean=False)) for n in cfg.validation]
    val_def = {"datasets": [fingerprint(d) for _, d in val_sets], "val_fraction": cfg.val_fraction,
               "n": cfg.eval.val_sequences, "seq_len": T, "tokenizer": str(tok_path.resolve())}
    val = build_validation(val_sets, tok, cfg.val_fraction, cfg.eval.val_sequences, T,
                           root / "validation" / config_hash(val_def))
    summary_line(f"ablate: shared validation set of {val.n_sequences} x {T} tokens from "
                 + ", ".join(f"{k} {v:,}" for k, v in val.sources.items()))
    # Always the yardstick for the canonical-solution NLL; `eval.humaneval` switches the sampled pass@k.
    humaneval = load_problems("humaneval")[: cfg.eval.humaneval_limit]
    try:
        ex_ds = resolve_dataset(cfg.eval.exercises, run_dir, "ablate.eval.exercises")
    except FileNotFoundError:
        ex_ds = None
    exercises = heldout_exercises(ex_ds, cfg.eval.holdout_fraction)
    eval_hash = config_hash({"eval": cfg.eval.model_dump(mode="json"), "validation": val_def,
                       "exercises": fingerprint(ex_ds) if ex_ds else None})

    # -- arms ------------------------------------------------------------------------------------
    plans: dict[str, ArmPlan] = {}
    points: list[dict[str, Any]] = []
    for arm in cfg.arms:
        plan = _plan_arm(cfg, arm, plans, run_dir, root, tok, tok_path, max_steps, B, T)
        plans[arm.name] = plan
        if plan.skipped:
            summary_line(f"ablate {arm.name}: skipped, {plan.skipped}")
            continue
        for seed in cfg.seeds:
            points += _run_seed(cfg, plan, plans, seed, tok_path, eval_hash, val, humaneval, exercises, device,
                                workers)

    from textbooklm.ablate.outputs import write_outputs

    return write_outputs(cfg, plans, points, root, run_dir,
                         notes={"exercises_heldout": len(exercises), "validation_sequences": val.n_sequences,
                                "seq_len": T, "tokens_per_arm": max_steps * B * T, "steps": max_steps})


def _device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def _plan_arm(cfg: AblationConfig, arm: ArmConfig, plans: dict[str, ArmPlan], run_dir: Path, root: Path, tok: Any,
              tok_path: Path, max_steps: int, B: int, T: int) -> ArmPlan:
    sources = [(s.dataset, resolve_dataset(s.dataset, run_dir, f"arm {arm.name}"), s.weight) for s in arm.sources]
    folder = root / arm.name
    if arm.base is None:
        definition = {"arm": arm.model_dump(mode="json"), "train": cfg.train.model_dump(mode="json"),
                      "tokens": cfg.tokens, "val_fraction": cfg.val_fraction, "pack_seed": cfg.pack_seed,
                      "resample": cfg.resample,
                      "data": [fingerprint(d) for _, d, _ in sources], "tokenizer": str(tok_path.resolve())}
        _prepare_folder(folder, definition)
        pts = _point_steps(max_steps, cfg.points)
        plan = ArmPlan(arm, folder, _train_settings(cfg.train, max_steps, pts), pts, B * T, 0,
                       pack_per_seed=cfg.resample)
        for seed in cfg.seeds if cfg.resample else [None]:
            # One sequence more than the steps read: PackedTokens drops each shard's partial tail.
            pack_arm(sources, tok, tok_path, plan.pack(seed or 0), total_tokens=(max_steps * B + B) * (T + 1),
                     val_fraction=cfg.val_fraction, seed=cfg.pack_seed + (seed or 0))
        return plan

    base = plans[arm.base]
    ft = cfg.finetune
    assert ft is not None  # checked by the config
    base_hash = json.loads((base.folder / "arm.json").read_text())["hash"]  # a changed base redoes this arm
    definition = {"arm": arm.model_dump(mode="json"), "base": base_hash,
                  "finetune": ft.model_dump(mode="json"), "finetune_tokens": cfg.finetune_tokens,
                  "holdout_fraction": cfg.eval.holdout_fraction, "data": [fingerprint(d) for _, d, _ in sources]}
    _prepare_folder(folder, definition)
    if base.skipped:
        return ArmPlan(arm, folder, ft, [], 0, 0, skipped=f"its base arm {arm.base} was skipped")
    index = pack_arm(sources, tok, tok_path, folder / "pack", total_tokens=None, loss_on="completion",
                     val_fraction=cfg.eval.holdout_fraction, seed=cfg.pack_seed)
    if index["splits"]["train"]["tokens"] == 0:
        names = ", ".join(s.dataset for s in arm.sources)
        why = f"no training tokens in {names}: nothing there passed verification"
        return ArmPlan(arm, folder, ft, [], 0, 0, skipped=why)
    ft_B = int(ft.resolved()["batch_size"])  # type: ignore[arg-type]
    ft_T = int(ft.model.block_size or T)
    steps = max(1, cfg.finetune_tokens // (ft_B * ft_T)) if cfg.finetune_tokens else ft.max_steps
    pts = _point_steps(steps, min(cfg.points, steps))
    settings = _train_settings(ft.model_copy(update={"loss_on": "completion"}), steps, pts)
    return ArmPlan(arm, folder, settings, pts, ft_B * ft_T, base.points[-1] * base.tokens_per_step)


def _run_seed(cfg: AblationConfig, plan: ArmPlan, plans: dict[str, ArmPlan], seed: int, tok_path: Path,
              eval_hash: str, val: Any, humaneval: list, exercises: list, device: str,
              workers: int | None) -> list[dict[str, Any]]:
    run = plan.folder / f"seed-{seed}"
    train_dir = run / "train"
    settings = plan.train.model_copy(update={"seed": seed})
    if plan.arm.base is not None:
        base = plans[plan.arm.base]
        start = base.folder / f"seed-{seed}" / "train" / f"step-{base.points[-1]:07d}"
        settings = settings.model_copy(update={"init_from": str(start)})
    if not _finished(train_dir, plan.points[-1]):
        console.rule(f"ablate {plan.arm.name} ({plan.arm.title}), seed {seed}: training")
        launch(settings, plan.pack(seed), train_dir, tok_path, launcher=cfg.launcher,
               nproc_per_node=cfg.nproc_per_node, extra_args=cfg.torchrun_args)
    out: list[dict[str, Any]] = []
    measured = run / f"eval-{eval_hash}"
    for step in plan.points:
        record = measured / f"step-{step:07d}.json"
        if record.is_file():
            out.append(json.loads(record.read_text()))
            continue
        final = step == plan.points[-1]
        ckpt = train_dir / f"step-{step:07d}"
        if not (ckpt / "model.safetensors").is_file():
            raise FileNotFoundError(f"{ckpt}: checkpoint of curve point {step} is missing; delete {run} to retrain")
        console.print(f"ablate {plan.arm.name} seed {seed}: measuring step {step}")
        metrics = measure(ckpt, measured / f"step-{step:07d}", val=val, humaneval=humaneval, exercises=exercises,
                          cfg=cfg.eval, sampled=final or cfg.eval.pass_at_every_point, device=device, workers=workers)
        row = {"arm": plan.arm.name, "seed": seed, "step": step,
               "tokens": plan.tokens_before + step * plan.tokens_per_step, "final": final, "metrics": metrics}
        atomic_write_json(record, row)
        out.append(row)
    _slim_checkpoints(train_dir, plan.points[-1])
    return out


def _slim_checkpoints(train_dir: Path, final: int) -> None:
    """Keep every curve point's weights (to re-measure) but only the final checkpoint's optimizer state."""
    for ckpt in train_dir.glob("step-*"):
        if ckpt.name != f"step-{final:07d}":
            for name in ("optimizer.safetensors", *[p.name for p in ckpt.glob("rng-rank*.safetensors")]):
                (ckpt / name).unlink(missing_ok=True)
