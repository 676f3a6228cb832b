"""Build ``RUN_DIR/report.html``: one self-contained page describing every stage of a run.

Each section reads what its stage left on disk (manifests, ``rejected/`` datasets, metrics JSON,
training logs, evaluation results) and says plainly when a stage was not part of the run, so the
report of a partial run is still truthful.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
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
        record = _json(run_dir / "run.json") or {}
        from textbooklm.pipeline import STAGES

        names = [s.name for s in STAGES if (run_dir / s.name).is_dir() and s.name != "report"]
        return cls(run_dir, record, names)

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


def _reason_counts(ds: Dataset) -> Counter[str]:
    counts: Counter[str] = Counter()
    for shard in ds.shards():
        if "reason" in pq.read_schema(shard).names:
            counts.update(pq.read_table(shard, columns=["reason"]).column("reason").to_pylist())
    return counts


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
        ds = Dataset(run.folder(name))
        if not ds.is_finished:
            continue
        kept = ds.num_rows
        rej = Dataset(run.folder(name) / "rejected")
        reasons = _reason_counts(rej) if rej.is_finished else Counter()
        dropped = sum(reasons.values())
        mb = _text_bytes(ds)
        why = ", ".join(f"{k} {v}" for k, v in reasons.most_common())
        rows.append((name, kept + dropped, kept, dropped, None if mb is None else round(mb / 1e6, 2),
                     None if mb is None else round(mb / 4e6, 2), why))
        names.append(name)
        kept_counts.append(kept)
        dropped_counts.append(dropped)
    if not rows:
        return H.missing("No finished stage in this run.")
    return (
        H.table(["stage", "records out+dropped", "kept", "dropped", "text MB kept", "~M tokens kept",
                 "drop reasons"], rows, "tokens estimated as bytes / 4")
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
    return _summary_tables(run, present)


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
        rows = report.get("taus") or report.get("rows") or []
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            cols = [c for c in rows[0] if not isinstance(rows[0][c], (list, dict))]
            body += H.table(cols, [[r.get(c) for c in cols] for r in rows], "removal by AST match rate tau")
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
    ours: list[tuple[str, str, str, Any]] = []
    for name in run.stages:
        results = _json(run.folder(name) / "results.json")
        if name.startswith("eval") and isinstance(results, dict):
            for metric, value in (results.get("metrics") or {}).items():
                ours.append(("this run", name, metric, value))
    body = ""
    if ours:
        body += H.table(["model", "stage", "metric", "value"], ours, "this run")
    else:
        body += H.missing("No evaluation stage was part of this run.")
    body += H.table(["model", "source", "metric", "value"], PAPER_RESULTS,
                    "published figures (pass@1 in %, accuracies as fractions)")
    return body


def teacher(run: RunData) -> str:
    rows = []
    for name in run.stages:
        led = run.summary(name).get("teacher")
        if isinstance(led, dict):
            rows.append((name, led.get("model", ""), led.get("requests"), led.get("tokens_in"),
                         led.get("tokens_out"), led.get("failed"), led.get("cost_usd"), led.get("wall_s")))
    if not rows:
        return H.missing("No stage asked a teacher model anything in this run.")
    return H.table(["stage", "model", "requests", "tokens in", "tokens out", "failed", "cost USD", "wall s"], rows)


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
    "teacher": teacher, "timing": timing,
}


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report for ``run_dir`` (to ``RUN_DIR/report.html`` unless ``out`` is given)."""
    run_dir = Path(run_dir)
    run = RunData.load(run_dir)
    sections = []
    for sid, title in SECTIONS:
        try:
            body = BUILDERS[sid](run)
        except Exception as exc:  # noqa: BLE001 - one unreadable stage must not hide the others
            body = H.missing(f"could not build this section: {type(exc).__name__}: {exc}")
        sections.append((sid, title, body))
    total = sum(float((s or {}).get("seconds") or 0) for s in run.record.get("stages", {}).values())
    page = H.page("textbooklm run report", f"{run_dir} — {len(run.stages)} stages, {total:.0f} s", sections)
    target = Path(out) if out else run_dir / "report.html"
    target.write_text(page, encoding="utf-8")
    return target
