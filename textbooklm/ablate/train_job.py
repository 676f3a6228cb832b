"""One training run of an ablation arm, as a job file a launcher can hand to another process.

Why a job file: with ``launcher = "torchrun"`` the ablation's main process stays on the login node
(or rank-less) and starts ``torchrun ... -m textbooklm.ablate.train_job JOB.json`` per run; every rank
reads the same JSON. In-process training calls :func:`run_job` directly with the same fields.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from textbooklm.lm.config import TrainConfig
from textbooklm.store import atomic_write_json


def run_job(train_cfg: TrainConfig, pack_dir: Path, out: Path, tokenizer_json: Path | None) -> dict:
    from textbooklm.lm.train import train

    return train(train_cfg, pack_dir, out, tokenizer_json)


def launch(train_cfg: TrainConfig, pack_dir: Path, out: Path, tokenizer_json: Path | None, *, launcher: str,
           nproc_per_node: int = 1, extra_args: list[str] | None = None) -> None:
    """Train ``out`` (resuming it) here, or through torchrun in child processes."""
    if launcher == "inprocess":
        run_job(train_cfg, pack_dir, out, tokenizer_json)
        return
    out.mkdir(parents=True, exist_ok=True)
    job = out.parent / "train_job.json"
    atomic_write_json(job, {"train": train_cfg.model_dump(mode="json"), "pack": str(pack_dir), "out": str(out),
                            "tokenizer": str(tokenizer_json) if tokenizer_json else None})
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}",
           *(extra_args or []), "-m", "textbooklm.ablate.train_job", str(job)]
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"training {out} through torchrun failed (exit {proc.returncode}): {' '.join(cmd)}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m textbooklm.ablate.train_job JOB.json")
    job = json.loads(Path(args[0]).read_text())
    tok = Path(job["tokenizer"]) if job.get("tokenizer") else None
    run_job(TrainConfig.model_validate(job["train"]), Path(job["pack"]), Path(job["out"]), tok)


if __name__ == "__main__":
    main()
