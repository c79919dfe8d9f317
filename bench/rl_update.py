"""TD-JEPA updates per second: eager vs torch.compile vs CUDA graphs, and the offline sampler.

One update = the variant's loss (representation + actor), backward, Adam, EMA targets:
what RLlib's learner runs per batch. Measured side by side in one process on random
transitions of walker's sizes, then the rate at which RLlib's `OfflineData` (ray.data)
hands out batches of the same size, so one can see the sampler is not the bottleneck.

    python -m bench.rl_update                          # CPU: hidden 1024, batch 1024 (slow), eager and compile
    python -m bench.rl_update --device cuda            # + CUDA graphs (torch.compile mode="reduce-overhead")
    python -m bench.rl_update --hidden 256 --batch 256 # a quick CPU look
    python -m bench.rl_update --only-pixels            # TD-JEPA and FB from pixels (variant.obs=pixels)
    python -m bench.rl_update --only-rllib --hidden 256 --batch 256  # RLlib host vs bare loop, interleaved

The pixel lines: one eager update of TD-JEPA and of FB on 3 stacked 64 x 64 frames (DrQ conv encoder,
random shifts) at `--pixel-hidden` x `--pixel-batch`, with the batch's frame stacks gathered from a
`FrameStore` of uint8 frames inside the timed update, as the RLlib learner does.
"""
from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from dataclasses import asdict

import numpy as np
import torch
from omegaconf import OmegaConf

from bench.common import StepTimer, machine
from bench.gpu_all import tdjepa_batch, tdjepa_update_fn
from variants.base import DataSpec
from variants.td_jepa import TDJEPA, TDJEPAConfig

WALKER_SIZES = {"observation": (24,), "action": (6,)}
RLLIB_UPDATES = 100  # updates per Algorithm.train(): what runs use (orchestrator.rl.loop.MAX_UPDATES_PER_ITERATION)
GPU_GOAL = 5.0  # the target: compiled/graphed updates at least 5x eager on a GPU


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--modes", default="", help="comma list of eager,compile,cudagraphs (default: what the device allows)")
    p.add_argument("--no-sampler", action="store_true", help="skip the OfflineData sampling rate")
    p.add_argument("--no-rllib", action="store_true", help="skip the update rate through RLlib's Algorithm.train()")
    p.add_argument("--only-rllib", action="store_true", help="only the interleaved RLlib-vs-bare line")
    p.add_argument("--rllib-updates", type=int, default=RLLIB_UPDATES, help="updates per Algorithm.train()")
    p.add_argument("--rllib-rounds", type=int, default=5)
    p.add_argument("--rllib-warmup", type=int, default=1, help="rounds dropped before timing")
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU (a trial runs with 1)")
    p.add_argument("--pixel-hidden", type=int, default=256)
    p.add_argument("--pixel-batch", type=int, default=64)
    p.add_argument("--no-pixels", action="store_true", help="skip the pixel update rates")
    p.add_argument("--only-pixels", action="store_true", help="only the pixel update rates")
    return p.parse_args()


def updates_per_second(mode: str, args, device: torch.device) -> float:
    update = tdjepa_update_fn(args.hidden, device, mode)
    batch = tdjepa_batch(args.batch, device)
    timer = StepTimer(args.warmup, torch.cuda.synchronize if device.type == "cuda" else None)
    for _ in range(args.warmup + args.iters):
        update(batch)
        timer.tick()
    return 1.0 / timer.seconds_per_step()


def sampler_batches_per_second(batch: int, iters: int = 50) -> float:
    """RLlib OfflineData.sample() over a Parquet file of walker-sized transitions (ray.data)."""
    import ray

    from orchestrator.rl.data import (
        InProcessOfflineData,
        TransitionPreLearner,
        offline_data_options,
        offline_input,
    )
    from orchestrator.rl.loop import ZeroShotConfig

    data = walker_like_data()
    rows = len(data)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as root:
            import os

            os.environ["JEPA_DATA"] = root
            cfg = OmegaConf.create({"name": "bench", "rows": rows})
            config = (ZeroShotConfig()
                      .training(train_batch_size_per_learner=batch)
                      .offline_data(prelearner_class=TransitionPreLearner,
                                    **offline_data_options(offline_input(data, cfg), rows)))
            offline = InProcessOfflineData(config)
            offline.spaces = {"__env__": (None, None)}
            offline.module_spec = None
            offline.sample(num_samples=batch, module_state={"unused": {}})  # builds and materialises the pipeline
            timer = StepTimer(5)
            for _ in range(5 + iters):
                offline.sample(num_samples=batch, module_state={"unused": {}})
                timer.tick()
            rate = 1.0 / timer.seconds_per_step()
            offline.batch_iterators = None  # close ray.data's iterator before Ray goes
            gc.collect()
            return rate
    finally:
        ray.shutdown()


def walker_like_data(rows: int = 100_000):
    """Random transitions of walker's sizes, with walker's env for evaluation (never run here)."""
    from envs.dmc_gym import DMCTaskEnv
    from envs.offline import OfflineRLData

    rng = np.random.default_rng(0)
    obs = WALKER_SIZES["observation"][0]
    transitions = {k: rng.standard_normal((rows, obs)).astype(np.float32)
                   for k in ("observation", "next_observation", "future_observation")}
    transitions["action"] = rng.uniform(-1, 1, (rows, WALKER_SIZES["action"][0])).astype(np.float32)
    transitions["episode"] = np.arange(rows) // 1000
    return OfflineRLData(transitions, tasks=("stand",), task_kind="reward", env_maker=DMCTaskEnv,
                         env_kwargs={"domain": "walker"}, rewards=lambda task, idx: np.zeros(len(idx), np.float32))


def stock_learner_class():
    """`ZeroShotLearner` as it was before issue 23: RLlib's own `apply_gradients` (two per-tensor
    `isfinite` checks per update), OmegaConf look-ups for the schedule and every update's scalars
    read back and logged, for the before/after line."""
    from orchestrator.rl.learner import ZeroShotLearner

    class Stock(ZeroShotLearner):
        def build(self) -> None:
            super().build()
            self.schedule_cfg = self.run_cfg

        def _plain_step_allowed(self) -> bool:
            return False

        def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
            for key, value in fwd_out.items():
                if key != "artifacts":
                    self.metrics.log_value((module_id, key), value.detach().float().item(), window=1)
            return fwd_out["loss"]

    return Stock


def stock_module_class():
    """`ZeroShotRLModule` with RLlib's own `forward_train` (`self.train()` on every submodule before
    every update), as it was before issue 23, for the before/after line."""
    from ray.rllib.core.rl_module.torch import TorchRLModule

    from orchestrator.rl.module import ZeroShotRLModule

    class StockModule(ZeroShotRLModule):
        forward_train = TorchRLModule.forward_train

    return StockModule


def build_rllib(args, updates: int, learner_class=None, module_class=None):
    """The TD-JEPA update inside RLlib: `Algorithm.train()` = `updates` learner updates fed by
    OfflineData's iterator, plus RLlib's per-iteration bookkeeping (the learner in this process)."""
    from orchestrator.config import compose_run
    from orchestrator.rl import loop
    from orchestrator.rl.data import rl_spec
    from orchestrator.rl.loop import ZeroShotConfig, build_algorithm

    cfg = compose_run(["variant=td_jepa", "data=exorl_walker_random", f"variant.hidden={args.hidden}",
                       f"train.batch_size={args.batch}", "budget.steps=1", "eval.tasks=[stand]",
                       f"storage={os.environ['JEPA_DATA']}/runs"])
    data = walker_like_data()
    default, default_module = ZeroShotConfig.get_default_learner_class, loop.ZeroShotRLModule
    if learner_class is not None:
        ZeroShotConfig.get_default_learner_class = lambda self: learner_class
    if module_class is not None:
        loop.ZeroShotRLModule = module_class
    try:
        return build_algorithm(cfg, data, rl_spec(data), updates)
    finally:
        ZeroShotConfig.get_default_learner_class, loop.ZeroShotRLModule = default, default_module


def rllib_vs_bare(args, updates: int, rounds: int) -> dict[str, dict[str, float]]:
    """Seconds per update (wall and this process's CPU) of the bare eager loop, RLlib with the stock
    learner step and module `forward_train` (as before issue 23) and RLlib with ours, interleaved round by round (each round: `updates` bare updates,
    then one `train()` of each algorithm), so load that comes and goes hits all three alike."""
    import ray

    from orchestrator.rl.loop import stop

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as root:
            os.environ["JEPA_DATA"] = root
            algos = {"rllib_stock": build_rllib(args, updates, stock_learner_class(), stock_module_class()),
                     "rllib": build_rllib(args, updates)}
            update = tdjepa_update_fn(args.hidden, torch.device("cpu"), "eager")
            batch = tdjepa_batch(args.batch, torch.device("cpu"))

            def bare():
                for _ in range(updates):
                    update(batch)

            paths = {"bare": bare, **{name: algo.train for name, algo in algos.items()}}
            totals = {name: [0.0, 0.0] for name in paths}
            for r in range(args.rllib_warmup + rounds):
                for name, run in paths.items():
                    wall, cpu = time.perf_counter(), time.process_time()
                    run()
                    if r >= args.rllib_warmup:
                        totals[name][0] += time.perf_counter() - wall
                        totals[name][1] += time.process_time() - cpu
            for algo in algos.values():
                stop(algo)
            n = rounds * updates
            return {name: {"wall": w / n, "cpu": c / n} for name, (w, c) in totals.items()}
    finally:
        ray.shutdown()


def report_rllib(args) -> None:
    per = rllib_vs_bare(args, args.rllib_updates, args.rllib_rounds)
    bare = per["bare"]
    print(f"Through RLlib vs bare, interleaved: {args.rllib_rounds} rounds of {args.rllib_updates} updates "
          f"(one Algorithm.train() each), {torch.get_num_threads()} thread(s)")
    for name, row in per.items():
        print(f"  {name:<12} {1 / row['wall']:8.1f} updates/s wall ({bare['wall'] / row['wall']:.2f}x bare)   "
              f"{1 / row['cpu']:8.1f} updates/CPU-s ({bare['cpu'] / row['cpu']:.2f}x bare)")
    print(f"  RLlib overhead per update: stock {1e3 * (per['rllib_stock']['cpu'] - bare['cpu']):.2f} ms CPU, "
          f"now {1e3 * (per['rllib']['cpu'] - bare['cpu']):.2f} ms CPU")


def pixel_updates_per_second(variant_name: str, args, device: torch.device) -> float:
    """Eager updates/s from pixels: frame stacks gathered from uint8 frames, loss, backward, Adam, EMA."""
    from orchestrator.rl.frames import FrameStore, frame_transitions
    from variants.fb import FB, FBConfig
    from variants.nn.pixel_encoder import STACK_SHAPE

    cls, config = {"td_jepa": (TDJEPA, TDJEPAConfig), "fb": (FB, FBConfig)}[variant_name]
    cfg = OmegaConf.create({"seed": 0, "variant": {**asdict(config()), "hidden": args.pixel_hidden, "obs": "pixels"}})
    spec = DataSpec(kind="rl", inputs={"observation": STACK_SHAPE, "next_observation": STACK_SHAPE,
                                       "future_observation": STACK_SHAPE, "action": WALKER_SIZES["action"]})
    variant = cls(cfg, spec)
    modules = variant.build("main").to(device)
    optimizer = torch.optim.Adam([p for p in modules.parameters() if p.requires_grad], lr=1e-4)
    rng = np.random.default_rng(0)
    index = frame_transitions(np.full(5, 1000))  # 5 episodes of 1000 steps: 5005 frames (~60 MB)
    store = FrameStore.from_episodes(rng.integers(0, 256, (len(index["episode_start"]), 64, 64, 3), np.uint8),
                                     index["episode_start"])
    actions = torch.rand(args.pixel_batch, WALKER_SIZES["action"][0]) * 2 - 1

    def update():
        rows = rng.integers(0, len(index["observation"]), args.pixel_batch)
        batch = {"observation": store.stacks(index["observation"][rows]),
                 "next_observation": store.stacks(index["next_observation"][rows]),
                 "future_observation": store.stacks(index["next_observation"][rows])}
        batch = {k: torch.from_numpy(v).to(device) for k, v in batch.items()} | {"action": actions.to(device)}
        optimizer.zero_grad(set_to_none=False)
        variant.step(modules, batch, "main")["loss"].backward()
        optimizer.step()
        variant.after_step(modules, 0, 0, "main")

    iters = max(3, args.iters // 4)
    timer = StepTimer(2, torch.cuda.synchronize if device.type == "cuda" else None)
    for _ in range(2 + iters):
        update()
        timer.tick()
    return 1.0 / timer.seconds_per_step()


def report_pixels(args, device: torch.device) -> None:
    print(f"From pixels (3 x 64 x 64 frames, DrQ encoder): hidden {args.pixel_hidden}, batch {args.pixel_batch}, "
          f"device {device}, {torch.get_num_threads()} thread(s)")
    for name in ("td_jepa", "fb"):
        rate = pixel_updates_per_second(name, args, device)
        print(f"  {name:<8} {rate:9.2f} updates/s   {rate * args.pixel_batch:9.1f} transitions/s (eager)")


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if args.only_rllib:
        print(f"machine: {machine()}")
        print(f"TD-JEPA update: hidden {args.hidden}, batch {args.batch}, walker sizes, device {device}")
        report_rllib(args)
        return
    if args.only_pixels:
        print(f"machine: {machine()}")
        report_pixels(args, device)
        return
    modes = args.modes.split(",") if args.modes else ["eager", "compile"] + (["cudagraphs"] if device.type == "cuda" else [])
    print(f"machine: {machine()}")
    print(f"TD-JEPA update: hidden {args.hidden}, batch {args.batch}, walker sizes, device {device}")
    rates = {mode: updates_per_second(mode, args, device) for mode in modes}
    for mode, rate in rates.items():
        print(f"  {mode:<11} {rate:9.1f} updates/s   {rate / rates['eager']:5.2f}x eager")
    if device.type == "cuda":
        best = max(rates.values()) / rates["eager"]
        print(f"  best/eager = {best:.2f} (goal >= {GPU_GOAL})")
    else:
        print("  cudagraphs: needs a GPU")
    if not args.no_rllib:
        report_rllib(args)
    if not args.no_sampler:
        sampled = sampler_batches_per_second(args.batch)
        slowest = min(rates.values())
        print(f"OfflineData.sample: {sampled:.1f} batches/s of {args.batch} "
              f"({sampled / max(rates.values()):.2f}x the fastest update rate, {sampled / slowest:.2f}x the slowest)")
    if not args.no_pixels:
        report_pixels(args, device)


if __name__ == "__main__":
    main()
