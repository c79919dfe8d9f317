"""Label-efficiency panel (`report.label_efficiency`, AD-L-JEPA issue 21): a downstream metric against the share
of labels it was trained with, per pretraining method, beside the random-init encoder (no pretraining) and the
raw inputs; and each method's pretraining FLOPs and wall time. Mean ± standard error over seeds.

Metrics are named `<prefix>_<pct>` (bev_ap_5, bev_ap_20, bev_ap_100), each also with `/random_init` and `/raw_input`.
"""

from __future__ import annotations

import os
import re

import polars as pl

from orchestrator.report.figures import blank_figure, new_axes, save_figure
from orchestrator.report.markdown import markdown_table
from orchestrator.report.panels.seeds import mean_cell
from orchestrator.report.registry import PanelContext, register_panel
from orchestrator.report.settings import option_list
from orchestrator.report.table import FLOPS_TOTAL

BASELINES = {"random_init": "no pretraining (random init)", "raw_input": "raw BEV cells"}


def _stats(values: pl.Series) -> tuple[float | None, float | None, int]:
    """(mean, std with ddof 1, n) of the finite values."""
    v = values.cast(pl.Float64, strict=False).drop_nulls()
    v = v.filter(v.is_finite())
    if v.len() == 0:
        return None, None, 0
    return float(v.mean()), (float(v.std()) if v.len() > 1 else 0.0), v.len()


def fractions_of(columns, prefix: str) -> list[int]:
    """The label percentages logged for a metric prefix, ascending."""
    found = {int(m.group(1)) for c in columns if (m := re.fullmatch(rf"{re.escape(prefix)}_(\d+)", c))}
    return sorted(found)


def curves(finished: pl.DataFrame, prefix: str, by: str) -> dict[str, list[tuple[int, float | None, float | None, int]]]:
    """method -> [(pct, mean, std, n)], the baselines as methods of their own (pooled over every run's seed)."""
    pcts = fractions_of(finished.columns, prefix)
    out: dict[str, list] = {}
    for method in sorted(finished.get_column(by).drop_nulls().cast(pl.String).unique().to_list()):
        rows = finished.filter(pl.col(by).cast(pl.String) == method)
        out[method] = [(p, *_stats(rows.get_column(f"{prefix}_{p}"))) for p in pcts]
    for suffix, label in BASELINES.items():
        if all(f"{prefix}_{p}/{suffix}" in finished.columns for p in pcts):
            rows = finished.group_by("seed").agg(pl.col(f"{prefix}_{p}/{suffix}").cast(pl.Float64).mean() for p in pcts) \
                if "seed" in finished.columns else finished
            out[label] = [(p, *_stats(rows.get_column(f"{prefix}_{p}/{suffix}"))) for p in pcts]
    return out


def wall_times(ctx: PanelContext) -> dict[str, float]:
    """run_id -> seconds of training (the largest wall_s its metrics rows logged)."""
    try:
        metrics = ctx.store.metrics(ctx.sweep)
    except Exception:  # noqa: BLE001 - a report without the metrics table still shows the rest
        return {}
    if metrics.height == 0 or "wall_s" not in metrics.columns:
        return {}
    return dict(metrics.group_by("run_id").agg(pl.col("wall_s").max()).iter_rows())


def plot(data: dict, prefix: str, flops: dict, path: str, title: str) -> None:
    figure = blank_figure((10, 4))
    axes = new_axes(figure, 1, 2, 1)
    for method, points in data.items():
        xs = [p for p, m, *_ in points if m is not None]
        ys = [m for _, m, *_ in points if m is not None]
        errs = [s / n**0.5 for _, m, s, n in points if m is not None]  # standard errors
        axes.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=method,
                      linestyle="--" if method in BASELINES.values() else "-")
    axes.set_xscale("log")
    axes.set_xlabel("labelled train scenes (%)")
    axes.set_ylabel(prefix)
    axes.set_title(title)
    axes.legend(fontsize=7)
    bars = new_axes(figure, 1, 2, 2)
    names = list(flops)
    bars.bar(names, [flops[n][0] for n in names], yerr=[flops[n][1] for n in names], capsize=3)  # mean, s.e.
    bars.set_ylabel("pretraining FLOPs")
    bars.set_title("pretraining compute per method")
    save_figure(figure, path)


@register_panel("label_efficiency", options=("metrics", "by"))
def label_efficiency_section(ctx: PanelContext, options: dict) -> list[str]:
    """AP (or any `<prefix>_<pct>` metric) vs label fraction per method, and pretraining FLOPs and time per method."""
    prefixes = option_list(options.get("metrics")) or ["bev_ap"]
    by = str(options.get("by", "variant.name"))
    finished = ctx.finished
    title = "## Label efficiency and pretraining compute"
    if finished.height == 0 or by not in finished.columns or not fractions_of(finished.columns, prefixes[0]):
        return [title, "", f"Skipped the label_efficiency panel: no finished run has `{by}` and `{prefixes[0]}_<pct>`.", ""]
    times = wall_times(ctx)
    compute, rows = {}, []
    for method in sorted(finished.get_column(by).drop_nulls().cast(pl.String).unique().to_list()):
        runs = finished.filter(pl.col(by).cast(pl.String) == method)
        f_mean, f_std, n = _stats(runs.get_column(FLOPS_TOTAL))
        t_mean, t_std, t_n = _stats(pl.Series([times.get(r) for r in runs.get_column("run_id").to_list()], dtype=pl.Float64))
        compute[method] = (f_mean or 0.0, (f_std or 0.0) / max(n, 1) ** 0.5)
        rows.append({"method": method, "n": n, "pretraining FLOPs": mean_cell(f_mean, f_std, n, n),
                     "train wall s": mean_cell(t_mean, t_std, t_n, n)})
    lines = [title, ""]
    for prefix in prefixes:
        data = curves(finished, prefix, by)
        image = f"label_efficiency_{prefix}.png"
        plot(data, prefix, compute, os.path.join(ctx.directory, image), f"{ctx.sweep}: {prefix} vs labels")
        table = pl.DataFrame([{"method": m, **{f"{prefix} @ {p}%": mean_cell(mu, sd, n, n)
                                                for p, mu, sd, n in pts}} for m, pts in data.items()])
        lines += [f"![{prefix} vs label fraction]({image})", "",
                  (f"`{prefix}` on val, mean ± s.e. over seeds, per share of labelled train scenes; the random-init and "
                   "raw-input rows are the same head on an untrained encoder and on the raw BEV cells."), "",
                  markdown_table(table), ""]
    lines += ["Pretraining compute per method (FLOPs from the FLOP counter; wall time of the training loop).", "",
              markdown_table(pl.DataFrame(rows)), ""]
    return lines
