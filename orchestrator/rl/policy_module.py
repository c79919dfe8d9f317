"""Rollouts of a `Policy` variant (`act(modules, observation)`) on RLlib env runners.

`PolicyRLModule` holds the variant and its trained networks, handed over as objects in
`model_config` (each env runner gets its own copy: the host's modules are never touched), and
`_forward_inference` returns `act`'s actions. `rollout(...)` samples episodes on local or remote
env runners built from an env recipe (`{"maker", "kwargs"}`, as `make_eval_env` takes), with
RLlib's seeded resets (the same starts for every policy under one seed).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.env.env_runner_group import EnvRunnerGroup
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.tune.registry import register_env

from orchestrator.rl.evaluate import EVAL_ENV, make_eval_env, summarize


class PolicyRLModule(TorchRLModule):
    """A `Policy` variant's `act` on its trained networks, for sampling only (no training forward)."""

    def setup(self):
        self.agent = self.model_config["variant"]
        self.nets = self.model_config["modules"]
        self.nets.eval()

    @torch.no_grad()
    def _forward_inference(self, batch, **kwargs):
        device = next(iter(self.nets.parameters()), torch.empty(0)).device
        return {Columns.ACTIONS: self.agent.act(self.nets, batch[Columns.OBS].float().to(device)).cpu()}

    def _forward_exploration(self, batch, **kwargs):
        return self._forward_inference(batch)

    def _forward_train(self, batch, **kwargs):
        raise NotImplementedError("PolicyRLModule only samples rollouts; its variant trains elsewhere")


class PolicyConfig(AlgorithmConfig):
    """An algorithm config with no algorithm: only what env runners read (env, module, seed)."""

    def get_default_rl_module_spec(self):
        return RLModuleSpec(module_class=PolicyRLModule)


def env_recipe(maker, kwargs: dict, cfg) -> dict:
    """RLlib's env_config for `make_eval_env`: the env's maker and kwargs, episodes cut at
    `eval.episode_length` when it is set (> 0)."""
    kwargs = dict(kwargs)
    if cfg.eval.episode_length > 0:
        kwargs["max_episode_steps"] = int(cfg.eval.episode_length)
    return {"maker": maker, "kwargs": kwargs}


def runner_config(variant, modules, env: dict, env_runners: int, seed: int) -> PolicyConfig:
    """Env runners' config: `env_runners` remote ones (0: one in this process), module = `act`."""
    return (
        PolicyConfig()
        .environment(env=EVAL_ENV, env_config=env)
        .framework("torch")
        .env_runners(num_env_runners=int(env_runners), num_envs_per_env_runner=1)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=PolicyRLModule,
                                               model_config={"variant": variant, "modules": modules}))
        .fault_tolerance(restart_failed_env_runners=False)  # a runner that dies fails the evaluation
        .debugging(seed=int(seed))
    )


def episode_success(episode) -> float:
    """1.0 if the env's `success` info was true at any step; envs without that info: 1.0 if the episode
    ended in a terminal state (a goal) rather than the time limit."""
    flags = [bool(info["success"]) for info in episode.get_infos() if isinstance(info, dict) and "success" in info]
    if flags:
        return float(any(flags))
    return float(episode.is_terminated)


@contextmanager
def deterministic_acting(seed: int):
    """Torch's global generator seeded (any sampling in `act`) and one intra-op thread (sums in one
    order), both restored after: so actions follow from the networks, the observations and the seed."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def sample_on_runner(runner, episodes: int, seed: int = 0) -> dict[str, list]:
    """Per-episode return, success, length, first and last observation of `episodes` episodes.

    `sample(num_episodes=)` seeds the first reset of the call (RLlib: the config's seed and the
    runner's index); later resets continue the envs' seeded generators (`envs.ogbench.seed_action_space`
    covers OGBench's goal draw), so the episodes follow from the policy and the seed."""
    with deterministic_acting(int(seed) + 1000 * int(getattr(runner, "worker_index", 0) or 0)):
        sampled = runner.sample(num_episodes=episodes, explore=False, force_reset=True)[:episodes]
    return {"rollout/return": [float(e.get_return()) for e in sampled],
            "rollout/success": [episode_success(e) for e in sampled],
            "rollout/length": [float(len(e)) for e in sampled],
            "rollout/first_obs": [np.asarray(e.get_observations(0)) for e in sampled],
            "rollout/last_obs": [np.asarray(e.get_observations(-1)) for e in sampled]}


def rollout_episodes(variant, modules, env: dict, episodes: int, env_runners: int = 0, seed: int = 0) -> dict[str, list]:
    """`sample_on_runner`'s per-episode lists over `episodes` episodes, on local or remote env runners."""
    register_env(EVAL_ENV, make_eval_env)
    config = runner_config(variant, modules, env, env_runners, seed)
    if env_runners == 0:  # no Ray needed: one env runner in this process
        runner = SingleAgentEnvRunner(config=config)
        try:
            parts = [sample_on_runner(runner, episodes, seed)]
        finally:
            runner.stop()
    else:
        group = EnvRunnerGroup(config=config, local_env_runner=False)
        try:
            per_runner = math.ceil(episodes / env_runners)
            parts = group.foreach_env_runner(lambda runner: sample_on_runner(runner, per_runner, seed),
                                             local_env_runner=False)
        finally:
            group.stop()
    merged: dict[str, list] = {key: [] for key in parts[0]} if parts else {"rollout/return": []}
    for part in parts:
        for key, values in part.items():
            merged[key].extend(values)
    if len(merged["rollout/return"]) < episodes:
        raise RuntimeError(f"rollout: {len(merged['rollout/return'])} of {episodes} episodes came back from "
                           f"{env_runners} env runners (see the env runners' errors above)")
    return {key: values[:episodes] for key, values in merged.items()}


def rollout(variant, modules, env: dict, episodes: int, env_runners: int = 0, seed: int = 0) -> dict[str, float]:
    """`rollout/success` and `rollout/return` (each with `_se`, the standard error) over `episodes`
    episodes, and `rollout/episodes` (how many ran): a deterministic function of the networks, the
    env, `seed`, `episodes` and `env_runners`."""
    per_episode = rollout_episodes(variant, modules, env, episodes, env_runners, seed)
    summary = summarize({key: per_episode[key] for key in ("rollout/return", "rollout/success")})
    out = {key.removeprefix("eval/"): summary[key] for key in summary if key.startswith("eval/rollout/")}
    out["rollout/episodes"] = float(len(per_episode["rollout/return"]))
    return out
