"""Training loop: pretraining and finetuning of the phi model on a token pack.

What makes it exact and scalable:

* **Data order is a pure function of the step.** Step ``s`` of epoch ``e`` takes sequences
  ``perm_e[k*B:(k+1)*B]`` of a permutation seeded by (seed, e). Resuming needs only the step, and
  under DDP rank ``r`` takes its ``B/W`` slice of the same global batch, so 2 processes see exactly
  what 1 process sees.
* **Loss normalized by the global batch's target-token count** (known before the step because the
  batch is), so gradient accumulation and DDP's gradient averaging give the same gradient as one
  big batch, also when finetuning masks out prompt tokens.
* **Checkpoints hold everything else**: weights, AdamW moments, per-rank RNG (dropout), grad scaler
  and the step, in safetensors + JSON, written atomically. A SIGKILL loses at most the steps since
  the last checkpoint, and the metrics CSV is cut back to that step on resume.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from textbooklm.lm.config import TrainConfig
from textbooklm.lm.pack import PackedTokens
from textbooklm.model.checkpoint import load_model, load_training_checkpoint, save_training_checkpoint
from textbooklm.model.model import PhiConfig, PhiForCausalLM, describe, param_groups
from textbooklm.model.train_log import TrainLog, detect_peak_flops, read_metrics
from textbooklm.progress import console, summary_line


def lr_at(step: int, opt: dict[str, Any], max_steps: int, min_lr_ratio: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then the schedule's decay."""
    peak, warmup = float(opt["lr"]), int(opt["warmup_steps"])  # type: ignore[arg-type]
    if step < warmup:
        return peak * (step + 1) / warmup
    if opt["schedule"] == "constant":
        return peak
    frac = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    floor = peak * min_lr_ratio
    if opt["schedule"] == "linear":
        return floor + (peak - floor) * (1 - frac)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * frac))


class BatchOrder:
    """Which sequences form global batch ``step``: a seeded permutation per epoch, sliced."""

    def __init__(self, n_sequences: int, global_batch: int, seed: int):
        if n_sequences < global_batch:
            raise ValueError(f"the pack has {n_sequences} training sequences, fewer than one global batch "
                             f"({global_batch}); pack more data or lower train.batch_size")
        self.n, self.batch, self.seed = n_sequences, global_batch, seed
        self.steps_per_epoch = n_sequences // global_batch
        self._epoch, self._perm = -1, np.zeros(0, np.int64)

    def batch_ids(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._epoch = epoch
        return self._perm[k * self.batch : (k + 1) * self.batch]


def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or cfg.dtype == "float32":
        return None
    if cfg.dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def train(cfg: TrainConfig, data_dir: Path, out: Path, tokenizer_json: Path | None = None,
          announce: bool = True) -> dict[str, Any]:
    """Train (or resume) into ``out``; returns a summary dict (also the stage's metrics row).

    ``announce=False``: the line is returned, not printed (a stage prints its ledger's line instead)."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    rank, world, local_rank = _dist_env()
    distributed = world > 1
    owns_group = distributed and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    main = rank == 0
    out.mkdir(parents=True, exist_ok=True)

    opt = cfg.resolved()
    B = int(opt["batch_size"])  # type: ignore[arg-type]
    if B % world:
        raise ValueError(f"train.batch_size {B} is not divisible by the {world} processes")
    shape = cfg.model.resolved()
    src = None
    if cfg.init_from:
        # Finetuning: the checkpoint decides the architecture; the config may change only the
        # context length (block_size) and dropout.
        src, src_folder = load_model(cfg.init_from)
        shape = {**src.cfg.to_dict(), "dropout": cfg.model.dropout}
        shape.pop("vocab_size")
        if cfg.model.block_size is not None:
            shape["block_size"] = cfg.model.block_size
    T = int(shape["block_size"])
    train_data = PackedTokens(data_dir, "train", T)
    val_data = PackedTokens(data_dir, "val", T)
    vocab = int(train_data.index["vocab_size"])
    order = BatchOrder(len(train_data), B, cfg.seed)
    use_mask = cfg.loss_on == "completion"
    if use_mask and not train_data.index.get("has_mask"):
        raise ValueError(f"{data_dir}: train.loss_on='completion' needs a pack of prompt/completion data "
                         f"packed with loss_on='completion' (this pack has no loss mask)")

    # -- model -------------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)  # identical init on every rank
    pcfg = PhiConfig(vocab_size=vocab, **{k: v for k, v in shape.items()})  # type: ignore[arg-type]
    model = PhiForCausalLM(pcfg)
    if src is not None:
        if src.cfg.vocab_size != vocab:
            raise ValueError(f"{src_folder}: vocabulary of {src.cfg.vocab_size} tokens does not match the pack's "
                             f"{vocab} (pack with the tokenizer the checkpoint was trained with)")
        model.load_state_dict(src.state_dict())
        del src
    model.to(device)
    n_params = model.num_params()
    flops_per_token = model.flops_per_token(T)
    if main:
        console.print(describe(model))
    raw_model = model
    if distributed:
        use_fsdp = cfg.parallel == "fsdp" or (cfg.parallel == "auto" and n_params > 1e9)
        if use_fsdp:
            from torch.distributed.fsdp import fully_shard

            for block in model.layers:
                fully_shard(block)
            fully_shard(model)
        else:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    optimizer = torch.optim.AdamW(
        param_groups(raw_model, float(opt["weight_decay"])),  # type: ignore[arg-type]
        lr=float(opt["lr"]), betas=opt["betas"], eps=float(opt["eps"]),  # type: ignore[arg-type]
        fused=device.type == "cuda",
    )
    amp_dtype = _autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    sd_opts = StateDictOptions(full_state_dict=True, cpu_offload=True)

    # -- resume ------------------------------------------------------------------------------
    start_step, tokens_seen = 0, 0
    ckpt = load_training_checkpoint(out)
    if ckpt is not None:
        state = json.loads((ckpt / "state.json").read_text())
        pos = state["data"]
        if (pos["global_batch"], pos["seq_len"], pos["seed"]) != (B, T, cfg.seed):
            raise ValueError(f"{ckpt}: checkpoint was trained with batch {pos['global_batch']}, seq "
                             f"{pos['seq_len']}, seed {pos['seed']}; this config has {B}, {T}, {cfg.seed}. "
                             "Resuming would change the data order: use a new output folder.")
        set_model_state_dict(model, load_file(str(ckpt / "model.safetensors")), options=sd_opts)
        flat = load_file(str(ckpt / "optimizer.safetensors"))
        osd: dict[str, Any] = {"state": {}, "param_groups": state["optimizer_param_groups"]}
        for key, value in flat.items():
            name, field = key.split("::")
            osd["state"].setdefault(name, {})[field] = value
        for g in osd["param_groups"]:
            g["betas"] = tuple(g["betas"])
        set_optimizer_state_dict(model, optimizer, osd, options=sd_opts)
        rng_file = ckpt / f"rng-rank{rank}.safetensors"
        if rng_file.is_file():
            rng = load_file(str(rng_file))
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], device)
        if state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        start_step, tokens_seen = int(state["step"]), int(state["tokens"])
        if main:
            console.print(f"[yellow]resuming from {ckpt} (step {start_step})[/yellow]")
    else:
        torch.manual_seed(cfg.seed + 1 + rank)  # dropout streams differ per rank, fixed per seed

    # -- logging -----------------------------------------------------------------------------
    log = TrainLog(out, start_step, cfg.max_steps, enabled=main)
    peak = cfg.peak_flops or detect_peak_flops(device)

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    def batch_tensors(ids: np.ndarray):
        x, y, m = train_data.get(ids)
        return (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device),
                torch.from_numpy(m).to(device=device, dtype=torch.float32))

    def sequence_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[..., :vocab].float().flatten(0, 1), y.flatten(), reduction="none").view_as(y)

    @torch.no_grad()
    def evaluate() -> float | None:
        if len(val_data) == 0:
            return None
        model.eval()
        n = min(len(val_data), cfg.eval_batches * cfg.micro_batch_size)
        ids = np.arange(n)[rank::world]
        total = torch.zeros(2, device=device, dtype=torch.float64)
        for i in range(0, len(ids), cfg.micro_batch_size):
            x, y, m = val_data.get(ids[i : i + cfg.micro_batch_size])
            x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            m = torch.from_numpy(m).to(device=device, dtype=torch.float64)
            if not use_mask:
                m = torch.ones_like(m)
            with autocast():
                losses = sequence_losses(model(x), y)
            total += torch.stack([(losses.double() * m).sum(), m.sum()])
        if distributed:
            dist.all_reduce(total)
        model.train()
        return float(total[0] / total[1].clamp(min=1))

    def save(step: int, val_loss: float | None) -> None:
        msd = get_model_state_dict(model, options=sd_opts)
        osd = get_optimizer_state_dict(model, optimizer, options=sd_opts)
        rng = _rng_state(device)
        rngs: list[Any] = [rng]
        if distributed:
            rngs = [None] * world
            dist.all_gather_object(rngs, {k: v.cpu() for k, v in rng.items()})
        if main:
            flat = {f"{name}::{field}": v for name, st in osd["state"].items()
                    for field, v in st.items() if torch.is_tensor(v)}
            groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in osd["param_groups"]]
            state = {
                "format": "textbooklm.train/1", "step": step, "tokens": tokens_seen, "world_size": world,
                "data": {"global_batch": B, "seq_len": T, "seed": cfg.seed, "step": step,
                         "epoch": step // order.steps_per_epoch, "batch_in_epoch": step % order.steps_per_epoch,
                         "pack": str(data_dir)},
                "scheduler": {"schedule": opt["schedule"], "lr": opt["lr"], "warmup_steps": opt["warmup_steps"],
                              "max_steps": cfg.max_steps, "min_lr_ratio": cfg.min_lr_ratio,
                              "next_lr": lr_at(step, opt, cfg.max_steps, cfg.min_lr_ratio)},
                "optimizer_param_groups": groups,
                "grad_scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "val_loss": val_loss, "train_config": cfg.model_dump(mode="json"),
            }
            save_training_checkpoint(out, step, msd, pcfg, {k: v.contiguous() for k, v in flat.items()}, state,
                                     {r: st for r, st in enumerate(rngs)}, tokenizer_json, cfg.keep_checkpoints)
        if distributed:
            dist.barrier()

    # -- the loop ----------------------------------------------------------------------------
    per_rank = B // world
    micro = min(cfg.micro_batch_size, per_rank)
    model.train()
    last_loss = val_loss = None
    if start_step >= cfg.max_steps and main:  # finished already: report what the run ended with
        rows = read_metrics(out)
        last_loss = float(rows[-1]["loss"]) if rows else None
        val_loss = state.get("val_loss")
    t_last, tok_last = time.perf_counter(), tokens_seen
    for step in range(start_step, cfg.max_steps):
        lr = lr_at(step, opt, cfg.max_steps, cfg.min_lr_ratio)
        for g in optimizer.param_groups:
            g["lr"] = lr
        global_ids = order.batch_ids(step)
        if use_mask:
            # Global count of target tokens: every rank divides by the same number (exact DDP/accumulation).
            denom = float(train_data.get(global_ids)[2].sum())
        else:
            denom = float(B * T)
        denom = max(denom, 1.0)
        ids = global_ids[rank * per_rank : (rank + 1) * per_rank]
        step_loss = torch.zeros((), device=device, dtype=torch.float64)
        chunks = [ids[i : i + micro] for i in range(0, per_rank, micro)]
        for ci, chunk in enumerate(chunks):
            x, y, m = batch_tensors(chunk)
            if not use_mask:
                m = torch.ones_like(m)
            sync = ci == len(chunks) - 1 or not distributed
            ctx = contextlib.nullcontext() if sync or not hasattr(model, "no_sync") else model.no_sync()
            if hasattr(model, "set_requires_gradient_sync"):  # FSDP2: reduce-scatter on the last micro-batch
                model.set_requires_gradient_sync(sync)
            with ctx:
                with autocast():
                    logits = model(x)
                loss_sum = (sequence_losses(logits, y) * m).sum()
                # x world: DDP averages gradients over ranks; we want the sum over the global batch.
                scaler.scale(loss_sum * (world / denom)).backward()
            step_loss += loss_sum.detach().double()
        if distributed:
            dist.all_reduce(step_loss)
        scaler.unscale_(optimizer)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += B * T
        last_loss = float(step_loss / denom)
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.max_steps:
            val_loss = evaluate()
        evaluated = done % cfg.eval_every == 0 or done == cfg.max_steps
        if evaluated or done % cfg.log_every == 0 or done == start_step + 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            tps = (tokens_seen - tok_last) / max(now - t_last, 1e-9)
            t_last, tok_last = now, tokens_seen
            mfu = tps * flops_per_token / (peak * world) if peak else None
            log.write(done, tokens_seen, last_loss, val_loss if evaluated else None, lr, float(grad_norm), tps, mfu)
        if done % cfg.save_every == 0 or done == cfg.max_steps:
            save(done, val_loss)
    log.close()
    summary = {"steps": cfg.max_steps, "tokens": tokens_seen, "parameters": n_params,
               "flops_per_token": flops_per_token, "final_loss": last_loss, "final_val_loss": val_loss,
               "checkpoint": str(out / f"step-{cfg.max_steps:07d}")}
    if main:
        line = (f"train: {cfg.max_steps} steps, {tokens_seen:,} tokens, {n_params / 1e6:.2f}M params, "
                f"final loss {last_loss if last_loss is not None else float('nan'):.4f}"
                + (f", val loss {val_loss:.4f}" if val_loss is not None else "") + f"; checkpoint in {out}")
        summary["line"] = line
        if announce:
            summary_line(line)
    if distributed:
        dist.barrier()
    if owns_group:
        dist.destroy_process_group()
    return summary
