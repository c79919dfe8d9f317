"""Power-law fits of error against compute, `err = a * C^-b + c`, and their report table.

Fits use finished runs only: a stopped or failed run never completed its budget's
schedule, so it would bias the curve.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import numpy as np
import polars as pl
from scipy.optimize import OptimizeWarning, curve_fit

from orchestrator.report.direction import is_accuracy_like
from orchestrator.report.markdown import markdown_table
from orchestrator.report.rows import group_labels, plottable_rows

B_BOUNDS = (1e-9, 3.0)  # the exponent's fit bounds: a fit that ends on one found no power law
MIN_R2 = 0.5
_AT_BOUND = 1e-3  # relative distance to a bound that counts as sitting on it


def fit_error(metric: str, values: Iterable[float]) -> tuple[np.ndarray, bool]:
    """The quantity a power law is fitted to: 1 - y for accuracies, else y itself."""
    array = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    accuracy = is_accuracy_like(metric, array.tolist())
    return (1.0 - array if accuracy else array), accuracy


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
                bounds=([1e-300, B_BOUNDS[0], 0.0], [np.inf, B_BOUNDS[1], np.inf]),
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


def trend_verdict(fit: dict) -> str | None:
    """Why a fit shows no trend (exponent on a bound, or r² below 0.5), or None for a real fit.

    A law pinned to a bound (e.g. b = 3 with a = 1e32) or explaining under half the variance
    describes noise: the report prints it as "no trend" and does not draw it. c = 0 is allowed.
    """
    low, high = B_BOUNDS
    if fit["b"] >= high * (1 - _AT_BOUND) or fit["b"] <= low * (1 + _AT_BOUND):
        return "no trend (b at bound)"
    if not fit["r2"] >= MIN_R2:
        return f"no trend (r² {fit['r2']:.2f})"
    return None


def trend_label(fit: dict) -> str:
    """The fits table's `trend` cell."""
    return trend_verdict(fit) or "fitted"


def draw_fit(axes, x_values: np.ndarray, fit: dict, accuracy: bool, color) -> bool:
    """A fitted law as a dashed line over the x range, in y units (1 - error for accuracies);
    a fit without a trend (trend_verdict) is not drawn. Returns whether it was."""
    if trend_verdict(fit) is not None:
        return False
    grid = np.geomspace(x_values.min(), x_values.max(), 100)
    curve = power_law(grid, fit)
    axes.plot(grid, 1.0 - curve if accuracy else curve, linestyle="--", color=color, alpha=0.7, gid="fit")
    return True


def budget_counts(points: pl.DataFrame, x: str, group: str | None) -> dict[str, int]:
    """Distinct x values per group label: a fit needs at least three."""
    labelled = points.with_columns(pl.Series("_label", group_labels(points, group), dtype=pl.String))
    counts = labelled.group_by("_label").agg(pl.col(x).n_unique())
    return dict(counts.iter_rows())


def fits_section(fits: dict[str, dict | None], y: str, accuracy: bool, budgets: dict[str, int]) -> list[str]:
    """The `## Power-law fits` table, and which groups had too few budgets to fit."""
    target = f"1 - {y}" if accuracy else y
    lines = ["## Power-law fits", "", (f"Fitted `{target} = a * C^-b + c` on finished runs; "
             f"\"no trend\" (not drawn): b at a bound of its range ({B_BOUNDS[0]:g}, {B_BOUNDS[1]:g}), or r² < {MIN_R2}."), ""]
    fitted = {label: fit for label, fit in fits.items() if fit is not None}
    if fitted:
        rows = [
            {"group": label, "budgets": budgets[label], "a": fit["a"], "b": fit["b"], "c": fit["c"], "r2": fit["r2"],
             "trend": trend_label(fit)}
            for label, fit in fitted.items()
        ]
        lines += [markdown_table(pl.DataFrame(rows)), ""]
    unfitted = [f"`{label}` ({budgets[label]} budgets)" for label, fit in fits.items() if fit is None]
    if unfitted:
        lines += ["No fit (needs at least 3 distinct budgets, or the fit failed): " + ", ".join(unfitted) + ".", ""]
    return lines
