"""A torn results file is skipped with a warning naming it; every other row is still read and reported.

Files are truncated as a crash or a full disk leaves them: cut to half their bytes, or to nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from orchestrator.cli import main
from orchestrator.results import DamagedFileWarning, ResultsStore

SWEEP = "torn"
RUNS = ("run-a", "run-b", "run-c")


def _write_sweep(root) -> ResultsStore:
    """Three finished runs, each with two events (running, finished) and two metric files."""
    store = ResultsStore(root)
    store.save_sweep_spec(SWEEP, {"name": SWEEP, "space": {"optim.lr": [1e-3, 2e-3, 3e-3]}})
    for index, run_id in enumerate(RUNS):
        config = {"variant": {"name": "ijepa"}, "optim": {"lr": 1e-3 * (index + 1)}}
        kwargs = dict(sweep=SWEEP, variant="ijepa", stage="pretrain", config=config)
        store.record_run(run_id, status="running", **kwargs)
        for step in (10, 20):
            store.append_metrics(run_id, SWEEP, [
                {"step": step, "flops": 1e12 * step, "wall_s": 1.0, "metric": "probe_acc", "value": 0.5 + index / 10},
            ])
        store.record_run(run_id, status="finished", **kwargs)
    return store


def _newest_file(root, kind: str, run_id: str) -> str:
    directory = os.path.join(root, SWEEP, kind)
    names = sorted((n for n in os.listdir(directory) if n.startswith(f"{run_id}-")),
                   key=lambda n: int(n.split("-")[-2]))
    return os.path.join(directory, names[-1])


def _truncate(path: str, cut: str) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2] if cut == "half" else b"")


@pytest.fixture(params=["half", "empty"])
def cut(request) -> str:
    return request.param


def test_sound_store_reads_in_one_scan_without_warnings(tmp_path):
    store = _write_sweep(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedFileWarning)
        assert store.runs(SWEEP).height == 3
        assert store.metrics(SWEEP).height == 6
    assert store.check(SWEEP) == []


def test_torn_metrics_file_is_skipped_with_a_warning_naming_it(tmp_path, cut):
    store = _write_sweep(tmp_path)
    torn = _newest_file(tmp_path, "metrics", "run-b")
    _truncate(torn, cut)
    with pytest.warns(DamagedFileWarning, match=torn):
        rows = store.metrics(SWEEP)
    assert rows.height == 5
    assert rows.filter(run_id="run-b")["step"].to_list() == [10]
    assert [path for path, _ in store.check(SWEEP)] == [torn]


def test_torn_runs_file_loses_only_its_event(tmp_path, cut):
    store = _write_sweep(tmp_path)
    torn = _newest_file(tmp_path, "runs", "run-c")
    _truncate(torn, cut)
    with pytest.warns(DamagedFileWarning, match=torn):
        runs = store.runs(SWEEP)
    assert dict(runs.select("run_id", "status").rows()) == {"run-a": "finished", "run-b": "finished", "run-c": "running"}
    assert [path for path, _ in store.check(SWEEP)] == [torn]


@pytest.mark.parametrize("kind", ["metrics", "runs"])
def test_report_skips_the_torn_file_and_check_lists_it(tmp_path, capsys, cut, kind):
    _write_sweep(tmp_path)
    torn = _newest_file(tmp_path, kind, "run-a")
    _truncate(torn, cut)
    assert main(["report", SWEEP, "--storage", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and os.path.basename(torn) in err.replace("\n", "")
    text = (tmp_path / SWEEP / "report.md").read_text()
    assert all(f"| {run_id} |" in text for run_id in RUNS)
    assert "| run-b | finished |" in text and "0.6" in text  # an untouched run keeps its status and values

    assert main(["report", SWEEP, "--storage", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "damaged:" in err and os.path.basename(torn) in err.replace("\n", "")


def test_check_passes_a_sound_sweep_and_refuses_a_missing_one(tmp_path, capsys):
    _write_sweep(tmp_path)
    report = tmp_path / SWEEP / "report.md"
    assert main(["report", SWEEP, "--storage", str(tmp_path), "--check"]) == 0
    assert "no damaged files" in capsys.readouterr().err
    assert not report.exists()  # --check writes no report
    assert main(["report", "nope", "--storage", str(tmp_path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Fix:" in err and SWEEP in err


def test_torn_sweep_spec_is_listed_and_the_report_still_written(tmp_path):
    store = _write_sweep(tmp_path)
    spec = tmp_path / SWEEP / "sweep.yaml"
    spec.write_text("name: torn\nspace: {optim.lr: [0.001, 0.0")
    assert [path for path, _ in store.check(SWEEP)] == [str(spec)]
    with pytest.warns(DamagedFileWarning, match="sweep.yaml"):
        assert store.load_sweep_spec(SWEEP) is None


def test_jepa_report_command_warns_in_yellow_line_and_check_exits_1(tmp_path):
    """The installed CLI, as a user runs it: one `warning:` line per damaged file, no traceback."""
    _write_sweep(tmp_path)
    torn = _newest_file(tmp_path, "metrics", "run-c")
    _truncate(torn, "half")
    env = dict(os.environ, COLUMNS="400")
    command = [sys.executable, "-m", "orchestrator.cli", "report", SWEEP, "--storage", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    warning_lines = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning_lines) == 1 and torn in warning_lines[0]
    assert "Traceback" not in done.stderr
    checked = subprocess.run([*command, "--check"], capture_output=True, text=True, env=env, timeout=120)
    assert checked.returncode == 1 and torn in checked.stderr
