"""Markdown report of one sweep (`jepa report`), written next to its results.

Generic parts, one module each: table (per-run table), runs_table, baselines (random-init and
raw-input reference rows, lines and ✓/✗), collapse (collapse warnings), curves (metric vs
FLOPs with fits and frontier), fits, frontier, failed, settings, store_checks;
document writes report.md. Panels live one per file under panels/ and are found by
name through registry.py (third parties: entry-point group `jepa_orchestrator.panels`).
"""

from orchestrator.report.document import write_report
from orchestrator.report.settings import ReportError
from orchestrator.report.store_checks import check_results

__all__ = ["ReportError", "check_results", "write_report"]
