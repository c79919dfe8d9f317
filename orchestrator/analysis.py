"""Turn stored sweep results into per-run tables, scaling-law fits, frontiers and plots.

Plots are drawn on an explicit Agg canvas (no pyplot state), so this works on
headless nodes and never changes the backend of an interactive caller.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Any, Iterable

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.optimize import OptimizeWarning, curve_fit

RUN_COLUMNS = ("run_id", "variant", "stage", "status", "error")
FLOPS_TOTAL = "flops_total"
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


def _seed_means(rows: pl.DataFrame, x: str, y: str) -> pl.DataFrame:
    """Mean and standard error over rows sharing an x (seeds of one setting)."""
    return (
        rows.group_by(x)
        .agg(
            pl.col(y).cast(pl.Float64).mean().alias("mean"),
            pl.col(y).cast(pl.Float64).std().fill_null(0.0).alias("std"),
            pl.len().alias("n"),
        )
        .with_columns((pl.col("std") / pl.col("n").cast(pl.Float64).sqrt()).alias("sem"))
        .sort(x)
    )


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
