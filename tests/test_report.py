"""Report generation on a small synthetic sweep (no Ray, no training)."""

from __future__ import annotations

import re

import polars as pl
import pytest

from orchestrator.report import write_report
from orchestrator.report.fits import fit_groups
from orchestrator.report.table import final_table
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
    table = final_table(ResultsStore(sweep_root), SWEEP).filter(pl.col("status") == "finished")
    fits = fit_groups(table, "flops_total", "probe_acc", "variant.name")
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


def _swept_run(store: ResultsStore, run_id: str, steps: int, weight_decay: float, seed: int) -> None:
    config = {"variant": {"name": "ijepa"}, "model": {"depth": 2}, "optim": {"lr": 1e-3, "weight_decay": weight_decay},
              "budget": {"steps": steps}, "seed": seed}
    store.record_run(run_id, sweep="swept", variant="ijepa", stage="pretrain", config=config, status="finished")
    store.append_metrics(run_id, "swept", [
        {"step": steps, "flops": 1e9 * steps, "wall_s": 1.0, "metric": "lr", "value": 1e-5},
        {"step": steps, "flops": 1e9 * steps, "wall_s": 1.0, "metric": "probe_acc", "value": 0.5},
    ])


def _runs_header(text: str) -> list[str]:
    table = text.split("## Runs", 1)[1].strip().splitlines()[0]
    return [cell.strip() for cell in table.strip("|").split("|")]


def test_runs_table_shows_every_swept_key_and_labels_the_scheduled_lr(tmp_path):
    store = ResultsStore(tmp_path)
    store.save_sweep_spec("swept", {"name": "swept", "space": {"budget.steps": [10, 20], "optim.lr": [1e-3],
                                                               "optim.weight_decay": {"loguniform": [1e-4, 1e-1]}}})
    _swept_run(store, "a", 10, 0.01, seed=0)
    _swept_run(store, "b", 20, 0.03, seed=1)
    header = _runs_header(write_report(tmp_path, "swept").read_text())
    # space keys in the spec's order (optim.lr although one value), then keys that differ (seed); not model.depth
    assert header[:5] == ["run_id", "status", "budget.steps", "optim.lr", "optim.weight_decay"]
    assert "seed" in header and "model.depth" not in header
    assert "lr (final, scheduled)" in header and "lr" not in header


def test_runs_table_without_a_spec_shows_the_keys_that_differ(tmp_path):
    store = ResultsStore(tmp_path)
    _swept_run(store, "a", 10, 0.01, seed=0)
    _swept_run(store, "b", 20, 0.01, seed=0)
    header = _runs_header(write_report(tmp_path, "swept").read_text())
    assert "budget.steps" in header
    assert not {"optim.weight_decay", "seed", "optim.lr"} & set(header)


def test_report_uses_the_newest_value_of_a_re_logged_step(sweep_root):
    store = ResultsStore(sweep_root)
    store.append_metrics("ijepa-1e+15-s0", SWEEP, [{"step": 20, "flops": 1e15, "wall_s": 3.0, "metric": "probe_acc",
                                                    "value": 0.123456}])
    assert "0.1235" in write_report(sweep_root, SWEEP).read_text()


@pytest.mark.parametrize("option, name, close", [("--group", "variant.nme", "variant.name"),
                                                 ("--y", "probe_ac", "probe_acc"), ("--x", "flops", "flops_total")])
def test_unknown_report_column_is_a_user_error_naming_it(sweep_root, capsys, option, name, close):
    from orchestrator.cli import main

    assert main(["report", SWEEP, "--storage", str(sweep_root), option, name]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: {option} '{name}'" in err and "Fix: use one of" in err
    assert re.search(rf"did you mean [^?]*`{re.escape(close)}`", err) and "budget.flops" in err  # all valid ones listed


def test_unknown_group_in_the_spec_raises_a_report_error(sweep_root):
    from orchestrator.report import ReportError

    ResultsStore(sweep_root).save_sweep_spec(SWEEP, {"name": SWEEP, "report": {"group": "varaint.name"}})
    with pytest.raises(ReportError, match="report.group in sweep.yaml: 'varaint.name'.*variant.name"):
        write_report(sweep_root, SWEEP)
