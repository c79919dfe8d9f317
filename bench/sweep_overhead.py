"""Where an 8-trial quickstart sweep's time goes: Ray start-up, per-trial start-up, training.

Runs sweeps/quickstart.yaml (4 budgets x 2 learning rates, 2 trials at a time on 2 cores)
once per mode and prints, side by side:
  inline  - each one-worker trial trains inside its Tune trial process
  trainer - each trial starts a one-worker Ray Train TorchTrainer (train.inline=never)
Goals: the whole sweep <= 5 min on 2 cores, >= 80% of trial time spent training.

`--many N` (issue 23): N tiny trials (quickstart smoke sizes, a grid over the learning rate, so one
cached baseline serves all), 2 at a time; prints (sum of trial times / concurrent trials) / sweep wall,
the share of the wall-clock the trial slots were busy (goal >= 0.9: no idle cores between trials).
Usage: python -m bench.sweep_overhead [--modes inline,trainer] [--smoke] [--many 30 [--only-many]]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

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
    accs = sorted((m["flops_total"], round(m["probe_acc"], 5)) for m in finals)
    return {"mode": mode, "probe_acc": [a for _, a in accs], "trials": len(grid), "failed": len(grid) - len(finals), "ray_start": ray_start,
            "sweep": sweep_s, "trial": trial, "train": train, "eval": evaluation, "startup": trial - train - evaluation}


CONCURRENT = 2


def tiny_sweep_file(directory: str, trials: int) -> str:
    """A sweep of `trials` tiny V-JEPA runs (seconds each), differing only in the learning rate."""
    spec = {
        "name": "many_tiny",
        "base": {"variant": "vjepa", "data": "moving_shapes", "model": "vit_tiny", "model.depth": 2, "model.patch": 8,
                 "data.num_train": 128, "data.num_val": 64, "train.batch_size": 16, "budget.steps": 20,
                 "train.log_every": 10, "train.checkpoint_every": 20, "eval.epochs": 1, "eval.train_clips": 64,
                 "eval.val_clips": 64},
        "space": {"optim.lr": [round(1e-4 * (1 + i / trials), 8) for i in range(trials)]},
        "search": {"algorithm": "grid", "num_samples": 1, "metric": "probe_acc", "mode": "max"},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "gpus_per_worker": 0,
                      "max_concurrent_trials": CONCURRENT},
    }
    path = Path(directory) / "many_tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def measure_many(trials: int) -> dict:
    """Wall time of a `trials`-trial sweep against the trial slots' busy time (Tune's time_total_s)."""
    import ray

    with tempfile.TemporaryDirectory() as storage:
        sweep = load_sweep(tiny_sweep_file(storage, trials), [f"storage={storage}"])
        ray.init(num_cpus=CONCURRENT, include_dashboard=False, log_to_driver=False)
        t0 = time.perf_counter()
        grid = run_sweep(sweep, storage)
        wall = time.perf_counter() - t0
        ray.shutdown()
    finals = [r.metrics for r in grid if r.error is None]
    busy = sum(m["time_total_s"] for m in finals)
    train = sum(m["train_s"] for m in finals)
    digest = sorted((round(float((r.config or {}).get("optim.lr", 0.0)), 8), round(r.metrics["loss"], 6), round(r.metrics["probe_acc"], 5))
                    for r in grid if r.error is None)
    return {"trials": len(grid), "failed": len(grid) - len(finals), "wall": wall, "busy": busy, "train": train,
            "ratio": busy / CONCURRENT / wall, "digest": digest}


def report_many(trials: int) -> None:
    r = measure_many(trials)
    print(f"{r['trials']} tiny trials ({r['failed']} failed), {CONCURRENT} at a time: sweep wall {r['wall']:.1f}s, "
          f"sum of trial times {r['busy']:.1f}s (training {r['train']:.1f}s), {r['busy'] / max(1, r['trials']):.1f}s per trial")
    print(f"slots busy: (sum of trial times / {CONCURRENT}) / wall = {r['ratio']:.2f} (goal >= 0.9); "
          f"idle per trial {(r['wall'] * CONCURRENT - r['busy']) / max(1, r['trials']):.1f} slot-seconds")
    print(f"results (lr, final loss, probe_acc) of the first 3 trials, to compare across runs: {r['digest'][:3]}; "
          f"mean probe_acc {sum(d[2] for d in r['digest']) / max(1, len(r['digest'])):.5f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default="inline,trainer")
    parser.add_argument("--smoke", action="store_true", help="the file's smoke section (seconds, for checking the script)")
    parser.add_argument("--many", type=int, default=0, help="also a sweep of this many tiny trials (idle-core ratio)")
    parser.add_argument("--only-many", action="store_true", help="only the --many sweep")
    args = parser.parse_args()
    if args.only_many:
        print(f"machine: {machine()}")
        report_many(args.many or 30)
        return
    rows = [measure(mode, args.smoke) for mode in args.modes.split(",")]
    print(f"machine: {machine()}")
    print(f"{'mode':8} {'trials':>6} {'ray.init':>9} {'sweep':>8} {'trial sum':>10} {'training':>9} {'probe':>7} {'start-up':>9} {'train %':>8}")
    for r in rows:
        print(f"{r['mode']} final probe_acc per trial: {r['probe_acc']}")
        print(f"{r['mode']:8} {r['trials']:>6} {r['ray_start']:8.1f}s {r['sweep']:7.1f}s {r['trial']:9.1f}s {r['train']:8.1f}s "
              f"{r['eval']:6.1f}s {r['startup']:8.1f}s {100 * r['train'] / r['trial']:7.1f}%")
    if len(rows) == 2:
        print(f"sweep wall-time ratio {rows[1]['mode']}/{rows[0]['mode']}: {rows[1]['sweep'] / rows[0]['sweep']:.2f}; "
              f"per-trial start-up {rows[0]['startup'] / rows[0]['trials']:.1f}s vs {rows[1]['startup'] / rows[1]['trials']:.1f}s")
    if args.many:
        report_many(args.many)


if __name__ == "__main__":
    main()
