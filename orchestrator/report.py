"""Markdown report of one sweep: run table, scaling-law fits, failures and frontier.

Fits, plot and frontier use finished runs only: runs that were stopped early or
failed never completed their budget's schedule, so they would bias the curves.

The sweep spec's `report:` section may also ask for panels (see PANEL_OPTIONS):
`isoflop` (best teacher fraction per budget), `teacher_quality` (student against
teacher), `pareto` (frontier and fit per method) and `cost` (amortized and full
FLOPs when teachers are reused). A panel that lacks its columns or points says so
in one line instead of failing the report.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os
import pathlib
import re
from dataclasses import dataclass

import polars as pl

from orchestrator import analysis
from orchestrator.results import ResultsStore

DEFAULT_X = analysis.FLOPS_TOTAL
DEFAULT_Y = "probe_acc"
DEFAULT_BUDGET = "budget.flops"
DEFAULT_FRACTION = "variant.teacher_fraction"
DEFAULT_METHOD = "variant.name"
DEFAULT_TEACHER_FLOPS = "teacher_flops"
PANEL_OPTIONS = {
    "isoflop": ("budget", "fraction", "y"),
    "teacher_quality": ("teacher_y", "y", "group"),
    "pareto": ("by", "ys", "x", "budget"),
    "cost": ("teacher_flops",),
    "zero_shot": ("kind", "data", "by", "with"),
}
_ERROR_PREVIEW_CHARS = 2000
SCHEDULED_LR = "lr"
SCHEDULED_LR_LABEL = "lr (final, scheduled)"  # the schedule's last value, not the configured optim.lr
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._=+-]")


# ---- formatting -----------------------------------------------------------------


def format_value(value) -> str:
    """Round numbers for reading: 4 significant digits, scientific when huge or tiny."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:.3g}" if abs(value) >= 1e6 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pl.DataFrame) -> str:
    """A polars frame as a GitHub-flavoured Markdown table."""
    header = "| " + " | ".join(df.columns) + " |"
    divider = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(format_value(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join([header, divider, *rows])


def _image_name(x: str, y: str) -> str:
    return _panel_image(f"{y}_vs_{x}")


def _panel_image(stem: str) -> str:
    return _UNSAFE_FILENAME_CHARS.sub("_", stem) + ".png"


def _names(columns: list[str]) -> str:
    return ", ".join(f"`{c}`" for c in columns)


# ---- settings -------------------------------------------------------------------


class ReportError(ValueError):
    """A report setting names no column of the results: the CLI prints it as `error: ... Fix: ...`."""


def _report_section(spec: dict) -> dict:
    section = spec.get("report") or {}
    return section if isinstance(section, dict) else {}


def _space_keys(spec: dict) -> list[str]:
    space = spec.get("space") or {}
    return [str(key) for key in space] if isinstance(space, dict) else []


def _unknown_column_error(where: str, name: str, sweep: str, valid: list[str]) -> ReportError:
    """Name the bad setting, the closest valid names, and every valid one."""
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" (did you mean {_names(close)}?)" if close else ""
    return ReportError(
        f"{where} {name!r}: no such column in the results of sweep {sweep}{hint}. "
        f"Fix: use one of {', '.join(sorted(valid))}"
    )


def _check_settings(
    table: pl.DataFrame, sweep: str, given: dict[str, str | None], group_from_spec: str | None
) -> None:
    """An explicit --x/--y/--group, or the spec's report.group, must name a column (x and y a numeric one)."""
    numeric = [c for c in table.columns if table.schema[c].is_numeric()]
    groupable = [c for c in table.columns if c not in ("run_id", "error")]
    for option, valid in (("x", numeric), ("y", numeric), ("group", groupable)):
        name = given.get(option)
        if name is not None and name not in valid:
            raise _unknown_column_error(f"--{option}", name, sweep, valid)
    if group_from_spec is not None and group_from_spec not in groupable:
        raise _unknown_column_error("report.group in sweep.yaml:", group_from_spec, sweep, groupable)


def _report_settings(section: dict, x, y, group) -> tuple[str, str, str | None]:
    """Explicit arguments win over the sweep spec's `report:` section, then defaults."""
    return (
        x or section.get("x") or DEFAULT_X,
        y or section.get("y") or DEFAULT_Y,
        group or section.get("group"),
    )


def _require_results(store: ResultsStore, root, sweep: str) -> None:
    if store.runs(sweep).height == 0:
        raise FileNotFoundError(
            f"no results for sweep {sweep} under {root}. Fix: run `jepa sweep FILE` first, or pass --storage ROOT"
        )


def check_results(root, sweep: str) -> list[tuple[str, str]]:
    """(path, error) of each damaged results file of a sweep; the sweep must exist."""
    store = ResultsStore(root)
    if sweep not in store.sweeps():
        raise FileNotFoundError(f"no sweep {sweep} under {root}. Fix: pass --storage ROOT (sweeps there: "
                                f"{', '.join(store.sweeps()) or 'none'})")
    return store.check(sweep)


def _require_local(store: ResultsStore, root) -> None:
    if not store.is_local:
        raise ValueError(f"reports are written next to the results; {root} is not a local root")


# ---- sections -------------------------------------------------------------------


def _summary_section(table: pl.DataFrame, sweep: str, x: str, y: str, group: str | None) -> list[str]:
    counts = table.group_by("status").len().sort("status")
    status_text = ", ".join(f"{s}: {n}" for s, n in counts.iter_rows())
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"# Sweep `{sweep}`",
        "",
        f"Generated {generated}. Runs: {table.height} ({status_text}).",
        f"Plotting `{y}` against `{x}`" + (f", grouped by `{group}`." if group else "."),
        "",
    ]


def _runs_section(
    table: pl.DataFrame, x: str, y: str, group: str | None, metric_names: list[str],
    cost_columns: tuple[str, ...] = (), swept: list[str] = (),
) -> list[str]:
    """Every swept key beside the results; the logged `lr` is labelled as the schedule's final value."""
    wanted = ["run_id", "status", *([group] if group else []), *swept, x, *cost_columns, y]
    extra = [
        m for m in metric_names
        if m not in wanted and m in table.columns and table.schema[m].is_numeric()
    ]
    columns = list(dict.fromkeys(c for c in [*wanted, *extra] if c in table.columns))
    ordered = table.select(columns).sort([c for c in (group, x) if c], nulls_last=True)
    if SCHEDULED_LR in metric_names and SCHEDULED_LR in ordered.columns:
        ordered = ordered.rename({SCHEDULED_LR: SCHEDULED_LR_LABEL})
    return ["## Runs", "", markdown_table(ordered), ""]


def _fits_section(fits: dict[str, dict | None], y: str, accuracy: bool, budgets: dict[str, int]) -> list[str]:
    target = f"1 - {y}" if accuracy else y
    lines = ["## Power-law fits", "", f"Fitted `{target} = a * C^-b + c` on finished runs.", ""]
    fitted = {label: fit for label, fit in fits.items() if fit is not None}
    if fitted:
        rows = [
            {"group": label, "budgets": budgets[label], "a": fit["a"], "b": fit["b"], "c": fit["c"], "r2": fit["r2"]}
            for label, fit in fitted.items()
        ]
        lines += [markdown_table(pl.DataFrame(rows)), ""]
    unfitted = [f"`{label}` ({budgets[label]} budgets)" for label, fit in fits.items() if fit is None]
    if unfitted:
        lines += ["No fit (needs at least 3 distinct budgets, or the fit failed): " + ", ".join(unfitted) + ".", ""]
    return lines


def _failures_section(table: pl.DataFrame) -> list[str]:
    failed = table.filter(pl.col("status") == "failed")
    if failed.height == 0:
        return ["## Failed runs", "", "None.", ""]
    lines = ["## Failed runs", ""]
    for run_id, variant, stage, error in failed.select("run_id", "variant", "stage", "error").iter_rows():
        text = (error or "no error recorded").strip()
        last_line = text.splitlines()[-1] if text else "no error recorded"
        lines.append(f"- `{run_id}` ({variant}, {stage}): {format_value(last_line)}")
        if "\n" in text:
            lines += ["", "  ```", *[f"  {l}" for l in text[-_ERROR_PREVIEW_CHARS:].splitlines()], "  ```"]
    return [*lines, ""]


def _frontier_section(finished: pl.DataFrame, x: str, y: str, group: str | None) -> list[str]:
    mode = "max" if analysis.higher_is_better(y) else "min"
    frontier = analysis.pareto_frontier(finished, x, y, mode)
    columns = ["run_id", *([group] if group else []), x, y]
    better = "higher" if mode == "max" else "lower"
    lines = ["## Pareto frontier", "", f"Finished runs not beaten on both lower `{x}` and {better} `{y}`.", ""]
    if frontier.height == 0:
        return [*lines, "No finished runs with both values.", ""]
    return [*lines, markdown_table(frontier.select(columns)), ""]


def _budget_counts(points: pl.DataFrame, x: str, group: str | None) -> dict[str, int]:
    """Distinct x values per group label: a fit needs at least three."""
    labelled = points.with_columns(pl.Series("_label", analysis.group_labels(points, group), dtype=pl.String))
    counts = labelled.group_by("_label").agg(pl.col(x).n_unique())
    return dict(counts.iter_rows())


def _analysis_sections(store, sweep, finished, x, y, group) -> tuple[list[str], list[str]]:
    """(plot + fits, frontier) sections; both need finished runs with x and y values."""
    if x not in finished.columns or y not in finished.columns:
        note = [f"No `{y}` against `{x}` values logged yet: nothing to plot or fit.", ""]
        return note, []
    points = analysis.plottable_rows(finished, x, y)
    fits = analysis.fit_groups(points, x, y, group)
    _, accuracy = analysis.fit_error(y, points.get_column(y).to_list())
    image = _image_name(x, y)
    analysis.plot_metric_vs_flops(
        points, x, y, group, os.path.join(store.sweep_dir(sweep), image), f"{sweep}: {y} vs {x}", fits
    )
    fit_lines = _fits_section(fits, y, accuracy, _budget_counts(points, x, group))
    return [f"![{y} vs {x}]({image})", "", *fit_lines], _frontier_section(points, x, y, group)


# ---- panels ---------------------------------------------------------------------


@dataclass(frozen=True)
class _PanelContext:
    """What every panel needs: where images go, the finished runs, the report's y and cost columns."""

    directory: str
    sweep: str
    finished: pl.DataFrame
    y: str
    has_cost: bool
    teacher_flops: str
    store: ResultsStore | None = None


def _panel_options(section: dict, key: str) -> tuple[dict | None, list[str]]:
    """A panel's options (None when not asked for) and notes on options it cannot use.

    `key:` alone or `key: true` asks for the panel with its defaults; `key: false` turns it off.
    """
    if key not in section or section[key] is False:
        return None, []
    value = section[key]
    if value is None or value is True:
        return {}, []
    if not isinstance(value, dict):
        return {}, [f"`report.{key}` should be a mapping of options, got {value!r}: used the defaults.", ""]
    unknown = sorted(set(value) - set(PANEL_OPTIONS[key]))
    if not unknown:
        return value, []
    known = _names(list(PANEL_OPTIONS[key]))
    return value, [f"Ignored unknown option(s) {_names(unknown)} in `report.{key}` (known: {known}).", ""]


def _missing_line(panel: str, table: pl.DataFrame, missing: list[str]) -> str:
    """One line naming the absent columns, with the closest existing names as a hint for typos."""
    hints = [m for name in missing for m in difflib.get_close_matches(name, table.columns, n=1)]
    hint = f" (did you mean {_names(hints)}?)" if hints else ""
    return f"Skipped the {panel} panel: no column {_names(missing)} in the results{hint}."


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


def _isoflop_section(ctx: _PanelContext, options: dict) -> list[str]:
    """Which share of a fixed budget to spend on the teacher: y against the fraction, per budget."""
    budget = options.get("budget", DEFAULT_BUDGET)
    fraction = options.get("fraction", DEFAULT_FRACTION)
    y = options.get("y", ctx.y)
    lines = [f"## IsoFLOP: `{y}` against `{fraction}`", ""]
    missing = analysis.absent_columns(ctx.finished, [budget, fraction, y])
    if missing:
        return [*lines, _missing_line("IsoFLOP", ctx.finished, missing), ""]
    own_teacher, reused_note = _without_reused_teachers(ctx)
    stats = analysis.isoflop_stats(own_teacher, budget, fraction, y)
    best = analysis.best_fraction_per_budget(stats, budget, fraction, analysis.higher_is_better(y))
    if best.height == 0:
        return [*lines, f"Too few points for the IsoFLOP panel: no `{budget}` has finished runs with `{y}` "
                f"at two or more `{fraction}` values.", ""]
    image = _panel_image(f"isoflop_{y}")
    title = f"{ctx.sweep}: {y} at fixed {budget}"
    analysis.plot_isoflop(stats, best, budget, fraction, y, os.path.join(ctx.directory, image), title)
    table = best.select(
        pl.col("budget").alias(budget), pl.col("best_fraction").alias("best fraction"),
        pl.col("best_y").alias(y), pl.col("worst_y").alias(f"{y} at worst fraction"),
        pl.col("n_seeds").alias("n seeds"),
    )
    skipped = stats.get_column(budget).n_unique() - best.height
    lines += [
        f"Mean `{y}` over seeds (± standard error) against `{fraction}`, one curve per `{budget}`; "
        "the star marks each budget's best fraction.", "",
        f"![IsoFLOP {y}]({image})", "",
        "Best fraction per budget:", "",
        markdown_table(table), "",
        *reused_note,
    ]
    if skipped:
        lines += [f"{skipped} budget(s) with a single `{fraction}` value left out.", ""]
    return lines


def _without_reused_teachers(ctx: _PanelContext) -> tuple[pl.DataFrame, list[str]]:
    """Runs that trained their own teacher: a reused teacher's run keeps a fraction in its
    config that split nobody's budget, so it must not sit on an IsoFLOP curve."""
    if ctx.teacher_flops not in ctx.finished.columns:
        return ctx.finished, []
    reused = pl.col(ctx.teacher_flops).cast(pl.Float64, strict=False).fill_null(0.0) > 0
    count = ctx.finished.filter(reused).height
    if count == 0:
        return ctx.finished, []
    note = f"{count} run(s) with a reused teacher (`{ctx.teacher_flops}` > 0) left out of the IsoFLOP curves."
    return ctx.finished.filter(~reused), [note, ""]


def _slope_text(fit: dict) -> str:
    return (
        f"slope {format_value(fit['slope'])} ± {format_value(fit['slope_stderr'])} "
        f"(r = {format_value(fit['r'])}, p = {format_value(fit['p'])}, n = {fit['n']})"
    )


def _teacher_quality_section(ctx: _PanelContext, options: dict) -> list[str]:
    """Does a better teacher make a better student? Student y regressed on teacher y."""
    y = options.get("y", ctx.y)
    teacher_y = options.get("teacher_y", f"teacher/{y}")
    group = options.get("group")
    lines = [f"## Teacher quality: `{y}` against `{teacher_y}`", ""]
    missing = analysis.absent_columns(ctx.finished, [teacher_y, y, group])
    if missing:
        return [*lines, _missing_line("teacher-quality", ctx.finished, missing), ""]
    fit = analysis.teacher_quality_fit(ctx.finished, teacher_y, y)
    if fit is None:
        return [*lines, f"Too few points for the teacher-quality panel: needs 3 finished runs with both "
                f"`{teacher_y}` and `{y}`, at 2 or more distinct `{teacher_y}` values.", ""]
    image = _panel_image(f"teacher_quality_{y}")
    text = _slope_text(fit)
    analysis.plot_teacher_quality(
        ctx.finished, teacher_y, y, group, fit, f"least squares: {text}",
        os.path.join(ctx.directory, image), f"{ctx.sweep}: student vs teacher",
    )
    return [
        *lines, f"![teacher quality {y}]({image})", "",
        f"Least-squares fit of `{y}` on `{teacher_y}`: {text}. "
        "A slope near 0 means students are robust to teacher quality.", "",
    ]


def _fit_rows(fits: dict[str, dict[str, dict | None]]) -> tuple[list[dict], list[str]]:
    """Table rows of fitted (method, y) pairs, and the names of pairs without a fit."""
    rows, unfitted = [], []
    for y, per_method in fits.items():
        for method, fit in per_method.items():
            if fit is None:
                unfitted.append(f"`{method}` on `{y}`")
            else:
                rows.append({"method": method, "y": y, "a": fit["a"], "b": fit["b"], "c": fit["c"], "r2": fit["r2"]})
    return rows, unfitted


def _fits_lines(fits: dict[str, dict[str, dict | None]], x: str) -> list[str]:
    rows, unfitted = _fit_rows(fits)
    lines = [f"Dashed: `error = a * C^-b + c` per method, C = `{x}`, error = 1 - y for accuracies.", ""]
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
        outcomes = analysis.method_dominance(points, budget, y, analysis.higher_is_better(y))
        if not outcomes:
            only = _names(sorted(set(points.get_column("_method").to_list())))
            sentences.append(f"`{y}`: only {only} has finished runs, so no method is compared.")
        sentences += [_dominance_sentence(y, budget, outcome) for outcome in outcomes]
    return sentences


def _full_cost_x(ctx: _PanelContext, x: str) -> tuple[str | None, list[str]]:
    """The teacher-charged x to draw dotted, when the cost panel is on and x is a FLOP count."""
    if not ctx.has_cost:
        return None, []
    if x in (analysis.FLOPS_TOTAL, analysis.FLOPS_AMORTIZED):
        return analysis.FLOPS_FULL, []
    return None, [f"Full (teacher-charged) cost not drawn: it applies to x = `{analysis.FLOPS_TOTAL}`, not `{x}`.", ""]


def _pareto_points(ctx: _PanelContext, by: str, x: str, budget: str, ys: list[str], full_x: str | None):
    """Points per y that has any, and a line for each y that has none."""
    points_by_y, notes = {}, []
    extra = [budget, *([full_x] if full_x else [])]
    for y in ys:
        if y not in ctx.finished.columns:
            notes += [_missing_line(f"Pareto `{y}`", ctx.finished, [y]), ""]
            continue
        points = analysis.method_points(ctx.finished, by, x, y, extra)
        if points.height == 0:
            notes += [f"No finished run has `{by}`, `{x}` > 0 and `{y}`: `{y}` left out of the Pareto panel.", ""]
            continue
        points_by_y[y] = points
    return points_by_y, notes


def _pareto_section(ctx: _PanelContext, options: dict) -> list[str]:
    """Per method: frontier, power-law fit and a head-to-head count at shared budgets, per y."""
    by = options.get("by", DEFAULT_METHOD)
    x = options.get("x", analysis.FLOPS_TOTAL)
    ys = _as_list(options.get("ys", ctx.y))
    budget = options.get("budget") or (DEFAULT_BUDGET if DEFAULT_BUDGET in ctx.finished.columns else x)
    lines = [f"## Pareto per `{by}`", ""]
    missing = analysis.absent_columns(ctx.finished, [by, x, budget])
    if missing:
        return [*lines, _missing_line("Pareto", ctx.finished, missing), ""]
    full_x, cost_notes = _full_cost_x(ctx, x)
    points_by_y, notes = _pareto_points(ctx, by, x, budget, ys, full_x)
    if not points_by_y:
        return [*lines, *notes] if notes else [*lines, "Skipped the Pareto panel: `ys` names no metric.", ""]
    fits = {y: analysis.fit_methods(points, x, y) for y, points in points_by_y.items()}
    analysis.plot_pareto(points_by_y, x, by, fits, full_x, os.path.join(ctx.directory, "pareto.png"), ctx.sweep)
    return [
        *lines, "![Pareto per method](pareto.png)", "", *notes, *cost_notes, *_fits_lines(fits, x),
        *[f"- {sentence}" for sentence in _dominance_sentences(points_by_y, budget)], "",
    ]


def _cost_section(table: pl.DataFrame, options: dict) -> tuple[pl.DataFrame, list[str]]:
    """Add amortized and full FLOPs when some student reused a teacher trained in another run."""
    column = options.get("teacher_flops", DEFAULT_TEACHER_FLOPS)
    lines = ["## FLOP cost", ""]
    if column not in table.columns:
        return table, [*lines, f"Skipped the cost panel: no run logged `{column}`, "
                       "so amortized and full FLOPs are the same.", ""]
    costed = analysis.with_cost_columns(table, column)
    charged = costed.filter(pl.col(analysis.FLOPS_FULL) > pl.col(analysis.FLOPS_AMORTIZED)).height
    return costed, [
        *lines,
        f"`{analysis.FLOPS_AMORTIZED}` = `{analysis.FLOPS_TOTAL}` (a reused teacher's FLOPs left out); "
        f"`{analysis.FLOPS_FULL}` = `{analysis.FLOPS_TOTAL}` + `{column}`. "
        f"{charged} of {table.height} runs carry teacher FLOPs.", "",
    ]


def _zero_shot_section(ctx: _PanelContext, options: dict) -> list[str]:
    """Zero-shot RL: return (dm_control) or success (OGBench) per dataset and task, per method."""
    kind = str(options.get("kind", "return"))
    data, by = options.get("data", "data.name"), options.get("by", DEFAULT_METHOD)
    finished, notes = ctx.finished, []
    for other in _as_list(options.get("with")):  # e.g. the RLlib references, trained in their own sweep
        if other not in ctx.store.sweeps():
            notes.append(f"No sweep `{other}` in the results (`report.zero_shot.with`): run it to add its rows.")
            continue
        table = analysis.final_table(ctx.store, other)
        finished = pl.concat([finished, table.filter(pl.col("status") == "finished")], how="diagonal_relaxed")
    stats = analysis.zero_shot_table(finished, kind, data, by)
    title = f"## Zero-shot {kind} per task"
    if stats.height == 0:
        return [title, "", f"Skipped the zero_shot panel: no finished run has `eval/<task>/{kind}` with `{data}` and `{by}`.", ""]
    sources = ", ".join(f"`{name}`" for name in [ctx.sweep, *_as_list(options.get("with"))])
    return [title, "", f"Mean ± standard error over seeds (n runs) from {sources}; each run's value is its mean over "
            "evaluation episodes for that task. Zero-shot methods infer each task from reward-labelled samples or "
            "a goal; RLlib references (bc, marwil, cql, iql) are trained on that task's reward. "
            "\"(all tasks)\" is the mean of the task means (n: fewest runs of any task).", "",
            markdown_table(stats), "", *notes]


_PANEL_SECTIONS = (
    ("zero_shot", _zero_shot_section),
    ("isoflop", _isoflop_section),
    ("teacher_quality", _teacher_quality_section),
    ("pareto", _pareto_section),
)


def _panel_sections(ctx: _PanelContext, section: dict) -> list[str]:
    """The panels the `report:` section asks for, in a fixed order."""
    lines: list[str] = []
    for key, build in _PANEL_SECTIONS:
        options, notes = _panel_options(section, key)
        if options is not None:
            lines += [*build(ctx, options), *notes]
    return lines


def _teacher_flops_column(section: dict) -> str:
    options, _ = _panel_options(section, "cost")
    return (options or {}).get("teacher_flops", DEFAULT_TEACHER_FLOPS)


def _apply_cost(table: pl.DataFrame, section: dict) -> tuple[pl.DataFrame, list[str]]:
    options, notes = _panel_options(section, "cost")
    if options is None:
        return table, []
    costed, lines = _cost_section(table, options)
    return costed, [*lines, *notes]


# ---- entry point ----------------------------------------------------------------


def write_report(root, sweep: str, x: str | None = None, y: str | None = None, group: str | None = None) -> pathlib.Path:
    """Write <root>/<sweep>/report.md (and its PNGs) and return the report's path."""
    store = ResultsStore(root)
    _require_local(store, root)
    _require_results(store, root, sweep)
    spec = store.load_sweep_spec(sweep) or {}
    section = _report_section(spec)
    given = {"x": x, "y": y, "group": group}
    x, y, group = _report_settings(section, x, y, group)
    table = analysis.final_table(store, sweep)
    metric_names = sorted(set(store.metrics(sweep).get_column("metric").to_list()))
    table, cost_lines = _apply_cost(table, section)
    _check_settings(table, sweep, given, group if given["group"] is None else None)
    swept = analysis.swept_columns(store.runs(sweep), table.columns, _space_keys(spec))
    cost_columns = tuple(c for c in (analysis.FLOPS_AMORTIZED, analysis.FLOPS_FULL) if c in table.columns)
    finished = table.filter(pl.col("status") == "finished")
    plot_and_fits, frontier = _analysis_sections(store, sweep, finished, x, y, group)
    context = _PanelContext(
        store.sweep_dir(sweep), sweep, finished, y, bool(cost_columns), _teacher_flops_column(section), store
    )
    lines = [
        *_summary_section(table, sweep, x, y, group),
        *_runs_section(table, x, y, group, metric_names, cost_columns, swept),
        *cost_lines,
        *plot_and_fits,
        *_failures_section(table),
        *frontier,
        *_panel_sections(context, section),
    ]
    path = pathlib.Path(store.sweep_dir(sweep)) / "report.md"
    temp = path.with_name(f".report.md.{os.getpid()}.tmp")
    temp.write_text("\n".join(lines) + "\n")
    os.replace(temp, path)
    return path
