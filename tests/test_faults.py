"""Fault injection: a trial's worker killed on a two-node cluster, a sweep interrupted with SIGINT.
Both must end with every trial finished from its checkpoint and each (trial, step, metric) row read once.
Each runs its own Ray in a subprocess (the session's `ray_session` must not be up in that process)."""
from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from orchestrator.results import ResultsStore
from orchestrator.sweep import load_sweep, run_sweep
from tests.conftest import tiny_overrides
from tests.test_cluster import REPO, venv_env

TIMING = {"samples_per_s", "setup_s", "train_s", "eval_s", "mfu"}  # wall-clock numbers: never equal twice


def overrides(data_root: str) -> list[str]:
    """Tiny runs that log every 2 steps, checkpoint every 4 and store every logged row at once."""
    return [o for o in tiny_overrides("unused", data_root) if not o.startswith("storage=")] + ["train.report_interval_s=0"]


def run_events(storage: Path, sweep: str, run_id: str) -> pl.DataFrame:
    """Every status event a run wrote (the store's readers show only the latest)."""
    return pl.concat([pl.read_parquet(p) for p in sorted((storage / sweep / "runs").glob(f"{run_id}-*.parquet"))])


def metric_files_after(storage: Path, sweep: str, run_id: str, after_s: float) -> pl.DataFrame:
    """Metric rows of the files a run wrote after a moment (file names carry their time in ns)."""
    files = [p for p in (storage / sweep / "metrics").glob(f"{run_id}-*.parquet")
             if int(p.name[len(run_id) + 1:].split("-")[0]) > after_s * 1e9]
    return pl.concat([pl.read_parquet(p) for p in files]) if files else pl.DataFrame()


def keys_by_trial(storage: Path, sweep: str, param: str) -> pl.DataFrame:
    """(trial, step, metric, value): the trial named by its swept value, not by Tune's random id."""
    runs = ResultsStore(storage).runs(sweep)
    trial = {r["run_id"]: _get(json.loads(r["config"]), param) for r in runs.iter_rows(named=True)}
    rows = ResultsStore(storage).metrics(sweep)
    return rows.with_columns(pl.col("run_id").replace_strict(trial, return_dtype=pl.Float64).alias("trial"))


def _get(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return float(config)


def assert_read_once(rows: pl.DataFrame) -> None:
    assert rows.height > 0
    assert rows.height == rows.unique(["run_id", "step", "metric"]).height, "a (run, step, metric) row is read twice"


KILL = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    import ray
    from ray.cluster_utils import Cluster
    from orchestrator.results import ResultsStore
    from orchestrator.sweep import load_sweep, run_sweep
    path, storage, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    sweep = load_sweep(path, overrides + [f"storage={storage}"])
    sweep.git_sha = "d1e2a3d4"  # as if the driver's checkout differed from what the nodes see
    store, killed, misses = ResultsStore(storage), {}, []

    def kill_a_trial_mid_run():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            try:
                try_to_kill()
            except Exception as err:  # the state API times out on a loaded machine: look again
                print("killer retries after", type(err).__name__, err, flush=True)
                misses.append(f"{type(err).__name__}: {str(err)[:200]}")
            time.sleep(0.1)

    def try_to_kill():
        for run_id in store.runs(sweep.name).filter(status="running")["run_id"]:
            steps = store.metrics(sweep.name, run_id).filter(metric="loss")["step"]
            if steps.len() and 8 <= steps.max() < 64:  # past a checkpoint, before the end (a loaded machine looks slowly)
                # the actor table from this driver's own GCS: the state API goes through a dashboard, and with
                # another Ray cluster on the machine it answered for that one (every trial survived)
                pids = [a["Pid"] for a in ray._private.state.actors().values()
                        if a["State"] == "ALIVE" and a["ActorClassName"] == "ImplicitFunc"]
                if pids:  # one trial at a time: this run's, and (reused trial processes) idle cached ones
                    for pid in pids:
                        os.kill(pid, signal.SIGKILL)  # the simulated nodes are processes of this machine
                    at = time.time()
                    time.sleep(1.0)  # the trial ran on while we looked its actor up: read where it died
                    steps = store.metrics(sweep.name, run_id).filter(metric="loss")["step"]
                    killed.update(run_id=run_id, step=int(steps.max()), at=at)
                    return

    threading.Thread(target=kill_a_trial_mid_run, daemon=True).start()
    grid = run_sweep(sweep, storage)
    print("RESULT", json.dumps({"killed": killed, "errors": [str(r.error)[-500:] for r in grid if r.error is not None],
                                "killer_misses": misses[-3:]}))
    ray.shutdown()
    cluster.shutdown()
    """
)

KILL_SWEEP = """
name: killed
base: {variant: vjepa, budget.steps: 80}
space:
  optim.lr: [1.0e-3, 5.0e-4]
search: {algorithm: grid, metric: loss, mode: min}
resources: {workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 1}
failures: {max_failures: 1}
"""


@pytest.mark.slow
def test_killed_trial_worker_is_retried_from_its_checkpoint_on_two_nodes(tmp_path, data_root):
    path = tmp_path / "killed.yaml"
    path.write_text(KILL_SWEEP)
    storage = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-c", KILL, str(path), str(storage), json.dumps(overrides(data_root))],
                          env=venv_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    killed = result["killed"]
    assert killed and not result["errors"], result
    runs = ResultsStore(storage).runs("killed")
    assert runs.height == 2 and set(runs["status"]) == {"finished"}
    assert set(runs["git_sha"]) == {"d1e2a3d4"}  # trials record the driver's commit
    events = run_events(storage, "killed", killed["run_id"])
    assert events.filter(status="running").height == 2  # the same run id, started twice
    resumed = metric_files_after(storage, "killed", killed["run_id"], killed["at"]).filter(metric="loss")
    assert resumed["step"].min() > 4 and resumed["step"].min() <= killed["step"] + 2  # from a checkpoint, not step 0
    rows = ResultsStore(storage).metrics("killed")
    assert_read_once(rows)
    keys = {run_id: set(group.select("step", "metric").iter_rows())
            for (run_id,), group in rows.group_by("run_id")}
    assert keys[killed["run_id"]] == next(k for r, k in keys.items() if r != killed["run_id"])  # as uninterrupted


SIGINT_SWEEP = """
name: interrupted
base: {variant: vjepa}
space:
  budget.steps: [8, 60]
search: {algorithm: grid, metric: loss, mode: min}
resources: {workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 2}
"""


def wait_until_one_finished_and_one_past_a_checkpoint(store: ResultsStore, sweep: str, process) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        runs = store.runs(sweep)
        running = runs.filter(status="running")["run_id"].to_list()
        if "finished" in runs["status"].to_list() and running:
            steps = store.metrics(sweep, running[0]).filter(metric="loss")["step"]
            if steps.len() and steps.max() >= 8:
                return
        time.sleep(0.1)
    pytest.fail("the sweep never had one trial finished and another past its first checkpoint")


@pytest.mark.slow
def test_interrupted_sweep_resumes_to_the_uninterrupted_result(ray_session, tmp_path, data_root):
    path = tmp_path / "interrupted.yaml"
    path.write_text(SIGINT_SWEEP)
    storage = tmp_path / "runs"
    jepa = str(Path(sys.executable).parent / "jepa")
    cmd = [jepa, "sweep", str(path), *overrides(data_root), "--storage", str(storage)]
    process = subprocess.Popen(cmd, env=venv_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_one_finished_and_one_past_a_checkpoint(ResultsStore(storage), "interrupted", process)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, output[-3000:]
    assert "1 finished, 0 failed, 1 stopped" in output, output[-3000:]
    resume = shlex.split(output.split("run:")[-1].strip().splitlines()[0])
    assert resume == ["jepa", *cmd[1:], "--resume"], output[-3000:]
    assert set(ResultsStore(storage).runs("interrupted")["status"]) == {"finished", "stopped"}

    resumed = subprocess.run([jepa, *resume[1:]], env=venv_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert set(ResultsStore(storage).runs("interrupted")["status"]) == {"finished"}

    reference = tmp_path / "reference"
    run_sweep(load_sweep(path, overrides(data_root) + [f"storage={reference}"]), str(reference))
    got, want = (keys_by_trial(root, "interrupted", "budget.steps") for root in (storage, reference))
    assert_read_once(got)
    key = ["trial", "step", "metric"]
    assert set(got.select(key).iter_rows()) == set(want.select(key).iter_rows())
    both = got.join(want, on=key, suffix="_want").filter(~pl.col("metric").is_in(TIMING))
    assert both.height > 0
    mismatch = both.filter((pl.col("value") - pl.col("value_want")).abs() > 1e-4 * (1 + pl.col("value_want").abs()))
    assert mismatch.height == 0, mismatch
