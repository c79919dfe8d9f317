"""Results store and analysis helpers: semantics the orchestrator and reports rely on."""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import subprocess

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import orchestrator
from orchestrator.report.fits import fit_power_law
from orchestrator.report.frontier import pareto_frontier
from orchestrator.report.table import final_table
from orchestrator.results import GIT_SHA_ENV, METRIC_SCHEMA, RUN_SCHEMA, ResultsStore, git_sha

CONFIG = {"variant": {"name": "ijepa"}, "optim": {"lr": 1e-3}, "budget": {"flops": 1e15}, "tags": ["a", "b"]}


def _record(store: ResultsStore, run_id: str, status: str, sweep: str = "s1", **kwargs) -> None:
    store.record_run(
        run_id, sweep=sweep, variant="ijepa", stage="pretrain", config=CONFIG, status=status, **kwargs
    )


def _metric_rows(count: int, metric: str = "loss", offset: int = 0) -> list[dict]:
    return [
        {"step": offset + i, "flops": 1e12 * (offset + i), "wall_s": 0.1 * i, "metric": metric, "value": 1.0 / (1 + i)}
        for i in range(count)
    ]


def test_latest_event_wins_and_started_at_is_kept(tmp_path):
    store = ResultsStore(tmp_path)
    _record(store, "r1", "running", started_at=100.0)
    _record(store, "r1", "finished")
    _record(store, "r2", "running")
    _record(store, "r2", "failed", error="boom")
    runs = store.runs("s1")
    assert runs.columns == RUN_SCHEMA.names
    by_id = {row["run_id"]: row for row in runs.to_dicts()}
    assert by_id["r1"]["status"] == "finished"
    assert by_id["r1"]["started_at"] == 100.0
    assert by_id["r2"]["status"] == "failed"
    assert by_id["r2"]["error"] == "boom"


def test_runs_from_another_store_instance_keep_first_start(tmp_path):
    _record(ResultsStore(tmp_path), "r1", "running", started_at=5.0)
    _record(ResultsStore(tmp_path), "r1", "stopped")
    row = ResultsStore(tmp_path).runs("s1").row(0, named=True)
    assert (row["status"], row["started_at"]) == ("stopped", 5.0)


def test_run_without_sweep_goes_to_adhoc_and_all_sweeps_are_read(tmp_path):
    store = ResultsStore(tmp_path)
    _record(store, "r1", "running", sweep="")
    _record(store, "r2", "running", sweep="s2")
    assert store.sweeps() == ["adhoc", "s2"]
    assert set(store.runs()["run_id"]) == {"r1", "r2"}
    assert store.runs("adhoc")["sweep"].to_list() == ["adhoc"]


def test_bad_status_raises(tmp_path):
    with pytest.raises(ValueError, match="running, finished, failed, stopped"):
        _record(ResultsStore(tmp_path), "r1", "done")


def test_empty_store_returns_schemad_frames(tmp_path):
    store = ResultsStore(tmp_path / "nothing")
    runs, metrics = store.runs(), store.metrics("s1")
    assert runs.height == 0 and runs.columns == RUN_SCHEMA.names
    assert metrics.height == 0 and metrics.columns == METRIC_SCHEMA.names
    assert metrics.schema["step"] == pl.Int64
    assert store.sweeps() == []
    assert store.load_sweep_spec("s1") is None


def test_metrics_append_and_filter(tmp_path):
    store = ResultsStore(tmp_path)
    store.append_metrics("r1", "s1", _metric_rows(3))
    store.append_metrics("r1", "s1", _metric_rows(2, metric="probe_acc", offset=3))
    store.append_metrics("r1-b", "s1", _metric_rows(4))
    store.append_metrics("r3", "s2", _metric_rows(5))
    store.append_metrics("r1", "s1", [])
    assert store.metrics("s1").height == 9
    only_r1 = store.metrics("s1", run_id="r1")
    assert only_r1.height == 5 and set(only_r1["run_id"]) == {"r1"}
    assert only_r1["step"].to_list() == sorted(only_r1["step"].to_list())
    assert store.metrics().height == 14
    assert store.metrics(run_id="r3")["run_id"].unique().to_list() == ["r3"]


def test_temp_files_are_ignored_by_readers(tmp_path):
    store = ResultsStore(tmp_path)
    _record(store, "r1", "running")
    store.append_metrics("r1", "s1", _metric_rows(2))
    runs_dir = tmp_path / "s1" / "runs"
    metrics_dir = tmp_path / "s1" / "metrics"
    (runs_dir / ".r1-123-abcdef01.parquet.tmp").write_bytes(b"partial")
    (metrics_dir / ".r1-123-abcdef01.parquet").write_bytes(b"partial")
    assert store.runs("s1").height == 1
    assert store.metrics("s1").height == 2


def _append_from_process(root: str, worker: int, batches: int, rows_per_batch: int) -> None:
    store = ResultsStore(root)
    for batch in range(batches):
        store.append_metrics(f"w{worker}", "shared", _metric_rows(rows_per_batch, offset=batch * rows_per_batch))
    _record(store, f"w{worker}", "finished", sweep="shared")


def test_concurrent_appends_lose_no_rows(tmp_path):
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_append_from_process, args=(str(tmp_path), worker, 10, 7)) for worker in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    store = ResultsStore(tmp_path)
    metrics = store.metrics("shared")
    assert metrics.height == 4 * 10 * 7
    assert metrics.group_by("run_id").len().sort("run_id")["len"].to_list() == [70] * 4
    assert store.runs("shared")["status"].to_list() == ["finished"] * 4


def test_sweep_spec_round_trip_and_uri_root(tmp_path):
    store = ResultsStore(f"file://{tmp_path}")
    spec = {"name": "s1", "report": {"x": "flops_total", "y": "probe_acc", "group": "variant"}}
    store.save_sweep_spec("s1", spec)
    assert ResultsStore(tmp_path).load_sweep_spec("s1") == spec
    assert store.is_local and store.sweep_dir("s1") == f"{tmp_path}/s1"
    assert ResultsStore(tmp_path).sweep_dir("s1") == os.path.join(str(tmp_path), "s1")
    assert not [p for p in (tmp_path / "s1").iterdir() if p.name.startswith(".")]


def test_overlapping_appends_are_read_once_newest_file_winning(tmp_path):
    """A resumed trial re-logs steps 3-4 after its step-2 checkpoint: readers see them once, as re-logged."""
    store = ResultsStore(tmp_path)
    store.append_metrics("r1", "s1", _metric_rows(5))  # steps 0-4, value 1 / (1 + i)
    store.append_metrics("r1-b", "s1", _metric_rows(5))  # another run sharing the prefix keeps all its rows
    resumed = [dict(row, value=10.0 + row["step"]) for row in _metric_rows(4, offset=3)]  # steps 3-6
    store.append_metrics("r1", "s1", resumed)
    rows = store.metrics("s1", run_id="r1")
    assert rows["step"].to_list() == [0, 1, 2, 3, 4, 5, 6]
    assert rows["value"].to_list() == [1.0, 0.5, 1 / 3, 13.0, 14.0, 15.0, 16.0]
    all_rows = store.metrics("s1")
    assert all_rows.height == 7 + 5
    assert all_rows.select(["run_id", "step", "metric"]).is_duplicated().sum() == 0


def _write_named(directory: pathlib.Path, name: str, rows: list[dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=METRIC_SCHEMA), directory / name)


def test_newer_file_supersedes_older_by_write_time_not_name_order(tmp_path):
    """time_ns 999 sorts after 1000 as text: the newer file must still win, for every metric it holds."""
    metrics_dir = tmp_path / "s1" / "metrics"
    row = {"run_id": "r1", "flops": 1.0, "wall_s": 0.0}
    _write_named(metrics_dir, "r1-999-ffffffff.parquet",
                 [dict(row, step=s, metric=m, value=0.0) for s in (1, 2) for m in ("loss", "acc")])
    _write_named(metrics_dir, "r1-1000-00000000.parquet",
                 [dict(row, step=2, metric="loss", value=7.0), dict(row, step=3, metric="loss", value=8.0)])
    rows = ResultsStore(tmp_path).metrics("s1").sort(["step", "metric"])
    assert rows.select("step", "metric", "value").rows() == [
        (1, "acc", 0.0), (1, "loss", 0.0), (2, "acc", 0.0), (2, "loss", 7.0), (3, "loss", 8.0)
    ]


def test_final_table_takes_the_newest_value_of_a_re_logged_step(tmp_path):
    store = ResultsStore(tmp_path)
    _record(store, "r1", "finished")
    store.append_metrics("r1", "s1", [{"step": 4, "flops": 4.0, "wall_s": 9.0, "metric": "loss", "value": 2.0}])
    store.append_metrics("r1", "s1", [{"step": 4, "flops": 4.0, "wall_s": 1.0, "metric": "loss", "value": 1.5}])
    assert final_table(store, "s1")["loss"].to_list() == [1.5]


def _head(directory) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True)
    return done.stdout.strip()


PACKAGE_DIR = pathlib.Path(orchestrator.__file__).parent


def test_git_sha_is_the_checkout_head(monkeypatch):
    monkeypatch.delenv(GIT_SHA_ENV, raising=False)
    monkeypatch.chdir(PACKAGE_DIR)
    assert git_sha() == _head(PACKAGE_DIR)
    assert len(git_sha()) == 40


def test_git_sha_env_wins_over_the_checkout(monkeypatch):
    monkeypatch.chdir(PACKAGE_DIR)
    monkeypatch.setenv(GIT_SHA_ENV, "0123456789abcdef0123456789abcdef01234567")
    assert git_sha() == "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv(GIT_SHA_ENV, "unknown")  # an image built without the build arg
    assert git_sha() == _head(PACKAGE_DIR)


def test_git_sha_outside_a_checkout_uses_the_package_then_a_file(monkeypatch, tmp_path):
    monkeypatch.delenv(GIT_SHA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # like a job's uploaded working dir: no .git
    assert git_sha() == _head(PACKAGE_DIR)
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert git_sha() == "unknown"
    (tmp_path / "GIT_SHA").write_text("feedface\n")
    assert git_sha() == "feedface"


# ---- analysis ----------------------------------------------------------------------


def test_power_law_fit_recovers_known_parameters():
    compute = np.geomspace(1e15, 1e19, 8)
    a, b, c = 2000.0, 0.25, 0.1
    fit = fit_power_law(compute, a * compute**-b + c)
    assert fit is not None
    assert fit["a"] == pytest.approx(a, rel=0.05)
    assert fit["b"] == pytest.approx(b, rel=0.05)
    assert fit["c"] == pytest.approx(c, rel=0.05)
    assert fit["r2"] > 0.999


def test_power_law_fit_needs_three_budgets():
    assert fit_power_law([1e15, 1e15, 1e16, 1e16], [0.5, 0.4, 0.3, 0.31]) is None
    assert fit_power_law([], []) is None


def test_pareto_frontier_hand_example():
    df = pl.DataFrame(
        {
            "name": ["a", "b", "c", "d", "e", "f"],
            "cost": [1.0, 2.0, 2.0, 3.0, 4.0, 5.0],
            "acc": [0.5, 0.4, 0.6, 0.55, 0.7, 0.7],
        }
    )
    assert pareto_frontier(df, "cost", "acc")["name"].to_list() == ["a", "c", "e"]
    assert pareto_frontier(df, "cost", "acc", mode="min")["name"].to_list() == ["a", "b"]
    with pytest.raises(ValueError):
        pareto_frontier(df, "cost", "acc", mode="best")


def test_final_table_flattens_config_and_takes_last_values(tmp_path):
    store = ResultsStore(tmp_path)
    _record(store, "r1", "finished")
    _record(store, "r2", "running")
    store.append_metrics(
        "r1",
        "s1",
        [
            {"step": 1, "flops": 1e12, "wall_s": 1.0, "metric": "loss", "value": 2.0},
            {"step": 5, "flops": 5e12, "wall_s": 5.0, "metric": "loss", "value": 1.0},
            {"step": 3, "flops": 3e12, "wall_s": 3.0, "metric": "probe_acc", "value": 0.6},
        ],
    )
    table = final_table(store, "s1")
    r1 = table.filter(pl.col("run_id") == "r1").row(0, named=True)
    assert r1["variant.name"] == "ijepa"
    assert r1["optim.lr"] == 1e-3
    assert r1["budget.flops"] == 1e15
    assert r1["tags"] == '["a", "b"]'
    assert r1["flops_total"] == 5e12
    assert r1["loss"] == 1.0 and r1["probe_acc"] == 0.6
    assert r1["status"] == "finished"
    r2 = table.filter(pl.col("run_id") == "r2").row(0, named=True)
    assert r2["flops_total"] is None and r2["variant.name"] == "ijepa"


# ---- logged arrays (artifacts) -------------------------------------------------------------------


def test_artifacts_round_trip_in_step_order(tmp_path):
    store = ResultsStore(tmp_path)
    for step in (4, 2, 6):  # appended out of order: read back in step order
        store.append_artifacts("r1", "s1", step, {"W": np.full((2, 3), step, np.float32), "curve": np.arange(step)})
    store.append_artifacts("r2", "s1", 2, {"W": np.zeros((2, 3), np.float32)})
    steps, stacked = store.artifact_arrays("s1", "r1", "W")
    assert steps.tolist() == [2, 4, 6]
    assert stacked.shape == (3, 2, 3) and stacked.dtype == np.float32
    assert stacked[:, 0, 0].tolist() == [2.0, 4.0, 6.0]
    index = store.artifact_index("s1", "r1")
    assert sorted(zip(index["step"], index["name"])) == [(2, "W"), (2, "curve"), (4, "W"), (4, "curve"), (6, "W"), (6, "curve")]
    assert index.filter(name="curve", step=4)["shape"].to_list() == [[4]]
    assert all(name.endswith(".npz") and "/s1/artifacts/r1-" in name for name in index["file"])
    assert store.artifact_arrays("s1", "r1", "nothing")[0].size == 0
    with pytest.raises(ValueError, match="changes shape"):
        store.artifact_arrays("s1", "r1", "curve")
    with pytest.raises(ValueError, match="not starting with '__'"):
        store.append_artifacts("r1", "s1", 8, {"__step__": np.zeros(1)})


def test_artifacts_of_a_re_logged_step_come_from_the_newest_file(tmp_path):
    store = ResultsStore(tmp_path)
    store.append_artifacts("r1", "s1", 2, {"W": np.array([1.0])})
    store.append_artifacts("r1", "s1", 4, {"W": np.array([2.0])})
    store.append_artifacts("r1", "s1", 4, {"W": np.array([3.0])})  # a resumed trial logs step 4 again
    steps, stacked = store.artifact_arrays("s1", "r1", "W")
    assert steps.tolist() == [2, 4] and stacked[:, 0].tolist() == [1.0, 3.0]


def test_a_torn_artifact_file_is_skipped_with_a_warning(tmp_path):
    from orchestrator.results import DamagedFileWarning

    store = ResultsStore(tmp_path)
    store.append_artifacts("r1", "s1", 2, {"W": np.ones(4)})
    torn = store.append_artifacts("r1", "s1", 4, {"W": np.ones(4)})
    data = pathlib.Path(torn).read_bytes()
    pathlib.Path(torn).write_bytes(data[: len(data) // 2])
    with pytest.warns(DamagedFileWarning, match=os.path.basename(torn)):
        steps, _ = store.artifact_arrays("s1", "r1", "W")
    assert steps.tolist() == [2]
    assert [path for path, _ in store.check("s1")] == [torn]


def test_stage_files_and_logged_arrays_are_kept_apart(tmp_path):
    store = ResultsStore(tmp_path)
    path = store.save_stage_file("s1", "r1", "teacher.pt", b"weights")
    store.append_artifacts("r1", "s1", 2, {"W": np.ones(1)})
    assert store.stage_files("s1", "teacher.pt") == [path] == store.artifacts("s1", "teacher.pt")
    assert store.artifact_index("s1")["name"].to_list() == ["W"]


def test_a_variant_step_s_artifacts_reach_the_store(ray_session, tmp_path, data_root):
    """End to end: a throwaway variant returns a weight snapshot under `artifacts`; rank 0 keeps it per log step."""
    from dataclasses import dataclass

    from orchestrator import registry
    from orchestrator.config import compose_run
    from orchestrator.train import launch
    from tests.conftest import tiny_overrides
    from variants.vjepa import VJEPA, VJEPAConfig

    @dataclass
    class SnapshotConfig(VJEPAConfig):
        name: str = "vjepa_snapshots"

    class SnapshotVJEPA(VJEPA):
        name = "vjepa_snapshots"
        Config = SnapshotConfig

        def step(self, modules, batch, stage):
            out = super().step(modules, batch, stage)
            encoder = modules["encoder"]
            weight = getattr(encoder, "module", encoder).patch_embed.weight
            out["artifacts"] = {"W": weight[:2, 0, 0, 0, :2].detach().clone()}
            return out

    registry.variants()[SnapshotVJEPA.name] = SnapshotVJEPA
    try:
        cfg = compose_run(tiny_overrides(tmp_path, data_root)
                          + ["variant=vjepa_snapshots", "budget.steps=4", "sweep=snap", "train.inline=always"])
        launch(cfg, "snap-run")
    finally:
        del registry.variants()[SnapshotVJEPA.name]
    store = ResultsStore(tmp_path)
    steps, stacked = store.artifact_arrays("snap", "snap-run", "W")
    logged = store.metrics("snap", "snap-run").filter(metric="loss")["step"].to_list()
    assert steps.tolist() == sorted(logged) == [2, 4]
    assert stacked.shape == (2, 2, 2) and np.isfinite(stacked).all()
    assert not np.array_equal(stacked[0], stacked[1])  # snapshots of weights that trained in between


def test_an_evaluation_s_artifacts_reach_the_store_and_baselines_keep_none(ray_session, tmp_path, data_root):
    """An evaluation may return tensors under `artifacts` too; they land beside the step's at eval steps."""
    from orchestrator.config import compose_run
    from orchestrator.evaluate.base import Evaluation
    from orchestrator.evaluate.registry import evaluations
    from orchestrator.train import launch
    from tests.conftest import tiny_overrides

    class MeanFeature(Evaluation):
        name = "mean_feature"

        def score(self, train, val, spec, cfg):
            return {"feature_norm": float(val.tokens.mean((0, 1)).norm()), "artifacts": {"mean_feature": val.tokens.mean((0, 1))}}

    evaluations()[MeanFeature.name] = MeanFeature()
    try:
        cfg = compose_run(tiny_overrides(tmp_path, data_root) + [
            "budget.steps=4", "sweep=evalart", "train.inline=always", "train.eval_every=2", "eval.kinds=[mean_feature]"])
        launch(cfg, "evalart-run")
    finally:
        del evaluations()[MeanFeature.name]
    store = ResultsStore(tmp_path)
    steps, stacked = store.artifact_arrays("evalart", "evalart-run", "mean_feature")
    assert steps.tolist() == [2, 4] and stacked.shape == (2, cfg.model.dim)
    names = set(store.metrics("evalart", "evalart-run")["metric"])
    assert {"feature_norm", "feature_norm/random_init", "feature_norm/raw_input"} <= names
    assert set(store.artifact_index("evalart")["name"]) == {"mean_feature"}  # the baselines' are not kept
