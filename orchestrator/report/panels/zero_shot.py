"""Zero-shot RL panel (`report.zero_shot`): return (dm_control) or success (OGBench) per dataset,
task and method, optionally merged with reference sweeps trained elsewhere."""

from __future__ import annotations

import polars as pl

from orchestrator.report.markdown import markdown_table
from orchestrator.report.registry import PanelContext, register_panel
from orchestrator.report.rows import absent_columns, seed_stats
from orchestrator.report.settings import DEFAULT_METHOD, option_list
from orchestrator.report.table import final_table


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


def zero_shot_table(table: pl.DataFrame, kind: str, data: str = "data.name", by: str = DEFAULT_METHOD) -> pl.DataFrame:
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


def _with_reference_sweeps(ctx: PanelContext, others: list[str]) -> tuple[pl.DataFrame, list[str]]:
    """The finished runs plus those of each `with:` sweep (e.g. RLlib references trained on their own)."""
    finished, notes = ctx.finished, []
    for other in others:
        if other not in ctx.store.sweeps():
            notes.append(f"No sweep `{other}` in the results (`report.zero_shot.with`): run it to add its rows.")
            continue
        table = final_table(ctx.store, other)
        finished = pl.concat([finished, table.filter(pl.col("status") == "finished")], how="diagonal_relaxed")
    return finished, notes


@register_panel("zero_shot", options=("kind", "data", "by", "with"))
def zero_shot_section(ctx: PanelContext, options: dict) -> list[str]:
    """Zero-shot RL: return (dm_control) or success (OGBench) per dataset and task, per method."""
    kind = str(options.get("kind", "return"))
    data, by = options.get("data", "data.name"), options.get("by", DEFAULT_METHOD)
    finished, notes = _with_reference_sweeps(ctx, option_list(options.get("with")))
    stats = zero_shot_table(finished, kind, data, by)
    title = f"## Zero-shot {kind} per task"
    if stats.height == 0:
        return [title, "", f"Skipped the zero_shot panel: no finished run has `eval/<task>/{kind}` with `{data}` and `{by}`.", ""]
    sources = ", ".join(f"`{name}`" for name in [ctx.sweep, *option_list(options.get("with"))])
    return [title, "", (f"Mean ± standard error over seeds (n runs) from {sources}; each run's value is its mean over "
            "evaluation episodes for that task. Zero-shot methods infer each task from reward-labelled samples or "
            "a goal; RLlib references (bc, marwil, cql, iql) are trained on that task's reward. "
            "\"(all tasks)\" is the mean of the task means (n: fewest runs of any task)."), "",
            markdown_table(stats), "", *notes]
