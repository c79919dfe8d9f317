"""One local Ray for the whole test session, and tiny configs that train in seconds."""
from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")  # metrics reach Prometheus within seconds


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets stay open until every number is drawn."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("data")
    os.environ["JEPA_DATA"] = str(root)  # before Ray starts, so workers inherit it
    return str(root)


def tiny_overrides(storage, data_root: str) -> list[str]:
    """A two-block ViT on small clips: a step takes milliseconds on one core."""
    return [
        f"storage={storage}",
        f"data.root={data_root}",
        "data.num_train=128",
        "data.num_val=64",
        "model.dim=64",
        "model.depth=2",
        "model.heads=2",
        "variant.pred_dim=32",
        "variant.pred_depth=1",
        "variant.pred_heads=2",
        "train.batch_size=8",
        "train.log_every=2",
        "train.checkpoint_every=4",
        "eval.epochs=2",
        "eval.train_clips=64",
        "eval.val_clips=32",
    ]


@pytest.fixture(scope="session")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def ray_session(data_root, metrics_port):
    import ray

    if ray.is_initialized():  # a test that needed its own Ray (a cluster, a fresh init) left one behind
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, _metrics_export_port=metrics_port, log_to_driver=False)
    yield ray
    ray.shutdown()
