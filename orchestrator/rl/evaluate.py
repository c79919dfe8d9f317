"""Zero-shot evaluation on RLlib env runners: per task, infer z, set it, act greedily; mean and
standard error of returns (and success on goal tasks)."""
from __future__ import annotations

import math

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils.metrics import EVALUATION_RESULTS

from envs.offline import OfflineRLData

LABELLED_SAMPLES = 10_000  # reward-labelled transitions for zero-shot inference (the paper uses 250k at scale)


EVAL_ENV = "jepa_zero_shot_eval"


def make_eval_env(env_config: dict):
    """RLlib env creator: the dataset's env, built from the picklable recipe in env_config."""
    return env_config["maker"](**env_config.get("kwargs", {}))


def _set_env_task(runner, task):
    """Set the task on every sub-env of a runner's vector env; returns what each reports (goals)."""
    return runner.env.unwrapped.call("set_task", task)


def evaluate_on_runner(runner, tasks: list[dict], episodes: int) -> dict[str, list[float]]:
    """Zero-shot protocol on one RLlib env runner: infer z per task, then act greedily."""
    module = runner.module
    results: dict[str, list[float]] = {}
    for task in tasks:
        goals = _set_env_task(runner, task["name"])
        if task["kind"] == "goal":
            z = module.infer_goal_task(np.asarray(goals[0]))
        else:
            z = module.infer_reward_task(task["next_observation"], task["reward"])
        module.set_task(z)
        # `sample(num_episodes=)` reseeds the envs (seed + runner index + 1e6) each call: every
        # task and evaluation starts from the same states, so a score follows from weights and seed
        sampled = runner.sample(num_episodes=episodes, explore=False, force_reset=True)[:episodes]
        returns = [float(episode.get_return()) for episode in sampled]
        results.setdefault("env_steps", []).append(float(sum(len(episode) for episode in sampled)))
        results[f"{task['name']}/return"] = returns
        if task["kind"] == "goal":  # OGBench: reward 1 on reaching the goal, episode ends there
            results[f"{task['name']}/success"] = [float(r > 0) for r in returns]
    return results


def zero_shot_evaluation(algo: Algorithm, eval_runners) -> dict:
    """RLlib `custom_evaluation_function`: per-task returns (and success) of the zero-shot policy."""
    setup = algo.config.zero_shot_eval
    runners = max(1, eval_runners.num_remote_env_runners())
    per_runner = math.ceil(setup["episodes"] / runners)
    parts = eval_runners.foreach_env_runner(
        lambda runner: evaluate_on_runner(runner, setup["tasks"], per_runner),
        local_env_runner=eval_runners.num_remote_env_runners() == 0)
    merged: dict[str, list[float]] = {}
    for part in parts:
        for key, values in part.items():
            merged.setdefault(key, []).extend(values)
    env_steps = int(sum(merged.pop("env_steps", [])))
    summary = summarize(merged)
    for key, value in summary.items():  # so `Algorithm.evaluate()` and Tune show them too
        algo.metrics.log_value((EVALUATION_RESULTS, key), value, window=1)
    return summary, env_steps, env_steps


def evaluate_zero_shot(algo: Algorithm) -> dict[str, float]:
    """Push the learner's weights to the evaluation env runners, then run the protocol."""
    runners = algo.eval_env_runner_group
    runners.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True)
    return zero_shot_evaluation(algo, runners)[0]


def summarize(per_episode: dict[str, list[float]]) -> dict[str, float]:
    """Mean and standard error per task, and the mean over tasks (`score`: success if any, else return)."""
    out: dict[str, float] = {}
    for key, values in per_episode.items():
        values = np.asarray(values, np.float64)
        out[f"eval/{key}"] = float(values.mean())
        out[f"eval/{key}_se"] = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    kind = "success" if any(k.endswith("/success") for k in per_episode) else "return"
    task_means = [out[f"eval/{k}"] for k in per_episode if k.endswith(f"/{kind}")]
    out[f"eval/{kind}_mean"] = float(np.mean(task_means))
    out["score"] = out[f"eval/{kind}_mean"]
    return out


def evaluation_tasks(data: OfflineRLData, cfg) -> list[dict]:
    """What each runner needs per task: its name and kind, and for reward tasks the labelled samples."""
    wanted = list(cfg.eval.get("tasks") or data.tasks)
    unknown = sorted(set(wanted) - set(data.tasks))
    if unknown:
        raise ValueError(f"eval.tasks names {unknown}, unknown for data {cfg.data.name!r}. Fix: use some of {list(data.tasks)}")
    tasks = []
    for name in wanted:
        task = {"name": name, "kind": data.task_kind}
        if data.task_kind == "reward":
            task["next_observation"], task["reward"] = data.labelled(name, LABELLED_SAMPLES, int(cfg.seed))
        tasks.append(task)
    return tasks
