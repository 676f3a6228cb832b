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
