"""Baselines, trend verdicts and collapse warnings in the report, on the planted sweep of test_report.py.

No Ray, no training: baseline and collapse metrics are appended to that sweep's runs, with values
chosen so the answers are known (which runs beat which baseline, which runs collapsed).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from orchestrator.report import write_report
from orchestrator.report.baselines import beats
from orchestrator.report.curves import plot_metric_vs_flops
from orchestrator.report.fits import (
    fit_groups,
    fit_power_law,
    fits_section,
    trend_verdict,
)
from orchestrator.report.table import final_table
from orchestrator.results import ResultsStore
from tests import test_report
from tests.test_report import BUDGETS, GROUPS, SWEEP, _accuracy

sweep_root = test_report.sweep_root  # the planted sweep of test_report.py, as a fixture here too

SEEDS = (0, 1)
RANDOM_INIT, RAW_INPUT = 0.5, 0.4  # runs at the smallest budget (acc 0.35-0.45) beat neither or one, others both
VJEPA_RANDOM_INIT = 0.55  # a second architecture: its own random-init row


def _run_ids():
    return [(group, budget, seed, f"{group}-{budget:.0e}-s{seed}") for group in GROUPS for budget in BUDGETS
            for seed in SEEDS]


def _append(store: ResultsStore, run_id: str, budget: float, metrics: dict[str, float]) -> None:
    store.append_metrics(run_id, SWEEP, [{"step": 20, "flops": budget, "wall_s": 2.5, "metric": name, "value": value}
                                         for name, value in metrics.items()])


def _plant_baselines(root, vjepa_random_init: float = RANDOM_INIT) -> None:
    store = ResultsStore(root)
    for group, budget, _, run_id in _run_ids():
        random_init = vjepa_random_init if group == "vjepa" else RANDOM_INIT
        _append(store, run_id, budget, {"probe_acc/random_init": random_init, "probe_acc/raw_input": RAW_INPUT})


def _expected_beats(group: str, budget: float, seed: int, vjepa_random_init: float = RANDOM_INIT) -> bool:
    random_init = vjepa_random_init if group == "vjepa" else RANDOM_INIT
    return _accuracy(group, budget, seed) > max(random_init, RAW_INPUT)


def _runs_table(text: str) -> list[list[str]]:
    lines = text.split("## Runs", 1)[1].strip().split("\n\n", 1)[0].splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if not line.startswith("|---")]


def _rows_by_id(text: str) -> dict[str, dict[str, str]]:
    header, *rows = _runs_table(text)
    return {row[0]: dict(zip(header, row)) for row in rows}


# ---- baselines in the runs table and summary -------------------------------------------


def test_runs_table_has_baseline_rows_and_a_beats_column(sweep_root):
    _plant_baselines(sweep_root)
    text = write_report(sweep_root, SWEEP).read_text()
    header = _runs_table(text)[0]
    assert header[header.index("probe_acc") + 1] == "beats baselines"
    assert "probe_acc/random_init" not in header and "probe_acc/raw_input" not in header  # rows, not columns
    rows = _rows_by_id(text)
    assert rows["random-init encoder"]["status"] == "baseline" and rows["random-init encoder"]["probe_acc"] == "0.5"
    assert rows["raw input"]["probe_acc"] == "0.4" and rows["raw input"]["beats baselines"] == ""
    for group, budget, seed, run_id in _run_ids():
        assert rows[run_id]["beats baselines"] == ("✓" if _expected_beats(group, budget, seed) else "✗"), run_id
    # ijepa at 1e15 (acc 0.45) beats raw input but not random init: still ✗
    assert rows["ijepa-1e+15-s0"]["beats baselines"] == "✗"
    winners = sum(_expected_beats(g, b, s) for g, b, s, _ in _run_ids())
    assert winners == 8
    assert f"{winners} of 12 finished runs with `probe_acc` beat both baselines" in text
    assert rows["ijepa-big"]["beats baselines"] == ""  # the failed run logged nothing


def test_baselines_that_differ_between_groups_get_one_row_per_group(sweep_root):
    _plant_baselines(sweep_root, vjepa_random_init=VJEPA_RANDOM_INIT)
    text = write_report(sweep_root, SWEEP).read_text()
    header, *rows = _runs_table(text)
    random_rows = [dict(zip(header, r)) for r in rows if r[0] == "random-init encoder"]
    assert {(r["variant.name"], r["probe_acc"]) for r in random_rows} == {("ijepa", "0.5"), ("vjepa", "0.55")}
    raw_rows = [dict(zip(header, r)) for r in rows if r[0] == "raw input"]
    assert [(r["variant.name"], r["probe_acc"]) for r in raw_rows] == [("", "0.4")]  # same everywhere: one row
    by_id = _rows_by_id(text)
    assert by_id["vjepa-1e+16-s0"]["beats baselines"] == "✗"  # 0.525: above ijepa's 0.5, not its own 0.55


def test_lower_is_better_metrics_must_be_below_the_smallest_baseline():
    table = pl.DataFrame({"val_loss": [0.5, 0.7, 0.95, None], "val_loss/random_init": [0.9, 0.9, 0.9, 0.9],
                          "val_loss/raw_input": [0.6, 0.6, 0.6, 0.6]})
    assert beats(table, "val_loss").to_list() == [True, False, False, None]
    assert beats(table.drop("val_loss/random_init", "val_loss/raw_input"), "val_loss") is None


def test_without_baseline_or_collapse_columns_the_report_is_unchanged(sweep_root):
    text = write_report(sweep_root, SWEEP).read_text()
    for absent in ("beats baselines", "random-init encoder", "raw input", "Collapse warnings", "⚠"):
        assert absent not in text


# ---- baselines on the plot -------------------------------------------------------------


def _finished(root) -> pl.DataFrame:
    return final_table(ResultsStore(root), SWEEP).filter(pl.col("status") == "finished")


def _lines(axes, gid: str) -> list:
    return [line for line in axes.get_lines() if line.get_gid() == gid]


def test_plot_draws_each_baseline_as_a_labelled_horizontal_line(sweep_root, tmp_path):
    _plant_baselines(sweep_root, vjepa_random_init=VJEPA_RANDOM_INIT)
    finished = _finished(sweep_root)
    axes = plot_metric_vs_flops(finished, "flops_total", "probe_acc", "variant.name", tmp_path / "p.png", "t")
    drawn = {line.get_label(): (line.get_linestyle(), tuple(line.get_ydata()), tuple(line.get_xdata()))
             for line in _lines(axes, "baseline")}
    assert drawn == {
        "random-init encoder (variant.name=ijepa)": (":", pytest.approx((RANDOM_INIT,) * 2), (0, 1)),
        "random-init encoder (variant.name=vjepa)": (":", pytest.approx((VJEPA_RANDOM_INIT,) * 2), (0, 1)),
        "raw input": ("-.", pytest.approx((RAW_INPUT,) * 2), (0, 1)),  # x in axes units: the whole width
    }
    legend = {text.get_text() for text in axes.get_legend().get_texts()}
    assert set(drawn) <= legend
    low, high = axes.get_ylim()
    assert low < RAW_INPUT and high > VJEPA_RANDOM_INIT


def test_plot_without_baselines_draws_no_baseline_line(sweep_root, tmp_path):
    axes = plot_metric_vs_flops(_finished(sweep_root), "flops_total", "probe_acc", "variant.name",
                                tmp_path / "p.png", "t")
    assert _lines(axes, "baseline") == []


# ---- fits without a trend ---------------------------------------------------------------


@pytest.mark.parametrize("fit, verdict", [
    ({"a": 5.7e32, "b": 3.0, "c": 0.5, "r2": 0.9}, "no trend (b at bound)"),
    ({"a": 1.0, "b": 2.999, "c": 0.0, "r2": 0.99}, "no trend (b at bound)"),
    ({"a": 0.5, "b": 1e-9, "c": 0.0, "r2": 0.8}, "no trend (b at bound)"),
    ({"a": 0.5, "b": 0.2, "c": 0.05, "r2": 0.31}, "no trend (r² 0.31)"),
    ({"a": 0.5, "b": 0.2, "c": 0.0, "r2": 0.98}, None),  # c at its bound 0 is allowed
    ({"a": 0.5, "b": 2.9, "c": 0.05, "r2": 0.5}, None),
])
def test_trend_verdict(fit, verdict):
    assert trend_verdict(fit) == verdict


def test_a_fit_to_noise_is_no_trend():
    compute = np.geomspace(1e15, 1e18, 8)
    error = np.array([0.5, 0.3, 0.6, 0.35, 0.55, 0.3, 0.6, 0.4])
    fit = fit_power_law(compute, error)
    assert fit is not None and trend_verdict(fit) is not None


def test_fits_without_a_trend_are_listed_but_not_drawn(sweep_root, tmp_path):
    fits = fit_groups(_finished(sweep_root), "flops_total", "probe_acc", "variant.name")
    assert trend_verdict(fits["ijepa"]) is None and trend_verdict(fits["vjepa"]) is None  # planted laws, r² ~1
    axes = plot_metric_vs_flops(_finished(sweep_root), "flops_total", "probe_acc", "variant.name",
                                tmp_path / "a.png", "t", fits)
    assert len(_lines(axes, "fit")) == 2
    fits["vjepa"] = {**fits["vjepa"], "b": 3.0}
    fits["ijepa"] = {**fits["ijepa"], "r2": 0.31}
    axes = plot_metric_vs_flops(_finished(sweep_root), "flops_total", "probe_acc", "variant.name",
                                tmp_path / "b.png", "t", fits)
    assert _lines(axes, "fit") == []
    text = "\n".join(fits_section(fits, "probe_acc", True, {"ijepa": 3, "vjepa": 3}))
    assert "| trend |" in text
    assert "| ijepa | 3 |" in text and "| no trend (r² 0.31) |" in text
    assert "| vjepa | 3 |" in text and "| no trend (b at bound) |" in text


def test_report_fits_table_says_fitted_for_a_real_law(sweep_root):
    text = write_report(sweep_root, SWEEP).read_text()
    fits = text.split("## Power-law fits", 1)[1].split("##", 1)[0]
    assert fits.count("| fitted |") == 2 and "no trend (" not in fits


# ---- collapse warnings --------------------------------------------------------------------


def test_collapsed_runs_get_a_warning_section_and_a_summary_mark(sweep_root):
    store = ResultsStore(sweep_root)
    for group, budget, seed, run_id in _run_ids():
        metrics = {"feature_collapsed": 0.0, "feature_rank": 20.0, "teacher/feature_collapsed": 0.0,
                   "teacher/feature_rank": 18.0}
        if run_id == "ijepa-1e+16-s1":
            metrics.update(feature_collapsed=1.0, feature_rank=1.25)
        if run_id == "vjepa-1e+17-s0":
            metrics.update({"teacher/feature_collapsed": 1.0, "teacher/feature_rank": 2.5})
        _append(store, run_id, budget, metrics)
    text = write_report(sweep_root, SWEEP).read_text()
    summary = text.split("## Runs", 1)[0]
    assert "⚠ collapsed: 2)" in summary
    section = text.split("## Collapse warnings", 1)[1].split("\n## ", 1)[0]
    bullets = [line for line in section.splitlines() if line.startswith("- ")]
    assert bullets == ["- `ijepa-1e+16-s1` (stage `pretrain`): `feature_rank` 1.25",
                       "- `vjepa-1e+17-s0` (stage `teacher`): `feature_rank` 2.5"]


def test_no_collapse_section_when_no_run_collapsed(sweep_root):
    store = ResultsStore(sweep_root)
    for _, budget, _, run_id in _run_ids():
        _append(store, run_id, budget, {"feature_collapsed": 0.0, "feature_rank": 20.0})
    text = write_report(sweep_root, SWEEP).read_text()
    assert "Collapse warnings" not in text and "⚠" not in text
