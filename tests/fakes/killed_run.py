"""Run a pipeline in a child process and SIGKILL it mid-stage (for resume tests that count requests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from fakes.cache_reader import cached_prompts


def kill_when_cached(cfg: Any, run_dir: Path, cached: int, timeout_s: float = 120) -> set[str]:
    """Start ``run_pipeline(cfg, run_dir)`` in a child, SIGKILL it once the run's cache holds ``cached``
    replies (or it ended), and return the prompts the cache held after the kill (its workers die with it)."""
    script = textwrap.dedent(f"""
        from textbooklm.config import PipelineConfig
        from textbooklm.pipeline import run_pipeline
        run_pipeline(PipelineConfig.model_validate_json({cfg.model_dump_json()!r}), {str(run_dir)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    cache = Path(run_dir) / "_cache"
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(cached_prompts(cache).values()) >= cached:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    time.sleep(0.5)  # the pool's workers die with the run (process_lifetime.die_with)
    return set(cached_prompts(cache))
