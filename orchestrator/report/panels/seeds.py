"""Mean-over-seeds panel (`report.seeds`): per group, each metric's mean ± standard error over seeds and
its margin over the better baseline, so "beats doing nothing by at least m" is read off one table
instead of from single runs whose seed spread can be as large as the effect."""

from __future__ import annotations

import difflib

import polars as pl

from orchestrator.report.baselines import BASELINES, baseline_columns
from orchestrator.report.direction import higher_is_better
from orchestrator.report.markdown import format_value, markdown_table, names
from orchestrator.report.registry import PanelContext, register_panel
from orchestrator.report.rows import ALL_RUNS_LABEL
from orchestrator.report.settings import DEFAULT_BUDGET, option_list

DEFAULT_MARGIN = 0.0
MARGIN = "margin over best baseline"
VERDICT = "≥ margin"
_TOLERANCE = 1e-9  # a mean margin equal to the threshold up to float rounding passes
_ALL = "runs"  # the one key column when there is neither a group nor a varying budget


def seed_keys(finished: pl.DataFrame, group: str | None, budget: str) -> list[str]:
    """The report's group, then the budget when the finished runs hold more than one value of it."""
    keys = [group] if group is not None and group in finished.columns else []
    if budget in finished.columns and budget not in keys and finished.get_column(budget).drop_nulls().n_unique() > 1:
        keys.append(budget)
    return keys


def _finite(column: str) -> pl.Expr:
    value = pl.col(column).cast(pl.Float64, strict=False)
    return pl.when(value.is_finite()).then(value)


def _margin(metric: str, columns: dict[str, str]) -> pl.Expr:
    """Per run, how far the metric is past its better baseline (positive: it beats both)."""
    values = [_finite(c) for c in columns.values()]
    if higher_is_better(metric):
        return _finite(metric) - pl.max_horizontal(values)
    return pl.min_horizontal(values) - _finite(metric)


def _per_run(finished: pl.DataFrame, keys: list[str], metrics: list[str]) -> pl.DataFrame:
    """Keys plus, per metric, its value, its baselines and its margin (nulls where a run lacks them)."""
    columns: dict[str, pl.Expr] = {}  # by name: a metric may also be another's baseline
    for m in metrics:
        baselines = baseline_columns(finished.columns, m)
        columns |= {c: _finite(c) for c in [m, *baselines.values()]}
        if baselines:
            columns[f"{m} {MARGIN}"] = _margin(m, baselines)
    return finished.select(*[pl.col(k) for k in keys], *[e.alias(c) for c, e in columns.items() if c not in keys])


def _aggregate(values: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Per key: n runs, then mean, sample std (ddof 1) and count of each value column."""
    stats = [pl.len().alias("n")]
    for c in values.columns:
        if c not in keys:
            stats += [pl.col(c).mean().alias(f"{c}|mean"), pl.col(c).std().alias(f"{c}|std"),
                      pl.col(c).count().alias(f"{c}|count")]
    return values.group_by(keys).agg(stats).sort(keys, nulls_last=True)


def mean_cell(mean: float | None, std: float | None, count: int, n: int) -> str:
    """`mean ± s.e.` (s.e. = std/√count); a single value has no spread; a count short of n is shown."""
    if mean is None:
        return ""
    text = format_value(mean) if count < 2 else f"{format_value(mean)} ± {format_value(std / count**0.5)}"
    return text + (f" (n={count})" if count != n else "")


def _row(stats: dict, keys: list[str], metrics: list[str], columns: list[str], margin: float) -> dict:
    """One table row: keys, n, and per metric its cell, baseline means, margin cell and verdict."""
    n = stats["n"]
    row = {k: stats[k] for k in keys} | {"n": n}
    for m in metrics:
        row[m] = mean_cell(stats[f"{m}|mean"], stats[f"{m}|std"], stats[f"{m}|count"], n)
        suffixes = baseline_columns(columns, m)
        for suffix, column in suffixes.items():
            row[f"{m} {BASELINES[suffix]}"] = format_value(stats[f"{column}|mean"])
        if suffixes:
            mean = stats[f"{m} {MARGIN}|mean"]
            row[f"{m} {MARGIN}"] = mean_cell(mean, stats[f"{m} {MARGIN}|std"], stats[f"{m} {MARGIN}|count"], n)
            row[f"{m} {VERDICT}"] = "" if mean is None else ("✓" if mean >= margin - _TOLERANCE else "✗")
    return row


def seeds_table(finished: pl.DataFrame, keys: list[str], metrics: list[str], margin: float) -> pl.DataFrame:
    """One row per key value: n, then per metric `mean ± s.e.`, baseline means, margin and ✓/✗."""
    if not keys:
        finished, keys = finished.with_columns(pl.lit(ALL_RUNS_LABEL).alias(_ALL)), [_ALL]
    stats = _aggregate(_per_run(finished, keys, metrics), keys)
    return pl.DataFrame([_row(s, keys, metrics, finished.columns, margin) for s in stats.iter_rows(named=True)])


def _absent(finished: pl.DataFrame, metrics: list[str]) -> list[str]:
    """Metrics with no finite value in any finished run."""
    return [m for m in metrics if m not in finished.columns or finished.select(_finite(m).count()).item() == 0]


def absent_line(finished: pl.DataFrame, missing: list[str]) -> str:
    """One line naming the metrics left out, with the closest column names as a hint for typos."""
    hints = [h for m in missing for h in difflib.get_close_matches(m, finished.columns, n=1) if h not in missing]
    hint = f" (did you mean {names(hints)}?)" if hints else ""
    return f"No finished run has {names(missing)}{hint}: left out of this table."


def _margin_option(options: dict) -> tuple[float, list[str]]:
    value = options.get("margin", DEFAULT_MARGIN)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value), []
    return DEFAULT_MARGIN, [f"`report.seeds.margin` should be a number, got {value!r}: used {DEFAULT_MARGIN}.", ""]


@register_panel("seeds", options=("metrics", "margin", "budget"))
def seeds_section(ctx: PanelContext, options: dict) -> list[str]:
    """Mean ± standard error over seeds per group, and each metric's margin over its better baseline."""
    metrics = list(dict.fromkeys(option_list(options.get("metrics")))) or [ctx.y]
    margin, notes = _margin_option(options)
    lines = ["## Mean over seeds", ""]
    missing = _absent(ctx.finished, metrics)
    present = [m for m in metrics if m not in missing]
    absent = [absent_line(ctx.finished, missing), ""] if missing else []
    if not present:
        return [*lines, *absent, *notes]
    keys = seed_keys(ctx.finished, ctx.group, str(options.get("budget", DEFAULT_BUDGET)))
    by = f" of each {names(keys)}" if keys else ""
    return [*lines, (f"Mean ± standard error (std with ddof 1 / √n) over the finished runs (seeds){by}; n counts "
            f"them. `{MARGIN}` is the metric minus the better of its baselines ({', '.join(BASELINES.values())}; "
            "reversed for lower-is-better metrics), per run then averaged; "
            f"`{VERDICT}` is ✓ when its mean is at least {format_value(margin)}."), "",
            markdown_table(seeds_table(ctx.finished, keys, present, margin)), "", *absent, *notes]
