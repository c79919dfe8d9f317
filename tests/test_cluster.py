"""Cluster paths: `ray job submit` against a token-authenticated head, two simulated nodes,
and the per-trial metrics on the Prometheus endpoint."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from orchestrator.config import compose_run
from orchestrator.results import ResultsStore
from orchestrator.train import launch
from tests.conftest import free_ports, tiny_overrides

REPO = Path(__file__).resolve().parents[1]


def venv_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


@pytest.fixture
def token_head(tmp_path):
    """A separate Ray head with token auth and the dashboard (jobs API), stopped afterwards."""
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = venv_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    names = ("--port", "--dashboard-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
             "--metrics-export-port", "--runtime-env-agent-port", "--ray-client-server-port")
    ports = dict(zip(names, free_ports(len(names))))
    dashboard = ports["--dashboard-port"]
    temp_dir = Path("/tmp") / f"rj{secrets.token_hex(3)}"
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--num-cpus=2",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--temp-dir={temp_dir}",
           *[f"{k}={v}" for k, v in ports.items()]]
    head = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(f"{address}/api/version", timeout=2).status_code in (200, 401, 403):
                break
        except requests.RequestException:
            time.sleep(1)
    else:
        head.terminate()
        pytest.fail("Ray head with dashboard did not come up within 120 s")
    yield address, env
    head.terminate()
    head.wait(timeout=60)


SUBMIT = textwrap.dedent(
    """
    import sys, time
    from ray.job_submission import JobSubmissionClient, JobStatus
    address, entrypoint, repo = sys.argv[1:4]
    client = JobSubmissionClient(address)
    job = client.submit_job(entrypoint=entrypoint,
                            runtime_env={"working_dir": repo, "excludes": [".venv", "runs", ".git", "*.egg-info"]})
    deadline = time.time() + 600
    while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        if time.time() > deadline:
            sys.exit("timed out")
        time.sleep(2)
    status = client.get_job_status(job)
    print(client.get_job_logs(job)[-3000:])
    print("STATUS", status)
    """
)


@pytest.mark.slow
def test_job_submission_runs_a_sweep_with_token_auth(token_head, tmp_path, data_root):
    address, env = token_head
    storage = tmp_path / "runs"
    entrypoint = (f"python -m orchestrator.cli sweep sweeps/quickstart.yaml --smoke --storage {storage} "
                  f"data.root={data_root}")
    unauthenticated = subprocess.run(
        [sys.executable, "-c", "from ray.job_submission import JobSubmissionClient as C; import sys; C(sys.argv[1]).list_jobs()", address],
        env=venv_env(RAY_AUTH_MODE="disabled"), capture_output=True, text=True, timeout=120)
    refusal = (unauthenticated.stdout + unauthenticated.stderr).lower()
    assert unauthenticated.returncode != 0 and ("401" in refusal or "auth" in refusal), refusal[-2000:]
    done = subprocess.run([sys.executable, "-c", SUBMIT, address, entrypoint, str(REPO)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert "STATUS SUCCEEDED" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    runs = ResultsStore(storage).runs("quickstart")
    assert runs.height == 2 and set(runs["status"]) == {"finished"}
    assert (storage / "quickstart" / "report.md").exists()


MULTINODE = textwrap.dedent(
    """
    import json, sys
    import ray
    from ray.cluster_utils import Cluster
    from orchestrator.config import compose_run
    from orchestrator.results import ResultsStore
    from orchestrator.train import launch
    overrides = json.loads(sys.argv[1])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    metrics = launch(compose_run(overrides), "two-nodes")
    print("RESULT", json.dumps({"step": metrics["step"], "final": metrics["final"]}))
    ray.shutdown()
    cluster.shutdown()
    """
)


@pytest.mark.slow
def test_training_spreads_over_two_simulated_nodes(tmp_path, data_root):
    import json

    overrides = tiny_overrides(tmp_path, data_root) + ["train.num_workers=2", "budget.steps=4", "sweep=nodes"]
    done = subprocess.run([sys.executable, "-c", MULTINODE, json.dumps(overrides)], env=venv_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert 'RESULT {"step": 4, "final": true}' in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    rows = ResultsStore(tmp_path).metrics("nodes", "two-nodes")
    assert rows.filter(metric="loss")["step"].max() == 4


def scrape(port: int) -> str:
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return ""


def test_dashboard_metrics_endpoint_shows_trial_metrics(ray_session, metrics_port, tmp_path, data_root):
    cfg = compose_run(tiny_overrides(tmp_path, data_root) + ["budget.steps=400", "sweep=live", "train.log_every=5",
                                                            "train.checkpoint_every=1000"])
    errors = []

    def train():
        try:
            launch(cfg, "live-run")
        except Exception as err:  # surfaced below: a failed run must fail the test
            errors.append(err)

    worker = threading.Thread(target=train, daemon=True)
    worker.start()
    seen = ""
    deadline = time.time() + 120
    while time.time() < deadline and not ('sweep="live"' in seen and "ray_jepa_flops_total" in seen):
        time.sleep(2)
        seen = scrape(metrics_port)
    worker.join(timeout=300)
    assert not worker.is_alive() and not errors, errors
    lines = [line for line in seen.splitlines() if line.startswith(("ray_jepa_loss", "ray_jepa_samples_per_second", "ray_jepa_flops_total"))]
    assert any('sweep="live"' in line and 'variant="vjepa"' in line and "trial=" in line for line in lines), seen[-2000:]
    names = {line.split("{")[0] for line in lines}
    assert {"ray_jepa_loss", "ray_jepa_samples_per_second", "ray_jepa_flops_total"} <= names
