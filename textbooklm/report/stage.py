"""The report stage: last in every run, it turns the run folder into ``RUN_DIR/report.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textbooklm.progress import summary_line
from textbooklm.report.browser import chromium_path, render
from textbooklm.report.build import build_page
from textbooklm.report.config import ReportConfig
from textbooklm.store import Dataset, write_dataset


def run(cfg: ReportConfig, inputs: dict[str, Dataset], out: Path, ctx: Any) -> Dataset:
    page_html, sections = build_page(ctx.owner)
    page = ctx.run_dir / "report.html"
    page.write_text(page_html, encoding="utf-8")
    shot = None
    if cfg.screenshot and chromium_path():
        shot = ctx.run_dir / "report.png"
        render(page, shot)
    rows = [{"section": sid, "title": title} for sid, title in sections]
    line = f"report: {page} ({page.stat().st_size / 1e3:.0f} kB, {len(rows)} sections)" + (
        f", screenshot {shot}" if shot else ""
    )
    ds = write_dataset(out, rows, stage="report", config_hash=ctx.config_hash,
                       summary={"line": line, "path": str(page)})
    summary_line(line)
    return ds
