"""Teacher-quality panel (`report.teacher_quality`): does a better teacher make a better student?

Regresses student y on teacher y over finished runs; a slope near 0 means students are robust.
"""

from __future__ import annotations

import os

import numpy as np
import polars as pl
from scipy.stats import linregress

from orchestrator.report.figures import blank_figure, new_axes, save_figure
from orchestrator.report.markdown import format_value, image_name, missing_columns_line
from orchestrator.report.registry import PanelContext, register_panel
from orchestrator.report.rows import absent_columns, group_labels, numeric_rows


def teacher_quality_fit(df: pl.DataFrame, teacher_y: str, y: str) -> dict | None:
    """Least-squares line of student y on teacher y (None below 3 runs or 2 distinct teacher values).

    The slope answers whether a better teacher buys a better student; near 0 means robust.
    """
    points = numeric_rows(df, [teacher_y, y])
    teacher = points.get_column(teacher_y).to_numpy()
    if points.height < 3 or np.unique(teacher).size < 2:
        return None
    result = linregress(teacher, points.get_column(y).to_numpy())
    return {
        "slope": float(result.slope), "slope_stderr": float(result.stderr),
        "intercept": float(result.intercept), "r": float(result.rvalue), "p": float(result.pvalue),
        "n": points.height,
    }


def plot_teacher_quality(
    df: pl.DataFrame, teacher_y: str, y: str, group: str | None, fit: dict, fit_label: str, path, title: str
) -> None:
    """Student y against teacher y per run, coloured by group, with the fitted line."""
    points = numeric_rows(df, [teacher_y, y])
    labels = group_labels(points, group)
    points = points.with_columns(pl.Series("_label", labels, dtype=pl.String))
    figure = blank_figure((7, 4.5))
    axes = new_axes(figure)
    for index, label in enumerate(sorted(set(labels))):
        rows = points.filter(pl.col("_label") == label)
        axes.scatter(
            rows.get_column(teacher_y).to_numpy(), rows.get_column(y).to_numpy(),
            color=f"C{index % 10}", label=label if group is not None else "runs", alpha=0.8,
        )
    grid = np.linspace(points.get_column(teacher_y).min(), points.get_column(teacher_y).max(), 50)
    axes.plot(grid, fit["intercept"] + fit["slope"] * grid, color="black", linestyle="--", label=fit_label)
    axes.set_xlabel(f"teacher: {teacher_y}")
    axes.set_ylabel(f"student: {y}")
    axes.set_title(title)
    axes.legend(fontsize="small", title=group)
    save_figure(figure, path)


def _slope_text(fit: dict) -> str:
    return (
        f"slope {format_value(fit['slope'])} ± {format_value(fit['slope_stderr'])} "
        f"(r = {format_value(fit['r'])}, p = {format_value(fit['p'])}, n = {fit['n']})"
    )


@register_panel("teacher_quality", options=("teacher_y", "y", "group"))
def teacher_quality_section(ctx: PanelContext, options: dict) -> list[str]:
    """Does a better teacher make a better student? Student y regressed on teacher y."""
    y = options.get("y", ctx.y)
    teacher_y = options.get("teacher_y", f"teacher/{y}")
    group = options.get("group")
    lines = [f"## Teacher quality: `{y}` against `{teacher_y}`", ""]
    missing = absent_columns(ctx.finished, [teacher_y, y, group])
    if missing:
        return [*lines, missing_columns_line("teacher-quality", ctx.finished, missing), ""]
    fit = teacher_quality_fit(ctx.finished, teacher_y, y)
    if fit is None:
        return [*lines, (f"Too few points for the teacher-quality panel: needs 3 finished runs with both "
                f"`{teacher_y}` and `{y}`, at 2 or more distinct `{teacher_y}` values."), ""]
    image = image_name(f"teacher_quality_{y}")
    text = _slope_text(fit)
    plot_teacher_quality(
        ctx.finished, teacher_y, y, group, fit, f"least squares: {text}",
        os.path.join(ctx.directory, image), f"{ctx.sweep}: student vs teacher",
    )
    return [
        *lines, f"![teacher quality {y}]({image})", "",
        (f"Least-squares fit of `{y}` on `{teacher_y}`: {text}. "
        "A slope near 0 means students are robust to teacher quality."), "",
    ]
