"""Registry entry of the report: last in every run, re-built whenever any stage changes."""

from textbooklm.registry import StageSpec
from textbooklm.report.config import ReportConfig

STAGES = [
    StageSpec("report", ReportConfig, "textbooklm.report.stage:run", reads="all", records=False,
              help="Write RUN/report.html: the run's story, warnings, examples and plots of every stage "
                   "(each area's section from its registry report hook)."),
]
