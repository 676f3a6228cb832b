"""Progress in a log file (no terminal): a short line every 10%, never a redrawn bar."""

from __future__ import annotations

import io

from rich.console import Console

from textbooklm import progress


def _capture(monkeypatch) -> io.StringIO:
    buf = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buf, force_terminal=False, width=200))
    return buf


def test_a_log_gets_one_line_per_tenth(monkeypatch):
    buf = _capture(monkeypatch)
    with progress.progress_bar("judge", total=1000) as advance:
        for _ in range(1000):
            advance(1)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 10, lines
    assert lines[0].startswith("judge: 100/1,000 (10%)") and lines[-1].startswith("judge: 1,000/1,000 (100%)")
    assert "\r" not in buf.getvalue() and max(len(x) for x in lines) < 80


def test_unknown_total_logs_at_doublings_and_the_end(monkeypatch):
    buf = _capture(monkeypatch)
    with progress.progress_bar("read", total=None) as advance:
        for _ in range(100):
            advance(1)
    counts = [int(line.split(":")[1].split(",")[0].strip().replace(",", "")) for line in buf.getvalue().splitlines()]
    assert counts == [1, 2, 4, 8, 16, 32, 64, 100]
