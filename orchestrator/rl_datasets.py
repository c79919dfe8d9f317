"""Offline RL dataset entries: ExoRL-style dm_control data and OGBench data, made locally.

Names follow `exorl_<domain>_<policy>` (e.g. `exorl_walker_rnd`) and `ogbench_<dataset>`
(e.g. `ogbench_cube_single_play`). Every node also takes `path=` to read a dataset the user
already has (an ExoRL buffer directory or an OGBench .npz) instead of generating one.
"""
from __future__ import annotations

from functools import cache, partial
from pathlib import Path

import numpy as np

from envs import exorl, ogbench
from envs.dmc_gym import DMCTaskEnv
from envs.offline import TRANSITION_KEYS, OfflineRLData, with_future
from orchestrator.datasets import (
    MissingDatasetError,
    _generator_config,
    _root,
    data_node,
)
from orchestrator.registry import DatasetEntry
from variants.base import DataSpec

FUTURE_DISCOUNT = 0.98  # goals for training z's: next states at a geometric offset (mean 50 steps)
RL_KEYS = (*TRANSITION_KEYS, "episode")


def user_path(cfg) -> Path | None:
    """`data.path`, checked: a clear error names the key and the fix when it does not exist."""
    if not cfg.get("path"):
        return None
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise MissingDatasetError(
            f"data.path: no such file or directory {str(path)!r}. Fix: point data.path at your dataset, "
            f"or drop data.path to generate {cfg.name!r} locally (`jepa data make {cfg.name}`)")
    return path


def rl_spec_from_env(env) -> DataSpec:
    """Shapes from the evaluation env, so specs (and FLOP plans) need no data on disk."""
    obs, act = tuple(env.observation_space.shape), tuple(env.action_space.shape)
    env.close()
    inputs = {"observation": obs, "action": act, "next_observation": obs, "future_observation": obs}
    return DataSpec(kind="rl", inputs=inputs)


# ---------------------------------------------------------------------------- ExoRL / dm_control
def _exploration(cfg) -> exorl.ExplorationConfig:
    return _generator_config(exorl.ExplorationConfig, cfg)


def prepare_exorl(cfg) -> str:
    return str(user_path(cfg) or exorl.collect(_exploration(cfg), _root(cfg)))


def exorl_spec(cfg) -> DataSpec:
    return _dmc_spec(cfg.domain)


@cache  # sweeps ask once per trial; building a MuJoCo env each time adds up
def _dmc_spec(domain: str) -> DataSpec:
    return rl_spec_from_env(DMCTaskEnv(domain, max_episode_steps=1))


def load_exorl(cfg, split: str) -> OfflineRLData:
    """Transitions (with future states for goal sampling) and per-task rewards from physics."""
    exploration = _exploration(cfg)
    path = user_path(cfg) or exorl.collect(exploration, _root(cfg))
    flat = exorl.load_exorl(path, domain=cfg.domain)
    transitions = with_future({k: flat[k] for k in ("observation", "action", "next_observation", "episode")},
                              FUTURE_DISCOUNT, exploration.seed)
    return OfflineRLData(
        transitions=transitions,
        tasks=tuple(exorl.TASKS[cfg.domain]),
        task_kind="reward",
        env_maker=DMCTaskEnv,
        env_kwargs={"domain": cfg.domain},
        rewards=partial(_relabelled, cfg.domain, flat["next_physics"]),
    )


def _relabelled(domain: str, next_physics: np.ndarray, task: str, rows: np.ndarray) -> np.ndarray:
    """The task's reward on arriving in each row's next state, recomputed from physics."""
    return exorl.relabel({"physics": next_physics[rows]}, domain, task)[:, 0]


def exorl_entries() -> list[DatasetEntry]:
    entries = []
    for domain in exorl.DOMAINS:
        for policy in exorl.POLICIES:
            name = f"exorl_{domain}_{policy}"
            node = data_node(name, exorl.ExplorationConfig, domain=domain, policy=policy, num_episodes=20)
            entries.append(DatasetEntry(
                name, with_path(node),
                f"dm_control {domain}: reward-free {policy} exploration in ExoRL's layout; tasks {list(exorl.TASKS[domain])}",
                prepare_exorl, exorl_spec, load_exorl))
    return entries


def with_path(node: type) -> type:
    """Add `path: str | None = None` (a dataset the user already has) to a data node."""
    import dataclasses

    return dataclasses.make_dataclass(node.__name__, [("path", "str | None", dataclasses.field(default=None))], bases=(node,))


# ---------------------------------------------------------------------------- OGBench
def _ogbench(cfg) -> ogbench.OGBenchDataConfig:
    return _generator_config(ogbench.OGBenchDataConfig, cfg)


def prepare_ogbench(cfg) -> str:
    return str(user_path(cfg) or ogbench.generate(_ogbench(cfg), _root(cfg)))


def ogbench_spec(cfg) -> DataSpec:
    return _ogbench_spec(cfg.env_name)


@cache
def _ogbench_spec(env_name: str) -> DataSpec:
    return rl_spec_from_env(ogbench.make_env(env_name))


def load_ogbench(cfg, split: str) -> OfflineRLData:
    path = user_path(cfg) or ogbench.generate(_ogbench(cfg), _root(cfg))
    flat = ogbench.load_ogbench(path)
    transitions = with_future({k: flat[k] for k in ("observation", "action", "next_observation", "episode")},
                              FUTURE_DISCOUNT, int(cfg.seed))
    tasks = tuple(f"{ogbench.TASK_PREFIX}{i}" for i in range(1, ogbench.NUM_TASKS + 1))
    return OfflineRLData(transitions=transitions, tasks=tasks, task_kind="goal",
                         env_maker=ogbench.make_env, env_kwargs={"env_name": cfg.env_name})


def ogbench_entries() -> list[DatasetEntry]:
    entries = []
    for env_name in ogbench.SUPPORTED:
        name = "ogbench_" + env_name.replace("-", "_")
        node = with_path(data_node(name, ogbench.OGBenchDataConfig, env_name=env_name))
        entries.append(DatasetEntry(
            name, node, f"OGBench {env_name}: made locally with OGBench's scripted oracles; 5 goal tasks",
            prepare_ogbench, ogbench_spec, load_ogbench))
    return entries
