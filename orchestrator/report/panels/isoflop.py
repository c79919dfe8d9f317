"""IsoFLOP panel (`report.isoflop`): at a fixed total budget, which share to spend on the teacher.

Draws y against the teacher fraction, one curve per budget, and tables each budget's best fraction.
"""

from __future__ import annotations

import os

import polars as pl

from orchestrator.report.direction import higher_is_better
from orchestrator.report.figures import blank_figure, new_axes, save_figure
from orchestrator.report.markdown import (
    image_name,
    markdown_table,
    missing_columns_line,
)
from orchestrator.report.panels.cost import teacher_flops_column
from orchestrator.report.registry import PanelContext, register_panel
from orchestrator.report.rows import absent_columns, numeric_rows, seed_stats
from orchestrator.report.settings import DEFAULT_BUDGET

DEFAULT_FRACTION = "variant.teacher_fraction"


def isoflop_stats(df: pl.DataFrame, budget: str, fraction: str, y: str) -> pl.DataFrame:
    """Mean and standard error of y over seeds in each (budget, fraction) cell."""
    return seed_stats(numeric_rows(df, [budget, fraction, y]), [budget, fraction], y)


def best_fraction_per_budget(stats: pl.DataFrame, budget: str, fraction: str, higher: bool) -> pl.DataFrame:
    """Per budget run at two or more fractions: best fraction, its mean y, the worst fraction's mean y.

    Ties go to the smaller fraction, so the table is stable across report runs.
    """
    ranked = stats.sort([budget, "mean", fraction], descending=[False, higher, False])
    per_budget = ranked.group_by(budget, maintain_order=True).agg(
        pl.col(fraction).first().alias("best_fraction"),
        pl.col("mean").first().alias("best_y"),
        pl.col("mean").last().alias("worst_y"),
        pl.col("n").first().alias("n_seeds"),
        pl.len().alias("n_fractions"),
    )
    return per_budget.filter(pl.col("n_fractions") >= 2).rename({budget: "budget"})


def plot_isoflop(stats: pl.DataFrame, best: pl.DataFrame, budget: str, fraction: str, y: str, path, title: str) -> None:
    """One curve of y against the fraction per total budget; a star marks each budget's best fraction."""
    figure = blank_figure((7, 4.5))
    axes = new_axes(figure)
    budgets = sorted(set(best.get_column("budget").to_list()))
    colors = {value: f"C{index % 10}" for index, value in enumerate(budgets)}
    for value in budgets:
        rows = stats.filter(pl.col(budget) == value).sort(fraction)
        axes.errorbar(
            rows.get_column(fraction).to_numpy(), rows.get_column("mean").to_numpy(),
            yerr=rows.get_column("sem").to_numpy(), marker="o", capsize=3,
            color=colors[value], label=f"{budget} = {value:.3g}",
        )
    stars = best.select("budget", "best_fraction", "best_y").iter_rows()
    for index, (value, best_fraction, best_y) in enumerate(stars):
        axes.scatter(
            [best_fraction], [best_y], marker="*", s=260, color=colors[value], edgecolors="black",
            zorder=4, label="best fraction" if index == 0 else None,
        )
    axes.set_xlabel(fraction)
    axes.set_ylabel(f"{y} (mean over seeds, ± s.e.)")
    axes.set_title(title)
    axes.legend(fontsize="small")
    save_figure(figure, path)


def _without_reused_teachers(ctx: PanelContext) -> tuple[pl.DataFrame, list[str]]:
    """Runs that trained their own teacher: a reused teacher's run keeps a fraction in its
    config that split nobody's budget, so it must not sit on an IsoFLOP curve."""
    teacher_flops = teacher_flops_column(ctx.section)
    if teacher_flops not in ctx.finished.columns:
        return ctx.finished, []
    reused = pl.col(teacher_flops).cast(pl.Float64, strict=False).fill_null(0.0) > 0
    count = ctx.finished.filter(reused).height
    if count == 0:
        return ctx.finished, []
    note = f"{count} run(s) with a reused teacher (`{teacher_flops}` > 0) left out of the IsoFLOP curves."
    return ctx.finished.filter(~reused), [note, ""]


@register_panel("isoflop", options=("budget", "fraction", "y"))
def isoflop_section(ctx: PanelContext, options: dict) -> list[str]:
    """Which share of a fixed budget to spend on the teacher: y against the fraction, per budget."""
    budget = options.get("budget", DEFAULT_BUDGET)
    fraction = options.get("fraction", DEFAULT_FRACTION)
    y = options.get("y", ctx.y)
    lines = [f"## IsoFLOP: `{y}` against `{fraction}`", ""]
    missing = absent_columns(ctx.finished, [budget, fraction, y])
    if missing:
        return [*lines, missing_columns_line("IsoFLOP", ctx.finished, missing), ""]
    own_teacher, reused_note = _without_reused_teachers(ctx)
    stats = isoflop_stats(own_teacher, budget, fraction, y)
    best = best_fraction_per_budget(stats, budget, fraction, higher_is_better(y))
    if best.height == 0:
        return [*lines, (f"Too few points for the IsoFLOP panel: no `{budget}` has finished runs with `{y}` "
                f"at two or more `{fraction}` values."), ""]
    image = image_name(f"isoflop_{y}")
    title = f"{ctx.sweep}: {y} at fixed {budget}"
    plot_isoflop(stats, best, budget, fraction, y, os.path.join(ctx.directory, image), title)
    table = best.select(
        pl.col("budget").alias(budget), pl.col("best_fraction").alias("best fraction"),
        pl.col("best_y").alias(y), pl.col("worst_y").alias(f"{y} at worst fraction"),
        pl.col("n_seeds").alias("n seeds"),
    )
    skipped = stats.get_column(budget).n_unique() - best.height
    lines += [
        (f"Mean `{y}` over seeds (± standard error) against `{fraction}`, one curve per `{budget}`; "
        "the star marks each budget's best fraction."), "",
        f"![IsoFLOP {y}]({image})", "",
        "Best fraction per budget:", "",
        markdown_table(table), "",
        *reused_note,
    ]
    if skipped:
        lines += [f"{skipped} budget(s) with a single `{fraction}` value left out.", ""]
    return lines
