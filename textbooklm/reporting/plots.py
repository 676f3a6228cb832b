"""Plots for the run report, rendered with matplotlib (Agg) straight to PNG bytes.

Why PNG bytes and not files: the report is one self-contained HTML file, so every plot is embedded
as a ``data:`` URI and the file can be mailed or attached to an issue as it is.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def to_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _finish(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str,
              log: bool = False) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(range(len(values)), values, color="#3b6ea8")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if log and any(v > 0 for v in values):
        ax.set_yscale("log")
    return _finish(fig)


def funnel_chart(stages: Sequence[str], kept: Sequence[int], dropped: Sequence[int]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = range(len(stages))
    ax.bar(x, kept, label="kept", color="#3b8a4f")
    ax.bar(x, dropped, bottom=kept, label="dropped", color="#c0504d")
    ax.set_xticks(list(x), stages, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("records")
    ax.set_title("Records out of each stage")
    ax.legend()
    return _finish(fig)


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str,
               ylabel: str) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, label=name, marker="." if len(xs) < 40 else None)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend()
    return _finish(fig)


def errorbar_chart(series: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float]]], title: str,
                   xlabel: str, ylabel: str) -> bytes:
    """One line per series: means at each x with +-1 standard deviation bars (e.g. over seeds)."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name, (xs, means, stds) in series.items():
        ax.errorbar(xs, means, yerr=[0.0 if s != s else s for s in stds], label=name, marker="o", markersize=4,
                    capsize=3)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=8)
    return _finish(fig)


def histogram(values: dict[str, Sequence[float]], title: str, xlabel: str, bins: int = 20,
              value_range: tuple[float, float] | None = (0.0, 1.0)) -> bytes:
    """Overlaid histograms, one per named series (e.g. each judge's scores on the same files)."""
    fig, ax = plt.subplots(figsize=(6, 3.0))
    for name, vals in values.items():
        if len(vals):
            ax.hist(list(vals), bins=bins, range=value_range, alpha=0.6, label=f"{name} (n={len(vals)})")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("records")
    ax.legend(fontsize=8)
    return _finish(fig)


def scatter(xs: Sequence[float], ys: Sequence[float], title: str, xlabel: str, ylabel: str) -> bytes:
    """One point per record; equal scores are jittered apart a little so that a pile-up still shows."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = np.asarray(xs, dtype=float) + rng.normal(0, 0.004, len(xs))
    y = np.asarray(ys, dtype=float) + rng.normal(0, 0.004, len(ys))
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.scatter(x, y, s=14, alpha=0.7, color="#3b6ea8")
    ax.plot([0, 1], [0, 1], color="#bbb", lw=1, ls="--")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _finish(fig)


def heatmap(matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], title: str) -> bytes:
    """A small matrix (a confusion matrix) with its counts written in the cells."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(3.4, 3.0))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:g}", ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "#1d2430", fontsize=11)
    ax.set_title(title, fontsize=10)
    return _finish(fig)


def sorted_bars(counts: dict[str, float], title: str, xlabel: str) -> bytes:
    """Horizontal bars, largest first (drop reasons), each with its count at its end."""
    items = sorted(counts.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(items) + 1.0))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#c0504d")
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.tick_params(axis="y", labelsize=8)
    return _finish(fig)


def mixture(sources: Sequence[str], tokens: Sequence[float], epochs: Sequence[float | None], title: str) -> bytes:
    """Packed tokens by source, each bar labelled with how many times its source was repeated."""
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(sources) + 1.0))
    ax.barh(list(sources), list(tokens), color="#3b8a4f")
    for i, (t, e) in enumerate(zip(tokens, epochs, strict=True)):
        label = f" {t:,.0f} tokens" + ("" if e is None else f", {e:.2f} epochs")
        ax.text(t, i, label, va="center", fontsize=8)
    ax.set_xlim(0, max(tokens or [1]) * 1.6)
    ax.set_title(title)
    ax.set_xlabel("packed training tokens")
    return _finish(fig)


def panels(series: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]], title: str, xlabel: str) -> bytes:
    """A grid of small line charts sharing x (a wandb-style run page: loss, lr, grad norm, tokens/s).

    ``series``: panel title -> line name -> (xs, ys); empty panels are left out.
    """
    shown = {k: v for k, v in series.items() if any(len(xs) for xs, _ in v.values())}
    n = max(len(shown), 1)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7.5, 2.4 * rows), squeeze=False)
    for ax, (name, lines) in zip(axes.flat, shown.items(), strict=False):
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, label=label, marker="." if len(xs) < 40 else None)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(xlabel, fontsize=8)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _finish(fig)


def intervals(metrics: dict[str, dict[str, tuple[float, float | None, float | None]]], title: str) -> bytes:
    """Per metric, each model's value with its interval (e.g. before and after finetuning).

    ``metrics``: metric -> model -> (value, low, high); one small panel per metric, since their units differ.
    """
    n = max(len(metrics), 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.5 * rows), squeeze=False)
    for ax, (metric, models) in zip(axes.flat, metrics.items(), strict=False):
        names = list(models)
        vals = [models[m][0] for m in names]
        low = [v - (models[m][1] if models[m][1] is not None else v) for v, m in zip(vals, names, strict=True)]
        high = [(models[m][2] if models[m][2] is not None else v) - v for v, m in zip(vals, names, strict=True)]
        ax.errorbar(range(len(names)), vals, yerr=[low, high], fmt="o", capsize=4, color="#1d3557")
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_title(metric, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _finish(fig)
