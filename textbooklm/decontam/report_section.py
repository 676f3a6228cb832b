"""The decontamination area's report section: each removal as the matched pair, side by side.

A count of removed samples cannot be checked; the training text next to the benchmark problem it
matched (and the signal and score that matched them) can. Pairs held back (a match too weak to remove
alone) are shown apart, so a reader can judge the rule too.
"""

from __future__ import annotations

from textbooklm.reporting import html as H
from textbooklm.reporting import plots
from textbooklm.reporting.section import Section
from textbooklm.reporting.view import RunView


def _pairs(view: RunView, decision: str, limit: int) -> str:
    pairs = view.json("decontam", "pairs.json")
    if not isinstance(pairs, list):
        return ""
    chosen = [p for p in pairs if isinstance(p, dict) and p.get("decision") == decision]
    out = ""
    for p in chosen[:limit]:
        meta = (f"{p.get('dataset')} sample {str(p.get('id'))[:12]} ~ {p.get('problem_id')} ({p.get('benchmark')}) · "
                f"signal {p.get('signal')} · score {p.get('score')}"
                + (f" · held back: {p['held_back']}" if p.get("held_back") and decision == "keep" else ""))
        out += H.pair(f"training sample ({p.get('dataset')})", p.get("training_snippet") or "",
                      f"benchmark problem {p.get('problem_id')}", p.get("problem_text") or "", H.esc(meta))
    if len(chosen) > limit:
        out += H.note(f"... and {len(chosen) - limit} more in decontam/pairs.json")
    return out


def decontam_section(view: RunView, shown: int = 4) -> Section:
    s = view.summary("decontam")
    body = H.lead(view.line("decontam"))
    stats = view.info("decontam").get("stats") or {}
    if stats.get("kept") is not None and s.get("kept") is not None and stats["kept"] != s["kept"]:
        held = s.get("heldout_exercises") or 0
        body += H.note(f"The stage-by-stage table counts the rows of the cleaned copies ({stats['kept']:,} kept); "
                       f"this line counts training samples ({s['kept']:,} kept)"
                       + (f": the copies also hold the {held:,} held-out exercises, kept out of training."
                          if stats["kept"] - s["kept"] == held else "."))
    by_signal = s.get("removed_by_signal") or {}
    if by_signal:
        body += H.figure(plots.sorted_bars(by_signal, "Samples removed, by the signal that matched", "samples"),
                         "decontam removals by signal")
    removed = _pairs(view, "remove", shown)
    body += "<h3>removals: the training sample and the problem it matched</h3>" + (
        removed or H.note("no sample was removed (or this run's decontam kept no pairs.json)"))
    held = _pairs(view, "keep", 2)
    if held:
        body += "<h3>matches held back (kept in training)</h3>" + held
    report = view.json("decontam", "report.json")
    if isinstance(report, dict) and isinstance(report.get("taus"), list) and report["taus"]:
        rows = [r for r in report["taus"] if isinstance(r, dict)]
        body += H.table(
            ["tau", "samples removed", "removed by AST", "similar problems", "non-similar", "similar (ids)"],
            [(r.get("tau"), r.get("removed"), r.get("removed_by_ast"), r.get("n_similar"), r.get("n_non_similar"),
              " ".join(r.get("similar_problems", [])[:12])) for r in rows],
            f"{report.get('n_samples')} samples against {report.get('n_problems')} benchmark problems: what pruning "
            "at each AST match rate tau would remove (phi-1 section 5)")
    story = []
    if s.get("checked") is not None:
        story.append(f"decontamination checked {s['checked']:,} training samples and removed {s.get('removed', 0):,}"
                     + (f" ({', '.join(f'{k} {v}' for k, v in by_signal.items())})" if by_signal else "")
                     + (f"; {s['heldout_exercises']:,} exercises held out as a benchmark"
                        if s.get("heldout_exercises") else ""))
    return Section(body=body, story=story)
