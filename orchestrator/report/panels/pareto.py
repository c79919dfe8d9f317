"""Pareto-per-method panel (`report.pareto`): each method's frontier and power-law fit per metric,
and which method's best run wins at the budgets both ran.

With the cost panel on, a method's teacher-charged (full) frontier is drawn dotted beside it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from itertools import combinations

import numpy as np
import polars as pl

from orchestrator.report.baselines import draw_baselines
from orchestrator.report.direction import higher_is_better
from orchestrator.report.figures import blank_figure, new_axes, save_figure
from orchestrator.report.fits import draw_fit, fit_error, fit_groups, trend_label
from orchestrator.report.frontier import frontier_mode, pareto_frontier
from orchestrator.report.markdown import markdown_table, missing_columns_line, names
from orchestrator.report.panels.cost import (
    FLOPS_AMORTIZED,
    FLOPS_FULL,
    has_cost_columns,
)
from orchestrator.report.registry import PanelContext, register_panel
from orchestrator.report.rows import absent_columns, group_labels, numeric_rows
from orchestrator.report.settings import DEFAULT_BUDGET, DEFAULT_METHOD, option_list
from orchestrator.report.table import FLOPS_TOTAL

# ---- computation -------------------------------------------------------------


def method_points(df: pl.DataFrame, by: str, x: str, y: str, extra: Iterable[str] = ()) -> pl.DataFrame:
    """Rows of methods with positive finite x and finite y (and extra numbers); method label in "_method"."""
    labelled = df.filter(pl.col(by).is_not_null())
    points = numeric_rows(labelled, [x, y, *extra]).filter(pl.col(x) > 0)
    return points.with_columns(pl.Series("_method", group_labels(points, by), dtype=pl.String))


def fit_methods(points: pl.DataFrame, x: str, y: str) -> dict[str, dict | None]:
    """Power-law fit of each method's error (1 - y for accuracies) against x."""
    return fit_groups(points, x, y, "_method")


def _best_per_budget(points: pl.DataFrame, method: str, budget: str, y: str, higher: bool) -> pl.DataFrame:
    rows = points.filter(pl.col("_method") == method)
    best = pl.col(y).max() if higher else pl.col(y).min()
    return rows.group_by(budget).agg(best.alias("best"))


def method_dominance(points: pl.DataFrame, budget: str, y: str, higher: bool) -> list[dict]:
    """For each pair of methods: at budgets both ran, how often each has the better best y.

    Measured FLOPs differ slightly between methods at one nominal budget, so runs are
    matched on the budget column, and each method's best run (over seeds and other
    settings) at that budget represents it.
    """
    methods = sorted(set(points.get_column("_method").to_list()))
    outcomes = []
    for first, second in combinations(methods, 2):
        joined = _best_per_budget(points, first, budget, y, higher).join(
            _best_per_budget(points, second, budget, y, higher), on=budget, suffix="_other"
        )
        sign = 1.0 if higher else -1.0
        margin = (joined.get_column("best") - joined.get_column("best_other")).to_numpy() * sign
        outcomes.append({
            "first": first, "second": second, "shared": joined.height,
            "first_wins": int(np.sum(margin > 0)), "second_wins": int(np.sum(margin < 0)),
            "ties": int(np.sum(margin == 0)),
        })
    return outcomes


# ---- figure --------------------------------------------------------------------


def _draw_method_frontier(axes, rows: pl.DataFrame, x: str, y: str, color, linestyle: str, label: str | None) -> None:
    frontier = pareto_frontier(rows, x, y, frontier_mode(y))
    axes.step(
        frontier.get_column(x).to_numpy(), frontier.get_column(y).to_numpy(),
        where="post", color=color, linestyle=linestyle, linewidth=1.5, label=label,
    )


def _draw_method(
    axes, rows: pl.DataFrame, x: str, y: str, full_x: str | None, fit: dict | None, color, method: str
) -> None:
    """Points, frontier and fit of one method; with full_x also its teacher-charged frontier, dotted."""
    axes.scatter(rows.get_column(x).to_numpy(), rows.get_column(y).to_numpy(), color=color, alpha=0.5, s=18)
    _draw_method_frontier(axes, rows, x, y, color, "-", method)
    if fit is not None:
        _, accuracy = fit_error(y, rows.get_column(y).to_list())
        draw_fit(axes, rows.get_column(x).to_numpy(), fit, accuracy, color)
    if full_x is None:
        return
    charged = rows.filter(pl.col(full_x) > pl.col(x))
    if charged.height:
        axes.scatter(
            charged.get_column(full_x).to_numpy(), charged.get_column(y).to_numpy(),
            facecolors="none", edgecolors=color, alpha=0.7, s=18,
        )
        _draw_method_frontier(axes, charged, full_x, y, color, ":", f"{method} (full, incl. teacher)")


def plot_pareto(
    points_by_y: dict[str, pl.DataFrame], x: str, by: str, fits: dict[str, dict[str, dict | None]],
    full_x: str | None, path, title: str,
) -> None:
    """One subplot per y: each method's runs, Pareto frontier (step) and power-law fit (dashed), log x."""
    methods = sorted({m for points in points_by_y.values() for m in points.get_column("_method").to_list()})
    colors = {method: f"C{index % 10}" for index, method in enumerate(methods)}
    figure = blank_figure((6 * len(points_by_y), 4.5))
    for index, (y, points) in enumerate(points_by_y.items(), start=1):
        axes = new_axes(figure, 1, len(points_by_y), index)
        for method in sorted(set(points.get_column("_method").to_list())):
            rows = points.filter(pl.col("_method") == method)
            _draw_method(axes, rows, x, y, full_x, fits[y].get(method), colors[method], method)
        draw_baselines(axes, points, y, by)
        axes.set_xscale("log")
        axes.set_xlabel(x if full_x is None else f"{x} (solid: amortized, dotted: full)")
        axes.set_ylabel(y)
        axes.set_title(f"{title}: {y}")
        axes.legend(fontsize="small", title=by)
    save_figure(figure, path)


# ---- Markdown --------------------------------------------------------------------


def _fit_rows(fits: dict[str, dict[str, dict | None]]) -> tuple[list[dict], list[str]]:
    """Table rows of fitted (method, y) pairs, and the names of pairs without a fit."""
    rows, unfitted = [], []
    for y, per_method in fits.items():
        for method, fit in per_method.items():
            if fit is None:
                unfitted.append(f"`{method}` on `{y}`")
            else:
                rows.append({"method": method, "y": y, "a": fit["a"], "b": fit["b"], "c": fit["c"], "r2": fit["r2"],
                             "trend": trend_label(fit)})
    return rows, unfitted


def _fits_lines(fits: dict[str, dict[str, dict | None]], x: str) -> list[str]:
    rows, unfitted = _fit_rows(fits)
    lines = [(f"Dashed: `error = a * C^-b + c` per method, C = `{x}`, error = 1 - y for accuracies; "
             "fits with no trend are not drawn; grey lines, where logged: the baselines (random-init encoder, raw input)."), ""]
    if rows:
        lines += [markdown_table(pl.DataFrame(rows)), ""]
    if unfitted:
        lines += ["No fit (needs 3 distinct x values, or the fit failed): " + ", ".join(unfitted) + ".", ""]
    return lines


def _dominance_sentence(y: str, budget: str, outcome: dict) -> str:
    """Which method's best run is better at the budgets both methods ran."""
    first, second, shared, ties = outcome["first"], outcome["second"], outcome["shared"], outcome["ties"]
    if shared == 0:
        return f"`{y}`: `{first}` and `{second}` share no `{budget}` value, so they are not compared."
    where = f"of the {shared} budget(s) (`{budget}`) where both have finished runs"
    if outcome["first_wins"] == outcome["second_wins"]:
        wins = outcome["first_wins"]
        return f"`{y}`: neither `{first}` nor `{second}` dominates: each is better at {wins} {where} (tied at {ties})."
    winner, loser, wins, losses = (
        (first, second, outcome["first_wins"], outcome["second_wins"])
        if outcome["first_wins"] > outcome["second_wins"]
        else (second, first, outcome["second_wins"], outcome["first_wins"])
    )
    return f"`{y}`: `{winner}` dominates `{loser}` at {wins} {where} (`{loser}` better at {losses}, tied at {ties})."


def _dominance_sentences(points_by_y: dict[str, pl.DataFrame], budget: str) -> list[str]:
    """One sentence per y and pair of methods; a y with a single method says there is no contest."""
    sentences = []
    for y, points in points_by_y.items():
        outcomes = method_dominance(points, budget, y, higher_is_better(y))
        if not outcomes:
            only = names(sorted(set(points.get_column("_method").to_list())))
            sentences.append(f"`{y}`: only {only} has finished runs, so no method is compared.")
        sentences += [_dominance_sentence(y, budget, outcome) for outcome in outcomes]
    return sentences


# ---- panel -----------------------------------------------------------------------


def _full_cost_x(ctx: PanelContext, x: str) -> tuple[str | None, list[str]]:
    """The teacher-charged x to draw dotted, when the cost panel is on and x is a FLOP count."""
    if not has_cost_columns(ctx.finished):
        return None, []
    if x in (FLOPS_TOTAL, FLOPS_AMORTIZED):
        return FLOPS_FULL, []
    return None, [f"Full (teacher-charged) cost not drawn: it applies to x = `{FLOPS_TOTAL}`, not `{x}`.", ""]


def _pareto_points(ctx: PanelContext, by: str, x: str, budget: str, ys: list[str], full_x: str | None):
    """Points per y that has any, and a line for each y that has none."""
    points_by_y, notes = {}, []
    extra = [budget, *([full_x] if full_x else [])]
    for y in ys:
        if y not in ctx.finished.columns:
            notes += [missing_columns_line(f"Pareto `{y}`", ctx.finished, [y]), ""]
            continue
        points = method_points(ctx.finished, by, x, y, extra)
        if points.height == 0:
            notes += [f"No finished run has `{by}`, `{x}` > 0 and `{y}`: `{y}` left out of the Pareto panel.", ""]
            continue
        points_by_y[y] = points
    return points_by_y, notes


@register_panel("pareto", options=("by", "ys", "x", "budget"))
def pareto_section(ctx: PanelContext, options: dict) -> list[str]:
    """Per method: frontier, power-law fit and a head-to-head count at shared budgets, per y."""
    by = options.get("by", DEFAULT_METHOD)
    x = options.get("x", FLOPS_TOTAL)
    ys = option_list(options.get("ys", ctx.y))
    budget = options.get("budget") or (DEFAULT_BUDGET if DEFAULT_BUDGET in ctx.finished.columns else x)
    lines = [f"## Pareto per `{by}`", ""]
    missing = absent_columns(ctx.finished, [by, x, budget])
    if missing:
        return [*lines, missing_columns_line("Pareto", ctx.finished, missing), ""]
    full_x, cost_notes = _full_cost_x(ctx, x)
    points_by_y, notes = _pareto_points(ctx, by, x, budget, ys, full_x)
    if not points_by_y:
        return [*lines, *notes] if notes else [*lines, "Skipped the Pareto panel: `ys` names no metric.", ""]
    fits = {y: fit_methods(points, x, y) for y, points in points_by_y.items()}
    plot_pareto(points_by_y, x, by, fits, full_x, os.path.join(ctx.directory, "pareto.png"), ctx.sweep)
    return [
        *lines, "![Pareto per method](pareto.png)", "", *notes, *cost_notes, *_fits_lines(fits, x),
        *[f"- {sentence}" for sentence in _dominance_sentences(points_by_y, budget)], "",
    ]
