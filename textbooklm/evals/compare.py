"""Between the evaluated models: paired comparisons on the same sets, and each training run's own loss.

Why two kinds kept apart: a comparison row must compare like with like, so models are compared only
metric by metric on the same units (refused otherwise). A training run's last validation loss was
measured on that run's own validation split (pretraining: held-out corpus documents; finetuning:
held-out exercises), so it is reported as what it is, per run, and never put side by side with
another run's as if it were one measurement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textbooklm.evals.measures import Measured
from textbooklm.evals.uncertainty import PairedComparison, paired_comparison


def compare_models(order: list[str], measured: dict[str, dict[str, Measured]],
                   seed: int = 0) -> list[PairedComparison]:
    """Each model against the one before it in ``order`` (as ``eval.models`` lists them), metric by metric."""
    out = []
    for prev, this in zip(order, order[1:], strict=False):
        for metric, a in measured[prev].items():
            b = measured[this].get(metric)
            if b is None or not a.ids:
                continue
            if a.ids != b.ids:
                raise ValueError(f"eval: {metric} of {prev} and {this} were measured on different units "
                                 f"({len(a.ids)} vs {len(b.ids)}): refusing to compare them")
            out.append(paired_comparison(f"{prev} -> {this}", metric, (a.num, a.den), (b.num, b.den),
                                         a.higher_is_better, unit=a.unit, seed=seed))
    return out


def training_validation_loss(folder: Path) -> dict[str, Any] | None:
    """The last validation loss the training run in ``folder`` logged, and the split it was measured on."""
    from textbooklm.model.checkpoint import resolve_checkpoint
    from textbooklm.model.train_log import read_metrics

    for run in (folder / "train", folder):
        if not (run / "metrics.csv").is_file():
            continue
        rows = [r for r in read_metrics(run) if r.get("val_loss") not in (None, "")]
        if not rows:
            return None
        pack = None
        try:
            state = json.loads((resolve_checkpoint(run) / "state.json").read_text())
            pack = state.get("data", {}).get("pack")
        except (FileNotFoundError, ValueError, OSError):
            pass
        sources = _pack_sources(Path(pack)) if pack else []
        on = (f"the validation split of its own training pack {pack}" + (f" ({', '.join(sources)})" if sources else "")
              if pack else "its own training data's validation split")
        return {"last validation loss": round(float(rows[-1]["val_loss"]), 6), "step": int(float(rows[-1]["step"])),
                "measured on": on, "note": "this run's own split: not comparable across models"}
    return None


def _pack_sources(pack: Path) -> list[str]:
    try:
        return [str(s["dataset"]) for s in json.loads((pack / "index.json").read_text()).get("sources", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return []
