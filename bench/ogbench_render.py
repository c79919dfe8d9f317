"""OGBench pixel observations: frames per second at `render="light"` vs OGBench's own settings.

OGBench's manipulation scenes ask for 4x multisampling and 4096² shadow maps, which a software GL
(llvmpipe behind EGL, OSMesa) pays for on every 64 × 64 frame. Both envs step the same random
actions in alternating rounds, so load on a shared machine hits them alike; the printed ratio is
light / full frames per second, with the mean per-pixel difference of the last frames.

    python -m bench.ogbench_render [--env cube-single-play] [--steps 40] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import envs  # noqa: F401  first: settles MUJOCO_GL before mujoco is imported
from bench.common import machine
from envs.ogbench import make_pixel_env


def timed_steps(env, actions: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    for action in actions:
        frame = env.step(action)[0]
    return time.perf_counter() - start, frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="cube-single-play")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()} | MUJOCO_GL={os.environ.get('MUJOCO_GL')} | load {os.getloadavg()[0]:.1f}")
    modes = ("full", "light")
    made = {mode: make_pixel_env(args.env, render=mode) for mode in modes}
    for env in made.values():
        env.reset(seed=0)
    rng = np.random.default_rng(0)
    shape = made["full"].action_space.shape
    seconds = dict.fromkeys(modes, 0.0)
    frames = {}
    for _ in range(args.rounds):
        actions = rng.uniform(-1, 1, size=(args.steps, *shape)).astype(np.float32)
        for mode in modes:
            spent, frames[mode] = timed_steps(made[mode], actions)
            seconds[mode] += spent
    steps = args.steps * args.rounds
    for mode in modes:
        print(f"{mode:>5}: {steps / seconds[mode]:6.1f} steps/s ({steps} steps, 64 x 64, 3 frames stacked)")
    difference = np.abs(frames["light"].astype(float) - frames["full"].astype(float)).mean()
    print(f"light / full: {seconds['full'] / seconds['light']:.2f}x | mean |difference| of the last frames "
          f"{difference:.2f} / 255 | load {os.getloadavg()[0]:.1f}")
    for env in made.values():
        env.close()  # before interpreter exit tears down EGL under the renderers


if __name__ == "__main__":
    main()
