"""RLlib bridge: zero-shot agents (TD-JEPA, FB) trained and evaluated on RLlib's new API stack.

The networks and losses stay plain torch in `variants/`; this module only hosts them:

* `ZeroShotRLModule` (TorchRLModule) owns a variant's `build("main")` networks and the
  task vector z (a buffer, so it travels with weights to env runners and checkpoints).
  The loss is computed in `_forward_train`: under several learners RLlib wraps the module
  in DDP, and only a forward through that wrapper synchronises gradients.
* `ZeroShotLearner` (TorchLearner) returns that loss, logs the variant's other scalars, and
  moves the EMA targets after each update.
* `ZeroShotAlgorithm` samples transitions through RLlib's offline API (`OfflineData`, a
  ray.data pipeline over a Parquet file written once per dataset) and updates the learners.
* Zero-shot evaluation is RLlib's `custom_evaluation_function`: on each evaluation env
  runner, per task, z is inferred (reward-labelled samples, or the goal the env reports),
  set on the runner's module, and episodes are sampled without exploration noise.

`train_zero_shot(cfg, run_id, session_kind)` is the RL counterpart of `train.train_loop`:
same FLOP budget, results store, reports and NaN checks, with RLlib doing the updates.

A run is a function of `cfg.seed` on CPU, bit for bit: initial weights (`ZeroShotRLModule.setup`),
batches (ray.data blocks in file order, a local shuffle reseeded per epoch by `EpochSeededIterator`),
the variant's noise (its own generator) and evaluation (RLlib reseeds the env runners on every
`sample(num_episodes=)`). What is left is float arithmetic: a different thread count
(`train.cpus_per_worker`) or CPU sums in another order, which moved a loss by ~3e-7 after 30 updates
and grows from there; GPU kernels are not made deterministic.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import ray
import torch
from omegaconf import OmegaConf
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.offline.offline_data import OfflineData
from ray.rllib.offline.offline_prelearner import OfflinePreLearner
from ray.rllib.utils.metrics import (
    EVALUATION_RESULTS,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
)
from ray.tune.registry import register_env

from envs.offline import TRANSITION_KEYS, OfflineRLData
from envs.video import data_root
from orchestrator import registry
from orchestrator.budget import plan_run, reuse_step_flops
from orchestrator.config import from_plain, to_plain
from orchestrator.metrics import DashboardGauges
from orchestrator.results import ResultsStore
from orchestrator.session import checkpoint_dir, make_session
from orchestrator.train import check_finite, metric_rows
from variants.base import DataSpec

# Variant batch key -> column of the offline Parquet file (RLlib's names where it has one).
COLUMNS = {"observation": Columns.OBS, "action": Columns.ACTIONS, "next_observation": Columns.NEXT_OBS,
           "future_observation": "future_obs"}
LABELLED_SAMPLES = 10_000  # reward-labelled transitions for zero-shot inference (the paper uses 250k at scale)
SHUFFLE_BUFFER = 100_000  # rows mixed before batching: offline RL wants i.i.d. transitions


# ---------------------------------------------------------------------------- data
def rl_spec(data: OfflineRLData) -> DataSpec:
    """The shapes a variant sizes its networks from, and the FLOP tracer's shape-only batch."""
    return DataSpec(kind="rl", inputs={key: tuple(data.transitions[key].shape[1:]) for key in TRANSITION_KEYS})


def offline_input(data: OfflineRLData, data_cfg) -> str:
    """The dataset's transitions as one Parquet file (ray.data tensor columns), written once.

    Keyed by the data config, the source files' stamp and the rows themselves, so every run and
    trial on the same data reads the same file, and a rewritten `data.path` gets a new one.
    """
    from orchestrator.rl_datasets import cache_key

    path = data_root() / "offline_input" / f"{data_cfg.name}-{cache_key(data, data_cfg)}.parquet"
    if path.is_file():
        print(f"offline input: reusing {path} (same data config, files and rows)", file=sys.stderr)
    else:
        write_parquet({COLUMNS[k]: data.transitions[k] for k in TRANSITION_KEYS}, path)
    return str(path)


def write_parquet(columns: dict[str, np.ndarray], path: Path) -> None:
    """Arrays as Parquet columns (ray.data's tensor type for 2-D ones), atomically: concurrent
    trials may both write the same file, and readers never see half of one."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.data.extensions import ArrowTensorArray

    def column(values: np.ndarray):
        values = np.ascontiguousarray(values)
        return ArrowTensorArray.from_numpy(values.astype(np.float32)) if values.ndim > 1 else pa.array(values)

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{time.monotonic_ns()}.tmp")
    pq.write_table(pa.table({name: column(values) for name, values in columns.items()}), partial)
    partial.replace(path)


class InProcessOfflineData(OfflineData):
    """RLlib's OfflineData over the Parquet file read in this process (`ray.data.from_arrow`).

    `read_parquet` lists files in a ray.data task that needs a whole CPU, and a Tune trial
    already holds its CPUs: with every CPU in trials, that task would wait for ever.
    """

    def __init__(self, config):
        super().__init__(config)  # its read_parquet plan is lazy and never runs
        import pyarrow.parquet as pq

        ray.data.DataContext.get_current().enable_progress_bars = False  # one bar per epoch floods trial logs
        self.data = ray.data.from_arrow(pq.read_table(self.path[0]))
        # blocks in file order, not in the order workers finish them: a fixed seed, the same batches
        self.data.context.execution_options.preserve_order = True

    def sample(self, num_samples: int, return_iterator: bool = False, num_shards: int = 1, module_state=None):
        """RLlib's `sample`, with each learner's iterator reshuffled per epoch from the seed."""
        out = super().sample(num_samples, return_iterator=return_iterator, num_shards=num_shards,
                             module_state=module_state)
        if not return_iterator:
            return out
        return [EpochSeededIterator(it, shard, self.iter_batches_kwargs) for shard, it in enumerate(out)]


class EpochSeededIterator:
    """One learner's ray.data iterator whose every pass (epoch) is locally shuffled with a seed
    drawn from (`local_shuffle_seed`, shard, epoch).

    RLlib's learners call `iter_torch_batches` once and iterate the result once per epoch, so
    ray.data's own `local_shuffle_seed` would repeat the same batches every epoch, and without
    one the shuffle comes from OS entropy (no two runs alike). `defaults` are the run's
    `iter_batches_kwargs`: CQL's `training_step` passes none, and would not shuffle at all.
    """

    def __init__(self, iterator, shard: int, defaults: dict | None = None):
        self.iterator, self.shard, self.epoch = iterator, shard, 0
        self.kwargs = self.defaults = dict(defaults or {})

    def iter_torch_batches(self, **kwargs):
        self.kwargs = {**self.defaults, **kwargs}
        return self

    def __iter__(self):
        seed = self.kwargs.get("local_shuffle_seed")
        if seed is not None:
            seed = int(np.random.SeedSequence([int(seed), self.shard, self.epoch]).generate_state(1)[0])
        self.epoch += 1
        return iter(self.iterator.iter_torch_batches(**{**self.kwargs, "local_shuffle_seed": seed}))


class TransitionPreLearner(OfflinePreLearner):
    """Rows are already transitions: pass them to the learner as they are.

    RLlib's default pre-learner rebuilds episodes and runs connectors; zero-shot agents
    need none of that (no rewards, no returns), only the four columns.
    """

    def __init__(self, *, config, spaces=None, module_state=None, **kwargs):  # no module: nothing to run
        self.config = config

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {f"{DEFAULT_MODULE_ID}/{column}": np.asarray(values, np.float32) for column, values in batch.items()}


# ---------------------------------------------------------------------------- module and learner
class ZeroShotRLModule(TorchRLModule):
    """A zero-shot agent's networks plus the current task vector z."""

    def setup(self):
        run = OmegaConf.create(self.model_config["run"])
        spec = DataSpec(kind="rl", inputs={key: tuple(shape) for key, shape in self.model_config["inputs"].items()})
        self.agent = registry.variant(run.variant.name)(run, spec)
        with torch.random.fork_rng(devices=[]):  # initial weights from the run's seed alone, whatever RLlib drew before
            torch.manual_seed(int(run.seed))
            self.nets = self.agent.build("main")
        self.register_buffer("task", torch.zeros(1, self.agent.task_dim))

    def set_task(self, z: torch.Tensor) -> None:
        self.task.copy_(z.reshape(1, -1).to(self.task))

    @torch.no_grad()
    def infer_reward_task(self, next_observations: np.ndarray, rewards: np.ndarray) -> torch.Tensor:
        return self.agent.infer_task(self.nets, self._tensor(next_observations), self._tensor(rewards))

    @torch.no_grad()
    def infer_goal_task(self, goal: np.ndarray) -> torch.Tensor:
        return self.agent.infer_goal(self.nets, self._tensor(goal).reshape(1, -1))[0]

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=torch.float32, device=self.task.device)

    def _forward_inference(self, batch, **kwargs):
        return {Columns.ACTIONS: self.agent.act(self.nets, batch[Columns.OBS].float(), self.task)}

    def _forward_exploration(self, batch, **kwargs):
        return self._forward_inference(batch)

    def _forward_train(self, batch, **kwargs):
        """The variant's loss (see the module docstring for why it lives in forward)."""
        return self.agent.step(self.nets, {key: batch[col] for key, col in COLUMNS.items() if col in batch}, "main")


class ZeroShotLearner(TorchLearner):
    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        """Adam over trainable weights only: the EMA targets are frozen copies."""
        module = self._module[module_id].unwrapped()
        params = [p for p in module.nets.parameters() if p.requires_grad]
        self.register_optimizer(module_id=module_id, optimizer=torch.optim.Adam(params), params=params,
                                lr_or_lr_schedule=config.lr)

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        for key, value in fwd_out.items():
            self.metrics.log_value((module_id, key), value.detach().float().item(), window=1)
        return fwd_out["loss"]

    def apply_gradients(self, gradients_dict) -> None:
        """The optimizer step, then the EMA targets: once per update, however many updates
        one `Learner.update` call runs."""
        super().apply_gradients(gradients_dict)
        for module_id in self.module.keys():  # noqa: SIM118 (a MultiRLModule, not a dict)
            module = self.module[module_id].unwrapped()
            module.agent.after_step(module.nets, 0, 0, "main")


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


# ---------------------------------------------------------------------------- evaluation
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


# ---------------------------------------------------------------------------- building
def load_rl_data(cfg) -> OfflineRLData:
    data = registry.dataset(cfg.data.name).load(cfg.data, "train")
    if not isinstance(data, OfflineRLData):
        raise TypeError(f"data {cfg.data.name!r} is not an offline RL dataset; variant {cfg.variant.name!r} needs one")
    return data


def offline_data_options(path: str, rows: int, updates: int = 1, seed: int | None = None) -> dict:
    """`AlgorithmConfig.offline_data` settings every RLlib-hosted run shares (ours and RLlib's own).

    `seed` fixes the local shuffle (None: OS entropy), so a run's batches follow from its seed.
    """
    return {
        "input_": [path],
        "offline_data_class": InProcessOfflineData,
        "dataset_num_iters_per_learner": updates,
        # one pre-learner actor, no CPU reserved: a Tune trial holds its CPUs already
        "map_batches_kwargs": {"concurrency": 1, "num_cpus": 0},
        # mapped once, then every epoch is a shuffled pass over object-store blocks
        "materialize_mapped_data": True,
        "iter_batches_kwargs": {"prefetch_batches": 2, "drop_last": True,
                                "local_shuffle_buffer_size": min(rows, SHUFFLE_BUFFER), "local_shuffle_seed": seed},
    }


def build_algorithm(cfg, data: OfflineRLData, spec: DataSpec, updates: int = 1) -> Algorithm:
    """An RLlib algorithm config from the run config: learners, offline input, evaluation."""
    workers, use_gpu = int(cfg.train.num_workers), bool(cfg.train.use_gpu)
    env_kwargs = dict(data.env_kwargs)
    if cfg.eval.episode_length > 0:
        env_kwargs["max_episode_steps"] = int(cfg.eval.episode_length)
    env_config = {"maker": data.env_maker, "kwargs": env_kwargs}
    register_env(EVAL_ENV, make_eval_env)
    config = (
        ZeroShotConfig()
        .environment(env=EVAL_ENV, env_config=env_config,
                     observation_space=gym.spaces.Box(-np.inf, np.inf, (data.observation_dim,), np.float32),
                     action_space=gym.spaces.Box(-1.0, 1.0, (data.action_dim,), np.float32))
        .framework("torch")
        .training(lr=float(cfg.optim.lr), train_batch_size_per_learner=int(cfg.train.batch_size),
                  grad_clip=float(cfg.optim.grad_clip) if cfg.optim.grad_clip > 0 else None)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=ZeroShotRLModule,
                                               model_config={"run": to_plain(cfg), "inputs": dict(spec.inputs)}))
        .learners(num_learners=0 if workers == 1 else workers, num_gpus_per_learner=1 if use_gpu else 0,
                  num_cpus_per_learner=int(cfg.train.cpus_per_worker) if workers > 1 else 1)
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


# ---------------------------------------------------------------------------- the loop
def learner_metrics(result: dict) -> dict[str, float]:
    module = result.get(LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {})
    keep = {}
    for key, value in module.items():
        if isinstance(value, (int, float, np.floating)) and not key.startswith(("num_", "module_train_batch")):
            keep[key] = float(value)
    return keep


def train_zero_shot(payload: dict) -> dict:
    """Train one zero-shot run through RLlib until its FLOP/step budget, then evaluate."""
    entered = time.perf_counter()
    cfg, run_id = from_plain(payload["config"]), payload["run_id"]
    reuse_step_flops(payload.get("step_flops", ()))
    session = make_session(payload.get("session", "local"))
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))  # as the trainer does: threads = reserved CPUs
    torch.manual_seed(int(cfg.seed))
    data = load_rl_data(cfg)
    spec = rl_spec(data)
    (plan,) = plan_run(registry.variant(cfg.variant.name), cfg, spec)
    recorder = RunRecorder(cfg, run_id, session)
    own_checkpoints = local_checkpoint_dir(cfg, run_id) if session.kind == "local" else None
    with session.restored_checkpoint() as path:
        path = path or (own_checkpoints if own_checkpoints and (own_checkpoints / PROGRESS).is_file() else None)
        start_step = json.loads((Path(path) / PROGRESS).read_text())["step"] if path is not None else 0
        updates = updates_per_iteration(cfg, plan.steps, start_step)
        algo = build_algorithm(cfg, data, spec, updates)
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
                       "wall_s": time.perf_counter() - started, "lr": float(cfg.optim.lr),
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


class RunRecorder:
    """What an RLlib-hosted run does with each logged step: dashboard gauges, long-format rows in
    the results store, and rate-limited reports to Ray (with a checkpoint when `save` is given).

    Rows are stored before reporting: Tune may stop the trial inside `report`.
    """

    def __init__(self, cfg, run_id: str, session):
        self.cfg, self.run_id, self.session = cfg, run_id, session
        self.store = ResultsStore(cfg.storage)
        self.gauges = DashboardGauges(cfg.sweep, session.trial_name, cfg.variant.name)
        self.rows: list[dict] = []
        self.last: dict = {}
        self.last_report = time.perf_counter()

    def record(self, metrics: dict, save=None, force: bool = False) -> None:
        self.gauges.publish(metrics)
        self.rows.extend(metric_rows(metrics))
        self.last = metrics
        if save is None and not force and time.perf_counter() - self.last_report < self.cfg.train.report_interval_s:
            return
        with contextlib.ExitStack() as stack:
            ckpt_path = None
            if save is not None:
                ckpt_path = stack.enter_context(checkpoint_dir())
                save(Path(ckpt_path))
            self.store.append_metrics(self.run_id, self.cfg.sweep, self.rows)
            self.rows = []
            self.session.report(metrics, ckpt_path)
        self.last_report = time.perf_counter()

    def close(self) -> None:
        """Store rows not yet reported (a failing run keeps everything it logged)."""
        if self.rows:
            self.store.append_metrics(self.run_id, self.cfg.sweep, self.rows)
            self.rows = []


PROGRESS = "progress.json"


def local_checkpoint_dir(cfg, run_id: str) -> Path | None:
    """Where `jepa run --run-id` keeps an RL run's latest checkpoint (no Tune or Train to do it):
    beside Ray's other checkpoints, on local storage only."""
    from orchestrator.train import ray_storage_path

    root = ray_storage_path(cfg)
    return None if "://" in root else Path(root) / run_id / "rl_checkpoint"


def save_checkpoint(algo: Algorithm, directory: Path, step: int) -> None:
    """RLlib's algorithm state (modules, optimizers, learner) and the step; the step file last,
    so a checkpoint interrupted half-way is never taken for a complete one."""
    (directory / PROGRESS).unlink(missing_ok=True)
    algo.save_to_path(str(directory / "algorithm"))
    (directory / PROGRESS).write_text(json.dumps({"step": step}))


def stop(algo: Algorithm) -> None:
    """Close ray.data's iterators while Ray is still up (else they complain at interpreter exit)."""
    import gc

    if algo.offline_data is not None:
        algo.offline_data.batch_iterators = None
    learner = getattr(algo.learner_group, "_learner", None)
    if learner is not None:
        learner.iterator = None
    gc.collect()
    algo.stop()
