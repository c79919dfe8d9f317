"""Turn stored sweep results into per-run tables, scaling-law fits, frontiers and plots.

Plots are drawn on an explicit Agg canvas (no pyplot state), so this works on
headless nodes and never changes the backend of an interactive caller.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from itertools import combinations
from typing import Any, Iterable

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import linregress

RUN_COLUMNS = ("run_id", "variant", "stage", "status", "error")
FLOPS_TOTAL = "flops_total"
FLOPS_AMORTIZED = "flops_amortized"
FLOPS_FULL = "flops_full"
ALL_RUNS_LABEL = "all"
_LOWER_IS_BETTER_HINTS = ("loss", "err", "mse", "mae", "nll", "ppl", "perplex", "time", "wall")


# ---- per-run table -----------------------------------------------------------


def _parse_config(config: Any) -> dict:
    if isinstance(config, dict):
        return config
    if not config:
        return {}
    parsed = json.loads(config)
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def flatten_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted-path leaves of a nested config; lists and empty dicts stay JSON strings."""
    leaves: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            leaves.update(flatten_config(value, f"{path}."))
        elif isinstance(value, (dict, list, tuple)):
            leaves[path] = json.dumps(value, sort_keys=True, default=str)
        else:
            leaves[path] = value
    return leaves


def _column_series(name: str, values: list[Any]) -> pl.Series:
    """One config column with a single dtype even when runs disagree on types."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pl.Series(name, values, dtype=pl.Boolean)
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pl.Series(name, values, dtype=pl.Int64)
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pl.Series(name, [None if v is None else float(v) for v in values], dtype=pl.Float64)
    return pl.Series(name, [None if v is None else str(v) for v in values], dtype=pl.String)


def _config_columns(runs: pl.DataFrame, reserved: set[str]) -> pl.DataFrame:
    """Flattened configs as columns; names clashing with reserved ones get a "config." prefix."""
    flat = [flatten_config(_parse_config(c)) for c in runs.get_column("config").to_list()]
    paths = sorted({path for leaves in flat for path in leaves})
    columns = [
        _column_series(
            f"config.{path}" if path in reserved else path,
            [leaves.get(path) for leaves in flat],
        )
        for path in paths
    ]
    return pl.DataFrame([runs.get_column("run_id"), *columns])


def varying_config_paths(runs: pl.DataFrame) -> list[str]:
    """Config paths whose value is not the same in every run (absent counts as a value)."""
    flat = [flatten_config(_parse_config(c)) for c in runs.get_column("config").to_list()]
    paths = sorted({path for leaves in flat for path in leaves})
    absent = object()
    return [
        path for path in paths
        if len({json.dumps(leaves.get(path, absent), sort_keys=True, default=repr) for leaves in flat}) > 1
    ]


def config_column(path: str, columns: Iterable[str]) -> str | None:
    """The table column holding a config path: renamed on a clash, or `<group>.name` for a group choice."""
    available = set(columns)
    return next((c for c in (f"config.{path}", path, f"{path}.name") if c in available), None)


def swept_columns(runs: pl.DataFrame, columns: Iterable[str], space_keys: Iterable[str]) -> list[str]:
    """Columns of the keys a sweep varied: its `space` keys in order, then every other config key that differs."""
    columns = list(columns)
    found = [config_column(key, columns) for key in [*space_keys, *varying_config_paths(runs)]]
    return list(dict.fromkeys(c for c in found if c is not None))


def _last_metric_values(metrics: pl.DataFrame) -> pl.DataFrame:
    """Per run: each metric's value at the last step it was logged, plus total FLOPs."""
    flops_total = metrics.group_by("run_id").agg(pl.col("flops").max().alias(FLOPS_TOTAL))
    last = (
        metrics.sort(["run_id", "metric", "step", "wall_s"])
        .group_by(["run_id", "metric"], maintain_order=True)
        .agg(pl.col("value").last())
    )
    wide = last.pivot(on="metric", index="run_id", values="value")
    ordered = ["run_id", *sorted(c for c in wide.columns if c != "run_id")]
    return flops_total.join(wide.select(ordered), on="run_id", how="left")


def final_table(store, sweep: str) -> pl.DataFrame:
    """One row per run: status, flattened config, total FLOPs and last metric values."""
    runs = store.runs(sweep)
    metrics = store.metrics(sweep)
    metric_names = sorted(set(metrics.get_column("metric").to_list()))
    renamed = {m: f"metric.{m}" for m in metric_names if m in RUN_COLUMNS or m == FLOPS_TOTAL}
    values = _last_metric_values(metrics.with_columns(pl.col("metric").replace(renamed)))
    if values.height == 0:
        values = pl.DataFrame({"run_id": [], FLOPS_TOTAL: []}, schema={"run_id": pl.String, FLOPS_TOTAL: pl.Float64})
    reserved = set(RUN_COLUMNS) | set(values.columns)
    config = _config_columns(runs, reserved)
    table = runs.select(RUN_COLUMNS).join(config, on="run_id", how="left")
    return table.join(values, on="run_id", how="left")


# ---- metric direction --------------------------------------------------------


def higher_is_better(metric: str) -> bool:
    """Guess the direction of a metric from its name (losses and errors go down)."""
    name = metric.lower()
    return not any(hint in name for hint in _LOWER_IS_BETTER_HINTS)


def is_accuracy_like(metric: str, values: Iterable[float]) -> bool:
    """An increasing metric bounded in [0, 1]: its error is 1 - value."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return higher_is_better(metric) and bool(finite) and all(0.0 <= v <= 1.0 for v in finite)


def fit_error(metric: str, values: Iterable[float]) -> tuple[np.ndarray, bool]:
    """The quantity a power law is fitted to: 1 - y for accuracies, else y itself."""
    array = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    accuracy = is_accuracy_like(metric, array.tolist())
    return (1.0 - array if accuracy else array), accuracy


# ---- power law ---------------------------------------------------------------


def _decay(log_ratio: np.ndarray, scale: float, b: float, c: float) -> np.ndarray:
    return scale * np.exp(-b * log_ratio) + c


def _fit_once(log_ratio: np.ndarray, err: np.ndarray, b0: float) -> tuple[np.ndarray, float] | None:
    c0 = max(float(err.min()) * 0.5, 1e-12)
    scale0 = max(float(err.max()) - c0, 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            params, _ = curve_fit(
                _decay,
                log_ratio,
                err,
                p0=[scale0, b0, c0],
                bounds=([1e-300, 1e-9, 0.0], [np.inf, 3.0, np.inf]),
                maxfev=20000,
            )
        except (RuntimeError, ValueError, FloatingPointError):
            return None
    residual = float(np.sum((_decay(log_ratio, *params) - err) ** 2))
    return params, residual


def fit_power_law(compute, error) -> dict | None:
    """Fit err = a * C^-b + c; the fit runs on log(C / C_min) so FLOP scales stay well conditioned."""
    c_values = np.asarray(compute, dtype=float)
    err = np.asarray(error, dtype=float)
    keep = np.isfinite(c_values) & np.isfinite(err) & (c_values > 0)
    c_values, err = c_values[keep], err[keep]
    if np.unique(c_values).size < 3:
        return None
    reference = float(c_values.min())
    log_ratio = np.log(c_values / reference)
    attempts = [_fit_once(log_ratio, err, b0) for b0 in (0.05, 0.3, 1.0, 2.0)]
    attempts = [a for a in attempts if a is not None and np.all(np.isfinite(a[0]))]
    if not attempts:
        return None
    (scale, b, c), residual = min(attempts, key=lambda a: a[1])
    a = scale * reference**b
    if not math.isfinite(a):
        return None
    total = float(np.sum((err - err.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else (1.0 if residual < 1e-24 else 0.0)
    return {"a": float(a), "b": float(b), "c": float(c), "r2": float(r2)}


def power_law(compute, fit: dict) -> np.ndarray:
    """Evaluate a fitted power law at the given compute values."""
    c_values = np.asarray(compute, dtype=float)
    return fit["a"] * c_values ** (-fit["b"]) + fit["c"]


def group_labels(df: pl.DataFrame, group: str | None) -> list[str]:
    """Group label of each row: the group value as text, or "all" without a group."""
    if group is None:
        return [ALL_RUNS_LABEL] * df.height
    return [str(v) for v in df.get_column(group).to_list()]


def fit_groups(df: pl.DataFrame, x: str, y: str, group: str | None) -> dict[str, dict | None]:
    """Power-law fit of each group's error against x (None where it cannot be fitted)."""
    points = plottable_rows(df, x, y)
    err, _ = fit_error(y, points.get_column(y).to_list())
    labelled = points.with_columns(
        pl.Series("_label", group_labels(points, group)), pl.Series("_err", err)
    )
    fits: dict[str, dict | None] = {}
    for label in sorted(set(labelled.get_column("_label").to_list())):
        rows = labelled.filter(pl.col("_label") == label)
        fits[label] = fit_power_law(rows.get_column(x).to_numpy(), rows.get_column("_err").to_numpy())
    return fits


# ---- Pareto frontier ----------------------------------------------------------


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


# ---- plotting ------------------------------------------------------------------


def plottable_rows(df: pl.DataFrame, x: str, y: str) -> pl.DataFrame:
    """Rows a log-x plot or fit can use: positive finite x and finite y."""
    return df.filter(
        pl.col(x).is_not_null() & pl.col(y).is_not_null()
        & (pl.col(x).cast(pl.Float64) > 0)
        & pl.col(x).cast(pl.Float64).is_finite() & pl.col(y).cast(pl.Float64).is_finite()
    )


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


def _seed_means(rows: pl.DataFrame, x: str, y: str) -> pl.DataFrame:
    """Mean and standard error over rows sharing an x (seeds of one setting)."""
    return seed_stats(rows, [x], y)


def _draw_fit(axes, x_values: np.ndarray, fit: dict, accuracy: bool, color) -> None:
    grid = np.geomspace(x_values.min(), x_values.max(), 100)
    curve = power_law(grid, fit)
    axes.plot(grid, 1.0 - curve if accuracy else curve, linestyle="--", color=color, alpha=0.7)


def _draw_frontier(axes, points: pl.DataFrame, x: str, y: str) -> None:
    mode = "max" if higher_is_better(y) else "min"
    frontier = pareto_frontier(points, x, y, mode)
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
) -> None:
    """Plot y against log x per group with seed error bars, fitted laws and the frontier."""
    points = plottable_rows(df, x, y)
    labels = group_labels(points, group)
    points = points.with_columns(pl.Series("_label", labels, dtype=pl.String))
    _, accuracy = fit_error(y, points.get_column(y).to_list())
    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, label in enumerate(sorted(set(labels))):
        color = f"C{index % 10}"
        stats = _seed_means(points.filter(pl.col("_label") == label), x, y)
        x_values = stats.get_column(x).cast(pl.Float64).to_numpy()
        axes.errorbar(
            x_values, stats.get_column("mean").to_numpy(), yerr=stats.get_column("sem").to_numpy(),
            marker="o", capsize=3, color=color, label=label if group is not None else y,
        )
        fit = (fits or {}).get(label)
        if fit is not None:
            _draw_fit(axes, x_values, fit, accuracy, color)
    if points.height:
        _draw_frontier(axes, points, x, y)
        axes.set_xscale("log")
        axes.legend(fontsize="small", title=group)
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)


# ---- report panels: shared ------------------------------------------------------


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


def with_cost_columns(table: pl.DataFrame, teacher_flops: str) -> pl.DataFrame:
    """Amortized FLOPs leave out a reused teacher (already paid for); full FLOPs charge it to the student."""
    teacher = pl.col(teacher_flops).cast(pl.Float64, strict=False).fill_nan(None).fill_null(0.0)
    return table.with_columns(
        pl.col(FLOPS_TOTAL).alias(FLOPS_AMORTIZED),
        (pl.col(FLOPS_TOTAL) + teacher).alias(FLOPS_FULL),
    )


def _new_axes(figure: Figure, rows: int = 1, columns: int = 1, index: int = 1):
    axes = figure.add_subplot(rows, columns, index)
    axes.grid(True, which="both", alpha=0.3)
    return axes


def _blank_figure(size: tuple[float, float]) -> Figure:
    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure


def _save_figure(figure: Figure, path) -> None:
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)


# ---- report panels: IsoFLOP ------------------------------------------------------


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
    figure = _blank_figure((7, 4.5))
    axes = _new_axes(figure)
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
    _save_figure(figure, path)


# ---- report panels: teacher quality ---------------------------------------------


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
    figure = _blank_figure((7, 4.5))
    axes = _new_axes(figure)
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
    _save_figure(figure, path)


# ---- report panels: Pareto per method ------------------------------------------


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


def _draw_method_frontier(axes, rows: pl.DataFrame, x: str, y: str, color, linestyle: str, label: str | None) -> None:
    mode = "max" if higher_is_better(y) else "min"
    frontier = pareto_frontier(rows, x, y, mode)
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
        _draw_fit(axes, rows.get_column(x).to_numpy(), fit, accuracy, color)
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
    figure = _blank_figure((6 * len(points_by_y), 4.5))
    for index, (y, points) in enumerate(points_by_y.items(), start=1):
        axes = _new_axes(figure, 1, len(points_by_y), index)
        for method in sorted(set(points.get_column("_method").to_list())):
            rows = points.filter(pl.col("_method") == method)
            _draw_method(axes, rows, x, y, full_x, fits[y].get(method), colors[method], method)
        axes.set_xscale("log")
        axes.set_xlabel(x if full_x is None else f"{x} (solid: amortized, dotted: full)")
        axes.set_ylabel(y)
        axes.set_title(f"{title}: {y}")
        axes.legend(fontsize="small", title=by)
    _save_figure(figure, path)


# ---- zero-shot RL ------------------------------------------------------------


def zero_shot_long(table: pl.DataFrame, kind: str, data: str, by: str) -> pl.DataFrame:
    """One row per run and task: (run_id, data, method, task, value) from `eval/<task>/<kind>` columns."""
    suffix = f"/{kind}"
    columns = [c for c in table.columns if c.startswith("eval/") and c.endswith(suffix)]
    schema = {"run_id": pl.String, data: pl.String, by: pl.String, "task": pl.String, "value": pl.Float64}
    if not columns or absent_columns(table, [data, by]):
        return pl.DataFrame(schema=schema)
    return (
        table.select([pl.col("run_id"), pl.col(data).cast(pl.String), pl.col(by).cast(pl.String), *columns])
        .unpivot(index=["run_id", data, by], on=columns, variable_name="task", value_name="value")
        .drop_nulls("value")
        .with_columns(pl.col("task").str.strip_prefix("eval/").str.strip_suffix(suffix), pl.col("value").cast(pl.Float64))
    )


def zero_shot_table(table: pl.DataFrame, kind: str, data: str = "data.name", by: str = "variant.name") -> pl.DataFrame:
    """Mean ± standard error over seeds per dataset and task, one column per method.

    Each run contributes its mean over evaluation episodes; the error is across runs (seeds).
    The "(all tasks)" row averages the task means, its error propagated from theirs, so methods
    trained once for all tasks and references trained once per task read the same way.
    """
    long = zero_shot_long(table, kind, data, by)
    if long.height == 0:
        return long
    per_task = seed_stats(long, [data, "task", by], "value")
    overall = (per_task.group_by([data, by])
               .agg(pl.col("mean").mean(), (pl.col("sem").pow(2).sum().sqrt() / pl.len()).alias("sem"),
                    pl.col("n").min())
               .with_columns(pl.lit("(all tasks)").alias("task")))
    stats = pl.concat([per_task.select(data, "task", by, "mean", "sem", "n"), overall.select(data, "task", by, "mean", "sem", "n")])
    cell = (pl.when(pl.col("n") > 1)  # one run has no spread to report
            .then(pl.format("{} ± {} (n={})", pl.col("mean").round(1), pl.col("sem").round(1), pl.col("n")))
            .otherwise(pl.format("{} (n=1)", pl.col("mean").round(1))))
    wide = stats.with_columns(cell.alias("cell")).pivot(on=by, index=[data, "task"], values="cell")
    return wide.sort([data, "task"])
