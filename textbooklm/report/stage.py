"""The report stage: last in every run, it turns the run folder into ``RUN_DIR/report.html``.

Its ledger is about the page's sections: each one built is kept, one whose builder failed is dropped
(``section-failed``, with the error; the page shows the error in its place and a warning), so a report
with a broken section is visible in ``rejected/`` and its line, not only on the page.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from textbooklm.progress import summary_line
from textbooklm.report.browser import chromium_path, render
from textbooklm.report.build import build
from textbooklm.report.config import ReportConfig
from textbooklm.stage_context import StageContext
from textbooklm.store import Dataset, shard_name, write_dataset

REJECTED_SCHEMA = pa.schema([("section", pa.string()), ("title", pa.string())])


def run(cfg: ReportConfig, inputs: dict[str, Dataset], out: Path, ctx: StageContext) -> Dataset:
    page = build(ctx.owner)
    path = ctx.run_dir / "report.html"
    path.write_text(page.html, encoding="utf-8")
    shot = None
    if cfg.screenshot and chromium_path():
        shot = ctx.run_dir / "report.png"
        render(path, shot)
    ledger = ctx.ledger("sections", REJECTED_SCHEMA)
    part = ledger.shard(shard_name(0))
    for sid, title in page.sections:
        if sid in page.failed:
            part.drop({"section": sid, "title": title}, "section-failed", page.failed[sid])
        else:
            part.keep()
    part.count("warnings", page.warnings)
    part.close()
    ledger.forget({part.key})
    tail = (f"{path} ({path.stat().st_size / 1e3:.0f} kB, {page.warnings} warning{'s' * (page.warnings != 1)} "
            "on its first screen)" + (f", screenshot {shot}" if shot else ""))
    summary = ledger.finish(tail=tail, path=str(path))
    rows = [{"section": sid, "title": title} for sid, title in page.sections]
    ds = write_dataset(out, rows, stage="report", config_hash=ctx.config_hash, summary=summary)
    summary_line(summary["line"])
    return ds
