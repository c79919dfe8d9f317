"""Row selection and grouping shared by plots, fits and panels.

Config columns can mix types across runs, and runs may lack a metric: these helpers
keep only the rows a computation can use, so one odd run never fails a whole report.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

ALL_RUNS_LABEL = "all"


def absent_columns(df: pl.DataFrame, columns: Iterable[str | None]) -> list[str]:
    """Requested columns the table lacks, so a panel can say what is missing instead of raising."""
    return [c for c in dict.fromkeys(columns) if c is not None and c not in df.columns]


def numeric_rows(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Rows where every column holds a finite number, those columns cast to Float64.

    Config columns can mix types across runs (stored as text then); a value that is
    not a number drops its row rather than failing the whole panel.
    """
    names = list(dict.fromkeys(columns))
    cast = df.with_columns([pl.col(c).cast(pl.Float64, strict=False) for c in names])
    return cast.filter(pl.all_horizontal([pl.col(c).is_not_null() & pl.col(c).is_finite() for c in names]))


def plottable_rows(df: pl.DataFrame, x: str, y: str) -> pl.DataFrame:
    """Rows a log-x plot or fit can use: positive finite x and finite y."""
    return df.filter(
        pl.col(x).is_not_null() & pl.col(y).is_not_null()
        & (pl.col(x).cast(pl.Float64) > 0)
        & pl.col(x).cast(pl.Float64).is_finite() & pl.col(y).cast(pl.Float64).is_finite()
    )


def group_labels(df: pl.DataFrame, group: str | None) -> list[str]:
    """Group label of each row: the group value as text, or "all" without a group."""
    if group is None:
        return [ALL_RUNS_LABEL] * df.height
    return [str(v) for v in df.get_column(group).to_list()]


def seed_stats(rows: pl.DataFrame, keys: list[str], y: str) -> pl.DataFrame:
    """Mean, standard error and count of y over rows sharing the keys (seeds of one setting)."""
    return (
        rows.group_by(keys)
        .agg(
            pl.col(y).cast(pl.Float64).mean().alias("mean"),
            pl.col(y).cast(pl.Float64).std().fill_null(0.0).alias("std"),
            pl.len().alias("n"),
        )
        .with_columns((pl.col("std") / pl.col("n").cast(pl.Float64).sqrt()).alias("sem"))
        .sort(keys)
    )
