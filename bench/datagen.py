"""ExoRL-style generation (walker, random policy): Ray tasks vs the same generator code without Ray.

Side by side in one run, all through `envs.exorl.collect_episodes` (the code `jepa data make` runs):
  serial     - one process collecting episodes in sequence; the issue's ideal is its rate x cores
  processes  - `cores` plain processes at once, each collecting in sequence (the same ideal, measured
               under the same load as the Ray workers: the figure to trust on a shared machine)
  ray        - `exorl.collect(..., map_fn=ray_task_map)`: shares of `episodes_per_task` episodes as Ray
               tasks, meta file included; `ray.init` and the workers' start-up (one short share each:
               process, imports, env) timed apart, so the rate is the steady state
Goal (issue 23): ray >= 0.9 x the ideal over >= 200k steps.

    python -m bench.datagen                        # 200 episodes x 1000 steps through Ray
    python -m bench.datagen --episodes 40          # a shorter look (say so when quoting it)
"""
from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from functools import partial

from bench.common import machine


def config(episodes: int, length: int):
    from envs.exorl import ExplorationConfig

    return ExplorationConfig("walker", "random", num_episodes=episodes, episode_length=length)


def serial_rate(episodes: int, length: int, first: int = 0) -> float:
    """Steps/s of one process collecting `episodes` in sequence (its env built before the clock starts)."""
    return serial_rate_and_cpu(episodes, length, first)[0]


def serial_rate_and_cpu(episodes: int, length: int, first: int = 0) -> tuple[float, float]:
    """(steps/s, CPU seconds per step) of one process collecting `episodes` in sequence."""
    from envs import exorl

    cfg = config(first + 1 + episodes, length)
    with tempfile.TemporaryDirectory() as buffer:
        exorl.collect_episodes(cfg, range(first, first + 1), buffer)  # imports, env, first-episode warm-up
        start, cpu = time.perf_counter(), time.process_time()
        exorl.collect_episodes(cfg, range(first + 1, first + 1 + episodes), buffer)
        steps = episodes * length
        return steps / (time.perf_counter() - start), (time.process_time() - cpu) / steps


def _timed_share(fn, log: str, share):
    """A share as a Ray task, its wall span and CPU time appended to `log` (one JSON line per task)."""
    import json
    import os

    start, cpu = time.time(), time.process_time()
    names = fn(share)
    with open(log, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "start": start, "end": time.time(),
                            "cpu": time.process_time() - cpu, "steps": len(share)}) + "\n")
    return names


def task_stats(log: str, length: int, cores: int, wall: float) -> dict:
    """CPU seconds per step inside the tasks, and the share of the collection's wall time the
    `cores` task slots were busy (1.0 = no idle slot between tasks)."""
    import json

    with open(log) as f:
        rows = [json.loads(line) for line in f]
    steps = sum(r["steps"] for r in rows) * length
    busy = sum(r["end"] - r["start"] for r in rows)
    return {"cpu_per_step": sum(r["cpu"] for r in rows) / steps, "slots_busy": busy / (cores * wall), "tasks": len(rows)}


def _process_rate(args: tuple[int, int, int]) -> float:
    return serial_rate(*args)


def processes_rate(cores: int, episodes: int, length: int) -> float:
    """Summed steps/s of `cores` plain processes collecting at once (spawned, as Ray's workers are)."""
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        return sum(pool.map(_process_rate, [(episodes, length, 1000 * i) for i in range(cores)]))


def ray_rate(cores: int, episodes: int, length: int) -> tuple[float, float, float, float, dict]:
    """(ray.init seconds, worker start-up seconds, steady steps/s of the collection through Ray tasks
    (workers already started, meta file included), seconds it took)."""
    import ray

    from envs import exorl
    from orchestrator.rl.datasets import ray_task_map

    start = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start
    try:
        with tempfile.TemporaryDirectory() as root:
            start = time.perf_counter()  # start-up: one short share per worker (worker processes, imports, env)
            warm = config(cores * config(1, 1).episodes_per_task, 10)
            exorl.collect(warm, f"{root}/warm", map_fn=ray_task_map)
            warm_s = time.perf_counter() - start
            log = f"{root}/tasks.jsonl"
            timed_map = lambda fn, items: ray_task_map(partial(_timed_share, fn, log), items)
            start = time.perf_counter()
            exorl.collect(config(episodes, length), root, map_fn=timed_map)
            seconds = time.perf_counter() - start
            stats = task_stats(log, length, cores, seconds)
    finally:
        ray.shutdown()
    return init_s, warm_s, episodes * length / seconds, seconds, stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=200, help="episodes through Ray (x length steps)")
    p.add_argument("--serial-episodes", type=int, default=8, help="episodes per serial measurement")
    p.add_argument("--length", type=int, default=1000)
    p.add_argument("--cores", type=int, default=2)
    args = p.parse_args()
    serial, cpu_before = serial_rate_and_cpu(args.serial_episodes, args.length)
    together = processes_rate(args.cores, args.serial_episodes, args.length)
    init_s, warm_s, through_ray, ray_s, stats = ray_rate(args.cores, args.episodes, args.length)
    serial_after, cpu_after = serial_rate_and_cpu(args.serial_episodes, args.length)  # before and after: load drifts
    one, serial_cpu = (serial + serial_after) / 2, (cpu_before + cpu_after) / 2
    print(f"machine: {machine()}")
    print(f"walker, random policy, episodes of {args.length} steps, {args.cores} cores")
    print(f"  serial, one process   {one:8.0f} steps/s (before {serial:.0f}, after {serial_after:.0f}); "
          f"ideal x{args.cores} = {one * args.cores:.0f}")
    print(f"  {args.cores} plain processes     {together:8.0f} steps/s")
    print(f"  Ray tasks             {through_ray:8.0f} steps/s ({args.episodes * args.length} steps in {ray_s:.1f}s; "
          f"ray.init {init_s:.1f}s and worker start-up {warm_s:.1f}s apart)")
    print(f"  inside the Ray tasks: {1e6 * stats['cpu_per_step']:.0f} us CPU per step vs {1e6 * serial_cpu:.0f} serially "
          f"({serial_cpu / stats['cpu_per_step']:.2f}x); task slots busy {stats['slots_busy']:.2f} of the wall time "
          f"({stats['tasks']} tasks)")
    print(f"ratio Ray / (serial x {args.cores}): {through_ray / (one * args.cores):.2f};  "
          f"Ray / {args.cores} plain processes: {through_ray / together:.2f};  load-free estimate "
          f"(CPU efficiency x slots busy): {serial_cpu / stats['cpu_per_step'] * stats['slots_busy']:.2f}  (goal >= 0.9)")


if __name__ == "__main__":
    main()
