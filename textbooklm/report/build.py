"""Build ``RUN_DIR/report.html``: the run's story on the first screen, then one section per stage.

The first screen is what a reader opens the report for: one line per hop of the data (files in ->
kept -> tokens -> model -> metrics), the numbers that moved beyond their noise, and the warnings the
run detects itself, each linked to its section. Every stage's section comes from its own area,
through its registry ``report`` hook (``<area>/report_section.py``), which also hands up its story
lines and warnings (see :class:`textbooklm.reporting.section.Section`); a stage without a hook gets a
plain section from what it recorded. Then the run-wide parts: the per-stage counts (exactly what
``textbooklm status`` prints), teacher spend, time per stage, and the data ablation if one ran.

Everything is read through :class:`textbooklm.run.Run` (via :class:`~textbooklm.reporting.view.RunView`):
the report builds no run path of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textbooklm import registry
from textbooklm.reporting import html as H
from textbooklm.reporting import plots
from textbooklm.reporting.section import Section, as_section
from textbooklm.reporting.view import RunView
from textbooklm.run import Run

STORY_ID = "story"
RUN_WIDE = [("stages", "Stage by stage (as `textbooklm status`)"), ("teacher", "Teacher tokens and cost"),
            ("timing", "Time per stage"), ("ablation", "Data ablation")]


@dataclass
class Built:
    """One section of the page, built: its anchor, heading and what it hands to the first screen."""

    sid: str
    title: str
    section: Section
    error: str | None = None  # why its hook failed (the page shows that instead)


@dataclass
class Page:
    """The built page: its HTML, its sections' (anchor, heading) in order, and those that failed to build."""

    html: str
    sections: list[tuple[str, str]]
    failed: dict[str, str]  # anchor -> "ExceptionType: message"
    warnings: int  # warnings handed to the first screen


def stage_section_id(name: str) -> str:
    return f"stage-{name}"


def _plain_section(view: RunView, name: str) -> Section:
    """A stage without a report hook: its summary line and its summary's plain values."""
    summary = view.summary(name)
    plain = {k: v for k, v in summary.items() if k != "line" and not isinstance(v, (dict, list))}
    return Section(body=H.lead(view.line(name)) + (H.kv_table(plain) if plain else ""))


def stage_sections(view: RunView) -> list[Built]:
    """One section per stage of the run, in data-flow order, from its area's ``report`` hook."""
    out = []
    for spec in registry.stages():
        if spec.name == "report" or not view.has(spec.name):
            continue
        hook = registry.resolve_hook(spec.report)
        error = None
        try:
            section = as_section(hook(view)) if hook else _plain_section(view, spec.name)
        except Exception as exc:  # noqa: BLE001 - one unreadable stage must not hide the others
            error = f"{type(exc).__name__}: {exc}"
            section = Section(body=H.missing(f"could not build this section: {error}"),
                              warnings=[f"the {spec.name} section could not be built ({type(exc).__name__})"])
        if section is None:
            continue
        state = view.state(spec.name)
        head = H.note(spec.help) if spec.help else ""
        if state != "done":
            why = view.run.stale_reason(spec.name) if state == "stale" else ""
            head += H.missing(f"state: {state}" + (f" ({why})" if why else "") + ": these figures may not "
                              "describe the data the later stages used")
            section.warnings.append(f"{spec.name} is {state}" + (f" ({why})" if why else ""))
        section.body = head + section.body
        out.append(Built(stage_section_id(spec.name), section.title or spec.name, section, error))
    return out


def story(built: list[Built]) -> str:
    """The first screen: the hops, the numbers that moved, the warnings (each linked to its section)."""
    hops = [f"{H.link(b.sid, b.title)}: {H.esc(line)}" for b in built for line in b.section.story]
    body = "<ol class='story'>" + "".join(f"<li>{h}</li>" for h in hops) + "</ol>" if hops else H.missing(
        "No stage of this run has finished yet.")
    warnings = [f"{H.esc(w)} ({H.link(b.sid, 'see ' + b.title)})" for b in built for w in b.section.warnings]
    if warnings:
        body += (f"<div class='warnings' id='warnings'><h3>{len(warnings)} warning{'s' * (len(warnings) != 1)}</h3>"
                 + H.bullets(warnings) + "</div>")
    else:
        body += ("<div class='ok' id='warnings'>No warning: the run's own checks (judge spread and agreement, "
                 "classifier against its baselines, teachers that verified nothing, repetition in the pack, "
                 "evaluation overlap with training data, empty samples) found nothing.</div>")
    moved = [f"{H.esc(m)} ({H.link(b.sid, b.title)})" for b in built for m in b.section.moved]
    body += "<h3>What moved beyond its noise</h3>" + (H.bullets(moved, "moved") if moved else H.note(
        "No paired comparison of this run moved beyond its noise (or none was measured)."))
    return body


# -- run-wide sections -----------------------------------------------------------------------------
def stages_table(view: RunView) -> str:
    """Exactly the rows `textbooklm status` prints, so the page and the CLI never disagree."""
    from textbooklm.pipeline import run_status

    rows = run_status(view.run.folder, view.run.cfg)
    body = H.table(["stage", "state", "in", "kept", "dropped", "seconds"],
                   [(r["stage"], r["state"], r["in"], r["kept"], r["rejected"], r["seconds"]) for r in rows],
                   "records in = kept + dropped, as each stage counted them; blank for stages whose output is an "
                   "artefact (tokenizer, pack, models, eval)")
    counted = [r for r in rows if r["kept"] is not None and r["rejected"] is not None]
    if counted:
        body += H.figure(plots.funnel_chart([r["stage"] for r in counted], [r["kept"] for r in counted],
                                            [r["rejected"] for r in counted]), "records per stage")
    return body


def _ledgers(view: RunView) -> list[dict[str, Any]]:
    """Every teacher ledger (stage x model totals) kept in the run's request cache, summed over its files
    (the main file and one per driver, teacher/cache.py)."""
    from textbooklm.teacher.cache_admin import read_ledgers

    root = view.teacher_cache_dir
    folders = sorted({db.parent for db in root.rglob("teacher_cache*.sqlite")}) if root.is_dir() else []
    return [row for folder in folders for row in read_ledgers(folder)]


def teacher(view: RunView) -> str:
    rows = [(r["stage"], r["model"], r.get("requests"), r.get("cached"), r.get("failed"), r.get("tokens_in"),
             r.get("tokens_out"), r.get("cost_usd"), round(float(r.get("wall_s") or 0), 1)) for r in _ledgers(view)]
    if not rows:
        return H.missing("No stage asked a teacher model anything in this run.")
    return H.table(["stage", "model", "requests", "from cache", "failed", "tokens in", "tokens out", "cost USD",
                    "wall s"], rows, "from the teachers' ledgers (a local model costs electricity, not tokens)")


def timing(view: RunView) -> str:
    names = [n for n in view.stages if view.info(n).get("seconds") is not None]
    secs = [float(view.info(n)["seconds"]) for n in names]
    if not names:
        return H.missing("No timings recorded.")
    return H.figure(plots.bar_chart(names, secs, f"Time per stage (total {sum(secs):,.1f} s before this report)",
                                    "seconds"), "time per stage")


def ablation(view: RunView) -> str:
    summary = view.json("ablation", "summary.json")
    if not isinstance(summary, dict):
        return H.missing("No data ablation for this run (`textbooklm ablate CONFIG --run RUN` adds one).")
    notes = summary.get("notes", {})
    body = H.note("One model shape trained on each data recipe with identical settings, "
                  f"{notes.get('tokens_per_arm', 0):,} tokens per arm, seeds {summary.get('seeds')}; values at the "
                  "end of training as mean ± standard deviation over seeds. Validation loss is on one shared held-out "
                  f"set ({notes.get('validation_sequences')} x {notes.get('seq_len')} tokens) no arm trained on; lower "
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
    plots_dir = view.artefact("ablation", "plots")
    return body + "".join(H.figure(p.read_bytes(), p.stem) for p in sorted(plots_dir.glob("*.png")))


RUN_WIDE_BUILDERS = {"stages": stages_table, "teacher": teacher, "timing": timing, "ablation": ablation}


def build(run: Run) -> Page:
    """The page, and what went into it: its sections and those that could not be built."""
    view = RunView(run)
    built = stage_sections(view)
    sections = [(STORY_ID, "The run's story", story(built))]
    sections += [(b.sid, b.title, b.section.body) for b in built]
    failed = {b.sid: b.error for b in built if b.error}
    for sid, title in RUN_WIDE:
        try:
            body = RUN_WIDE_BUILDERS[sid](view)
        except Exception as exc:  # noqa: BLE001 - as for stage sections
            failed[sid] = f"{type(exc).__name__}: {exc}"
            body = H.missing(f"could not build this section: {failed[sid]}")
        sections.append((sid, title, body))
    specs = [s for s in run.specs() if s.name != "report"]
    done = sum(run.state(s.name) == "done" for s in specs)
    seconds = sum(float(run.info(s.name).get("seconds") or 0) for s in specs)
    subtitle = (f"{run.folder} · {done} of {len(specs)} stages done (the report not counted), "
                f"{seconds:,.1f} s of stage time")
    return Page(H.page("textbooklm run report", subtitle, sections), [(sid, title) for sid, title, _ in sections],
                failed, sum(len(b.section.warnings) for b in built))


def build_page(run: Run) -> tuple[str, list[tuple[str, str]]]:
    """The page's HTML and its sections' (anchor, heading), in order."""
    page = build(run)
    return page.html, page.sections


def build_report(run_dir: str | Path, out: str | Path | None = None, run: Run | None = None) -> Path:
    """Write the report for ``run_dir`` (to ``RUN_DIR/report.html`` unless ``out`` is given).

    ``run``: the pipeline's own :class:`Run` (with the config being run); else the one ``run.json`` recorded.
    """
    run = run or Run(run_dir)
    page, _ = build_page(run)
    target = Path(out) if out else run.folder / "report.html"
    target.write_text(page, encoding="utf-8")
    return target
