"""The `## Runs` table: every swept key beside the results, so a reader sees what each run varied.

Metrics with baselines (`<m>/random_init`, `<m>/raw_input`) get reference rows below the runs
instead of columns of their own, and each run a ✓/✗ saying whether its y beats them (baselines.py).
"""

from __future__ import annotations

import polars as pl

from orchestrator.report.baselines import (
    BEATS,
    beats_marks,
    is_baseline_of,
    reference_rows,
    varying_note,
)
from orchestrator.report.markdown import markdown_table

SCHEDULED_LR = "lr"
SCHEDULED_LR_LABEL = "lr (final, scheduled)"  # the schedule's last value, not the configured optim.lr


def _shown_columns(
    table: pl.DataFrame, wanted: list[str], metric_names: list[str]
) -> list[str]:
    """The wanted columns, then every other numeric metric except baselines of shown metrics."""
    extra = [
        m for m in metric_names
        if m not in wanted and m in table.columns and table.schema[m].is_numeric()
    ]
    columns = list(dict.fromkeys(c for c in [*wanted, *extra] if c in table.columns))
    return [c for c in columns if not is_baseline_of(c, columns)]


def _with_beats(table: pl.DataFrame, columns: list[str], y: str) -> tuple[pl.DataFrame, list[str]]:
    """The `beats baselines` ✓/✗ column right after y, when y has baselines."""
    marks = beats_marks(table, y)
    if marks is None:
        return table, columns
    at = columns.index(y) + 1
    return table.with_columns(marks), [*columns[:at], BEATS, *columns[at:]]


def runs_section(
    table: pl.DataFrame, x: str, y: str, group: str | None, metric_names: list[str],
    extra_columns: tuple[str, ...] = (), swept: list[str] = (),
) -> list[str]:
    """Every swept key beside the results; panel columns (e.g. cost) follow x; the logged `lr` is
    labelled as the schedule's final value; baselines of shown metrics become reference rows."""
    wanted = ["run_id", "status", *([group] if group else []), *swept, x, *extra_columns, y]
    columns = _shown_columns(table, wanted, metric_names)
    shown, columns = _with_beats(table, columns, y)
    ordered = shown.select(columns).sort([c for c in (group, x) if c and c in columns], nulls_last=True)
    references = reference_rows(table, columns, group)
    if references.height:
        ordered = pl.concat([ordered, references.select([c for c in references.columns if c in columns])],
                            how="diagonal_relaxed")
    if SCHEDULED_LR in metric_names and SCHEDULED_LR in ordered.columns:
        ordered = ordered.rename({SCHEDULED_LR: SCHEDULED_LR_LABEL})
    return ["## Runs", "", markdown_table(ordered), "", *varying_note(table, columns, group)]
