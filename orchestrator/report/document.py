"""Write report.md for one sweep: summary, runs table (with baselines), collapse warnings, panel tables,
plot and fits, failures, frontier, panels.

Fits, plot and frontier use finished runs only: runs that were stopped early or failed
never completed their budget's schedule, so they would bias the curves. Panels named
in the sweep's `report:` section (see registry.py) follow; a panel that lacks its
columns or points says so in one line instead of failing the report.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib

import polars as pl

import orchestrator.report.panels  # noqa: F401  (registers the built-in panels)
from orchestrator.report.baselines import beats_sentence
from orchestrator.report.collapse import MARK, collapse_section, collapsed_count
from orchestrator.report.curves import curve_sections
from orchestrator.report.failed import failures_section
from orchestrator.report.registry import Panel, PanelContext, panels, requested_panels
from orchestrator.report.runs_table import runs_section
from orchestrator.report.settings import (
    check_settings,
    report_section,
    report_settings,
    space_keys,
)
from orchestrator.report.store_checks import require_local, require_results
from orchestrator.report.table import final_table, swept_columns
from orchestrator.results import ResultsStore

Requested = list[tuple[Panel, dict, list[str]]]


def _summary_section(table: pl.DataFrame, sweep: str, x: str, y: str, group: str | None) -> list[str]:
    """Run counts by status (and collapsed, if any), the axes, and how many finished runs beat y's baselines."""
    counts = table.group_by("status").len().sort("status")
    status_text = ", ".join(f"{s}: {n}" for s, n in counts.iter_rows())
    collapsed = collapsed_count(table)
    if collapsed:
        status_text += f", {MARK}: {collapsed}"
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"# Sweep `{sweep}`",
        "",
        f"Generated {generated}. Runs: {table.height} ({status_text}).",
        f"Plotting `{y}` against `{x}`" + (f", grouped by `{group}`." if group else "."),
        *beats_sentence(table.filter(pl.col("status") == "finished"), y),
        "",
    ]


def _prepare_table(table: pl.DataFrame, requested: Requested) -> tuple[pl.DataFrame, list[str]]:
    """Let the asked-for panels add columns (e.g. cost) before any section reads the table."""
    lines: list[str] = []
    for panel, options, notes in requested:
        if panel.prepare is not None:
            table, panel_lines = panel.prepare(table, options)
            lines += [*panel_lines, *notes]
    return table, lines


def _panel_columns(known: dict[str, Panel], table: pl.DataFrame) -> tuple[str, ...]:
    """Columns panels add that this table has: the runs table shows them after x."""
    return tuple(c for panel in known.values() for c in panel.columns if c in table.columns)


def _panel_sections(context: PanelContext, requested: Requested) -> list[str]:
    lines: list[str] = []
    for panel, options, notes in requested:
        if panel.render is not None:
            lines += [*panel.render(context, options), *notes]
    return lines


def _write_atomically(path: pathlib.Path, lines: list[str]) -> None:
    """A reader never sees half a report."""
    temp = path.with_name(f".report.md.{os.getpid()}.tmp")
    temp.write_text("\n".join(lines) + "\n")
    os.replace(temp, path)


def write_report(root, sweep: str, x: str | None = None, y: str | None = None, group: str | None = None) -> pathlib.Path:
    """Write <root>/<sweep>/report.md (and its PNGs) and return the report's path."""
    store = ResultsStore(root)
    require_local(store, root)
    require_results(store, root, sweep)
    spec = store.load_sweep_spec(sweep) or {}
    section = report_section(spec)
    known = panels()
    requested = requested_panels(section, known)
    given = {"x": x, "y": y, "group": group}
    x, y, group = report_settings(section, x, y, group)
    table = final_table(store, sweep)
    metric_names = sorted(set(store.metrics(sweep).get_column("metric").to_list()))
    table, prepared_lines = _prepare_table(table, requested)
    check_settings(table, sweep, given, group if given["group"] is None else None)
    swept = swept_columns(store.runs(sweep), table.columns, space_keys(spec))
    finished = table.filter(pl.col("status") == "finished")
    directory = store.sweep_dir(sweep)
    plot_and_fits, frontier = curve_sections(directory, sweep, finished, x, y, group)
    context = PanelContext(directory, sweep, finished, x, y, group, section, store)
    lines = [
        *_summary_section(table, sweep, x, y, group),
        *runs_section(table, x, y, group, metric_names, _panel_columns(known, table), swept),
        *collapse_section(table),
        *prepared_lines,
        *plot_and_fits,
        *failures_section(table),
        *frontier,
        *_panel_sections(context, requested),
    ]
    path = pathlib.Path(directory) / "report.md"
    _write_atomically(path, lines)
    return path
