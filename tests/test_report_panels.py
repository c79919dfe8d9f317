"""Report panels as plug-ins: registered in-process or through an entry point, found by name.

No Ray, no training: two runs are written straight into a ResultsStore.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import re
import textwrap

import pytest
import yaml

import orchestrator.report.panels  # noqa: F401  (registers the built-in panels)
from orchestrator.report import ReportError, registry, write_report
from orchestrator.results import ResultsStore

SWEEP = "plugins"
BUILTIN = ("cost", "isoflop", "pareto", "seeds", "teacher_quality", "zero_shot")
SWEEPS = pathlib.Path(__file__).resolve().parents[1] / "sweeps"


def _record(store: ResultsStore, run_id: str, variant: str, flops: float, metrics: dict, status: str) -> None:
    """One run of the sweep, its config holding variant.name and budget.flops, ending with the given status."""
    config = {"variant": {"name": variant}, "budget": {"flops": flops}}
    store.record_run(run_id, sweep=SWEEP, variant=variant, stage="pretrain", config=config, status="running")
    store.append_metrics(run_id, SWEEP, [{"step": 1, "flops": flops, "wall_s": 1.0, "metric": name, "value": value}
                                         for name, value in metrics.items()])
    store.record_run(run_id, sweep=SWEEP, variant=variant, stage="pretrain", config=config, status=status)


@pytest.fixture()
def root(tmp_path):
    store = ResultsStore(tmp_path / "runs")
    for index, (status, acc) in enumerate((("finished", 0.25), ("finished", 0.75), ("failed", 0.9))):
        _record(store, f"r{index}", "vjepa", 1e15 * (index + 1), {"probe_acc": acc}, status)
    return tmp_path / "runs"


@pytest.fixture()
def own_registry(monkeypatch):
    """Registrations made by a test vanish with it."""
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))


def _report(root, section: dict) -> str:
    ResultsStore(root).save_sweep_spec(SWEEP, {"name": SWEEP, "report": section})
    return write_report(root, SWEEP).read_text()


def _mean_acc(ctx: registry.PanelContext, options: dict) -> list[str]:
    values = ctx.finished.get_column(ctx.y).to_list()
    return [f"## {options.get('title', 'Mean')}", "", (f"mean `{ctx.y}` of {len(values)} finished runs: "
            f"{sum(values) / len(values):.3f}"), ""]


def test_a_panel_registered_in_process_appears_in_the_report(root, own_registry):
    registry.register_panel("mean_acc", options=("title",))(_mean_acc)
    text = _report(root, {"y": "probe_acc", "mean_acc": {"title": "Planted mean", "colour": "red"}})
    assert "## Planted mean\n\nmean `probe_acc` of 2 finished runs: 0.500" in text
    assert "Ignored unknown option(s) `colour` in `report.mean_acc` (known: `title`)." in text
    assert "## Planted mean" not in _report(root, {"y": "probe_acc", "mean_acc": False})


PLUGIN = '''
from orchestrator.report.registry import Panel


def count_runs(ctx, options):
    return ["## Run count", "", f"{ctx.finished.height} finished runs in {ctx.sweep}", ""]


def _double(table, options):
    import polars as pl
    return table.with_columns((pl.col("probe_acc") * 2).alias("acc_x2")), ["## Doubled", ""]


DOUBLED = Panel("doubled", prepare=_double, columns=("acc_x2",))
'''


@pytest.fixture()
def plugin_entry_points(tmp_path, monkeypatch):
    """A third-party module on sys.path and two entry points in `jepa_orchestrator.panels` naming it."""
    (tmp_path / "planted_panels.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    planted = [
        importlib.metadata.EntryPoint("run_count", "planted_panels:count_runs", registry.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("ignored_name", "planted_panels:DOUBLED", registry.ENTRY_POINT_GROUP),
    ]
    real = importlib.metadata.entry_points

    def entry_points(**selection):
        return planted if selection.get("group") == registry.ENTRY_POINT_GROUP else real(**selection)

    monkeypatch.setattr(registry, "entry_points", entry_points)


def test_panels_from_an_entry_point_appear_in_the_report(root, plugin_entry_points):
    assert {"run_count", "doubled"} <= set(registry.panels()) and "ignored_name" not in registry.panels()
    text = _report(root, {"y": "probe_acc", "run_count": None, "doubled": True})
    assert f"## Run count\n\n2 finished runs in {SWEEP}" in text
    runs_header = text.split("## Runs", 1)[1].strip().splitlines()[0]
    assert "| flops_total | acc_x2 | probe_acc |" in runs_header  # a prepared column follows x
    assert "| 1.5 |" in text  # 2 * 0.75 in the runs table
    assert "## Doubled" in text.split("## Power-law fits", 1)[0]  # prepare lines follow the runs table


def test_an_unknown_panel_is_a_report_error_naming_the_known_ones(root):
    with pytest.raises(ReportError, match=r"report\.isoflops in sweep\.yaml: no such panel \(did you mean `isoflop`\?\)"
                       r"\. Fix: name one of the known panels " + re.escape(", ".join(sorted(registry.panels())))):
        _report(root, {"y": "probe_acc", "isoflops": {"budget": "budget.flops"}})


def test_an_unknown_panel_exits_2_with_error_and_fix(root, capsys):
    from orchestrator.cli import main

    ResultsStore(root).save_sweep_spec(SWEEP, {"name": SWEEP, "report": {"zeroshot": {"kind": "return"}}})
    assert main(["report", SWEEP, "--storage", str(root)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error: report.zeroshot in sweep.yaml: no such panel" in err and "zero_shot" in err and "Fix:" in err
    assert not (root / SWEEP / "report.md").exists()


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_names_known_panels(path):
    section = (yaml.safe_load(path.read_text()) or {}).get("report") or {}
    known = registry.panels()
    assert set(BUILTIN) <= set(known)
    registry.requested_panels(section, known)  # raises ReportError on an unknown name


# ---- the `seeds` panel: mean ± s.e. over seeds and the margin over the better baseline --------------

# Three seeds of two methods at one budget, and a failed vjepa run that must not count.
# vjepa: margins over max(random_init, raw_input) are 0.05, 0.04, 0.09 (mean 0.06 ≥ 0.05: ✓);
# salt: 0.01, 0.03, 0.05 (mean 0.03: ✗). probe_mse is lower-is-better: margin = min(baselines) - value.
SEED_RUNS = {
    "vjepa": [{"probe_acc": 0.60, "probe_acc/random_init": 0.50, "probe_acc/raw_input": 0.55, "teacher/loss": 0.8,
               "probe_mse": 0.2, "probe_mse/random_init": 0.5, "probe_mse/raw_input": 0.45},
              {"probe_acc": 0.62, "probe_acc/random_init": 0.58, "probe_acc/raw_input": 0.55, "teacher/loss": 0.7,
               "probe_mse": 0.3, "probe_mse/random_init": 0.5, "probe_mse/raw_input": 0.45},
              {"probe_acc": 0.64, "probe_acc/random_init": 0.52, "probe_acc/raw_input": 0.55, "teacher/loss": 0.9,
               "probe_mse": 0.4, "probe_mse/random_init": 0.5, "probe_mse/raw_input": 0.45}],
    "salt": [{"probe_acc": 0.51, "probe_acc/random_init": 0.50, "probe_acc/raw_input": 0.46, "teacher/loss": 0.75},
             {"probe_acc": 0.53, "probe_acc/random_init": 0.50, "probe_acc/raw_input": 0.46},
             {"probe_acc": 0.55, "probe_acc/random_init": 0.50, "probe_acc/raw_input": 0.46}],
}
SEEDS_SECTION = {"x": "flops_total", "y": "probe_acc", "group": "variant.name",
                 "seeds": {"metrics": ["probe_acc", "teacher/loss", "probe_mse"], "margin": 0.05}}


@pytest.fixture()
def seeds_root(tmp_path):
    store = ResultsStore(tmp_path / "runs")
    for variant, runs in SEED_RUNS.items():
        for seed, metrics in enumerate(runs):
            _record(store, f"{variant}-s{seed}", variant, 1e15, metrics, "finished")
    _record(store, "vjepa-failed", "vjepa", 1e15, {"probe_acc": 0.99, "probe_acc/raw_input": 0.1}, "failed")
    return tmp_path / "runs"


def _seeds_rows(text: str) -> dict[str, dict[str, str]]:
    """The `## Mean over seeds` table as {first cell: {column: cell}}."""
    block = text.split("## Mean over seeds", 1)[1].split("\n\n")
    lines = next(part for part in block if part.startswith("|")).splitlines()
    header, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if not line.startswith("|---")]
    return {row[0]: dict(zip(header, row)) for row in rows}


def test_seeds_panel_gives_mean_se_margins_and_verdicts(seeds_root):
    rows = _seeds_rows(_report(seeds_root, SEEDS_SECTION))
    assert list(rows) == ["salt", "vjepa"] and "budget.flops" not in rows["salt"]  # one budget: not a key
    vjepa, salt = rows["vjepa"], rows["salt"]
    assert vjepa["n"] == "3" and salt["n"] == "3"  # the failed run is left out
    assert vjepa["probe_acc"] == "0.62 ± 0.01155"  # std 0.02 / √3
    assert vjepa["probe_acc random-init encoder"] == "0.5333" and vjepa["probe_acc raw input"] == "0.55"
    assert vjepa["probe_acc margin over best baseline"] == "0.06 ± 0.01528"  # std √7e-4 / √3
    assert vjepa["probe_acc ≥ margin"] == "✓"
    assert salt["probe_acc"] == "0.53 ± 0.01155" and salt["probe_acc raw input"] == "0.46"
    assert salt["probe_acc margin over best baseline"] == "0.03 ± 0.01155" and salt["probe_acc ≥ margin"] == "✗"
    assert vjepa["teacher/loss"] == "0.8 ± 0.05774" and salt["teacher/loss"] == "0.75 (n=1)"
    assert "teacher/loss margin over best baseline" not in vjepa  # no baselines logged for it
    assert vjepa["probe_mse margin over best baseline"] == "0.15 ± 0.05774"  # min(0.5, 0.45) - (0.2, 0.3, 0.4)
    assert vjepa["probe_mse ≥ margin"] == "✓" and salt["probe_mse"] == salt["probe_mse ≥ margin"] == ""


def test_seeds_panel_splits_a_varying_budget_and_shows_no_spread_for_one_run(seeds_root):
    _record(ResultsStore(seeds_root), "salt-big", "salt", 2e15, {"probe_acc": 0.7}, "finished")
    section = {**SEEDS_SECTION, "seeds": {"metrics": "probe_acc"}}
    text = _report(seeds_root, section)
    lines = text.split("## Mean over seeds", 1)[1].strip().split("\n\n")[1].splitlines()
    assert lines[0].startswith("| variant.name | budget.flops | n | probe_acc |")
    assert lines[2:] == [
        "| salt | 1e+15 | 3 | 0.53 ± 0.01155 | 0.5 | 0.46 | 0.03 ± 0.01155 | ✓ |",  # default margin 0
        "| salt | 2e+15 | 1 | 0.7 |  |  |  |  |",
        "| vjepa | 1e+15 | 3 | 0.62 ± 0.01155 | 0.5333 | 0.55 | 0.06 ± 0.01528 | ✓ |",
    ]


def test_seeds_panel_names_an_absent_metric_in_one_line(seeds_root):
    section = {**SEEDS_SECTION, "seeds": {"metrics": ["probe_acc", "probe_acc_shape", "teacher/los"]}}
    text = _report(seeds_root, section)
    assert ("No finished run has `probe_acc_shape`, `teacher/los` (did you mean `probe_acc`, `teacher/loss`?): "
            "left out of this table.") in text
    assert _seeds_rows(text)["vjepa"]["probe_acc"] == "0.62 ± 0.01155"
    alone = _report(seeds_root, {**SEEDS_SECTION, "seeds": {"metrics": ["probe_acc_motion"]}})
    assert "## Mean over seeds\n\nNo finished run has `probe_acc_motion`" in alone and "| n |" not in alone


def test_seeds_options_are_checked_by_name(seeds_root, tmp_path):
    from orchestrator.sweep import SweepError, load_sweep

    registry.requested_panels(SEEDS_SECTION, registry.panels())  # the key and its options validate
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: x\nbase: {budget.steps: 1}\nreport: {y: probe_acc, seed: {margin: 0.05}}\n")
    with pytest.raises(SweepError, match=r"s\.yaml: report\.seed in sweep\.yaml: no such panel \(did you mean `seeds`\?\)"):
        load_sweep(sweep, [f"storage={tmp_path}"])
    text = _report(seeds_root, {**SEEDS_SECTION, "seeds": {"metrics": ["probe_acc"], "marign": 0.05}})
    assert "Ignored unknown option(s) `marign` in `report.seeds` (known: `metrics`, `margin`, `budget`)." in text
    text = _report(seeds_root, {**SEEDS_SECTION, "seeds": {"margin": "big"}})
    assert "`report.seeds.margin` should be a number, got 'big': used 0.0." in text
