"""The ablation's results on disk: CSV tables, PNG curves, ``summary.json``, and the run report.

Every number comes from the measured points (``<arm>/seed-<s>/eval-*/step-*.json``): the table is
each arm's final point over seeds (mean and standard deviation), the comparisons are consecutive
arms tested against each other, and the curves are every point's mean and spread against tokens seen.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from textbooklm.ablate.config import AblationConfig
from textbooklm.ablate.measure import HIGHER_IS_BETTER
from textbooklm.ablate.stats import Cell, compare
from textbooklm.progress import summary_line
from textbooklm.store import atomic_write_json

METRIC_ORDER = list(HIGHER_IS_BETTER)


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


def _mean_sd(cell: Cell) -> str:
    if not cell.values:
        return ""
    return f"{cell.mean:.4g}" if math.isnan(cell.std) else f"{cell.mean:.4g} ± {cell.std:.2g}"


def write_outputs(cfg: AblationConfig, plans: dict[str, Any], points: list[dict[str, Any]], root: Path,
                  run_dir: Path, notes: dict[str, Any]) -> dict[str, Any]:
    """Tables, comparisons, plots and the summary; rebuilds the run's report. Returns the summary."""
    from textbooklm.reporting import plots

    arms = list(cfg.arms)
    metrics = [m for m in METRIC_ORDER if any(m in p["metrics"] for p in points)]
    _write_csv(root / "points.csv",
               [{"arm": p["arm"], "seed": p["seed"], "step": p["step"], "tokens": p["tokens"], "metric": m,
                 "value": p["metrics"][m]} for p in points for m in METRIC_ORDER if m in p["metrics"]],
               ["arm", "seed", "step", "tokens", "metric", "value"])

    final: dict[tuple[str, str], Cell] = defaultdict(lambda: Cell([]))
    for p in points:
        if p["final"]:
            for m, v in p["metrics"].items():
                final[(p["arm"], m)].values.append(float(v))
    table_rows = []
    for arm in arms:
        plan = plans[arm.name]
        row: dict[str, Any] = {"arm": arm.name, "label": arm.title, "paper humaneval pass@1": arm.paper_pass_at_1,
                               "status": plan.skipped and f"skipped: {plan.skipped}" or "trained",
                               "seeds": len({p["seed"] for p in points if p["arm"] == arm.name}),
                               "tokens": max((p["tokens"] for p in points if p["arm"] == arm.name), default=0)}
        for m in metrics:
            cell = final[(arm.name, m)]
            row[f"{m} mean"], row[f"{m} std"] = (cell.mean, cell.std) if cell.values else (None, None)
            row[m] = _mean_sd(cell)
        table_rows.append(row)
    _write_csv(root / "table.csv", [{k: v for k, v in r.items() if k not in metrics} for r in table_rows],
               ["arm", "label", "status", "seeds", "tokens", "paper humaneval pass@1"]
               + [f"{m} {s}" for m in metrics for s in ("mean", "std")])

    comparisons = []
    trained = [a for a in arms if not plans[a.name].skipped]
    for prev, this in zip(trained, trained[1:], strict=False):
        for m in metrics:
            a, b = final[(prev.name, m)], final[(this.name, m)]
            if a.values and b.values:
                comparisons.append(compare(f"{prev.name} -> {this.name}", m, a, b, HIGHER_IS_BETTER[m],
                                           this.paper_direction))
    _write_csv(root / "comparisons.csv", [c.row() for c in comparisons],
               ["step", "metric", "diff", "p", "effect", "paper", "verdict"])

    plot_dir = root / "plots"
    plot_dir.mkdir(exist_ok=True)
    for stale in plot_dir.glob("*.png"):
        stale.unlink()
    for i, m in enumerate(metrics):
        series = {}
        for arm in trained:
            by_step: dict[int, list[tuple[float, float]]] = defaultdict(list)
            for p in points:
                if p["arm"] == arm.name and m in p["metrics"]:
                    by_step[p["step"]].append((p["tokens"], float(p["metrics"][m])))
            if arm.base is not None:  # a finetuning curve starts where its base arm's ended
                base_steps = [p["step"] for p in points if p["arm"] == arm.base and p["final"] and m in p["metrics"]]
                by_step[0] = [(p["tokens"], float(p["metrics"][m])) for p in points
                              if p["arm"] == arm.base and p["final"] and m in p["metrics"]] if base_steps else []
                if not by_step[0]:
                    del by_step[0]
            xs = sorted(by_step)
            if xs:
                cells = [Cell([v for _, v in by_step[s]]) for s in xs]
                series[f"{arm.name}: {arm.title}"] = ([by_step[s][0][0] for s in xs], [c.mean for c in cells],
                                                      [c.std for c in cells])
        png = plots.errorbar_chart(series, f"{m} (mean ± sd over {len(cfg.seeds)} seeds)", "tokens seen", m)
        (plot_dir / f"{i}-{re.sub(r'[^A-Za-z0-9]+', '_', m).strip('_')}.png").write_bytes(png)

    skipped = {a.name: plans[a.name].skipped for a in arms if plans[a.name].skipped}
    summary = {"arms": [a.model_dump(mode="json") for a in arms], "metrics": metrics, "table": table_rows,
               "comparisons": [c.row() for c in comparisons], "verdicts": [c.verdict for c in comparisons],
               "skipped": skipped, "seeds": cfg.seeds, "notes": notes, "config": cfg.model_dump(mode="json")}
    atomic_write_json(root / "summary.json", summary)
    for v in summary["verdicts"]:
        summary_line(f"ablate: {v}")
    summary_line(f"ablate: {len(trained)} arms x {len(cfg.seeds)} seeds at {notes['tokens_per_arm']:,} tokens each"
                 + (f"; skipped {', '.join(f'{k} ({v})' for k, v in skipped.items())}" if skipped else "")
                 + f"; tables and plots in {root}")
    from textbooklm.report.build import build_report

    build_report(run_dir)
    return summary
