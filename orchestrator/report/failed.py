"""The `## Failed runs` list: each failure's last error line, with the traceback's tail below it."""

from __future__ import annotations

import polars as pl

from orchestrator.report.markdown import format_value

_ERROR_PREVIEW_CHARS = 2000


def failures_section(table: pl.DataFrame) -> list[str]:
    """One bullet per failed run; multi-line errors keep their last 2000 characters in a code block."""
    failed = table.filter(pl.col("status") == "failed")
    if failed.height == 0:
        return ["## Failed runs", "", "None.", ""]
    lines = ["## Failed runs", ""]
    for run_id, variant, stage, error in failed.select("run_id", "variant", "stage", "error").iter_rows():
        text = (error or "no error recorded").strip()
        last_line = text.splitlines()[-1] if text else "no error recorded"
        lines.append(f"- `{run_id}` ({variant}, {stage}): {format_value(last_line)}")
        if "\n" in text:
            lines += ["", "  ```", *[f"  {l}" for l in text[-_ERROR_PREVIEW_CHARS:].splitlines()], "  ```"]
    return [*lines, ""]
