"""The report's axes (x, y, group) from the command line and the sweep's `report:` section, checked
against the results so a typo is a user error naming the valid columns, not a blank plot."""

from __future__ import annotations

import difflib

import polars as pl

from orchestrator.report.markdown import names
from orchestrator.report.table import FLOPS_TOTAL

DEFAULT_X = FLOPS_TOTAL
DEFAULT_Y = "probe_acc"
DEFAULT_BUDGET = "budget.flops"
DEFAULT_METHOD = "variant.name"
AXIS_KEYS = ("x", "y", "group")  # the `report:` keys that are not panels


class ReportError(ValueError):
    """A report setting names no column or panel: the CLI prints it as `error: ... Fix: ...`."""


def report_section(spec: dict) -> dict:
    """The sweep spec's `report:` mapping ({} when absent or not a mapping)."""
    section = spec.get("report") or {}
    return section if isinstance(section, dict) else {}


def space_keys(spec: dict) -> list[str]:
    """The keys the sweep's `space:` varies, in the spec's order."""
    space = spec.get("space") or {}
    return [str(key) for key in space] if isinstance(space, dict) else []


def option_list(value) -> list[str]:
    """A panel option given as one name or a list of names."""
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


def unknown_column_error(where: str, name: str, sweep: str, valid: list[str]) -> ReportError:
    """Name the bad setting, the closest valid names, and every valid one."""
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" (did you mean {names(close)}?)" if close else ""
    return ReportError(
        f"{where} {name!r}: no such column in the results of sweep {sweep}{hint}. "
        f"Fix: use one of {', '.join(sorted(valid))}"
    )


def check_settings(
    table: pl.DataFrame, sweep: str, given: dict[str, str | None], group_from_spec: str | None
) -> None:
    """An explicit --x/--y/--group, or the spec's report.group, must name a column (x and y a numeric one)."""
    numeric = [c for c in table.columns if table.schema[c].is_numeric()]
    groupable = [c for c in table.columns if c not in ("run_id", "error")]
    for option, valid in (("x", numeric), ("y", numeric), ("group", groupable)):
        name = given.get(option)
        if name is not None and name not in valid:
            raise unknown_column_error(f"--{option}", name, sweep, valid)
    if group_from_spec is not None and group_from_spec not in groupable:
        raise unknown_column_error("report.group in sweep.yaml:", group_from_spec, sweep, groupable)


def report_settings(section: dict, x, y, group) -> tuple[str, str, str | None]:
    """Explicit arguments win over the sweep spec's `report:` section, then defaults."""
    return (
        x or section.get("x") or DEFAULT_X,
        y or section.get("y") or DEFAULT_Y,
        group or section.get("group"),
    )
