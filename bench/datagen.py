"""Data generation through Ray tasks vs the same generator code without Ray: ExoRL-style (walker, random
policy) and OGBench-style (cube-single, OGBench's plan oracles, state observations).

Side by side in one run per suite, all through the code `jepa data make` runs (`envs.exorl.collect_episodes`
/ `exorl.collect`, `envs.ogbench.collect_share` / `ogbench.generate`):
  serial     - one process collecting episodes in sequence; the issue's ideal is its rate x cores
  processes  - `cores` plain processes at once, each collecting in sequence (the same ideal, measured
               under the same load as the Ray workers: the figure to trust on a shared machine)
  ray        - the generator with `map_fn=ray_task_map`: shares of episodes as Ray tasks, files and meta
               file included; `ray.init` and the workers' start-up (one short share each: process,
               imports, env) timed apart, so the rate is the steady state
Load-free ratio: (CPU per step serially / CPU per step inside the tasks) x (share of the wall time the
task slots were busy): what Ray costs whatever the neighbours take. Goal (issue 23): >= 0.9.

    python -m bench.datagen                        # both suites: 200 walker episodes, 44 cube episodes
    python -m bench.datagen --suite ogbench        # one suite
    python -m bench.datagen --episodes 40          # a shorter look (say so when quoting it)
"""
from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from functools import partial

from bench.common import machine


@dataclass(frozen=True)
class Suite:
    """How one generator is driven: `collect(cfg, first, count)` collects episodes in this process,
    `make(cfg, root, map_fn)` writes a dataset (files, meta) through a parallel map."""

    name: str
    title: str
    episodes: int  # through Ray, by default
    length: int

    def config(self, episodes: int, length: int):
        if self.name == "exorl":
            from envs.exorl import ExplorationConfig

            return ExplorationConfig("walker", "random", num_episodes=episodes, episode_length=length)
        from envs.ogbench import OGBenchDataConfig

        return OGBenchDataConfig("cube-single-play", num_episodes=episodes, episode_length=length)

    def collect(self, cfg, first: int, count: int, buffer: str) -> None:
        if self.name == "exorl":
            from envs import exorl

            exorl.collect_episodes(cfg, range(first, first + count), buffer)
        else:
            from envs import ogbench

            ogbench.collect_share(cfg, ("train", range(first, first + count)))

    def make(self, cfg, root: str, map_fn) -> None:
        if self.name == "exorl":
            from envs import exorl

            exorl.collect(cfg, root, map_fn=map_fn)
        else:
            from envs import ogbench

            ogbench.generate(cfg, root, map_fn=map_fn)

    def steps(self, cfg) -> int:
        """Steps a whole dataset collects (OGBench adds its validation episodes)."""
        extra = cfg.num_val_episodes if self.name == "ogbench" else 0
        return (cfg.num_episodes + extra) * cfg.episode_length

    def warm_shares(self, cores: int) -> list:
        """One short share per worker, of the timed run's episode length for OGBench (its workers keep
        one env per episode length)."""
        return [("val", range(i, i + 1)) for i in range(cores)] if self.name == "ogbench" else []


SUITES = {
    "exorl": Suite("exorl", "walker, random policy", episodes=200, length=1000),
    # 44 + 4 validation episodes: 12 shares, an even number for 2 task slots (no lone last task)
    "ogbench": Suite("ogbench", "cube-single-play, plan oracles, state observations", episodes=44, length=1000),
}


def serial_rate_and_cpu(suite: Suite, episodes: int, length: int, first: int = 0) -> tuple[float, float]:
    """(steps/s, CPU seconds per step) of one process collecting `episodes` in sequence (its env built
    and a first episode run before the clock starts)."""
    cfg = suite.config(first + 1 + episodes, length)
    with tempfile.TemporaryDirectory() as buffer:
        suite.collect(cfg, first, 1, buffer)  # imports, env, first-episode warm-up
        start, cpu = time.perf_counter(), time.process_time()
        suite.collect(cfg, first + 1, episodes, buffer)
        steps = episodes * length
        return steps / (time.perf_counter() - start), (time.process_time() - cpu) / steps


def _share_episodes(share) -> int:
    return len(share[1]) if isinstance(share, tuple) else len(share)  # OGBench: (split, range); ExoRL: range


def _timed_share(fn, log: str, share):
    """A share as a Ray task, its wall span and CPU time appended to `log` (one JSON line per task)."""
    import json
    import os

    start, cpu = time.time(), time.process_time()
    out = fn(share)
    with open(log, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "start": start, "end": time.time(),
                            "cpu": time.process_time() - cpu, "episodes": _share_episodes(share)}) + "\n")
    return out


def task_stats(log: str, length: int, cores: int, wall: float) -> dict:
    """CPU seconds per step inside the tasks, and the share of the collection's wall time the
    `cores` task slots were busy (1.0 = no idle slot between tasks)."""
    import json

    with open(log) as f:
        rows = [json.loads(line) for line in f]
    steps = sum(r["episodes"] for r in rows) * length
    busy = sum(r["end"] - r["start"] for r in rows)
    return {"cpu_per_step": sum(r["cpu"] for r in rows) / steps, "slots_busy": busy / (cores * wall), "tasks": len(rows)}


def _process_rate(args: tuple[str, int, int, int]) -> float:
    name, episodes, length, first = args
    return serial_rate_and_cpu(SUITES[name], episodes, length, first)[0]


def processes_rate(suite: Suite, cores: int, episodes: int, length: int) -> float:
    """Summed steps/s of `cores` plain processes collecting at once (spawned, as Ray's workers are)."""
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        return sum(pool.map(_process_rate, [(suite.name, episodes, length, 1000 * i) for i in range(cores)]))


def ray_rate(suite: Suite, cores: int, episodes: int, length: int) -> tuple[float, float, float, float, dict]:
    """(ray.init seconds, worker start-up seconds, steady steps/s of the collection through Ray tasks
    (workers already started, files and meta file included), seconds it took, task stats)."""
    import ray

    from orchestrator.rl.datasets import ray_task_map

    start = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start
    try:
        with tempfile.TemporaryDirectory() as root:
            start = time.perf_counter()  # start-up: one short share per worker (worker processes, imports, env)
            if suite.name == "ogbench":
                from envs import ogbench

                list(ray_task_map(partial(ogbench.collect_share, suite.config(cores, length)), suite.warm_shares(cores)))
            else:
                from envs import exorl

                warm = suite.config(cores * exorl.ExplorationConfig("walker", "random").episodes_per_task, 10)
                suite.make(warm, f"{root}/warm", ray_task_map)
            warm_s = time.perf_counter() - start
            log = f"{root}/tasks.jsonl"
            timed_map = lambda fn, items: ray_task_map(partial(_timed_share, fn, log), items)
            cfg = suite.config(episodes, length)
            start = time.perf_counter()
            suite.make(cfg, root, timed_map)
            seconds = time.perf_counter() - start
            stats = task_stats(log, length, cores, seconds)
    finally:
        ray.shutdown()
    return init_s, warm_s, suite.steps(cfg) / seconds, seconds, stats


def report(suite: Suite, args) -> None:
    episodes = args.episodes or suite.episodes
    serial_episodes = args.serial_episodes or (8 if suite.name == "exorl" else 3)
    length = args.length or suite.length
    serial, cpu_before = serial_rate_and_cpu(suite, serial_episodes, length)
    together = processes_rate(suite, args.cores, serial_episodes, length)
    init_s, warm_s, through_ray, ray_s, stats = ray_rate(suite, args.cores, episodes, length)
    serial_after, cpu_after = serial_rate_and_cpu(suite, serial_episodes, length)  # before and after: load drifts
    one, serial_cpu = (serial + serial_after) / 2, (cpu_before + cpu_after) / 2
    steps = suite.steps(suite.config(episodes, length))
    print(f"{suite.name}: {suite.title}, episodes of {length} steps, {args.cores} cores")
    print(f"  serial, one process   {one:8.0f} steps/s (before {serial:.0f}, after {serial_after:.0f}); "
          f"ideal x{args.cores} = {one * args.cores:.0f}")
    print(f"  {args.cores} plain processes     {together:8.0f} steps/s")
    print(f"  Ray tasks             {through_ray:8.0f} steps/s ({steps} steps in {ray_s:.1f}s; "
          f"ray.init {init_s:.1f}s and worker start-up {warm_s:.1f}s apart)")
    print(f"  inside the Ray tasks: {1e6 * stats['cpu_per_step']:.0f} us CPU per step vs {1e6 * serial_cpu:.0f} serially "
          f"({serial_cpu / stats['cpu_per_step']:.2f}x); task slots busy {stats['slots_busy']:.2f} of the wall time "
          f"({stats['tasks']} tasks)")
    print(f"  ratio Ray / (serial x {args.cores}): {through_ray / (one * args.cores):.2f};  "
          f"Ray / {args.cores} plain processes: {through_ray / together:.2f};  load-free estimate "
          f"(CPU efficiency x slots busy): {serial_cpu / stats['cpu_per_step'] * stats['slots_busy']:.2f}  (goal >= 0.9)",
          flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", choices=["both", *SUITES], default="both")
    p.add_argument("--episodes", type=int, default=0, help="episodes through Ray (default: 200 exorl, 44 ogbench)")
    p.add_argument("--serial-episodes", type=int, default=0, help="episodes per serial measurement (default: 8 exorl, 3 ogbench)")
    p.add_argument("--length", type=int, default=0, help="steps per episode (default 1000)")
    p.add_argument("--cores", type=int, default=2)
    args = p.parse_args()
    print(f"machine: {machine()}")
    for name in SUITES if args.suite == "both" else [args.suite]:
        report(SUITES[name], args)


if __name__ == "__main__":
    main()
