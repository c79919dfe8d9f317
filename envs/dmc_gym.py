"""dm_control domains as gymnasium envs with switchable tasks, for zero-shot evaluation.

A zero-shot agent is trained once and then evaluated on every task of a domain, so the env
takes its task from `set_task` instead of being rebuilt per task. Observations, action
scaling and task rewards are exactly those of the ExoRL-layout data (`envs.dmc_tasks`), so a
policy trained on that data sees the same vectors here.

`FrameStackEnv` turns any of these envs (or OGBench's pixel envs) into the pixel observations the
zero-shot agents read with `variant.obs=pixels`: 64 × 64 frames, 3 stacked oldest first as uint8
[9, 64, 64], rendered headless through the backend `envs` settled (EGL, else OSMesa). The stack at
reset repeats the first frame, as the datasets' stacks do at an episode start.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from envs.dmc_tasks import (
    DOMAINS,
    PIXELS_SIZE,
    TASKS,
    flatten_observation,
    load_environment,
    render_pixels,
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


STACK = 3  # frames per pixel observation (TD-JEPA's pixel setting)
PIXELS_RENDERING = "rendering pixel observations (variant.obs=pixels)"


def stack_frames(frames) -> np.ndarray:
    """HWC uint8 frames, oldest first -> one uint8 [3·STACK, H, W] observation."""
    return np.concatenate([np.asarray(f, np.uint8).transpose(2, 0, 1) for f in frames])


class FrameStackEnv(gym.Wrapper):
    """Observations = the last STACK rendered frames. `frame(env, observation)` renders one HWC uint8
    frame after each reset and step (None: the wrapped env's observation already is the frame)."""

    def __init__(self, env: gym.Env, frame: Callable | None = None, size: int = PIXELS_SIZE):
        from envs import require_rendering

        require_rendering(PIXELS_RENDERING)
        super().__init__(env)
        self._frame = frame
        self.observation_space = gym.spaces.Box(0, 255, (3 * STACK, size, size), np.uint8)
        self._frames: deque = deque(maxlen=STACK)

    def _render(self, observation) -> np.ndarray:
        frame = observation if self._frame is None else self._frame(self.env, observation)
        return np.asarray(frame).astype(np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        observation, info = self.env.reset(seed=seed, options=options)
        self._frames.extend([self._render(observation)] * STACK)
        return stack_frames(self._frames), info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(self._render(observation))
        return stack_frames(self._frames), reward, terminated, truncated, info

    def set_task(self, task):
        """The wrapped env's task; a goal it returns (an image) comes back as a still stack of it."""
        goal = self.env.set_task(task)
        return None if goal is None else stack_frames([goal] * STACK)


def _dmc_frame(env: DMCTaskEnv, observation) -> np.ndarray:
    return render_pixels(env._env.physics)  # camera 0, 64 × 64: as `envs.exorl` renders the data


def dmc_pixel_env(**kwargs) -> FrameStackEnv:
    """A `DMCTaskEnv` seen through stacked 64 × 64 renders (what pixel ExoRL data holds)."""
    return FrameStackEnv(DMCTaskEnv(**kwargs), _dmc_frame)
