"""Training: exact resume after SIGKILL, DDP on 2 gloo processes equals 1 process, finetuning masks,
learning-rate presets. Real subprocesses, real checkpoints, real (tiny) models."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from textbooklm.lm.config import TrainConfig
from textbooklm.lm.train import lr_at
from textbooklm.model.train_log import read_metrics

TRAIN = {"model": {"preset": "nano"}, "batch_size": 8, "micro_batch_size": 4, "log_every": 1,
         "eval_every": 5, "eval_batches": 1, "threads": 1}


def _write_cfg(path: Path, **kw) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in {**TRAIN, **kw}.items() if not isinstance(v, dict)]
    lines.append("[model]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in {**TRAIN["model"], **kw.get("model", {})}.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _train_cmd(pack: Path, out: Path, cfg: Path) -> list[str]:
    return [sys.executable, "-m", "textbooklm.cli", "train", "--data", str(pack), "--out", str(out),
            "--config", str(cfg)]


def _losses(run: Path) -> list[tuple[int, str, str, str]]:
    return [(int(r["step"]), r["loss"], r["grad_norm"], r["val_loss"]) for r in read_metrics(run)]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_loss_curve(tmp_path, code_pack):
    steps = 24
    # dropout on: the resumed run must also restore the RNG to match
    cfg = _write_cfg(tmp_path / "c.toml", max_steps=steps, save_every=3, model={"dropout": 0.1})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"
    subprocess.run(_train_cmd(code_pack, full, cfg), check=True, env=env, capture_output=True, timeout=300)

    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(code_pack, run, cfg), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        latest = run / "latest.json"
        if latest.is_file() and json.loads(latest.read_text())["step"] >= 6:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads((run / "latest.json").read_text())["step"]
    assert killed_at < steps, "training finished before it could be killed"
    subprocess.run(_train_cmd(code_pack, run, cfg), check=True, env=env, capture_output=True, timeout=300)

    assert [s for s, *_ in _losses(run)] == list(range(1, steps + 1))
    assert _losses(run) == _losses(full)  # loss, grad norm and validation loss, bit for bit
    assert sum(1 for *_, v in _losses(run) if v) == steps // 5 + 1
    a = load_file(str(full / f"step-{steps:07d}" / "model.safetensors"))
    b = load_file(str(run / f"step-{steps:07d}" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DIST_STEPS = 4


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory, code_pack) -> Path:
    """One process, micro batch 4 (2 accumulation steps of the global batch of 8)."""
    tmp = tmp_path_factory.mktemp("single")
    cfg = _write_cfg(tmp / "one.toml", max_steps=DIST_STEPS, save_every=DIST_STEPS, micro_batch_size=4)
    subprocess.run(_train_cmd(code_pack, tmp / "run", cfg), check=True, capture_output=True, timeout=300,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return tmp / "run"


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_gloo_processes_equal_one_process(tmp_path, code_pack, single_process_run, parallel):
    """torchrun, 2 ranks x micro batch 2 x 2 accumulation steps = the same global batch of 8."""
    cfg = _write_cfg(tmp_path / "two.toml", max_steps=DIST_STEPS, save_every=DIST_STEPS, micro_batch_size=2,
                     parallel=parallel)
    run = tmp_path / "dist"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "textbooklm.cli", "train", "--data", str(code_pack),
           "--out", str(run), "--config", str(cfg)]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((run / f"step-{DIST_STEPS:07d}" / "state.json").read_text())
    assert state["world_size"] == 2
    a = load_file(str(single_process_run / f"step-{DIST_STEPS:07d}" / "model.safetensors"))
    b = load_file(str(run / f"step-{DIST_STEPS:07d}" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-5, rtol=1e-4, msg=k)
    la = [float(r["loss"]) for r in read_metrics(single_process_run)]
    lb = [float(r["loss"]) for r in read_metrics(run)]
    assert la == pytest.approx(lb, abs=1e-5)


def test_optimizer_presets_follow_the_papers():
    pre = TrainConfig(optimizer="phi-1-pretrain").resolved()
    assert (pre["lr"], pre["warmup_steps"], pre["schedule"], pre["weight_decay"], pre["batch_size"]) == \
        (1e-3, 750, "linear", 0.1, 1024)
    ft = TrainConfig(optimizer="phi-1-finetune").resolved()
    assert (ft["lr"], ft["warmup_steps"], ft["weight_decay"], ft["batch_size"]) == (1e-4, 50, 0.01, 256)
    p15 = TrainConfig(optimizer="phi-1.5").resolved()
    assert (p15["lr"], p15["schedule"], p15["betas"], p15["eps"], p15["weight_decay"]) == \
        (2e-4, "constant", (0.9, 0.98), 1e-7, 0.1)
    assert TrainConfig(optimizer="phi-1.5", lr=1e-3).resolved()["lr"] == 1e-3  # explicit wins
    # warmup reaches the peak, linear decay reaches the floor at the last step
    assert lr_at(749, pre, 10_000, 0.0) == pytest.approx(1e-3)
    assert lr_at(10_000, pre, 10_000, 0.0) == pytest.approx(0.0)
    assert lr_at(5000, p15, 10_000, 0.0) == 2e-4
    with pytest.raises(ValueError):
        TrainConfig(optimizr="tiny")


def test_finetune_on_completions_only(tmp_path, bpe_tokenizer, code_pack):
    """Finetune from a pretrained checkpoint with loss on completions; the prompt-only text's loss is
    not what goes down the most, and 'completion' on a maskless pack is refused."""
    from textbooklm.lm.pack import pack
    from textbooklm.lm.train import train
    from textbooklm.model.tokenizer import load_tokenizer
    from textbooklm.store import write_dataset

    base = TrainConfig.model_validate({**TRAIN, "max_steps": 2, "save_every": 2})
    train(base, code_pack, tmp_path / "pre")
    rows = [{"prompt": f'def add_{i}(x):\n    """Add {i} to x."""\n', "completion": f"    return x + {i}\n"}
            for i in range(200)]
    ds = write_dataset(tmp_path / "ex", rows, stage="t")
    pack([("ex", ds, 1.0)], load_tokenizer(bpe_tokenizer), tmp_path / "fp", loss_on="completion",
         val_fraction=0.1, tokenizer_path=str(bpe_tokenizer))
    # model preset 'tiny' in the config: the checkpoint's (nano) architecture wins when finetuning
    ft = TrainConfig.model_validate({**TRAIN, "model": {"preset": "tiny"}, "max_steps": 6, "save_every": 6,
                                     "loss_on": "completion",
                                     "init_from": str(tmp_path / "pre"), "optimizer": "phi-1-finetune",
                                     "warmup_steps": 1, "lr": 3e-3, "batch_size": 8})
    summary = train(ft, tmp_path / "fp", tmp_path / "ft")
    losses = [float(r["loss"]) for r in read_metrics(tmp_path / "ft")]
    assert losses[-1] < losses[0]
    assert summary["final_val_loss"] is not None
    assert json.loads((tmp_path / "ft" / "step-0000006" / "textbooklm.json").read_text())["model"]["n_embd"] == 64
    assert list((tmp_path / "ft" / "tensorboard").glob("events.out.tfevents.*"))
    state = json.loads((tmp_path / "ft" / "step-0000006" / "state.json").read_text())
    assert state["data"]["step"] == 6 and state["optimizer_param_groups"][0]["weight_decay"] == 0.01
    with pytest.raises(ValueError, match="loss mask"):
        train(ft, code_pack, tmp_path / "bad")


def test_metrics_row_cut_by_a_kill_is_dropped(tmp_path):
    from textbooklm.model.train_log import COLUMNS, TrainLog

    header = ",".join(COLUMNS)
    (tmp_path / "metrics.csv").write_text(f"{header}\n1,512,6.9,,0.001,1.0,100,\n2,1024,6.8,,0.001,1.0,100,\n3,15")
    log = TrainLog(tmp_path, start_step=2, max_steps=4, enabled=True)
    log.write(3, 1536, 6.7, None, 0.001, 0.9, 120.0, None)
    log.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == ["1", "2", "3"]
    assert read_metrics(tmp_path)[-1]["loss"] == "6.700000"
