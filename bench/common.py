"""Shared set-up for benchmarks: quickstart-sized configs and a steady-state timer."""
from __future__ import annotations

import os
import platform
import time

import torch

from orchestrator import registry
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


def bare_seconds_per_step(cfg, device: torch.device, warmup: int) -> float:
    """The reference: a hand-written loop (DataLoader, variant.step, backward, AdamW), no orchestrator, no Ray."""
    torch.set_num_threads(int(cfg.train.cpus_per_worker))  # as the trainer does
    entry = registry.dataset(cfg.data.name)
    variant = registry.variant(cfg.variant.name)(cfg, entry.spec(cfg.data))
    modules = variant.build("main").to(device)
    runnable = torch.nn.ModuleDict({k: torch.compile(m) if cfg.train.compile and k != "target_encoder" else m for k, m in modules.items()})
    opt = torch.optim.AdamW(variant.param_groups(modules, "main"), lr=cfg.optim.lr, fused=device.type == "cuda")
    workers = int(cfg.train.loader_workers)
    loader = torch.utils.data.DataLoader(entry.load(cfg.data, "train"), batch_size=cfg.train.batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    timer = StepTimer(warmup, torch.cuda.synchronize if device.type == "cuda" else None)
    batches = iter(loader)
    for step in range(cfg.budget.steps):
        batch = next(batches, None)
        if batch is None:
            batches = iter(loader)
            batch = next(batches)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = variant.step(runnable, batch, "main")["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        variant.after_step(modules, step + 1, cfg.budget.steps, "main")
        timer.tick()
    return timer.seconds_per_step()


def steady_state_seconds_per_step(storage: str, sweep: str, run_id: str, batch: int) -> float:
    """Seconds per step from the per-window throughput the loop logs, first window dropped."""
    from orchestrator.results import ResultsStore

    rows = ResultsStore(storage).metrics(sweep, run_id).filter(metric="samples_per_s").sort("step")
    rates = rows["value"].to_list()[1:]
    return sum(batch / r for r in rates) / len(rates)
