"""dm_control domains as gymnasium envs with switchable tasks, for zero-shot evaluation.

A zero-shot agent is trained once and then evaluated on every task of a domain, so the env
takes its task from `set_task` instead of being rebuilt per task. Observations, action
scaling and task rewards are exactly those of the ExoRL-layout data (`envs.dmc_tasks`), so a
policy trained on that data sees the same vectors here.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.dmc_tasks import (
    DOMAINS,
    TASKS,
    flatten_observation,
    load_environment,
    scale_to_spec,
    task_reward,
)


class DMCTaskEnv(gym.Env):
    """One dm_control domain; reward = the current task's reward of the state reached."""

    metadata = {"render_modes": []}

    def __init__(self, domain: str = "walker", task: str | None = None, max_episode_steps: int = 1000):
        if domain not in DOMAINS:
            raise ValueError(f"Unknown domain {domain!r}; known: {sorted(DOMAINS)}")
        self.domain, self.max_episode_steps = domain, int(max_episode_steps)
        self._env = load_environment(domain)
        obs_dim = flatten_observation(self._env.reset().observation).size
        action_dim = int(self._env.action_spec().shape[0])
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
        self.set_task(task or next(iter(TASKS[domain])))
        self._t = 0

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(TASKS[self.domain])

    def set_task(self, task: str) -> None:
        """Reward later steps with `task` (a reward task: nothing for the agent to see)."""
        self._reward = task_reward(self.domain, task)
        self.task = task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._t = 0
        return flatten_observation(self._env.reset().observation), {"task": self.task}

    def step(self, action):
        timestep = self._env.step(scale_to_spec(np.asarray(action), self._env.action_spec()))
        self._t += 1
        reward = float(self._reward(self._env.physics))
        truncated = self._t >= self.max_episode_steps
        return flatten_observation(timestep.observation), reward, False, truncated, {"task": self.task}

    def close(self) -> None:
        self._env.close()
