"""What training reports, and where: console (rich), ``metrics.csv`` and TensorBoard; MFU.

Kept apart from the loop so ``train.py`` reads as the algorithm. On resume the CSV is cut back to
the checkpoint's step and TensorBoard purges later events, so a killed-and-resumed run's logs look
exactly like an uninterrupted run's.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from textbooklm.progress import console

METRICS = "metrics.csv"
COLUMNS = ["step", "tokens", "loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "mfu"]

# Dense bf16 peak FLOP/s by GPU name fragment (vendor data sheets); override with train.peak_flops.
PEAK_FLOPS = [
    ("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12),
    ("L4", 121e12), ("A10G", 125e12), ("A10", 125e12), ("RTX 4090", 165e12), ("RTX 3090", 71e12),
    ("V100", 125e12), ("T4", 65e12),
]


def detect_peak_flops(device: torch.device) -> float | None:
    """Peak FLOP/s of a known GPU (None on CPU or an unknown GPU: MFU is then not shown)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for frag, flops in PEAK_FLOPS if frag in name), None)


def _read(path: Path, upto_step: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        # A row cut short by a kill mid-write has missing fields (None): it is dropped, not trusted.
        return [r for r in csv.DictReader(fh)
                if None not in r.values() and None not in r and int(r["step"]) <= upto_step]


def read_metrics(run_dir: str | Path) -> list[dict[str, str]]:
    """Rows of a run's metrics.csv (for tests, reports and plots)."""
    return _read(Path(run_dir) / METRICS, 1 << 62)


class TrainLog:
    """One row per logged step to CSV + TensorBoard + console. Only rank 0 writes (``enabled``)."""

    def __init__(self, out: Path, start_step: int, max_steps: int, enabled: bool):
        self.max_steps, self.enabled = max_steps, enabled
        self._fh = None
        self._tb = None
        if not enabled:
            return
        kept = _read(out / METRICS, start_step)
        with (out / METRICS).open("w", newline="") as fh:  # cut back to the checkpoint's step
            w = csv.DictWriter(fh, COLUMNS)
            w.writeheader()
            w.writerows(kept)
        self._fh = (out / METRICS).open("a", newline="")
        from torch.utils.tensorboard import SummaryWriter

        if start_step == 0:  # a fresh start: an attempt killed before its first checkpoint left events
            for stale in (out / "tensorboard").glob("events.out.tfevents.*"):
                stale.unlink()
        # Resumed: events after the checkpoint's step are purged (TensorBoard honours purge_step).
        self._tb = SummaryWriter(str(out / "tensorboard"), purge_step=start_step + 1)

    def write(self, step: int, tokens: int, loss: float, val_loss: float | None, lr: float, grad_norm: float,
              tokens_per_s: float, mfu: float | None) -> None:
        if not self.enabled:
            return
        row: dict[str, Any] = {
            "step": step, "tokens": tokens, "loss": f"{loss:.6f}",
            "val_loss": "" if val_loss is None else f"{val_loss:.6f}", "lr": f"{lr:.6g}",
            "grad_norm": f"{grad_norm:.6f}", "tokens_per_s": f"{tokens_per_s:.1f}",
            "mfu": "" if mfu is None else f"{mfu:.4f}",
        }
        csv.DictWriter(self._fh, COLUMNS).writerow(row)
        self._fh.flush()
        for key in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "val_loss"):
            if row[key] != "":
                self._tb.add_scalar("val/loss" if key == "val_loss" else f"train/{key}", float(row[key]), step)
        console.print(
            f"step {step}/{self.max_steps} loss {loss:.4f}"
            + (f" val {val_loss:.4f}" if val_loss is not None else "")
            + f" lr {lr:.2e} gnorm {grad_norm:.3f} {tokens_per_s:,.0f} tok/s"
            + (f" MFU {mfu:.1%}" if mfu is not None else "")
        )

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._tb is not None:
            self._tb.close()
