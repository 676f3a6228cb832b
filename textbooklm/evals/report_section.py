"""The evaluation area's report section: every model on the same sets, lm-eval-harness style (task,
metric, value, ± stderr or interval, n, settings), the paired comparisons, a before/after plot with
intervals, and the published figures labelled with the papers' scale beside this run's.

Warnings: an evaluation set that overlaps the data a model trained on (results.json ``heldout_overlap``),
and sampled figures where most completions were empty (a pass@1 of 0 that says nothing about code).
"""

from __future__ import annotations

from typing import Any

from textbooklm.reporting import html as H
from textbooklm.reporting import plots
from textbooklm.reporting.section import Section
from textbooklm.reporting.view import RunView

MOSTLY_EMPTY = 0.5

# Published figures (pass@1 in %, accuracies as fractions), with the scale they were measured at.
PAPER_RESULTS: list[tuple[str, str, str, str, str, float]] = [
    ("phi-1", "1.3B", "7B unique (~50B seen)", "phi-1 paper", "HumanEval pass@1", 50.6),
    ("phi-1", "1.3B", "7B unique (~50B seen)", "phi-1 paper", "MBPP pass@1", 55.5),
    ("phi-1-base (before finetuning)", "1.3B", "7B unique (~50B seen)", "phi-1 paper", "HumanEval pass@1", 29.0),
    ("phi-1-small", "350M", "7B unique (~50B seen)", "phi-1 paper", "HumanEval pass@1", 45.0),
    ("phi-1.5", "1.3B", "30B unique (150B seen)", "phi-1.5 report", "HumanEval pass@1", 34.1),
    ("phi-1.5", "1.3B", "30B unique (150B seen)", "phi-1.5 report", "MBPP pass@1", 37.7),
    ("phi-1.5", "1.3B", "30B unique (150B seen)", "phi-1.5 report", "GSM8K (via code)", 40.2),
    ("phi-1.5", "1.3B", "30B unique (150B seen)", "phi-1.5 report", "WinoGrande acc", 0.734),
    ("phi-1.5", "1.3B", "30B unique (150B seen)", "phi-1.5 report", "ARC-Easy acc", 0.756),
    ("phi-1.5", "1.3B", "30B unique (150B seen)", "phi-1.5 report", "ARC-Challenge acc", 0.444),
    ("phi-1.5", "1.3B", "30B unique (150B seen)", "phi-1.5 report", "BoolQ acc", 0.758),
    ("phi-1.5", "1.3B", "30B unique (150B seen)", "phi-1.5 report", "SIQA acc", 0.526),
    ("phi-1.5", "1.3B", "30B unique (150B seen)", "phi-1.5 report", "PIQA acc", 0.766),
    ("phi-1.5", "1.3B", "30B unique (150B seen)", "phi-1.5 report", "HellaSwag acc", 0.476),
    ("phi-1.5", "1.3B", "30B unique (150B seen)", "phi-1.5 report", "OpenBookQA acc", 0.372),
]


def eval_cell(m: dict | None) -> str:
    """``value ± stderr`` or ``value [low, high]``, then n (and the empty share of sampled figures)."""
    if not m or m.get("value") is None:
        return ""
    text = f"{m['value']:.4g}"
    if m.get("stderr") is not None:
        text += f" ± {m['stderr']:.2g}"
    elif m.get("interval") and None not in m["interval"]:
        text += f" [{m['interval'][0]:.4g}, {m['interval'][1]:.4g}]"
    text += f" (n={m.get('n')}" + (f" x {m['samples_per_problem']}" if "samples_per_problem" in m else "")
    if m.get("empty_share") is not None:
        text += f", {m['empty_share']:.0%} empty"
    return text + ")"


def model_order(results: dict) -> list[str]:
    """Models in the order of the comparisons' steps (before, then after), else as measured."""
    order: list[str] = []
    for c in results.get("comparisons") or []:
        for m in str(c.get("step", "")).split(" -> "):
            if m in results["measurements"] and m not in order:
                order.append(m)
    return order + [m for m in results["measurements"] if m not in order]


def eval_tables(results: dict) -> str:
    """Every model on the same sets with n and intervals; paired comparisons; training runs' own losses."""
    measured = results["measurements"]
    models = model_order(results)
    metrics = list(dict.fromkeys(k for m in measured.values() for k in m))
    body = H.table(["metric", *models], [(k, *[eval_cell(measured[m].get(k)) for m in models]) for k in metrics],
                   "each model on the same sets (pass@k in % ± standard error; NLL in nats/token [95% bootstrap "
                   "interval]; n = problems or documents x samples per problem)")
    sets = results.get("sets") or {}
    if sets:
        body += H.table(["set", "what", "n", "unit"], [(k, v.get("what"), v.get("n"), v.get("unit"))
                                                       for k, v in sets.items()], "evaluation sets")
    for name, why in (results.get("sets_skipped") or {}).items():
        body += H.note(f"{name}: not measured ({why})")
    for m in models:
        for k, v in measured[m].items():
            if v.get("zero_note"):
                body += H.note(f"{m}, {k.rsplit(' ', 1)[0]}: {v['zero_note']}")
        sampled = next((v["sampling"] for v in measured[m].values() if v.get("sampling")), None)
        if sampled:
            body += H.note(f"{m} sampling: " + ", ".join(f"{k} {v!r}" for k, v in sampled.items()))
    comps = results.get("comparisons") or []
    if comps:
        body += H.table(["step", "metric", "difference", "95% interval", "p", "effect", "n"],
                        [(c["step"], c["metric"], c["diff"], "" if c["interval"][0] is None else
                          f"[{c['interval'][0]:.3g}, {c['interval'][1]:.3g}]", c["p"], c["effect"],
                          f"{c['n']} {c['unit']}") for c in comps],
                        "paired comparisons on the same problems (paired bootstrap interval, permutation p)")
    own = results.get("training_validation_loss") or {}
    if own:
        body += H.table(["model", "last validation loss", "measured on"],
                        [(m, v.get("last validation loss"), v.get("measured on")) for m, v in own.items()],
                        "each training run's own validation loss, on its own split: not a comparison")
    return body


def _bounds(m: dict[str, Any]) -> tuple[float, float | None, float | None]:
    value = float(m["value"])
    if m.get("interval") and None not in m["interval"]:
        return value, float(m["interval"][0]), float(m["interval"][1])
    if m.get("stderr") is not None:
        return value, value - 1.96 * m["stderr"], value + 1.96 * m["stderr"]
    return value, None, None


def eval_warnings(results: dict[str, Any]) -> list[str]:
    out = []
    for model, sets in (results.get("heldout_overlap") or {}).items():
        for name, o in (sets or {}).items():
            if isinstance(o, dict) and o.get("overlapping"):
                out.append(f"evaluation overlaps training data: {o['overlapping']} of {o.get('n')} {name} problems "
                           f"appear in what {model} trained on")
    for model, metrics in (results.get("measurements") or {}).items():
        for metric, m in metrics.items():
            if (m.get("empty_share") or 0) >= MOSTLY_EMPTY:
                out.append(f"mostly empty samples: {m['empty_share']:.0%} of {model}'s {metric.rsplit(' ', 1)[0]} "
                           "completions were empty, so its pass rate says nothing about the code it writes")
    return out


def _this_run_scale(view: RunView) -> list[tuple[str, str, str, str, str, str]]:
    """This run's models with their parameter and token counts (the training stages' summaries)."""
    rows = []
    for stage in ("pretrain", "finetune"):
        s = view.summary(stage)
        params, tokens = s.get("parameters"), s.get("tokens")
        if isinstance(params, int) and isinstance(tokens, int) and tokens > 0:
            rows.append((f"this run: {stage}", f"{params / 1e6:.2f}M", f"{tokens:,} seen", "this report",
                         "see the table above", ""))
    return rows


def eval_section(view: RunView) -> Section:
    results = view.json("eval", "results.json")
    body = ""  # the summary line repeats the table below: not shown again
    warnings, moved, story = [], [], []
    if isinstance(results, dict) and results.get("measurements"):
        body += eval_tables(results)
        measured = results["measurements"]
        models = model_order(results)
        shown = {k: {m: _bounds(measured[m][k]) for m in models if (measured[m].get(k) or {}).get("value") is not None}
                 for k in dict.fromkeys(k for v in measured.values() for k in v)}
        shown = {k: v for k, v in shown.items() if v}
        if shown and len(models) > 1:
            body += H.figure(plots.intervals(shown, "Each model on the same sets (95% intervals)"), "eval before/after")
        warnings = eval_warnings(results)
        for c in results.get("comparisons") or []:
            if c.get("effect") in ("better", "worse"):
                lo, hi = c["interval"]
                moved.append(f"{c['metric']}: {c['before']:.4g} -> {c['after']:.4g} ({c['step']}; difference "
                             f"{c['diff']:+.3g}, 95% interval [{lo:.3g}, {hi:.3g}], p={c['p']:.3g}, n={c['n']} "
                             f"{c['unit']}): {c['effect']}")
        last = models[-1]
        headline = [k for k in measured[last] if "pass@" in k] or list(measured[last])[:2]
        story.append(f"{last} measured: " + "; ".join(f"{k} {eval_cell(measured[last][k])}" for k in headline))
    elif isinstance(results, dict) and results.get("models"):  # results.json of an older eval stage
        models = results["models"]
        metrics = sorted({k for m in models.values() for k in m})
        body += H.table(["metric", *models], [(k, *[models[m].get(k) for m in models]) for k in metrics],
                        "this run (pass@k in %, NLL in nats per token; an older eval: no intervals)")
    else:
        body += H.lead(view.line("eval")) + H.missing("results.json is missing.")
    body += "<h3>published figures, at the papers' scale</h3>" + H.table(
        ["model", "parameters", "training tokens", "source", "metric", "value"],
        [*PAPER_RESULTS, *_this_run_scale(view)],
        "pass@1 in %, accuracies as fractions; the recipe's target at the papers' scale (parameters, tokens), "
        "with this run's scale in its last rows: not a comparison")
    return Section(body=body, warnings=warnings, moved=moved, story=story)
