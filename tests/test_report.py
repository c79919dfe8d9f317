"""Report generation on a small synthetic sweep (no Ray, no training)."""

from __future__ import annotations

import polars as pl
import pytest

from orchestrator import analysis
from orchestrator.report import write_report
from orchestrator.results import ResultsStore

SWEEP = "scaling"
BUDGETS = (1e15, 1e16, 1e17)
GROUPS = {"ijepa": (0.5, 0.20), "vjepa": (0.6, 0.15)}  # (scale, b): error = scale * (C / 1e15)^-b + 0.05
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAILURE = "CUDA out of memory while allocating predictor activations"


def _accuracy(group: str, budget: float, seed: int) -> float:
    scale, exponent = GROUPS[group]
    return 1.0 - (scale * (budget / 1e15) ** -exponent + 0.05) + 0.002 * seed


def _write_run(store: ResultsStore, group: str, budget: float, seed: int) -> None:
    run_id = f"{group}-{budget:.0e}-s{seed}"
    config = {"variant": {"name": group}, "budget": {"flops": budget}, "seed": seed}
    store.record_run(run_id, sweep=SWEEP, variant=group, stage="pretrain", config=config, status="running")
    store.append_metrics(
        run_id,
        SWEEP,
        [
            {"step": 10, "flops": budget / 2, "wall_s": 1.0, "metric": "loss", "value": 1.5},
            {"step": 20, "flops": budget, "wall_s": 2.0, "metric": "loss", "value": 1.0},
            {"step": 20, "flops": budget, "wall_s": 2.5, "metric": "probe_acc", "value": _accuracy(group, budget, seed)},
        ],
    )
    store.record_run(run_id, sweep=SWEEP, variant=group, stage="pretrain", config=config, status="finished")


@pytest.fixture()
def sweep_root(tmp_path):
    store = ResultsStore(tmp_path)
    store.save_sweep_spec(SWEEP, {"name": SWEEP, "report": {"group": "variant.name"}})
    for group in GROUPS:
        for budget in BUDGETS:
            for seed in (0, 1):
                _write_run(store, group, budget, seed)
    config = {"variant": {"name": "ijepa"}, "budget": {"flops": 1e18}, "seed": 0}
    store.record_run("ijepa-big", sweep=SWEEP, variant="ijepa", stage="pretrain", config=config, status="running")
    store.record_run(
        "ijepa-big", sweep=SWEEP, variant="ijepa", stage="pretrain", config=config,
        status="failed", error=f"Traceback (most recent call last):\n  ...\nRuntimeError: {FAILURE}",
    )
    return tmp_path


def test_report_has_table_fits_failures_and_plot(sweep_root):
    path = write_report(sweep_root, SWEEP)
    assert path == sweep_root / SWEEP / "report.md"
    text = path.read_text()
    assert "ijepa-big" in text and FAILURE in text
    assert "## Power-law fits" in text and "| group | budgets | a | b | c | r2 |" in text
    assert "## Pareto frontier" in text
    assert "variant.name" in text
    image = sweep_root / SWEEP / "probe_acc_vs_flops_total.png"
    assert image.read_bytes().startswith(PNG_MAGIC)
    assert "(probe_acc_vs_flops_total.png)" in text


def test_report_fits_recover_group_exponents(sweep_root):
    table = analysis.final_table(ResultsStore(sweep_root), SWEEP).filter(pl.col("status") == "finished")
    fits = analysis.fit_groups(table, "flops_total", "probe_acc", "variant.name")
    assert set(fits) == {"ijepa", "vjepa"}
    assert fits["ijepa"]["b"] == pytest.approx(0.20, abs=0.05)
    assert fits["vjepa"]["b"] == pytest.approx(0.15, abs=0.05)


def test_explicit_y_overrides_spec_default(sweep_root):
    path = write_report(sweep_root, SWEEP, y="loss")
    assert (path.parent / "loss_vs_flops_total.png").read_bytes().startswith(PNG_MAGIC)


def test_missing_sweep_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results for sweep nope under .*jepa sweep"):
        write_report(tmp_path, "nope")


def _zero_shot_run(store: ResultsStore, sweep: str, method: str, seed: int, returns: dict[str, float]) -> None:
    run_id = f"{sweep}-{method}-s{seed}"
    config = {"variant": {"name": method}, "data": {"name": "exorl_walker_rnd"}, "seed": seed}
    store.record_run(run_id, sweep=sweep, variant=method, stage="main", config=config, status="finished")
    rows = [{"step": 5, "flops": 1e9, "wall_s": 1.0, "metric": f"eval/{task}/return", "value": value}
            for task, value in returns.items()]
    store.append_metrics(run_id, sweep, rows + [{"step": 5, "flops": 1e9, "wall_s": 1.0, "metric": "score",
                                                 "value": sum(returns.values()) / len(returns)}])


def test_zero_shot_table_gives_seed_means_and_errors_and_merges_reference_sweeps(tmp_path):
    store = ResultsStore(tmp_path)
    store.save_sweep_spec("zs", {"name": "zs", "report": {"y": "score", "group": "variant.name",
                                                          "zero_shot": {"kind": "return", "with": ["refs", "absent"]}}})
    _zero_shot_run(store, "zs", "td_jepa", 0, {"stand": 100.0, "run": 10.0})
    _zero_shot_run(store, "zs", "td_jepa", 1, {"stand": 200.0, "run": 30.0})
    _zero_shot_run(store, "refs", "iql", 0, {"run": 50.0})  # a reference: one task per run
    text = write_report(str(tmp_path), "zs").read_text()
    assert "| exorl_walker_rnd | stand |  | 150.0 ± 50.0 (n=2) |" in text  # mean and s.e. over 2 seeds; no iql
    assert "| exorl_walker_rnd | run | 50.0 (n=1) | 20.0 ± 10.0 (n=2) |" in text  # iql merged from `refs`
    assert "| exorl_walker_rnd | (all tasks) | 50.0 (n=1) | 85.0 ± 25.5 (n=2) |" in text
    assert "No sweep `absent` in the results" in text
