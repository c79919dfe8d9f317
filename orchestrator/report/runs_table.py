"""The `## Runs` table: every swept key beside the results, so a reader sees what each run varied."""

from __future__ import annotations

import polars as pl

from orchestrator.report.markdown import markdown_table

SCHEDULED_LR = "lr"
SCHEDULED_LR_LABEL = "lr (final, scheduled)"  # the schedule's last value, not the configured optim.lr


def runs_section(
    table: pl.DataFrame, x: str, y: str, group: str | None, metric_names: list[str],
    extra_columns: tuple[str, ...] = (), swept: list[str] = (),
) -> list[str]:
    """Every swept key beside the results; panel columns (e.g. cost) follow x; the logged `lr` is
    labelled as the schedule's final value."""
    wanted = ["run_id", "status", *([group] if group else []), *swept, x, *extra_columns, y]
    extra = [
        m for m in metric_names
        if m not in wanted and m in table.columns and table.schema[m].is_numeric()
    ]
    columns = list(dict.fromkeys(c for c in [*wanted, *extra] if c in table.columns))
    ordered = table.select(columns).sort([c for c in (group, x) if c], nulls_last=True)
    if SCHEDULED_LR in metric_names and SCHEDULED_LR in ordered.columns:
        ordered = ordered.rename({SCHEDULED_LR: SCHEDULED_LR_LABEL})
    return ["## Runs", "", markdown_table(ordered), ""]
