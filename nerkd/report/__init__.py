"""``nerkd report``: entity scores, size, speed and plots of every model, as Markdown, HTML and JSON."""

from nerkd.report.build import (
    ModelRow,
    ModelSpec,
    Report,
    build_report,
    default_bench,
    default_data,
    default_models,
    default_output,
    named_models,
)
from nerkd.report.render import write_report

__all__ = ["ModelRow", "ModelSpec", "Report", "build_report", "default_bench", "default_data", "default_models",
           "default_output", "named_models", "write_report"]
