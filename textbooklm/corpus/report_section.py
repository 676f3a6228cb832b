"""The corpus area's report section: files read, kept and dropped (why, with an example of each reason).

The first hop of the run's story (files in -> kept) comes from here, from the stage's own summary, the
same numbers ``textbooklm status`` prints.
"""

from __future__ import annotations

from textbooklm.reporting import html as H
from textbooklm.reporting import plots
from textbooklm.reporting.section import Section
from textbooklm.reporting.view import RunView


def corpus_section(view: RunView, per_reason: int = 1) -> Section:
    s = view.summary("corpus")
    body = H.lead(view.line("corpus"))
    reasons = (view.info("corpus").get("stats") or {}).get("dropped_by_reason") or {}  # what `status` counts
    if reasons:
        body += H.figure(plots.sorted_bars(reasons, "Why files were dropped", "files"), "corpus drop reasons")
    shown: dict[str, int] = {}
    items = []
    for r in view.records("corpus", ["path", "text", "reason", "detail"], rejected=True):
        reason = r.get("reason") or "?"
        if shown.get(reason, 0) >= per_reason:
            continue
        shown[reason] = shown.get(reason, 0) + 1
        meta = H.tag(reason, "dropped") + H.esc(f"{r.get('path')}" + (f" · {r['detail']}" if r.get("detail") else ""))
        items.append(H.example(meta, r.get("text") or "", limit=400))
    if items:
        body += "<h3>one dropped file per reason</h3>" + H.examples(items)
    story = []
    if s.get("read") is not None:
        mb = f" ({s['kept_bytes'] / 1e6:.2f} MB)" if s.get("kept_bytes") else ""
        story.append(f"{s['read']:,} files read, {s.get('kept', 0):,} kept{mb} after dropping "
                     f"{s.get('rejected', 0):,} bad files, {s.get('exact_duplicates', 0):,} exact and "
                     f"{s.get('near_duplicates', 0):,} near duplicates")
    return Section(body=body, story=story)
