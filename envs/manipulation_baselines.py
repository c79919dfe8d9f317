"""The reference lines of an imitation result on an OGBench env's 5 evaluation goals: a uniformly
random policy (the floor) and the oracle that made the demos (noise-free, and at the demos' noise:
the ceiling a policy imitating them can reach). Episodes are seeded (`seed * 1000 + e`), goals
included (envs.manipulation.seed_action_space), so the lines are the same on every machine.

    python -m envs.manipulation_baselines [--episodes 10] [--env cube-single|puzzle-3x3]
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np

from envs.manipulation import NUM_TASKS, SUPPORTED, DemoConfig, collect, make_goal_env

warnings.filterwarnings("ignore", message=".*precision lowered")


def random_success(episodes: int, env_name: str = "cube-single", seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    out = []
    for task in range(1, NUM_TASKS + 1):
        env = make_goal_env(env_name, task)
        wins = 0
        for e in range(episodes):
            env.reset(seed=seed * 1000 + e)
            done, success = False, False
            while not done:
                _, _, term, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
                success, done = success or info["success"], term or trunc
            wins += success
        out.append(wins / episodes)
        env.close()
    return out


def oracle_success(episodes: int, noise: float, p_random: float, env_name: str = "cube-single") -> list[float]:
    cfg = DemoConfig(env_name=env_name, noise=noise, p_random=p_random, seed=123)  # seeds unlike any demo's
    eps = collect(cfg, "val", [(i, noise, True) for i in range(episodes * NUM_TASKS)])
    return [float(np.mean([e.success for e in eps if e.task_id == t])) for t in range(1, NUM_TASKS + 1)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="random-policy and oracle success on the 5 evaluation goals")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per goal")
    parser.add_argument("--env", default="cube-single", choices=SUPPORTED)
    args = parser.parse_args(argv)
    n, env = args.episodes, args.env
    for name, per_goal in (("random policy", random_success(n, env)),
                           ("oracle, noise-free", oracle_success(n, 0.0, 0.0, env)),
                           ("oracle, demo noise (0.1, p_random 0.05)", oracle_success(n, 0.1, 0.05, env))):
        print(f"{name}: mean {np.mean(per_goal):.3f}  per goal {[round(s, 2) for s in per_goal]}")


if __name__ == "__main__":
    main()
