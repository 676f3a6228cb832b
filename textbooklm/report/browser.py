"""Render the report in headless Chromium: a screenshot, and the DOM after scripts ran.

Used by the report test (broken images, missing sections) and by ``textbooklm report --screenshot``.
Chromium comes from Debian (``apt-get install chromium``); the flags keep it off the network.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=5000",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def render(page: Path, screenshot: Path | None = None, width: int = 1280, height: int = 6000,
           timeout: float = 120) -> str:
    """Return the page's DOM after load; also write a PNG screenshot when asked."""
    exe = chromium_path()
    if exe is None:
        raise RuntimeError("headless rendering needs Chromium: apt-get install chromium")
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="textbooklm-chromium-") as profile:
        base = [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
        if dom.returncode != 0:
            raise RuntimeError(f"chromium failed on {page}: {dom.stderr[-2000:]}")
        if screenshot is not None:
            shot = subprocess.run([*base, f"--screenshot={Path(screenshot).resolve()}", url],
                                  capture_output=True, text=True, timeout=timeout)
            if shot.returncode != 0 or not Path(screenshot).exists():
                raise RuntimeError(f"chromium screenshot failed: {shot.stderr[-2000:]}")
    return dom.stdout
