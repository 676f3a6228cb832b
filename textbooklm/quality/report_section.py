"""The quality area's report sections: the judge, the classifier and the filter, with examples.

What a reader wants here (FineWeb-Edu's write-up is the model): the annotation prompt, the score
distribution of each judge, how far the judges agree, the classifier against its baselines, and
files kept and dropped at each score. The warnings name the two ways this step silently fails: a
judge whose scores have no spread or do not agree with the other judge, and a classifier no better
than a baseline that ignores the text.
"""

from __future__ import annotations

import statistics
from typing import Any

from textbooklm.reporting import html as H
from textbooklm.reporting import plots
from textbooklm.reporting.section import Section
from textbooklm.reporting.view import RunView, provenance

MIN_SPREAD = 0.02  # standard deviation of 0..1 scores under which a judge says the same thing of every file
MIN_AGREEMENT = 0.2  # Spearman (or kappa) under which two judges do not agree in any useful sense
BUCKETS = [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.01)]
READ_AT_MOST = 20_000  # rows a section reads per dataset (plots say when they show only the first ones)


def _spread(values: list[float]) -> tuple[float, float, float, float]:
    """(mean, sd, min, max) of a list with at least one value."""
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd, min(values), max(values)


def judge_warnings(scores: dict[str, list[float]], agreement: dict[str, Any] | None,
                   thresholds: dict[str, float] | None = None) -> list[str]:
    """A judge with no spread, or one that gives every file the same label; two judges that do not
    agree (on the files both scored)."""
    out = []
    for name, vals in scores.items():
        if len(vals) >= 5:
            mean, sd, lo, hi = _spread(vals)
            cut = (thresholds or {}).get(name.lower())
            if sd < MIN_SPREAD:
                out.append(f"degenerate {name} judge: its {len(vals)} scores have no spread "
                           f"(sd {sd:.3f}, {lo:.2f}..{hi:.2f}); its labels say nothing about the files")
            elif cut is not None and (lo >= cut or hi < cut):
                side = "educational" if lo >= cut else "not educational"
                out.append(f"degenerate {name} judge: it calls all {len(vals)} files {side} (scores "
                           f"{lo:.2f}..{hi:.2f}, threshold {cut:g}); its labels say nothing about the files")
    if isinstance(agreement, dict) and (agreement.get("n") or 0) >= 5 and len(scores) > 1:
        rho, kappa = agreement.get("spearman"), agreement.get("kappa")
        if rho is None or rho < MIN_AGREEMENT or (kappa is not None and kappa < MIN_AGREEMENT):
            rho_text = "undefined" if rho is None else f"{rho:.2f}"
            kappa_text = "n/a" if kappa is None else f"{kappa:.2f}"
            out.append(f"the judges do not agree: Spearman {rho_text}, Cohen's kappa {kappa_text} "
                       f"on the {agreement['n']} files both scored")
    return out


def _template_text(view: RunView, llm: dict[str, Any]) -> str | None:
    """The LLM judge's prompt template, if the one on disk is the one that judged (same sha)."""
    if not llm.get("prompt"):
        return None
    from textbooklm.quality.config import LLMJudgeConfig
    from textbooklm.quality.prompts import load_template

    judge = getattr(view.run.cfg, "judge", None) if view.run.cfg is not None else None
    try:
        template = load_template(judge.llm if judge is not None else LLMJudgeConfig(prompt=llm["prompt"]))
    except ValueError:
        return None
    return template.text if template.sha == llm.get("prompt_sha", template.sha) else None


def judge_section(view: RunView) -> Section:
    rows = list(view.records("judge", ["id", "path", "heuristic_score", "llm_score", "label", "provenance"],
                             limit=READ_AT_MOST))
    scores = {name: [r[col] for r in rows if r.get(col) is not None]
              for name, col in (("heuristic", "heuristic_score"), ("LLM", "llm_score"))}
    scores = {k: v for k, v in scores.items() if v}
    summary = view.summary("judge")
    agreement = view.json("judge", "agreement.json") or summary.get("agreement")
    thresholds = summary.get("thresholds") or {}
    body = H.lead(view.line("judge"))
    body += H.table(["judge", "files scored", "mean", "sd", "min", "max", "educational (>= threshold)"],
                    [(name, len(v), *_spread(v), f"{sum(x >= (thresholds.get(name.lower()) or 0.5) for x in v)} "
                      f"(>= {thresholds.get(name.lower(), 0.5)})") for name, v in scores.items()],
                    "scores normalised to 0..1; the classifier learns the labels of "
                    f"the {summary.get('label_from', '?')} judge"
                    + (f"; first {READ_AT_MOST:,} records only" if len(rows) >= READ_AT_MOST else ""))
    figs = ""
    if scores:
        figs += H.figure(plots.histogram(scores, "Judge scores", "score (0..1)"), "judge score histogram")
    both = [r for r in rows if r.get("heuristic_score") is not None and r.get("llm_score") is not None]
    if both:
        figs += H.figure(plots.scatter([r["heuristic_score"] for r in both], [r["llm_score"] for r in both],
                                       f"LLM vs heuristic on the {len(both)} files both scored",
                                       "heuristic score", "LLM score"), "LLM vs heuristic scatter")
    body += figs
    if isinstance(agreement, dict):
        body += H.table(["files both scored", "Spearman (scores)", "p", "Cohen's kappa (labels)", "label agreement"],
                        [(agreement.get("n"), agreement.get("spearman"), agreement.get("spearman_p"),
                          agreement.get("kappa"), agreement.get("label_agreement"))],
                        "agreement between the judges" + "".join(f"; {n}" for n in agreement.get("notes") or []))
    llm = summary.get("llm") or {}
    template = _template_text(view, llm)
    if template:
        body += H.details(f"the LLM judge's prompt ({llm.get('prompt', '?')}, sha {llm.get('prompt_sha', '?')}, "
                          f"model {llm.get('model', '?')})", H.pre(template))
    replies = []
    for r in both[:4]:
        note = provenance(r).get("judge", {}).get("llm") or {}
        reply = note.get("reply") or (f"grade probabilities 0..5: {note['probs']}" if note.get("probs") else "")
        replies.append((r.get("path"), r["heuristic_score"], r["llm_score"], note.get("how"), reply[:300]))
    if replies:
        body += H.table(["file", "heuristic", "LLM", "how", "the LLM's reply"], replies,
                        "a few of the LLM judge's replies")
    return Section(body=body, warnings=judge_warnings(scores, agreement, thresholds))


def _metrics_rows(metrics: dict[str, Any]) -> tuple[list[tuple], dict[str, float], dict[str, float]]:
    """Table rows for every head and baseline (test split), and the best F1 of heads and of baselines."""
    rows, heads, baselines = [], {}, {}
    for name, m in (metrics.get("heads") or {}).items():
        t = m.get("test") or {}
        rows.append((name, "head", t.get("precision"), t.get("recall"), t.get("f1"), t.get("roc_auc"), t.get("n")))
        if t.get("f1") is not None:
            heads[name] = t["f1"]
    found = dict(metrics.get("baselines") or {})
    if "constant_baseline" in metrics:
        const = metrics["constant_baseline"]
        found.setdefault(f"constant (always predicts {const.get('predicts', '?')})", const)
    for name, m in found.items():
        t = m.get("test", m) if isinstance(m, dict) else {}
        rows.append((name, "baseline", t.get("precision"), t.get("recall"), t.get("f1"), t.get("roc_auc"), t.get("n")))
        if t.get("f1") is not None:
            baselines[name] = t["f1"]
    return rows, heads, baselines


def classify_warnings(heads: dict[str, float], baselines: dict[str, float]) -> list[str]:
    if not heads or not baselines:
        return []
    best_head, best_base = max(heads.items(), key=lambda kv: kv[1]), max(baselines.items(), key=lambda kv: kv[1])
    if best_head[1] <= best_base[1]:
        return [f"the classifier is no better than its baselines: best head {best_head[0]} F1 {best_head[1]:.2f} "
                f"<= {best_base[0]} F1 {best_base[1]:.2f} on the same held-out labels"]
    return []


def classify_section(view: RunView) -> Section:
    metrics = view.json("classify", "metrics.json")
    body = H.lead(view.line("classify"))
    if not isinstance(metrics, dict):
        return Section(body=body + H.missing("metrics.json is missing: no classifier figures."))
    rows, heads, baselines = _metrics_rows(metrics)
    body += H.table(["model", "kind", "precision", "recall", "F1", "ROC-AUC", "held-out files"], rows,
                    f"on {metrics.get('embedder', '?')} embeddings, measured "
                    + (f"{metrics['held_out_by']} (each file scored by a model that did not train on it)"
                       if metrics.get("held_out_by") else "on the held-out split"))
    for name, m in (metrics.get("heads") or {}).items():
        confusion = (m.get("test") or {}).get("confusion")
        if confusion:
            where = "out-of-fold" if metrics.get("held_out_by") else "held-out"
            body += H.figure(plots.heatmap(confusion, ["true low", "true high"], ["predicted low", "predicted high"],
                                           f"{name}: {where} confusion"), f"{name} confusion matrix")
    return Section(body=body, warnings=classify_warnings(heads, baselines))


def _bucket(score: float | None) -> int | None:
    if score is None:
        return None
    return next((i for i, (lo, hi) in enumerate(BUCKETS) if lo <= score < hi), len(BUCKETS) - 1)


def filter_section(view: RunView, per_bucket: int = 2) -> Section:
    summary = view.summary("filter")
    judged = {r["id"]: r for r in view.records("judge", ["id", "heuristic_score", "llm_score"], limit=READ_AT_MOST)}
    sides = {"kept": view.records("filter", ["id", "path", "text", "provenance"], limit=READ_AT_MOST),
             "dropped": view.records("filter", ["id", "path", "text", "provenance", "score", "reason"],
                                     rejected=True, limit=READ_AT_MOST)}
    body = H.lead(view.line("filter"))
    scores: dict[str, list[float]] = {}
    cells: dict[tuple[int, str], list[str]] = {}
    for side, rows in sides.items():
        for r in rows:
            score = r.get("score")
            if score is None:
                score = (provenance(r).get("filter") or {}).get("score")
            if score is None:
                continue
            scores.setdefault(side, []).append(score)
            key = (_bucket(score), side)
            if len(cells.setdefault(key, [])) >= per_bucket:
                continue
            j = judged.get(r["id"], {})
            parts = [str(r.get("path")), f"classifier {score:.2f}"]
            parts += [f"{name} {j[col]:.2f}" for name, col in (("heuristic", "heuristic_score"), ("LLM", "llm_score"))
                      if j.get(col) is not None]
            parts += [r["reason"]] if r.get("reason") else []
            meta = H.tag(side, side) + H.esc(" · ".join(parts))
            cells[key].append(H.example(meta, r.get("text") or "", limit=500))
    if scores:
        capped = any(len(v) >= READ_AT_MOST for v in scores.values())
        body += H.figure(plots.histogram(scores, "Classifier scores of kept and dropped files"
                                         + (f" (first {READ_AT_MOST:,} of each)" if capped else ""),
                                         "classifier score"), "classifier score histogram")
    pr = view.artefact("filter", "precision_recall.png")
    if pr.is_file():
        body += H.figure(pr.read_bytes(), "precision and recall against the threshold")
    for i, (lo, hi) in enumerate(BUCKETS):
        items = cells.get((i, "kept"), []) + cells.get((i, "dropped"), [])
        if items:
            body += f"<h3>classifier score {lo:.2f}-{min(hi, 1.0):.2f}</h3>" + H.examples(items)
    counts = summary.get("counts") or {"kept": summary.get("kept"),  # a run from before the stage ledger
                                       "in": (summary.get("kept") or 0) + (summary.get("dropped") or 0)}
    kept, total = counts.get("kept"), counts.get("in") or 0
    story = []
    if kept is not None:
        story.append(f"the classifier kept {kept:,} of {total:,} files"
                     + (f" (~{summary['approx_tokens_kept']:,} of ~{summary.get('approx_tokens_total', 0):,} tokens, "
                        "bytes/4)" if summary.get("approx_tokens_kept") is not None else ""))
    return Section(body=body, story=story)
