"""Where a training loop reports to: a Ray Train worker, a Tune trial, or nothing (bare).

The loop is the same in all three; only reporting, checkpoint restore and rank differ.
Running a one-worker trial inline (TuneSession) skips starting a worker group.
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path


class LocalSession:
    """No Ray: for benchmarks and single-process debugging."""

    kind = "local"
    world_rank, world_size, local_rank = 0, 1, 0
    trial_name = "local"

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        """Nothing to report to: the loop's results store has every row."""

    @contextmanager
    def restored_checkpoint(self):
        yield None


class RaySession(LocalSession):
    """Reports and restores through a Ray API module (ray.train or ray.tune: same calls)."""

    api = None

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        ckpt = self.api.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        self.api.report(metrics, checkpoint=ckpt)

    @contextmanager
    def restored_checkpoint(self):
        ckpt = self.api.get_checkpoint()
        if ckpt is None:
            yield None
        else:
            with ckpt.as_directory() as path:
                yield Path(path)


class TrainSession(RaySession):
    """Inside a Ray Train worker group (DDP)."""

    kind = "train"

    def __init__(self):
        import ray.train

        self.api = ray.train
        ctx = ray.train.get_context()
        self.world_rank, self.world_size, self.local_rank = ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_rank()
        self.trial_name = ctx.get_experiment_name()


class TuneSession(RaySession):
    """A one-worker run inside the Tune trial process itself."""

    kind = "tune"

    def __init__(self):
        import ray.tune

        self.api = ray.tune
        self.trial_name = ray.tune.get_context().get_trial_name()


def make_session(kind: str) -> LocalSession:
    return {"local": LocalSession, "train": TrainSession, "tune": TuneSession}[kind]()


@contextmanager
def checkpoint_dir():
    with tempfile.TemporaryDirectory(prefix="jepa-ckpt-") as path:
        yield path
