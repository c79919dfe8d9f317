"""Markdown report of one sweep: run table, scaling-law fits, failures and frontier.

Fits, plot and frontier use finished runs only: runs that were stopped early or
failed never completed their budget's schedule, so they would bias the curves.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import pathlib
import re

import polars as pl

from orchestrator import analysis
from orchestrator.results import ResultsStore

DEFAULT_X = analysis.FLOPS_TOTAL
DEFAULT_Y = "probe_acc"
_ERROR_PREVIEW_CHARS = 2000
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._=+-]")


# ---- formatting -----------------------------------------------------------------


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


def _image_name(x: str, y: str) -> str:
    return _UNSAFE_FILENAME_CHARS.sub("_", f"{y}_vs_{x}") + ".png"


# ---- settings -------------------------------------------------------------------


def _report_settings(store: ResultsStore, sweep: str, x, y, group) -> tuple[str, str, str | None]:
    """Explicit arguments win over the sweep spec's `report:` section, then defaults."""
    spec = store.load_sweep_spec(sweep) or {}
    section = spec.get("report") or {}
    return (
        x or section.get("x") or DEFAULT_X,
        y or section.get("y") or DEFAULT_Y,
        group or section.get("group"),
    )


def _require_results(store: ResultsStore, root, sweep: str) -> None:
    if store.runs(sweep).height == 0:
        raise FileNotFoundError(
            f"no results for sweep {sweep} under {root}; run `jepa sweep FILE` first"
        )


def _require_local(store: ResultsStore, root) -> None:
    if not store.is_local:
        raise ValueError(f"reports are written next to the results; {root} is not a local root")


# ---- sections -------------------------------------------------------------------


def _summary_section(table: pl.DataFrame, sweep: str, x: str, y: str, group: str | None) -> list[str]:
    counts = table.group_by("status").len().sort("status")
    status_text = ", ".join(f"{s}: {n}" for s, n in counts.iter_rows())
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"# Sweep `{sweep}`",
        "",
        f"Generated {generated}. Runs: {table.height} ({status_text}).",
        f"Plotting `{y}` against `{x}`" + (f", grouped by `{group}`." if group else "."),
        "",
    ]


def _runs_section(table: pl.DataFrame, x: str, y: str, group: str | None, metric_names: list[str]) -> list[str]:
    wanted = ["run_id", "status", *([group] if group else []), x, y]
    extra = [
        m for m in metric_names
        if m not in wanted and m in table.columns and table.schema[m].is_numeric()
    ]
    columns = list(dict.fromkeys(c for c in [*wanted, *extra] if c in table.columns))
    ordered = table.select(columns).sort([c for c in (group, x) if c], nulls_last=True)
    return ["## Runs", "", markdown_table(ordered), ""]


def _fits_section(fits: dict[str, dict | None], y: str, accuracy: bool, budgets: dict[str, int]) -> list[str]:
    target = f"1 - {y}" if accuracy else y
    lines = ["## Power-law fits", "", f"Fitted `{target} = a * C^-b + c` on finished runs.", ""]
    fitted = {label: fit for label, fit in fits.items() if fit is not None}
    if fitted:
        rows = [
            {"group": label, "budgets": budgets[label], "a": fit["a"], "b": fit["b"], "c": fit["c"], "r2": fit["r2"]}
            for label, fit in fitted.items()
        ]
        lines += [markdown_table(pl.DataFrame(rows)), ""]
    unfitted = [f"`{label}` ({budgets[label]} budgets)" for label, fit in fits.items() if fit is None]
    if unfitted:
        lines += ["No fit (needs at least 3 distinct budgets, or the fit failed): " + ", ".join(unfitted) + ".", ""]
    return lines


def _failures_section(table: pl.DataFrame) -> list[str]:
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


def _frontier_section(finished: pl.DataFrame, x: str, y: str, group: str | None) -> list[str]:
    mode = "max" if analysis.higher_is_better(y) else "min"
    frontier = analysis.pareto_frontier(finished, x, y, mode)
    columns = ["run_id", *([group] if group else []), x, y]
    better = "higher" if mode == "max" else "lower"
    lines = ["## Pareto frontier", "", f"Finished runs not beaten on both lower `{x}` and {better} `{y}`.", ""]
    if frontier.height == 0:
        return [*lines, "No finished runs with both values.", ""]
    return [*lines, markdown_table(frontier.select(columns)), ""]


def _budget_counts(points: pl.DataFrame, x: str, group: str | None) -> dict[str, int]:
    """Distinct x values per group label: a fit needs at least three."""
    labelled = points.with_columns(pl.Series("_label", analysis.group_labels(points, group), dtype=pl.String))
    counts = labelled.group_by("_label").agg(pl.col(x).n_unique())
    return dict(counts.iter_rows())


def _analysis_sections(store, sweep, finished, x, y, group) -> tuple[list[str], list[str]]:
    """(plot + fits, frontier) sections; both need finished runs with x and y values."""
    if x not in finished.columns or y not in finished.columns:
        note = [f"No `{y}` against `{x}` values logged yet: nothing to plot or fit.", ""]
        return note, []
    points = analysis.plottable_rows(finished, x, y)
    fits = analysis.fit_groups(points, x, y, group)
    _, accuracy = analysis.fit_error(y, points.get_column(y).to_list())
    image = _image_name(x, y)
    analysis.plot_metric_vs_flops(
        points, x, y, group, os.path.join(store.sweep_dir(sweep), image), f"{sweep}: {y} vs {x}", fits
    )
    fit_lines = _fits_section(fits, y, accuracy, _budget_counts(points, x, group))
    return [f"![{y} vs {x}]({image})", "", *fit_lines], _frontier_section(points, x, y, group)


# ---- entry point ----------------------------------------------------------------


def write_report(root, sweep: str, x: str | None = None, y: str | None = None, group: str | None = None) -> pathlib.Path:
    """Write <root>/<sweep>/report.md (and its PNG) and return the report's path."""
    store = ResultsStore(root)
    _require_local(store, root)
    _require_results(store, root, sweep)
    x, y, group = _report_settings(store, sweep, x, y, group)
    table = analysis.final_table(store, sweep)
    if group is not None and group not in table.columns:
        raise ValueError(f"group column {group!r} not found; columns: {', '.join(table.columns)}")
    metric_names = sorted(set(store.metrics(sweep).get_column("metric").to_list()))
    finished = table.filter(pl.col("status") == "finished")
    plot_and_fits, frontier = _analysis_sections(store, sweep, finished, x, y, group)
    lines = [
        *_summary_section(table, sweep, x, y, group),
        *_runs_section(table, x, y, group, metric_names),
        *plot_and_fits,
        *_failures_section(table),
        *frontier,
    ]
    path = pathlib.Path(store.sweep_dir(sweep)) / "report.md"
    temp = path.with_name(f".report.md.{os.getpid()}.tmp")
    temp.write_text("\n".join(lines))
    os.replace(temp, path)
    return path
