"""Per-table panel (`report.tabular`): one row per dataset with the downstream metric on raw features, on a
random-init encoder and on the trained one, and the features' rank, for each arm of an ablation (T-JEPA's
regularization tokens on and off), each as mean ± standard error over seeds.

The `seeds` panel groups by one key and gives each metric its own column; tables differ in their metric
(accuracy or RMSE) and the claim is read across the ablation's arms within one dataset, so this pivots.
"""

from __future__ import annotations

import polars as pl

from orchestrator.report.direction import higher_is_better
from orchestrator.report.markdown import markdown_table
from orchestrator.report.panels.seeds import mean_cell
from orchestrator.report.registry import PanelContext, register_panel
from orchestrator.report.rows import absent_columns
from orchestrator.report.settings import option_list

DEFAULT_METRICS = ("mlp_acc_label", "mlp_rmse_target")


def _stats(values: pl.Series) -> str:
    """`mean ± s.e.` of the finite values (n shown when short of all)."""
    cast = values.cast(pl.Float64, strict=False)
    finite = cast.filter(cast.is_finite().fill_null(False))
    if finite.len() == 0:
        return ""
    std = finite.std() if finite.len() > 1 else None
    return mean_cell(finite.mean(), std, finite.len(), finite.len())


def _per_seed(rows: pl.DataFrame, column: str) -> pl.Series:
    """A baseline shared by every arm of a seed (raw features), counted once per seed."""
    if "seed" not in rows.columns:
        return rows.get_column(column)
    return rows.group_by("seed").agg(pl.col(column).cast(pl.Float64, strict=False).mean()).get_column(column)


def _metric_of(rows: pl.DataFrame, metrics: list[str]) -> str | None:
    """The first metric this dataset's runs logged."""
    return next((m for m in metrics if m in rows.columns and rows.get_column(m).drop_nulls().len()), None)


def _margin(rows: pl.DataFrame, metric: str, baseline: str) -> pl.Series:
    """Per run, how far the metric is past the baseline (positive: better, whichever way the metric improves)."""
    value, base = rows.get_column(metric).cast(pl.Float64), rows.get_column(baseline).cast(pl.Float64)
    return value - base if higher_is_better(metric) else base - value


def dataset_row(rows: pl.DataFrame, metric: str, by: str, arms: list, rank: str) -> dict:
    """One dataset: raw features (all runs), then per arm the trained and random-init metric, the margin over
    raw, and the rank of the trained features (raw features' rank last)."""
    raw = f"{metric}/raw_input"
    row = {"metric": metric, "raw features": _stats(_per_seed(rows, raw)) if raw in rows.columns else ""}
    for arm in arms:
        runs = rows.filter(pl.col(by).cast(pl.String) == str(arm))
        label = f"{by.rsplit('.', 1)[-1]}={arm}"
        row[f"trained ({label})"] = _stats(runs.get_column(metric))
        if f"{metric}/random_init" in runs.columns:
            row[f"random init ({label})"] = _stats(runs.get_column(f"{metric}/random_init"))
        if raw in runs.columns:
            row[f"margin over raw ({label})"] = _stats(_margin(runs, metric, raw))
        if rank in runs.columns:
            row[f"{rank} ({label})"] = _stats(runs.get_column(rank))
    if f"{rank}/raw_input" in rows.columns:
        row[f"{rank} (raw features)"] = _stats(_per_seed(rows, f"{rank}/raw_input"))
    return row


def tabular_table(finished: pl.DataFrame, metrics: list[str], by: str, rank: str, data: str = "data.name") -> pl.DataFrame:
    """One row per dataset (see `dataset_row`), with n runs (all arms; raw features count once per seed)."""
    if absent_columns(finished, [data, by]):
        return pl.DataFrame()
    arms = sorted(finished.get_column(by).drop_nulls().unique().to_list())
    out = []
    for name in sorted(finished.get_column(data).drop_nulls().cast(pl.String).unique().to_list()):
        rows = finished.filter(pl.col(data).cast(pl.String) == name)
        metric = _metric_of(rows, metrics)
        if metric is not None:
            out.append({"dataset": name, "n": rows.height, **dataset_row(rows, metric, by, arms, rank)})
    return pl.DataFrame(out) if out else pl.DataFrame()


@register_panel("tabular", options=("metrics", "by", "rank", "data"))
def tabular_section(ctx: PanelContext, options: dict) -> list[str]:
    """Raw features vs the trained encoder per dataset, and the rank, for each arm of `by`."""
    metrics = option_list(options.get("metrics")) or list(DEFAULT_METRICS)
    by, rank, data = str(options.get("by", "variant.reg_tokens")), str(options.get("rank", "feature_rank")), str(options.get("data", "data.name"))
    table = tabular_table(ctx.finished, metrics, by, rank, data)
    title = "## Per dataset: raw features vs the trained encoder"
    if table.height == 0:
        return [title, "", f"Skipped the tabular panel: no finished run has `{data}`, `{by}` and one of {metrics}.", ""]
    return [title, "", (f"Mean ± standard error over seeds (std ddof 1 / √n; n = runs of the dataset, all arms; raw "
            f"features, the same for every arm, once per seed) of the downstream metric on raw features, on the random-init encoder and on the trained one, for each value of "
            f"`{by}`; `margin over raw` is per run trained minus raw (reversed for RMSE: positive = better), then "
            f"averaged; `{rank}` is the effective rank of the frozen val features."), "",
            markdown_table(table), ""]
