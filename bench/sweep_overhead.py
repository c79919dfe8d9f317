"""Where an 8-trial quickstart sweep's time goes: Ray start-up, per-trial start-up, training.

Runs sweeps/quickstart.yaml (4 budgets x 2 learning rates, 2 trials at a time on 2 cores)
once per mode and prints, side by side:
  inline  - each one-worker trial trains inside its Tune trial process
  trainer - each trial starts a one-worker Ray Train TorchTrainer (train.inline=never)
Goals: the whole sweep <= 5 min on 2 cores, >= 80% of trial time spent training.
Usage: python -m bench.sweep_overhead [--modes inline,trainer] [--smoke]
"""
from __future__ import annotations

import argparse
import tempfile
import time

from bench.common import machine
from orchestrator.sweep import load_sweep, run_sweep


def measure(mode: str, smoke: bool) -> dict:
    import ray

    with tempfile.TemporaryDirectory() as storage:
        overrides = [f"storage={storage}", f"train.inline={'auto' if mode == 'inline' else 'never'}"]
        sweep = load_sweep("sweeps/quickstart.yaml", overrides, smoke=smoke)
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
        t0 = time.perf_counter()
        grid = run_sweep(sweep, storage)
        sweep_s = time.perf_counter() - t0
        ray.shutdown()
    finals = [r.metrics for r in grid if r.error is None]
    trial = sum(m["time_total_s"] for m in finals)
    train = sum(m["train_s"] for m in finals)
    evaluation = sum(m["eval_s"] for m in finals)
    return {"mode": mode, "trials": len(grid), "failed": len(grid) - len(finals), "ray_start": ray_start,
            "sweep": sweep_s, "trial": trial, "train": train, "eval": evaluation, "startup": trial - train - evaluation}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default="inline,trainer")
    parser.add_argument("--smoke", action="store_true", help="the file's smoke section (seconds, for checking the script)")
    args = parser.parse_args()
    rows = [measure(mode, args.smoke) for mode in args.modes.split(",")]
    print(f"machine: {machine()}")
    print(f"{'mode':8} {'trials':>6} {'ray.init':>9} {'sweep':>8} {'trial sum':>10} {'training':>9} {'probe':>7} {'start-up':>9} {'train %':>8}")
    for r in rows:
        print(f"{r['mode']:8} {r['trials']:>6} {r['ray_start']:8.1f}s {r['sweep']:7.1f}s {r['trial']:9.1f}s {r['train']:8.1f}s "
              f"{r['eval']:6.1f}s {r['startup']:8.1f}s {100 * r['train'] / r['trial']:7.1f}%")
    if len(rows) == 2:
        print(f"sweep wall-time ratio {rows[1]['mode']}/{rows[0]['mode']}: {rows[1]['sweep'] / rows[0]['sweep']:.2f}; "
              f"per-trial start-up {rows[0]['startup'] / rows[0]['trials']:.1f}s vs {rows[1]['startup'] / rows[1]['trials']:.1f}s")


if __name__ == "__main__":
    main()
