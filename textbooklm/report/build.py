"""Build ``RUN_DIR/report.html``: one self-contained page describing every stage of a run.

Each section reads what its stage left on disk (manifests, ``rejected/`` datasets, metrics JSON,
training logs, evaluation results) and says plainly when a stage was not part of the run, so the
report of a partial run is still truthful.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from textbooklm.report import html as H
from textbooklm.report import plots
from textbooklm.store import Dataset

# Published figures the run is compared with (pass@1 in %, accuracies as fractions).
PAPER_RESULTS: list[tuple[str, str, str, float]] = [
    ("phi-1 (1.3B, 7B tokens)", "phi-1 paper", "HumanEval pass@1", 50.6),
    ("phi-1 (1.3B)", "phi-1 paper", "MBPP pass@1", 55.5),
    ("phi-1-base (before finetuning)", "phi-1 paper", "HumanEval pass@1", 29.0),
    ("phi-1-small (350M)", "phi-1 paper", "HumanEval pass@1", 45.0),
    ("phi-1.5 (1.3B)", "phi-1.5 report", "HumanEval pass@1", 34.1),
    ("phi-1.5 (1.3B)", "phi-1.5 report", "MBPP pass@1", 37.7),
    ("phi-1.5 (1.3B)", "phi-1.5 report", "GSM8K (via code)", 40.2),
    ("phi-1.5 (1.3B)", "phi-1.5 report", "WinoGrande acc", 0.734),
    ("phi-1.5 (1.3B)", "phi-1.5 report", "ARC-Easy acc", 0.756),
    ("phi-1.5 (1.3B)", "phi-1.5 report", "ARC-Challenge acc", 0.444),
    ("phi-1.5 (1.3B)", "phi-1.5 report", "BoolQ acc", 0.758),
    ("phi-1.5 (1.3B)", "phi-1.5 report", "SIQA acc", 0.526),
    ("phi-1.5 (1.3B)", "phi-1.5 report", "PIQA acc", 0.766),
    ("phi-1.5 (1.3B)", "phi-1.5 report", "HellaSwag acc", 0.476),
    ("phi-1.5 (1.3B)", "phi-1.5 report", "OpenBookQA acc", 0.372),
]

SECTIONS = [
    ("overview", "Overview"),
    ("funnel", "Pipeline funnel"),
    ("quality", "Judge and classifier"),
    ("synthesis", "Synthesis"),
    ("decontamination", "Decontamination"),
    ("training", "Training"),
    ("evaluation", "Evaluation"),
    ("ablation", "Data ablation"),
    ("teacher", "Teacher tokens and cost"),
    ("timing", "Time per stage"),
]


@dataclass
class RunData:
    """Everything the sections read, loaded once."""

    run_dir: Path
    record: dict[str, Any]
    stages: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, run_dir: Path) -> RunData:
        from textbooklm import registry

        record = _json(run_dir / "run.json") or {}
        names = [n for n in registry.names() if (run_dir / n).is_dir() and n != "report"]
        return cls(run_dir, record, names)

    def stats(self, stage: str) -> dict[str, Any]:
        """The stage's stats in the one shape status and run.json use (see textbooklm.stage_stats)."""
        from textbooklm import registry
        from textbooklm.stage_stats import stage_stats

        if stage in registry.names() and not registry.get(stage).records:
            return {}  # a table about an artefact (tokenizer, pack, training, eval): not in the funnel
        info = self.record.get("stages", {}).get(stage) or _json(self.folder(stage) / "_stage.json") or {}
        return info.get("stats") or stage_stats(stage, self.folder(stage), info.get("summary") or {},
                                                info.get("seconds"))

    def folder(self, stage: str) -> Path:
        return self.run_dir / stage

    def summary(self, stage: str) -> dict[str, Any]:
        info = self.record.get("stages", {}).get(stage) or _json(self.folder(stage) / "_stage.json") or {}
        return info.get("summary", {})


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _text_bytes(ds: Dataset) -> int | None:
    """Bytes of the ``text`` column (the report's token proxy: ~4 bytes per token for code)."""
    total = 0
    found = False
    for shard in ds.shards():
        if "text" in pq.read_schema(shard).names:
            found = True
            col = pq.read_table(shard, columns=["text"]).column("text")
            total += sum(len(t.encode("utf-8")) for t in col.to_pylist() if t)
    return total if found else None


# -- sections ------------------------------------------------------------------------------------
def overview(run: RunData) -> str:
    versions = run.record.get("versions", {})
    stages = run.record.get("stages", {})
    rows = [(name, (stages.get(name) or {}).get("line", "")) for name in run.stages]
    return (
        H.note(f"Run folder {run.run_dir}. Stages run: {', '.join(run.stages) or 'none'}.")
        + H.table(["stage", "summary"], rows)
        + H.kv_table(versions, "software versions")
    )


def funnel(run: RunData) -> str:
    rows, names, kept_counts, dropped_counts = [], [], [], []
    for name in run.stages:
        stats = run.stats(name)
        if stats.get("kept") is None:
            continue
        kept, dropped = int(stats["kept"]), int(stats.get("dropped") or 0)
        ds = Dataset(run.folder(name))
        mb = _text_bytes(ds) if ds.is_finished else None
        why = ", ".join(f"{k} {v}" for k, v in (stats.get("dropped_by_reason") or {}).items())
        rows.append((name, kept + dropped, kept, dropped, None if mb is None else round(mb / 1e6, 2),
                     None if mb is None else round(mb / 4e6, 2), why))
        names.append(name)
        kept_counts.append(kept)
        dropped_counts.append(dropped)
    if not rows:
        return H.missing("No finished stage in this run.")
    return (
        H.table(["stage", "records in", "kept", "dropped", "text MB kept", "~M tokens kept",
                 "drop reasons"], rows, "tokens estimated as bytes / 4; decontam's kept = its cleaned copies")
        + H.figure(plots.funnel_chart(names, kept_counts, dropped_counts), "records per stage")
    )


def _pngs(folder: Path) -> str:
    return "".join(H.figure(p.read_bytes(), p.stem) for p in sorted(folder.glob("*.png")))


def _summary_tables(run: RunData, stages: list[str]) -> str:
    out = ""
    for name in stages:
        s = run.summary(name)
        if s:
            out += f"<h3>{H.esc(name)}</h3>" + H.note(s.get("line", "")) + H.kv_table(s)
            for key, value in s.items():
                if isinstance(value, dict) and value and all(not isinstance(v, (dict, list)) for v in value.values()):
                    out += H.kv_table(value, f"{name}: {key}")
        out += _pngs(run.folder(name)) if run.folder(name).is_dir() else ""
    return out


def quality(run: RunData) -> str:
    present = [s for s in ("judge", "classify", "filter") if s in run.stages]
    if not present:
        return H.missing("The judge, classify and filter stages were not part of this run.")
    body = ""
    agreement = _json(run.folder("judge") / "agreement.json")
    if isinstance(agreement, dict):
        body += H.kv_table(agreement, "agreement between the judges (Spearman on scores, Cohen's kappa on labels)")
    metrics = _json(run.folder("classify") / "metrics.json")
    if isinstance(metrics, dict):
        rows = []
        heads = dict(metrics.get("heads", {}))
        if "constant_baseline" in metrics:
            heads["constant baseline"] = {"test": metrics["constant_baseline"]}
        for name, m in heads.items():
            t = m.get("test", {})
            rows.append((name, t.get("precision"), t.get("recall"), t.get("f1"), t.get("roc_auc"), t.get("n"),
                         str(t.get("confusion", ""))))
        body += H.table(["head", "precision", "recall", "F1", "ROC-AUC", "held out", "confusion [[tn, fp], [fn, tp]]"],
                        rows, f"classifier on {metrics.get('embedder', '?')} embeddings, held-out split")
    return body + _summary_tables(run, present)


def synthesis(run: RunData) -> str:
    present = [s for s in ("textbooks", "exercises") if s in run.stages]
    if not present:
        return H.missing("No synthesis stage was part of this run.")
    body = _summary_tables(run, present)
    for name in present:
        ds = Dataset(run.folder(name))
        if ds.is_finished and ds.num_rows:
            samples = [r["text"] for r in ds.iter_records(["text"])][:2]
            body += f"<h3>{H.esc(name)}: samples</h3>" + "".join(H.pre(t[:1500]) for t in samples)
    return body


def decontamination(run: RunData) -> str:
    if "decontam" not in run.stages:
        return H.missing("The decontamination stage was not part of this run.")
    body = _summary_tables(run, ["decontam"])
    report = _json(run.folder("decontam") / "report.json")
    if isinstance(report, dict):
        rows = report.get("taus") or []
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            body += H.table(
                ["tau", "samples removed", "removed by AST", "similar problems", "non-similar", "similar (ids)"],
                [(r.get("tau"), r.get("removed"), r.get("removed_by_ast"), r.get("n_similar"),
                  r.get("n_non_similar"), " ".join(r.get("similar_problems", [])[:12])) for r in rows],
                f"{report.get('n_samples')} samples against {report.get('n_problems')} benchmark problems: what "
                "pruning at each AST match rate tau would remove (phi-1 section 5)")
    return body


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def training(run: RunData) -> str:
    present = [s for s in ("pretrain", "finetune") if s in run.stages]
    if not present:
        return H.missing("No training stage was part of this run.")
    body = ""
    for name in present:
        logs = sorted(run.folder(name).rglob("*.csv"))
        series: dict[str, tuple[list[float], list[float]]] = {}
        for log in logs:
            rows = _read_csv(log)
            for key in ("loss", "val_loss"):
                pts = [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
                if pts:
                    series[f"{name} {key}"] = ([p[0] for p in pts], [p[1] for p in pts])
        if series:
            body += H.figure(plots.line_chart(series, f"{name}: loss", "step", "loss (nats/token)"), f"{name} loss")
    return body + _summary_tables(run, present)


def evaluation(run: RunData) -> str:
    results = _json(run.folder("eval") / "results.json") if "eval" in run.stages else None
    body = ""
    if isinstance(results, dict) and results.get("measurements"):
        body += _eval_tables(results)
    elif isinstance(results, dict) and results.get("models"):  # results.json of an older eval stage
        models = results["models"]
        metrics = sorted({k for m in models.values() for k in m})
        body += H.table(["metric", *models], [(k, *[models[m].get(k) for m in models]) for k in metrics],
                        "this run (pass@k in %, NLL in nats per token)")
    if isinstance(results, dict) and (results.get("models") or results.get("measurements")):
        for label, why in (results.get("skipped") or {}).items():
            body += H.note(f"{label}: not evaluated ({why})")
    else:
        body += H.missing("No evaluation stage was part of this run.")
    body += H.table(["model", "source", "metric", "value"], PAPER_RESULTS,
                    "published figures (pass@1 in %, accuracies as fractions)")
    return body


def _eval_cell(m: dict | None) -> str:
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


def _eval_tables(results: dict) -> str:
    """Every model on the same sets with n and intervals; paired comparisons; training runs' own losses."""
    measured = results["measurements"]
    models = list(measured)
    metrics = list(dict.fromkeys(k for m in measured.values() for k in m))
    body = H.table(["metric", *models], [(k, *[_eval_cell(measured[m].get(k)) for m in models]) for k in metrics],
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


def ablation(run: RunData) -> str:
    summary = _json(run.run_dir / "ablation" / "summary.json")
    if not isinstance(summary, dict):
        return H.missing("No data ablation for this run (`textbooklm ablate CONFIG --run RUN` adds one).")
    notes = summary.get("notes", {})
    body = H.note("One model shape trained on each data recipe with identical settings, "
                  f"{notes.get('tokens_per_arm', 0):,} tokens per arm, seeds {summary.get('seeds')}; values at the "
                  "end of training as mean ± standard "
                  f"deviation over seeds. Validation loss is on one shared held-out set "
                  f"({notes.get('validation_sequences')} x {notes.get('seq_len')} tokens) no arm trained on; lower "
                  "loss and NLL are better, higher pass rates are better.")
    metrics = summary.get("metrics", [])
    rows = [(r["arm"], r["label"], r["status"], r["seeds"], r["tokens"], *[r.get(m, "") for m in metrics],
             r.get("paper humaneval pass@1")) for r in summary.get("table", [])]
    body += H.table(["arm", "recipe", "status", "seeds", "tokens", *metrics, "paper pass@1 % (350M)"], rows,
                    "final values per arm (pass@k in %)")
    comps = summary.get("comparisons", [])
    if comps:
        body += H.table(["step", "metric", "difference", "Welch p", "effect", "papers"],
                        [(c["step"], c["metric"], c["diff"], c["p"], c["effect"], c["paper"]) for c in comps],
                        "each step against the arm before it: 'better'/'worse' only when p < 0.05")
        body += H.pre("\n".join(summary.get("verdicts", [])))
    for arm, why in (summary.get("skipped") or {}).items():
        body += H.note(f"arm {arm}: skipped, {why}")
    return body + _pngs(run.run_dir / "ablation" / "plots")


def _ledgers(run_dir: Path) -> list[dict[str, Any]]:
    """Every teacher ledger (stage x model totals) kept in the run's request caches."""
    import sqlite3

    rows = []
    for db in sorted(run_dir.rglob("teacher_cache.sqlite")):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            for stage, model, data in con.execute("SELECT stage, model, data FROM ledger ORDER BY stage"):
                rows.append({"stage": stage, "model": model, **json.loads(data)})
        except sqlite3.DatabaseError:
            continue
        finally:
            con.close()
    return rows


def teacher(run: RunData) -> str:
    rows = [(r["stage"], r["model"], r.get("requests"), r.get("cached"), r.get("failed"), r.get("tokens_in"),
             r.get("tokens_out"), r.get("cost_usd"), round(float(r.get("wall_s") or 0), 1))
            for r in _ledgers(run.run_dir)]
    if not rows:
        return H.missing("No stage asked a teacher model anything in this run.")
    return H.table(["stage", "model", "requests", "from cache", "failed", "tokens in", "tokens out", "cost USD",
                    "wall s"], rows, "from the teachers' ledgers (a local model costs electricity, not tokens)")


def timing(run: RunData) -> str:
    stages = run.record.get("stages", {})
    names = [n for n in run.stages if (stages.get(n) or {}).get("seconds") is not None]
    secs = [float(stages[n]["seconds"]) for n in names]
    if not names:
        return H.missing("No timings recorded.")
    return H.table(["stage", "seconds"], list(zip(names, secs, strict=True))) + H.figure(
        plots.bar_chart(names, secs, "Time per stage", "seconds"), "time per stage"
    )


BUILDERS = {
    "overview": overview, "funnel": funnel, "quality": quality, "synthesis": synthesis,
    "decontamination": decontamination, "training": training, "evaluation": evaluation,
    "ablation": ablation, "teacher": teacher, "timing": timing,
}


def report_sections(run: RunData) -> list[tuple[str, str, Any]]:
    """The built-in sections, then one per stage of the run whose registry entry has a ``report`` hook."""
    from textbooklm import registry

    out = [(sid, title, BUILDERS[sid]) for sid, title in SECTIONS]
    for spec in registry.stages():
        if spec.report and spec.name in run.stages:
            out.insert(len(out) - 1, (f"stage-{spec.name}", f"Stage: {spec.name}", registry.resolve_hook(spec.report)))
    return out


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report for ``run_dir`` (to ``RUN_DIR/report.html`` unless ``out`` is given)."""
    run_dir = Path(run_dir)
    run = RunData.load(run_dir)
    sections = []
    for sid, title, build in report_sections(run):
        try:
            body = build(run)
        except Exception as exc:  # noqa: BLE001 - one unreadable stage must not hide the others
            body = H.missing(f"could not build this section: {type(exc).__name__}: {exc}")
        sections.append((sid, title, body))
    total = sum(float((s or {}).get("seconds") or 0) for s in run.record.get("stages", {}).values())
    page = H.page("textbooklm run report", f"{run_dir} — {len(run.stages)} stages, {total:.0f} s", sections)
    target = Path(out) if out else run_dir / "report.html"
    target.write_text(page, encoding="utf-8")
    return target
