"""Config of the report stage."""

from __future__ import annotations

from pydantic import Field

from textbooklm.config_base import StrictModel


class ReportConfig(StrictModel):
    """The run's HTML report (``RUN_DIR/report.html``), built after every other stage."""

    screenshot: bool = Field(False, description="Also save RUN_DIR/report.png from headless Chromium, if present.")
