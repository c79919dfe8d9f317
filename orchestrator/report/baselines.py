"""What training has to beat: the probes on an untrained encoder and on the raw inputs.

The evaluation plug-ins log them beside each probe metric `<m>` as `<m>/random_init` and
`<m>/raw_input` (orchestrator/evaluate/baselines.py). The report shows them as reference rows,
as horizontal lines on metric-vs-FLOPs plots, and marks each run that does not beat them, so a
curve that rises but stays below doing nothing is not read as learning. Tables without these
columns (older stores) are left as they were.
"""

from __future__ import annotations

import math

import polars as pl

from orchestrator.report.direction import higher_is_better
from orchestrator.report.markdown import format_value

BASELINES = {"random_init": "random-init encoder", "raw_input": "raw input"}  # column suffix -> row label
BEATS = "beats baselines"
REFERENCE_STATUS = "baseline"
_LINE_STYLES = {"random_init": (":", "0.35"), "raw_input": ("-.", "0.6")}  # grey tones, apart from group colours


def baseline_columns(columns, metric: str) -> dict[str, str]:
    """{suffix: column} of the metric's baselines that the table has."""
    present = set(columns)
    return {suffix: f"{metric}/{suffix}" for suffix in BASELINES if f"{metric}/{suffix}" in present}


def is_baseline_of(column: str, metrics) -> bool:
    """Whether a column is a baseline of one of the given metrics (shown as a reference row instead)."""
    base, _, suffix = column.rpartition("/")
    return suffix in BASELINES and base in set(metrics)


def _by_suffix(table: pl.DataFrame, metrics: list[str]) -> dict[str, list[tuple[str, str]]]:
    """{suffix: [(metric, column)]} of every baseline the table has for the metrics."""
    found: dict[str, list[tuple[str, str]]] = {}
    for m in metrics:
        for suffix, column in baseline_columns(table.columns, m).items():
            found.setdefault(suffix, []).append((m, column))
    return found


def _row_keys(table: pl.DataFrame, columns: list[str], group: str | None) -> list[str]:
    """[group] when the groups' mean baselines differ (e.g. different model sizes), else [] (one row)."""
    if group is None or group not in table.columns:
        return []
    means = table.group_by(group).agg([pl.col(c).cast(pl.Float64).mean() for c in columns])
    for column in columns:
        values = [v for v in means.get_column(column).to_list() if v is not None]
        if any(not math.isclose(v, values[0], rel_tol=1e-9, abs_tol=1e-12) for v in values):
            return [group]
    return []


def _grouped(table: pl.DataFrame, keys: list[str], aggregations: list[pl.Expr]) -> pl.DataFrame:
    if not keys:
        return table.select(aggregations)
    return table.group_by(keys).agg(aggregations).sort(keys, nulls_last=True)


def reference_rows(table: pl.DataFrame, metrics: list[str], group: str | None) -> pl.DataFrame:
    """Rows labelled per baseline (in `run_id`) holding the mean baseline of each metric in its column.

    Empty when no metric has baselines. A baseline whose mean differs between groups gets one row
    per group (its group value set), else one row (group blank).
    """
    rows = []
    for suffix, pairs in _by_suffix(table, metrics).items():
        keys = _row_keys(table, [column for _, column in pairs], group)
        means = _grouped(table, keys, [pl.col(column).cast(pl.Float64).mean().alias(m) for m, column in pairs])
        means = means.filter(pl.any_horizontal([pl.col(m).is_not_null() for m, _ in pairs]))
        rows.append(means.with_columns(pl.lit(BASELINES[suffix]).alias("run_id"),
                                       pl.lit(REFERENCE_STATUS).alias("status")))
    return pl.concat(rows, how="diagonal_relaxed") if rows else pl.DataFrame()


def varying_note(table: pl.DataFrame, metrics: list[str], group: str | None) -> list[str]:
    """A note when a reference row averages differing values (seeds, or architectures within a group)."""
    for pairs in _by_suffix(table, metrics).values():
        columns = [column for _, column in pairs]
        spread = [(pl.col(c).cast(pl.Float64).max() - pl.col(c).cast(pl.Float64).min()).alias(c) for c in columns]
        spreads = _grouped(table, _row_keys(table, columns, group), spread)
        if any(s is not None and s > 1e-9 for c in columns for s in spreads.get_column(c).to_list()):
            return [("Baseline rows are means over runs whose baselines differ (seeds or architectures); "
                     f"`{BEATS}` compares each run with its own."), ""]
    return []


def _beats_expression(y: str, columns: dict[str, str]) -> pl.Expr:
    """True when y is above every baseline (below, for lower-is-better metrics); null without values."""
    values = [pl.col(c).cast(pl.Float64) for c in columns.values()]
    value = pl.col(y).cast(pl.Float64)
    if higher_is_better(y):
        return value > pl.max_horizontal(values)
    return value < pl.min_horizontal(values)


def beats(table: pl.DataFrame, y: str) -> pl.Series | None:
    """Per run, whether its y beats its own baselines (None when the table has none for y)."""
    columns = baseline_columns(table.columns, y)
    if not columns or y not in table.columns:
        return None
    return table.select(_beats_expression(y, columns).alias(BEATS)).to_series()


def beats_marks(table: pl.DataFrame, y: str) -> pl.Series | None:
    """The `beats baselines` column: ✓ or ✗ per run, blank without values."""
    verdicts = beats(table, y)
    if verdicts is None:
        return None
    return pl.Series(BEATS, [None if v is None else ("✓" if v else "✗") for v in verdicts.to_list()], dtype=pl.String)


def beats_sentence(finished: pl.DataFrame, y: str) -> list[str]:
    """One summary sentence: how many finished runs beat every baseline of y."""
    columns = baseline_columns(finished.columns, y)
    verdicts = beats(finished, y)
    if verdicts is None:
        return []
    known = [v for v in verdicts.to_list() if v is not None]
    if not known:
        return []
    which = "both baselines" if len(columns) == 2 else f"the {BASELINES[next(iter(columns))]} baseline"
    means = ", ".join(
        f"{BASELINES[suffix]} {format_value(finished.get_column(column).cast(pl.Float64).mean())}"
        for suffix, column in columns.items()
    )
    return [f"{sum(known)} of {len(known)} finished runs with `{y}` beat {which} ({means}, mean over runs)."]


def draw_baselines(axes, points: pl.DataFrame, y: str, group: str | None) -> None:
    """Each baseline of y as a labelled horizontal grey line across the plot (one per group if they differ)."""
    rows = reference_rows(points, [y], group)
    if rows.height == 0 or y not in rows.columns:
        return
    suffixes = {label: suffix for suffix, label in BASELINES.items()}
    for row in rows.iter_rows(named=True):
        value = row[y]
        if value is None or not math.isfinite(value):
            continue
        style, color = _LINE_STYLES[suffixes[row["run_id"]]]
        split = group is not None and row.get(group) is not None
        label = row["run_id"] + (f" ({group}={row[group]})" if split else "")
        axes.axhline(value, linestyle=style, color=color, linewidth=1.2, label=label, gid="baseline")
