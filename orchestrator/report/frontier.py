"""Pareto frontier of cost against a metric, and the report's frontier table."""

from __future__ import annotations

import polars as pl

from orchestrator.report.direction import higher_is_better
from orchestrator.report.markdown import markdown_table


def pareto_frontier(df: pl.DataFrame, x: str, y: str, mode: str = "max") -> pl.DataFrame:
    """Rows no other row beats on both cost x (lower better) and y; sorted by x."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    sign = 1.0 if mode == "max" else -1.0
    valid = df.filter(
        pl.col(x).is_not_null() & pl.col(y).is_not_null()
        & pl.col(x).cast(pl.Float64).is_finite() & pl.col(y).cast(pl.Float64).is_finite()
    )
    ordered = valid.with_columns((pl.col(y).cast(pl.Float64) * sign).alias("_score")).sort(
        [x, "_score"], descending=[False, True], maintain_order=True
    )
    best_before = pl.col("_score").cum_max().shift(1)
    frontier = ordered.filter(best_before.is_null() | (pl.col("_score") > best_before))
    return frontier.drop("_score")


def frontier_mode(y: str) -> str:
    """"max" for metrics that improve upwards, else "min"."""
    return "max" if higher_is_better(y) else "min"


def frontier_section(finished: pl.DataFrame, x: str, y: str, group: str | None) -> list[str]:
    """The `## Pareto frontier` table of finished runs."""
    mode = frontier_mode(y)
    frontier = pareto_frontier(finished, x, y, mode)
    columns = ["run_id", *([group] if group else []), x, y]
    better = "higher" if mode == "max" else "lower"
    lines = ["## Pareto frontier", "", f"Finished runs not beaten on both lower `{x}` and {better} `{y}`.", ""]
    if frontier.height == 0:
        return [*lines, "No finished runs with both values.", ""]
    return [*lines, markdown_table(frontier.select(columns)), ""]
