"""The report's main figure: a metric against FLOPs per group, with fitted laws, the Pareto frontier
and the metric's baselines (random-init encoder, raw input) as horizontal lines.

Uses finished runs only (see fits.py); its fits table and frontier table come from the same points.
"""

from __future__ import annotations

import os

import polars as pl
from matplotlib.axes import Axes

from orchestrator.report.baselines import draw_baselines
from orchestrator.report.figures import blank_figure, save_figure
from orchestrator.report.fits import (
    budget_counts,
    draw_fit,
    fit_error,
    fit_groups,
    fits_section,
)
from orchestrator.report.frontier import (
    frontier_mode,
    frontier_section,
    pareto_frontier,
)
from orchestrator.report.markdown import image_name
from orchestrator.report.rows import group_labels, plottable_rows, seed_stats


def _draw_frontier(axes, points: pl.DataFrame, x: str, y: str) -> None:
    frontier = pareto_frontier(points, x, y, frontier_mode(y))
    if frontier.height == 0:
        return
    axes.step(
        frontier.get_column(x).to_numpy(), frontier.get_column(y).to_numpy(),
        where="post", color="black", linewidth=1, alpha=0.6,
    )
    axes.scatter(
        frontier.get_column(x).to_numpy(), frontier.get_column(y).to_numpy(),
        s=120, facecolors="none", edgecolors="black", label="Pareto frontier", zorder=3,
    )


def plot_metric_vs_flops(
    df: pl.DataFrame,
    x: str,
    y: str,
    group: str | None,
    path,
    title: str,
    fits: dict | None = None,
) -> Axes:
    """Plot y against log x per group with seed error bars, fitted laws (those with a trend), the
    frontier and y's baselines; returns the Axes so callers and tests can read what was drawn."""
    points = plottable_rows(df, x, y)
    labels = group_labels(points, group)
    points = points.with_columns(pl.Series("_label", labels, dtype=pl.String))
    _, accuracy = fit_error(y, points.get_column(y).to_list())
    figure = blank_figure((7, 4.5))
    axes = figure.add_subplot()
    for index, label in enumerate(sorted(set(labels))):
        color = f"C{index % 10}"
        stats = seed_stats(points.filter(pl.col("_label") == label), [x], y)
        x_values = stats.get_column(x).cast(pl.Float64).to_numpy()
        axes.errorbar(
            x_values, stats.get_column("mean").to_numpy(), yerr=stats.get_column("sem").to_numpy(),
            marker="o", capsize=3, color=color, label=label if group is not None else y,
        )
        fit = (fits or {}).get(label)
        if fit is not None:
            draw_fit(axes, x_values, fit, accuracy, color)
    if points.height:
        _draw_frontier(axes, points, x, y)
        draw_baselines(axes, points, y, group)
        axes.set_xscale("log")
        axes.legend(fontsize="small", title=group)
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    save_figure(figure, path)
    return axes


def curve_sections(directory: str, sweep: str, finished: pl.DataFrame, x: str, y: str,
                   group: str | None) -> tuple[list[str], list[str]]:
    """(plot + fits, frontier) sections; both need finished runs with x and y values."""
    if x not in finished.columns or y not in finished.columns:
        note = [f"No `{y}` against `{x}` values logged yet: nothing to plot or fit.", ""]
        return note, []
    points = plottable_rows(finished, x, y)
    fits = fit_groups(points, x, y, group)
    _, accuracy = fit_error(y, points.get_column(y).to_list())
    image = image_name(f"{y}_vs_{x}")
    plot_metric_vs_flops(points, x, y, group, os.path.join(directory, image), f"{sweep}: {y} vs {x}", fits)
    fit_lines = fits_section(fits, y, accuracy, budget_counts(points, x, group))
    return [f"![{y} vs {x}]({image})", "", *fit_lines], frontier_section(points, x, y, group)
