"""The zero-shot RL loop: `ZeroShotAlgorithm` (offline updates through RLlib's learners) and
`train_zero_shot(payload)`, budgeted, logged, checkpointed and evaluated like `train.train_loop`."""
from __future__ import annotations

import gc
import json
import math
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.metrics import LEARNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.tune.registry import register_env

from envs.offline import OfflineRLData
from orchestrator import registry
from orchestrator.budget import plan_run, reuse_step_flops
from orchestrator.config import from_plain, to_plain
from orchestrator.optim import lr_at
from orchestrator.rl.data import (
    TransitionPreLearner,
    frames_input,
    load_rl_data,
    offline_data_options,
    offline_input,
    rl_spec,
)
from orchestrator.rl.evaluate import (
    EVAL_ENV,
    evaluate_zero_shot,
    evaluation_tasks,
    make_eval_env,
    zero_shot_evaluation,
)
from orchestrator.rl.frames import FrameRLData
from orchestrator.rl.learner import ZeroShotLearner
from orchestrator.rl.module import ZeroShotRLModule
from orchestrator.rl.policy_module import env_recipe
from orchestrator.runs import RunRecorder, check_finite, local_checkpoint_dir
from orchestrator.session import make_session
from variants.base import DataSpec, Variant


class ZeroShotConfig(AlgorithmConfig):
    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or ZeroShotAlgorithm)
        self.zero_shot_eval = {"tasks": [], "episodes": 0}  # set by `build_algorithm`

    def get_default_rl_module_spec(self):
        return RLModuleSpec(module_class=ZeroShotRLModule)

    def get_default_learner_class(self):
        return ZeroShotLearner


class ZeroShotAlgorithm(Algorithm):
    """One training step = `dataset_num_iters_per_learner` learner updates, each on a batch
    that ray.data's iterator (RLlib's `OfflineData`) hands the learner directly: RLlib's
    per-iteration bookkeeping is paid once for all of them (measured in bench/rl_update.py)."""

    @classmethod
    def get_default_config(cls) -> AlgorithmConfig:
        return ZeroShotConfig()

    def training_step(self) -> None:
        config = self.config
        updates = int(config.dataset_num_iters_per_learner)
        iterators = self.offline_data.sample(num_samples=config.train_batch_size_per_learner,
                                             num_shards=config.num_learners, return_iterator=True)
        self.metrics.log_value(NUM_ENV_STEPS_SAMPLED_LIFETIME,
                               updates * config.train_batch_size_per_learner * max(1, config.num_learners),
                               reduce="lifetime_sum")
        results = self.learner_group.update(training_data=TrainingData(data_iterators=iterators),
                                            minibatch_size=config.train_batch_size_per_learner,
                                            num_iters=updates, **self.offline_data.iter_batches_kwargs)
        self.metrics.aggregate(results, key=LEARNER_RESULTS)


MAX_UPDATES_PER_ITERATION = 100


def updates_per_iteration(cfg, steps: int, start: int = 0) -> int:
    """Updates per `Algorithm.train()`: as many as possible (≤ 100) while every log, checkpoint,
    evaluation, resume point and the last step still fall on an iteration boundary."""
    every = [int(cfg.train.log_every), int(cfg.train.checkpoint_every), int(cfg.train.eval_every or 0), steps, start]
    return math.gcd(MAX_UPDATES_PER_ITERATION, *every)


def build_algorithm(cfg, data: OfflineRLData, spec: DataSpec, updates: int = 1, total_steps: int = 1,
                    start_step: int = 0) -> Algorithm:
    """An RLlib algorithm config from the run config: learners (told the run's planned steps, for
    schedules and `after_step`), offline input, evaluation."""
    workers, use_gpu = int(cfg.train.num_workers), bool(cfg.train.use_gpu)
    env_config = env_recipe(data.env_maker, data.env_kwargs, cfg)
    register_env(EVAL_ENV, make_eval_env)
    config = (
        ZeroShotConfig()
        .environment(env=EVAL_ENV, env_config=env_config,
                     observation_space=observation_space(data),
                     action_space=gym.spaces.Box(-1.0, 1.0, (data.action_dim,), np.float32))
        .framework("torch")
        .training(lr=float(cfg.optim.lr), train_batch_size_per_learner=int(cfg.train.batch_size),
                  grad_clip=float(cfg.optim.grad_clip) if cfg.optim.grad_clip > 0 else None)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=ZeroShotRLModule,
                                               model_config={"run": to_plain(cfg), "inputs": dict(spec.inputs),
                                                             "frames": frames_input(data, cfg.data)}))
        .learners(num_learners=0 if workers == 1 else workers, num_gpus_per_learner=1 if use_gpu else 0,
                  num_cpus_per_learner=int(cfg.train.cpus_per_worker) if workers > 1 else 1,
                  learner_config_dict={"run": to_plain(cfg), "total_steps": int(total_steps), "start_step": int(start_step)})
        .offline_data(prelearner_class=TransitionPreLearner,
                      **offline_data_options(offline_input(data, cfg.data), len(data), updates, int(cfg.seed)))
        .env_runners(num_env_runners=0)
        .evaluation(evaluation_interval=10**9,  # never on its own: the trainer calls evaluate()
                    evaluation_num_env_runners=int(cfg.eval.get("env_runners", 0)),
                    custom_evaluation_function=zero_shot_evaluation)
        .debugging(seed=int(cfg.seed))
    )
    config.zero_shot_eval = {"tasks": evaluation_tasks(data, cfg), "episodes": int(cfg.eval.episodes)}
    return config.build_algo()


def observation_space(data: OfflineRLData) -> gym.spaces.Box:
    """State vectors, or (pixel data) uint8 frame stacks as the evaluation env renders them."""
    if isinstance(data, FrameRLData):
        return gym.spaces.Box(0, 255, data.observation_shape, np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, (data.observation_dim,), np.float32)


def learner_metrics(result: dict) -> dict[str, float]:
    module = result.get(LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {})
    keep = {}
    for key, value in module.items():
        if isinstance(value, (int, float, np.floating)) and not key.startswith(("num_", "module_train_batch")):
            keep[key] = float(value)
    return keep


def train_zero_shot(payload: dict, variant: Variant | None = None) -> dict:
    """Train one zero-shot run through RLlib until its FLOP/step budget, then evaluate.

    `variant`: the run's instance, when built in this process (planning reuses it if its data spec
    matches the loaded data's); the learners build their own inside their RLModules.
    """
    entered = time.perf_counter()
    cfg, run_id = from_plain(payload["config"]), payload["run_id"]
    reuse_step_flops(payload.get("step_flops", ()))
    session = make_session(payload.get("session", "local"))
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))  # as the trainer does: threads = reserved CPUs
    torch.manual_seed(int(cfg.seed))
    data = load_rl_data(cfg)
    spec = rl_spec(data)
    reuse = variant if variant is not None and variant.data_spec == spec else None
    (plan,) = plan_run(registry.variant(cfg.variant.name), cfg, spec, reuse)
    recorder = RunRecorder(cfg, run_id, session)
    own_checkpoints = local_checkpoint_dir(cfg, run_id) if session.kind == "local" else None
    with session.restored_checkpoint() as path:
        path = path or (own_checkpoints if own_checkpoints and (own_checkpoints / PROGRESS).is_file() else None)
        start_step = json.loads((Path(path) / PROGRESS).read_text())["step"] if path is not None else 0
        updates = updates_per_iteration(cfg, plan.steps, start_step)
        algo = build_algorithm(cfg, data, spec, updates, plan.steps, start_step)
        if path is not None:
            algo.restore_from_path(str(Path(path) / "algorithm"))
    started = time.perf_counter()
    timing = {"setup_s": started - entered, "train_s": 0.0, "eval_s": 0.0}
    window_start, window_steps = time.perf_counter(), 0
    try:
        for step in range(start_step + updates - 1, plan.steps, updates):  # `step + 1` updates done after this train()
            result = algo.train()
            window_steps += updates
            done = step + 1 == plan.steps
            log_now = (step + 1) % cfg.train.log_every == 0 or done
            ckpt_now = (step + 1) % cfg.train.checkpoint_every == 0 or done
            eval_now = done or (cfg.train.eval_every and (step + 1) % cfg.train.eval_every == 0)
            if not (log_now or ckpt_now or eval_now):
                continue
            elapsed = time.perf_counter() - window_start
            timing["train_s"] += elapsed
            metrics = {"stage": "main", "step": step + 1, "flops_total": plan.flops_per_step * (step + 1),
                       "wall_s": time.perf_counter() - started, "lr": lr_at(cfg, step, plan.steps),
                       "samples_per_s": window_steps * cfg.train.batch_size * max(1, int(cfg.train.num_workers)) / max(elapsed, 1e-9)}
            metrics.update(learner_metrics(result))
            check_finite(metrics.get("loss", math.nan), cfg, "main", step + 1)  # before evaluating a broken policy
            if eval_now:
                eval_start = time.perf_counter()
                metrics.update(evaluate_zero_shot(algo))
                timing["eval_s"] += time.perf_counter() - eval_start
            metrics.update(timing)
            metrics["final"] = bool(done)

            def save(directory: Path, done_steps: int = step + 1) -> None:
                save_checkpoint(algo, directory, done_steps)
                if own_checkpoints is not None:
                    save_checkpoint(algo, own_checkpoints, done_steps)

            recorder.record(metrics, save if ckpt_now else None, force=eval_now)
            window_start, window_steps = time.perf_counter(), 0
    finally:
        recorder.close()
        stop(algo)
    return recorder.last



PROGRESS = "progress.json"


def save_checkpoint(algo: Algorithm, directory: Path, step: int) -> None:
    """RLlib's algorithm state (modules, optimizers, learner) and the step; the step file last,
    so a checkpoint interrupted half-way is never taken for a complete one."""
    (directory / PROGRESS).unlink(missing_ok=True)
    algo.save_to_path(str(directory / "algorithm"))
    (directory / PROGRESS).write_text(json.dumps({"step": step}))


def stop(algo: Algorithm) -> None:
    """Close ray.data's iterators while Ray is still up (else they complain at interpreter exit)."""
    if algo.offline_data is not None:
        algo.offline_data.batch_iterators = None
    learner = getattr(algo.learner_group, "_learner", None)
    if learner is not None:
        learner.iterator = None
    gc.collect()
    algo.stop()
