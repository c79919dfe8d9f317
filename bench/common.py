"""Shared set-up for benchmarks: quickstart-sized configs and a steady-state timer."""
from __future__ import annotations

import os
import platform
import time

import torch

from orchestrator.config import compose_run

QUICKSTART_MODEL = ["model=vit_tiny", "model.depth=6", "train.batch_size=16"]


def bench_config(extra: list[str], storage: str):
    return compose_run(QUICKSTART_MODEL + [f"storage={storage}", "eval.epochs=1", "eval.train_clips=64",
                                           "eval.val_clips=64", *extra])


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()} | {os.cpu_count()} CPUs | {gpu} | torch {torch.__version__}"


class StepTimer:
    """Seconds per step after `warmup` steps (what 'after start-up' means in the goals)."""

    def __init__(self, warmup: int, sync=None):
        self.warmup, self.sync, self.count, self.start = warmup, sync, 0, None

    def tick(self) -> None:
        self.count += 1
        if self.count == self.warmup:
            if self.sync:
                self.sync()
            self.start = time.perf_counter()

    def seconds_per_step(self) -> float:
        if self.sync:
            self.sync()
        return (time.perf_counter() - self.start) / (self.count - self.warmup)
