# ruff: noqa: I001
"""Built-in report panels, one file each; importing this package registers them.

Their order here is the order they appear in a report (so not sorted: the file opts out of I001).
"""

from orchestrator.report.panels import seeds  # noqa: F401  (registers by import)
from orchestrator.report.panels import zero_shot  # noqa: F401
from orchestrator.report.panels import isoflop  # noqa: F401
from orchestrator.report.panels import teacher_quality  # noqa: F401
from orchestrator.report.panels import pareto  # noqa: F401
from orchestrator.report.panels import cost  # noqa: F401
from orchestrator.report.panels import linear_dynamics  # noqa: F401
from orchestrator.report.panels import tabular  # noqa: F401
from orchestrator.report.panels import label_efficiency  # noqa: F401
