"""Ray Train overhead: the same model and steps in a bare PyTorch loop and through Ray Train.

Prints steady-state seconds per step (after warm-up) for
  bare   - a hand-written loop: variant.step, backward, AdamW (no orchestrator, no Ray)
  loop   - orchestrator.train.train_loop without Ray (schedules, logging, checkpoints)
  ray    - the same loop in a one-worker TorchTrainer (worker group, report, checkpoints)
and the ratio ray / bare (goal <= 1.10 on CPU), plus Ray's start-up cost.
Usage: python -m bench.ray_overhead [--steps 80]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from bench.common import bare_seconds_per_step, bench_config, machine, steady_state_seconds_per_step
from orchestrator.config import to_plain
from orchestrator.train import launch, train_loop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()
    log_every = 10
    with tempfile.TemporaryDirectory() as storage:
        base = [f"budget.steps={args.steps}", f"train.log_every={log_every}", "train.checkpoint_every=40"]
        cfg = bench_config(base + ["sweep=bench_loop"], storage)
        bare = bare_seconds_per_step(cfg, torch.device("cpu"), warmup=log_every)
        train_loop({"config": to_plain(cfg), "run_id": "loop", "session": "local"})
        loop = steady_state_seconds_per_step(storage, "bench_loop", "loop", cfg.train.batch_size)

        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
        ray_cfg = bench_config(base + ["sweep=bench_ray", "train.inline=never"], storage)
        t0 = time.perf_counter()
        result = launch(ray_cfg, "ray")
        ray_total = time.perf_counter() - t0
        ray_step = steady_state_seconds_per_step(storage, "bench_ray", "ray", cfg.train.batch_size)
        ray.shutdown()

    print(f"machine: {machine()}")
    print(f"steps: {args.steps} (steady state after {log_every}); model vit_tiny depth 6, batch {cfg.train.batch_size}, 1 thread")
    print(f"bare PyTorch loop      : {bare * 1000:8.1f} ms/step")
    print(f"orchestrator loop      : {loop * 1000:8.1f} ms/step   ratio vs bare {loop / bare:.3f}")
    print(f"Ray Train, 1 worker    : {ray_step * 1000:8.1f} ms/step   ratio vs bare {ray_step / bare:.3f}  (goal <= 1.10)")
    print(f"Ray start-up           : ray.init {ray_start:.1f} s; TorchTrainer run {ray_total:.1f} s total, "
          f"of which setup {result.get('setup_s', float('nan')):.1f} s in the worker, training {result.get('train_s', float('nan')):.1f} s")


if __name__ == "__main__":
    main()
