"""The synthesis area's report sections: textbooks with their seeds, exercises with source, tests and
mutation score, and what was rejected and why.

Cosmopedia's write-up is the model: every sample shown beside the seed (topic, audience, style) that
asked for it. The warning is the one a run must not hide: a teacher whose output was all rejected
(nothing verified), so the stage's data came from elsewhere or not at all.
"""

from __future__ import annotations

import json
from typing import Any

from textbooklm.reporting import html as H
from textbooklm.reporting import plots
from textbooklm.reporting.section import Section
from textbooklm.reporting.view import RunView, provenance


def _seed(row: dict[str, Any]) -> dict[str, Any]:
    seed = row.get("seed")
    if isinstance(seed, str):
        try:
            seed = json.loads(seed)
        except json.JSONDecodeError:
            seed = None
    if not isinstance(seed, dict):
        seed = (provenance(row).get("synth") or {}).get("seed") or {}
    return seed


def _drop_bars(view: RunView, stage: str) -> str:
    reasons = (view.info(stage).get("stats") or {}).get("dropped_by_reason") or {}
    return H.figure(plots.sorted_bars(reasons, f"{stage}: why samples were rejected", "samples"),
                    f"{stage} drop reasons") if reasons else ""


def textbooks_section(view: RunView, shown: int = 3) -> Section:
    s = view.summary("textbooks")
    body = H.lead(view.line("textbooks")) + _drop_bars(view, "textbooks")
    items = []
    for side, rejected in (("kept", False), ("rejected", True)):
        for r in view.records("textbooks", ["text", "seed", "provenance", "reason", "detail"], rejected=rejected,
                              limit=shown):
            seed = _seed(r)
            code = (provenance(r).get("synth") or {}).get("code") or {}
            meta = (H.tag(side, "kept" if side == "kept" else "dropped")
                    + H.esc(" · ".join(str(x) for x in (seed.get("topic"), seed.get("audience"), seed.get("style"))
                                       if x))
                    + (H.esc(f" · words {', '.join(seed['words'])}") if seed.get("words") else "")
                    + (H.esc(f" · excerpt of {seed['excerpt'].get('path', 'a corpus file')}")
                       if isinstance(seed.get("excerpt"), dict) else "")
                    + (H.esc(f" · code blocks {code.get('passed', 0)}/{code.get('runnable', 0)} ran ok")
                       if code.get("runnable") else "")
                    + (H.esc(f" · {r['reason']}: {r.get('detail') or ''}") if r.get("reason") else ""))
            items.append(H.example(meta, r.get("text") or ""))
    if items:
        body += "<h3>textbooks with the seed that asked for them</h3>" + H.examples(items)
    warnings = []
    asked, kept = s.get("asked"), s.get("kept")
    if asked and kept == 0:
        warnings.append(f"textbooks: the teacher wrote {asked} and none was kept "
                        f"({', '.join(f'{k} {v}' for k, v in (s.get('rejected_by_reason') or {}).items())})")
    blocks = s.get("code_blocks") or {}
    if blocks.get("runnable") and not blocks.get("passed"):
        warnings.append(f"textbooks: none of the {blocks['runnable']} runnable code blocks ran without error")
    story = [f"{kept:,} of {asked:,} textbooks kept"] if asked is not None and kept is not None else []
    return Section(body=body, warnings=warnings, story=story)


def _exercise_meta(r: dict[str, Any], side: str) -> str:
    note = provenance(r).get("synth") or {}
    mined = note.get("mined") or {}
    teacher = note.get("teacher") or {}
    source = (f"mined from {mined.get('source_path')}:{mined.get('function')}" if mined
              else f"teacher {teacher.get('model', '?')}" if teacher else note.get("source") or "?")
    sep = note.get("separation") or {}
    score = sep.get("mutation_score")
    verification = note.get("verification") or {}
    parts = [source, f"{verification.get('n_tests', '?')} tests {verification.get('status', '')}".strip()]
    if score is not None:
        parts.append(f"mutation score {score:.2f} ({sep.get('killed')}/{sep.get('mutants')} mutants killed)")
    if r.get("reason"):
        parts.append(f"{r['reason']}: {(r.get('detail') or '')[:200]}")
    return H.tag(side, "kept" if side == "kept" else "dropped") + H.esc(" · ".join(parts))


def exercises_section(view: RunView, shown: int = 4) -> Section:
    s = view.summary("exercises")
    body = H.lead(view.line("exercises")) + _drop_bars(view, "exercises")
    sep = s.get("separation") or {}
    if sep.get("mutation_scores"):
        body += H.table(["mutation score", *sep["mutation_scores"]],
                        [("kept exercises", *sep["mutation_scores"].values())],
                        f"share of {sep.get('mutants_per_exercise', '?')} mutants per exercise its tests kill "
                        f"(median {sep.get('median_mutation_score', float('nan')):.2f}; below "
                        f"{sep.get('min_mutation_score', '?')} rejected as weak tests)")
    items = []
    for side, rejected in (("kept", False), ("rejected", True)):
        for r in view.records("exercises", ["prompt", "completion", "test", "text", "provenance", "reason", "detail"],
                              rejected=rejected, limit=shown):
            text = (r.get("prompt") or "") + (r.get("completion") or "") if r.get("prompt") else r.get("text") or ""
            if r.get("test"):
                text += "\n# tests\n" + r["test"]
            items.append(H.example(_exercise_meta(r, side), text, limit=1500))
    if items:
        body += "<h3>exercises with their source, tests and mutation score</h3>" + H.examples(items)
    warnings = []
    sources = getattr(getattr(view.run.cfg, "exercises", None), "source", None) if view.run.cfg else None
    sources = [sources] if isinstance(sources, str) else list(sources or [])
    by_source = s.get("kept_by_source") or {}
    if "teacher" in sources and not by_source.get("teacher"):
        warnings.append("exercises: the teacher's exercises: none verified (every kept exercise came from "
                        + (", ".join(f"{k} {v}" for k, v in by_source.items() if v) or "nowhere") + ")")
    elif s.get("asked") and not s.get("kept"):
        warnings.append(f"exercises: {(s.get('counts') or {}).get('in', s['asked'])} candidates, none verified")
    story = []
    if s.get("kept") is not None:
        considered = (s.get("counts") or {}).get("in", s.get("asked", 0))  # as status counts them
        story.append(f"{s['kept']:,} of {considered:,} candidate exercises verified in the sandbox"
                     + (f" ({', '.join(f'{k} {v}' for k, v in by_source.items())})" if by_source else ""))
    return Section(body=body, warnings=warnings, story=story)
