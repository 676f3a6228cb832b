"""The model area's report sections: the tokenizer, the pack's mixture and repetition, and each
training run as a wandb-style page (loss with validation loss, learning rate, gradient norm, tokens/s).

Curves come from the training run that finished (``train/metrics.csv`` of the stage), never from a
killed attempt's leftover logs. The pack warns when a source is repeated more than
:data:`MAX_EPOCHS` times: past about 4 epochs, repeated tokens are worth much less than fresh ones
(Muennighoff et al. 2023, "Scaling Data-Constrained Language Models").
"""

from __future__ import annotations

import csv
from pathlib import Path

from textbooklm.reporting import html as H
from textbooklm.reporting import plots
from textbooklm.reporting.section import Section
from textbooklm.reporting.view import RunView

MAX_EPOCHS = 4.0


def tokenizer_section(view: RunView) -> Section:
    return Section(body=H.lead(view.line("tokenizer")))


def pack_section(view: RunView) -> Section:
    index = view.json("pack", "index.json")
    body = H.lead(view.line("pack"))
    if not isinstance(index, dict):
        return Section(body=body + H.missing("index.json is missing: no mixture figures."))
    sources = [s for s in index.get("sources") or [] if isinstance(s, dict)]
    names = [s.get("dataset", "?") for s in sources]
    packed = [s.get("packed") or {} for s in sources]
    tokens = [float(p.get("tokens") or 0) for p in packed]
    epochs = [p.get("epochs") for p in packed]
    if sources:
        body += H.figure(plots.mixture(names, tokens, epochs, "Pack mixture: tokens by source"), "pack mixture")
        total = sum(tokens) or 1.0
        body += H.table(["source", "weight", "unique train tokens", "packed tokens", "share", "epochs", "capped"],
                        [(n, s.get("weight"), s.get("train_tokens"), int(t), f"{t / total:.1%}", e,
                          "yes" if p.get("capped") else "")
                         for n, s, t, e, p in zip(names, sources, tokens, epochs, packed, strict=True)],
                        "epochs = packed tokens / the source's unique training tokens")
    warnings = [f"pack: {w}" for w in index.get("warnings") or []]
    for n, e in zip(names, epochs, strict=True):
        if e is not None and e > MAX_EPOCHS:
            warnings.append(f"heavy repetition in the pack: {n} is repeated {e:.1f} times (more than {MAX_EPOCHS:g} "
                            "epochs, where repeated tokens stop being worth fresh ones)")
    splits = index.get("splits") or {}
    story = []
    if splits.get("train"):
        mix = ", ".join(f"{n} {t / (sum(tokens) or 1):.0%}" + (f" x{e:.2f}" if e is not None else "")
                        for n, t, e in zip(names, tokens, epochs, strict=True))
        story.append(f"{splits['train'].get('tokens', 0):,} training tokens packed ({mix} epochs), "
                     f"{(splits.get('val') or {}).get('tokens', 0):,} held out for validation")
    return Section(body=body, warnings=warnings, story=story)


def _curves(path: Path) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """Panels from a training log: loss and val loss, learning rate, gradient norm, tokens per second."""
    try:
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        return {}

    def line(col: str) -> tuple[list[float], list[float]]:
        pts = [(float(r["step"]), float(r[col])) for r in rows if r.get(col) not in (None, "")]
        return [p[0] for p in pts], [p[1] for p in pts]

    return {"loss (nats/token)": {"train": line("loss"), "validation": line("val_loss")},
            "learning rate": {"lr": line("lr")}, "gradient norm": {"grad norm": line("grad_norm")},
            "throughput (tokens/s)": {"tokens/s": line("tokens_per_s")}}


def _train_section(view: RunView, stage: str) -> Section:
    line = view.line(stage)
    body = H.lead(line)
    curves = _curves(view.artefact(stage, "train") / "metrics.csv")
    if curves:
        body += H.figure(plots.panels(curves, f"{stage}: the finished run's log", "step"), f"{stage} training curves")
    else:
        body += H.missing("no training log (train/metrics.csv) in this stage's folder")
    # The training words alone (finetuning's line starts with the documents of its own pack).
    brief = str(view.summary(stage).get("trained") or line).split(";")[0].removeprefix(f"{stage}: ")
    brief = brief.removeprefix("train: ")
    return Section(body=body, story=[brief] if brief else [])


def pretrain_section(view: RunView) -> Section:
    return _train_section(view, "pretrain")


def finetune_section(view: RunView) -> Section:
    return _train_section(view, "finetune")
