"""RLlib's own offline algorithms as references for zero-shot RL: BC, MARWIL, CQL, IQL.

Unlike TD-JEPA and FB, a reference sees rewards: it is trained per task on the same
transitions with that task's relabelled reward, then evaluated on that task through an
RLlib env runner. Networks, losses and learners are RLlib's defaults; this module only
writes the task's data in RLlib's offline column format and charges the run in FLOPs
(one real update measured with `FlopCounterMode`, since RLlib's losses cannot be traced
on the meta device).

Each is registered as a variant (`variant=cql variant.task=walk`) so sweep files treat
it like any other; those classes live in `orchestrator/rl/baseline_variants.py`, which does not
import RLlib, so only runs that train a reference import this module.
"""
from __future__ import annotations

import math
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.learner.training_data import TrainingData
from torch.utils.flop_counter import FlopCounterMode

from envs.cache import data_root
from envs.offline import OfflineRLData
from orchestrator.config import from_plain
from orchestrator.rl.baseline_variants import UPDATES_PER_ITERATION
from orchestrator.rl.data import load_rl_data, offline_data_options, write_parquet
from orchestrator.rl.datasets import cache_key
from orchestrator.rl.evaluate import EVAL_ENV, make_eval_env, summarize
from orchestrator.rl.loop import stop
from orchestrator.rl.policy_module import env_recipe
from orchestrator.runs import RunRecorder, check_finite
from orchestrator.session import make_session


# ---------------------------------------------------------------------------- data
def task_offline_input(data: OfflineRLData, data_cfg, task: str) -> str:
    """The dataset with `task`'s rewards in RLlib's column format (one-step episodes), written once."""
    path = data_root() / "offline_input" / f"{data_cfg.name}-{task}-{cache_key(data, data_cfg, task)}.parquet"
    if path.is_file():
        print(f"offline input: reusing {path} (same data config, files and rows)", file=sys.stderr)
    else:
        t = data.transitions
        rewards = data.rewards(task, np.arange(len(data)))
        episode_end = np.r_[t["episode"][1:] != t["episode"][:-1], True]
        columns = {"obs": t["observation"], "actions": t["action"], "new_obs": t["next_observation"],
                   "rewards": rewards.astype(np.float32), "terminateds": np.zeros(len(data), bool),
                   "truncateds": episode_end, "eps_id": np.arange(len(data), dtype=np.int64)}
        write_parquet(columns, path)
    return str(path)


# ---------------------------------------------------------------------------- building
def algorithm_config(cfg, data: OfflineRLData):
    """RLlib's config for the baseline, with our data, env and sizes."""
    from ray.rllib.algorithms.bc import BCConfig
    from ray.rllib.algorithms.cql import CQLConfig
    from ray.rllib.algorithms.iql import IQLConfig
    from ray.rllib.algorithms.marwil import MARWILConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.tune.registry import register_env

    v, task = cfg.variant, str(cfg.variant.task)
    if task not in data.tasks:
        raise ValueError(f"variant.task={task!r} is not a task of data {cfg.data.name!r}. Fix: use one of {list(data.tasks)}")
    if data.rewards is None:
        raise ValueError(f"data {cfg.data.name!r} states tasks as goals; RLlib references need reward tasks (ExoRL data)")
    configs = {"bc": BCConfig, "marwil": MARWILConfig, "cql": CQLConfig, "iql": IQLConfig}
    config = configs[v.name]()
    training = {"lr": float(cfg.optim.lr), "train_batch_size_per_learner": int(cfg.train.batch_size)}
    if v.name == "marwil":
        training["beta"] = float(v.beta)
    if v.name == "cql":
        training = {"actor_lr": float(cfg.optim.lr), "critic_lr": 3 * float(cfg.optim.lr), "alpha_lr": float(cfg.optim.lr),
                    "train_batch_size_per_learner": int(cfg.train.batch_size), "min_q_weight": float(v.min_q_weight),
                    "lr": None}
    if v.name == "iql":
        training = {"actor_lr": float(cfg.optim.lr), "critic_lr": float(cfg.optim.lr), "value_lr": float(cfg.optim.lr),
                    "train_batch_size_per_learner": int(cfg.train.batch_size), "expectile": float(v.expectile),
                    "lr": None}
    register_env(EVAL_ENV, make_eval_env)
    hiddens = [int(v.hidden)] * int(v.layers)
    config = (
        config.environment(env=EVAL_ENV, env_config=env_recipe(data.env_maker, dict(data.env_kwargs, task=task), cfg),
                           observation_space=gym.spaces.Box(-np.inf, np.inf, (data.observation_dim,), np.float32),
                           action_space=gym.spaces.Box(-1.0, 1.0, (data.action_dim,), np.float32))
        .framework("torch")
        .training(**training)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=hiddens, head_fcnet_hiddens=hiddens))
        .learners(num_learners=0, num_gpus_per_learner=1 if cfg.train.use_gpu else 0)
        .offline_data(**offline_data_options(task_offline_input(data, cfg.data, task), len(data),
                                             UPDATES_PER_ITERATION[v.name], int(cfg.seed)))
        .env_runners(num_env_runners=0)
        .evaluation(evaluation_interval=10**9, evaluation_num_env_runners=int(cfg.eval.get("env_runners", 0)),
                    evaluation_duration=int(cfg.eval.episodes), evaluation_duration_unit="episodes")
        .debugging(seed=int(cfg.seed))
        # one training_step per train(): CQL (as SAC) repeats it until a second has passed,
        # so its update count, hence its result, would depend on the machine's speed
        .reporting(min_time_s_per_iteration=0, min_train_timesteps_per_iteration=0,
                   min_sample_timesteps_per_iteration=0)
    )
    return config


def measured_update(algo) -> float:
    """Run the first update by hand under `FlopCounterMode` and return its FLOPs.

    RLlib's losses cannot be traced on the meta device, so the charge is a real update's count.
    """
    batch = algo.offline_data.sample(num_samples=algo.config.train_batch_size_per_learner, num_shards=0)
    with FlopCounterMode(display=False) as counter:
        algo.learner_group.update(training_data=TrainingData(batch=batch))
    return float(counter.get_total_flops())


# ---------------------------------------------------------------------------- the loop
def train_baseline(payload: dict) -> dict:
    """Train one RLlib reference on one task for `budget.steps` updates, then evaluate it."""
    entered = time.perf_counter()
    cfg, run_id = from_plain(payload["config"]), payload["run_id"]
    session = make_session(payload.get("session", "local"))
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    torch.manual_seed(int(cfg.seed))
    data = load_rl_data(cfg)
    algo = algorithm_config(cfg, data).build_algo()
    recorder = RunRecorder(cfg, run_id, session)
    task, steps = str(cfg.variant.task), int(cfg.budget.steps)
    flops_per_step = measured_update(algo)  # also the run's first update
    started = time.perf_counter()
    timing = {"setup_s": started - entered, "train_s": 0.0, "eval_s": 0.0}
    window_start, window_steps = time.perf_counter(), 0
    try:
        per_iteration, step = UPDATES_PER_ITERATION[cfg.variant.name], 1
        while step < steps:
            result = algo.train()
            step += per_iteration
            window_steps += per_iteration
            done = step >= steps
            if not (done or step % cfg.train.log_every < per_iteration):
                continue
            elapsed = time.perf_counter() - window_start
            timing["train_s"] += elapsed
            learner = result.get("learners", {}).get("default_policy", {})
            metrics = {"stage": "main", "step": step, "flops_total": flops_per_step * step,
                       "wall_s": time.perf_counter() - started,
                       "samples_per_s": window_steps * cfg.train.batch_size / max(elapsed, 1e-9)}
            metrics.update({k: float(v) for k, v in learner.items() if isinstance(v, (int, float, np.floating))
                            and k.endswith("loss")})
            metrics["loss"] = metrics.get("total_loss", metrics.get("policy_loss", math.nan))
            check_finite(metrics["loss"], cfg, "main", step)
            if done:
                eval_start = time.perf_counter()
                metrics.update(evaluate_on_task(algo, task))
                timing["eval_s"] += time.perf_counter() - eval_start
            metrics.update(timing)
            metrics["final"] = bool(done)
            save = (lambda directory: algo.save_to_path(str(directory / "algorithm"))) if done else None
            recorder.record(metrics, save)
            window_start, window_steps = time.perf_counter(), 0
    finally:
        recorder.close()
        stop(algo)
    return recorder.last


def evaluate_on_task(algo, task: str) -> dict[str, float]:
    """RLlib's own evaluation (env runners, no exploration) on the task's env: per-episode returns."""
    runners = algo.eval_env_runner_group
    runners.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True)
    episodes = int(algo.config.evaluation_duration)
    per_runner = math.ceil(episodes / max(1, runners.num_remote_env_runners()))
    parts = runners.foreach_env_runner(
        lambda runner: [float(e.get_return()) for e in runner.sample(num_episodes=per_runner, explore=False, force_reset=True)][:per_runner],
        local_env_runner=runners.num_remote_env_runners() == 0)
    returns = [r for part in parts for r in part]
    return summarize({f"{task}/return": returns})
