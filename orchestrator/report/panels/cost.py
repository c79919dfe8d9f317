"""FLOP cost panel (`report.cost`): amortized and full FLOPs when students reuse a teacher.

A teacher trained in another run is already paid for: amortized FLOPs leave it out,
full FLOPs charge it to the student. The panel adds both columns to the runs table.
"""

from __future__ import annotations

import polars as pl

from orchestrator.report.registry import Panel, add_panel
from orchestrator.report.table import FLOPS_TOTAL

FLOPS_AMORTIZED = "flops_amortized"
FLOPS_FULL = "flops_full"
DEFAULT_TEACHER_FLOPS = "teacher_flops"


def with_cost_columns(table: pl.DataFrame, teacher_flops: str) -> pl.DataFrame:
    """Amortized FLOPs leave out a reused teacher (already paid for); full FLOPs charge it to the student."""
    teacher = pl.col(teacher_flops).cast(pl.Float64, strict=False).fill_nan(None).fill_null(0.0)
    return table.with_columns(
        pl.col(FLOPS_TOTAL).alias(FLOPS_AMORTIZED),
        (pl.col(FLOPS_TOTAL) + teacher).alias(FLOPS_FULL),
    )


def teacher_flops_column(section: dict) -> str:
    """The column holding a reused teacher's FLOPs, as `report.cost` names it (other panels read it too)."""
    options = section.get("cost")
    return (options if isinstance(options, dict) else {}).get("teacher_flops", DEFAULT_TEACHER_FLOPS)


def has_cost_columns(table: pl.DataFrame) -> bool:
    """Whether the table carries amortized/full FLOPs (the cost panel ran)."""
    return FLOPS_AMORTIZED in table.columns or FLOPS_FULL in table.columns


def cost_section(table: pl.DataFrame, options: dict) -> tuple[pl.DataFrame, list[str]]:
    """Add amortized and full FLOPs when some student reused a teacher trained in another run."""
    column = options.get("teacher_flops", DEFAULT_TEACHER_FLOPS)
    lines = ["## FLOP cost", ""]
    if column not in table.columns:
        return table, [*lines, (f"Skipped the cost panel: no run logged `{column}`, "
                       "so amortized and full FLOPs are the same."), ""]
    costed = with_cost_columns(table, column)
    charged = costed.filter(pl.col(FLOPS_FULL) > pl.col(FLOPS_AMORTIZED)).height
    return costed, [
        *lines,
        (f"`{FLOPS_AMORTIZED}` = `{FLOPS_TOTAL}` (a reused teacher's FLOPs left out); "
        f"`{FLOPS_FULL}` = `{FLOPS_TOTAL}` + `{column}`. "
        f"{charged} of {table.height} runs carry teacher FLOPs."), "",
    ]


PANEL = add_panel(Panel("cost", options=("teacher_flops",), prepare=cost_section,
                        columns=(FLOPS_AMORTIZED, FLOPS_FULL)))
