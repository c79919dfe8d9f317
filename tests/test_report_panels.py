"""Report panels as plug-ins: registered in-process or through an entry point, found by name.

No Ray, no training: two runs are written straight into a ResultsStore.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import textwrap

import pytest
import yaml

import orchestrator.report.panels  # noqa: F401  (registers the built-in panels)
from orchestrator.report import ReportError, write_report
from orchestrator.report import registry
from orchestrator.results import ResultsStore

SWEEP = "plugins"
BUILTIN = ("cost", "isoflop", "pareto", "teacher_quality", "zero_shot")
SWEEPS = pathlib.Path(__file__).resolve().parents[1] / "sweeps"


@pytest.fixture()
def root(tmp_path):
    store = ResultsStore(tmp_path / "runs")
    for index, (status, acc) in enumerate((("finished", 0.25), ("finished", 0.75), ("failed", 0.9))):
        run_id = f"r{index}"
        config = {"variant": {"name": "vjepa"}, "budget": {"flops": 1e15 * (index + 1)}}
        store.record_run(run_id, sweep=SWEEP, variant="vjepa", stage="pretrain", config=config, status="running")
        store.append_metrics(run_id, SWEEP, [{"step": 1, "flops": 1e15 * (index + 1), "wall_s": 1.0,
                                              "metric": "probe_acc", "value": acc}])
        store.record_run(run_id, sweep=SWEEP, variant="vjepa", stage="pretrain", config=config, status=status)
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
    return [f"## {options.get('title', 'Mean')}", "", f"mean `{ctx.y}` of {len(values)} finished runs: "
            f"{sum(values) / len(values):.3f}", ""]


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
                       r"\. Fix: name one of the known panels cost, isoflop, pareto, teacher_quality, zero_shot"):
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
