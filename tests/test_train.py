"""The training loop through Ray Train: DDP on two CPU workers, results rows, resume, NaN."""
import pytest

from orchestrator.config import compose_run
from orchestrator.results import ResultsStore
from orchestrator.train import launch
from tests.conftest import tiny_overrides


def test_two_worker_torchtrainer_run_writes_results(ray_session, tmp_path, data_root):
    cfg = compose_run(tiny_overrides(tmp_path, data_root) + ["train.num_workers=2", "budget.steps=6", "sweep=ddp"])
    metrics = launch(cfg, "ddp-run")
    assert metrics["step"] == 6 and metrics["final"]
    assert 0.0 <= metrics["probe_acc"] <= 1.0
    store = ResultsStore(tmp_path)
    runs = store.runs("ddp")
    assert runs["status"].to_list() == ["finished"]
    rows = store.metrics("ddp", "ddp-run")
    losses = rows.filter(metric="loss").sort("step")
    assert losses["step"].to_list() == [2, 4, 6]
    # FLOPs are charged for both workers: per-step FLOPs are twice a one-worker run's
    one = compose_run(tiny_overrides(tmp_path, data_root) + ["budget.steps=6"])
    from orchestrator.train import describe_plan
    import json

    two_worker = json.loads(describe_plan(cfg))[0]["flops_per_step"]
    one_worker = json.loads(describe_plan(one))[0]["flops_per_step"]
    assert two_worker == pytest.approx(2 * one_worker, rel=1e-9)  # same traced mask draws, twice the workers
    assert losses["flops"].to_list()[-1] == pytest.approx(6 * two_worker)
    assert rows.filter(metric="probe_acc").height == 1


def test_rerun_resumes_from_last_checkpoint(ray_session, tmp_path, data_root):
    base = tiny_overrides(tmp_path, data_root) + ["sweep=resume", "train.checkpoint_every=4"]
    launch(compose_run(base + ["budget.steps=4"]), "resumable")
    store = ResultsStore(tmp_path)
    first = store.metrics("resume", "resumable").filter(metric="loss")["step"].to_list()
    assert max(first) == 4
    metrics = launch(compose_run(base + ["budget.steps=8"]), "resumable")
    steps = store.metrics("resume", "resumable").filter(metric="loss")["step"].to_list()
    assert sorted(steps) == [2, 4, 6, 8]  # steps 1-4 were not trained again
    assert metrics["step"] == 8


def test_nan_loss_fails_the_run_with_a_clear_error(ray_session, tmp_path, data_root):
    cfg = compose_run(tiny_overrides(tmp_path, data_root) + ["sweep=nan", "budget.steps=6", "optim.lr=1e12", "optim.warmup_frac=0"])
    with pytest.raises(Exception, match="optim.lr"):
        launch(cfg, "nan-run")
    runs = ResultsStore(tmp_path).runs("nan")
    assert runs["status"].to_list() == ["failed"]
    assert "NonFiniteLossError" in runs["error"][0] and "optim.lr" in runs["error"][0]
