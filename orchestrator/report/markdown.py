"""Markdown text shared by every report section: rounded numbers, tables, safe image names."""

from __future__ import annotations

import difflib
import math
import re

import polars as pl

_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._=+-]")


def format_value(value) -> str:
    """Round numbers for reading: 4 significant digits, scientific when huge or tiny."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:.3g}" if abs(value) >= 1e6 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pl.DataFrame) -> str:
    """A polars frame as a GitHub-flavoured Markdown table."""
    header = "| " + " | ".join(df.columns) + " |"
    divider = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(format_value(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join([header, divider, *rows])


def image_name(stem: str) -> str:
    """A PNG file name from a stem that may hold metric names such as `eval/walk/return`."""
    return _UNSAFE_FILENAME_CHARS.sub("_", stem) + ".png"


def names(columns: list[str]) -> str:
    """Column names as inline code, comma separated."""
    return ", ".join(f"`{c}`" for c in columns)


def missing_columns_line(panel: str, table: pl.DataFrame, missing: list[str]) -> str:
    """One line naming the absent columns, with the closest existing names as a hint for typos.

    Panels print it instead of raising, so one panel's typo never costs the whole report.
    """
    hints = [m for name in missing for m in difflib.get_close_matches(name, table.columns, n=1)]
    hint = f" (did you mean {names(hints)}?)" if hints else ""
    return f"Skipped the {panel} panel: no column {names(missing)} in the results{hint}."
