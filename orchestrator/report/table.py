"""The per-run table every section reads: status, flattened config, total FLOPs, last metric values."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import polars as pl

RUN_COLUMNS = ("run_id", "variant", "stage", "status", "error")
FLOPS_TOTAL = "flops_total"


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
