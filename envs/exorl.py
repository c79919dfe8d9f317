"""Reward-free offline RL data in ExoRL's layout, for zero-shot RL (TD-JEPA).

ExoRL collects exploratory episodes without a task, stores the MuJoCo state of
every step, and recomputes rewards for any task afterwards. This module does the
same for the TD-JEPA domains:

* ``collect`` runs an exploration policy ("random", or "rnd": an actor-critic
  trained online on Random Network Distillation novelty) in a dm_control domain,
  in parallel Ray tasks, and writes one compressed npz per episode under
  ``<root>/exorl/<domain>/<policy>/<fingerprint>/buffer/`` (meta.json last).
* ``relabel`` recomputes a task's rewards from the stored physics states.
* ``load_exorl`` flattens episodes (ours, or ExoRL's own) into transitions.

Episode files (``episode_{idx:06d}_{len}.npz``, ``len`` = transitions, rows =
``len + 1``) hold ``observation`` float32 [len+1, obs_dim] (``flatten_observation``),
``action`` float32 [len+1, act_dim] in [-1, 1] (mapped linearly onto the
domain's bounds when stepping, as ExoRL's action-scaling wrapper does),
``reward`` (the base task's) and ``discount`` float32 [len+1, 1] and ``physics``
float64 [len+1, state_dim] (``physics.get_state()``: qpos, qvel, act). Row 0 is
ExoRL's dummy first step: the reset observation and state with a zero action,
reward 0 and discount 1. Row i > 0 is the result of taking ``action[i]`` in row
i-1. With ``pixels`` there is also ``pixels`` uint8 [len+1, 64, 64, 3].

Stand-ins for tasks dm_control lacks (all in [0, 1], shaped like dm_control's):

* walker spin: the torso's angular speed, 0 at rest rising linearly to 1 at
  ``WALKER_SPIN_SPEED`` rad/s and above, in either direction.
* cheetah walk / walk_backward / run_backward: dm_control's run reward with the
  target speed (2 or 10 m/s) and the sign of the speed changed, as URLB does.
* quadruped stand / jump: uprightness (dm_control's) times a torso-height term:
  at least ``QUADRUPED_STAND_HEIGHT`` (smooth margin) or, for jump, 0 at standing
  height rising linearly to 1 at ``QUADRUPED_JUMP_HEIGHT``.
* point-mass maze: dm_control has no maze, so the plain ``point_mass`` arena
  (walls at +-0.3 m, no inner walls) stands in for URLB's maze, with reach tasks
  rewarding distance to goals ``POINT_MASS_GOAL_OFFSET`` from the centre towards
  each corner ("top" is +y, the top of camera 0's image). Real ExoRL
  point_mass_maze data therefore cannot be relabelled with these tasks.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache, partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from dm_control.utils import rewards
from torch import nn

from envs import require_rendering
from envs.video import (
    META_FILE,
    RENDER_FLAGS,
    _config_fingerprint,
    _dm_control_suite,
    _ensure_dataset,
    _is_complete,
    _replace_atomically,
    data_root,
)

# Bump when simulation, policies or file contents change so cached datasets are regenerated.
GENERATOR_VERSION = 1
POLICIES = ("random", "rnd")
BUFFER_DIR = "buffer"
EPISODE_PATTERN = re.compile(r"episode_(\d+)_(\d+)\.npz")
MAKE_HINT = "jepa data make exorl_{domain}_{policy}"

PIXELS_SIZE = 64
PIXELS_CAMERA = 0
PIXELS_RENDERING = "rendering ExoRL pixels (data.pixels=true)"

_EPISODE_DTYPES = {
    "observation": np.float32,
    "action": np.float32,
    "reward": np.float32,
    "discount": np.float32,
    "physics": np.float64,
    "pixels": np.uint8,
}


# --------------------------------------------------------------------------
# Domains and task rewards
# --------------------------------------------------------------------------


class Domain(NamedTuple):
    """A dm_control domain, the task simulated to collect data, and the evaluation tasks."""

    suite_domain: str
    base_task: str
    tasks: tuple[str, ...]


DOMAINS = {
    "walker": Domain("walker", "walk", ("stand", "walk", "run", "spin")),
    "cheetah": Domain("cheetah", "run", ("walk", "walk_backward", "run", "run_backward")),
    # "run" rather than "walk": same start states, but a 100 m floor the body never walks off.
    "quadruped": Domain("quadruped", "run", ("stand", "walk", "run", "jump")),
    "point_mass": Domain(
        "point_mass",
        "easy",
        ("reach_top_left", "reach_top_right", "reach_bottom_left", "reach_bottom_right"),
    ),
}

WALKER_SPIN_SPEED = 5.0  # rad/s
CHEETAH_WALK_SPEED = 2.0  # m/s, URLB's
CHEETAH_RUN_SPEED = 10.0  # m/s, dm_control's
# Torso height (m) with the legs at their neutral (zero-action) pose.
QUADRUPED_STAND_HEIGHT = 0.45
QUADRUPED_JUMP_HEIGHT = 0.8
POINT_MASS_GOAL_OFFSET = 0.2  # m along x and y; the mass can reach +-0.29
POINT_MASS_GOAL_RADIUS = 0.03  # full reward inside
POINT_MASS_GOAL_MARGIN = 0.1  # reward 0.1 this far outside the radius

RewardFn = Callable[[object], float]


def _at_least(value: float, target: float) -> float:
    """1 at or above ``target``, falling linearly to 0 at 0: dm_control's speed-reward shape."""
    return float(
        rewards.tolerance(
            value, bounds=(target, math.inf), margin=target, value_at_margin=0, sigmoid="linear"
        )
    )


def _walker_spin(physics) -> float:
    angular_velocity = physics.named.data.cvel["torso"][:3]  # world frame, rad/s
    return _at_least(float(np.linalg.norm(angular_velocity)), WALKER_SPIN_SPEED)


def _cheetah_speed(physics, direction: float, target: float) -> float:
    return _at_least(direction * float(physics.speed()), target)


def _quadruped_upright(physics) -> float:
    """0 upside down, 1 upright: dm_control's quadruped upright term."""
    return (1.0 + float(physics.torso_upright())) / 2.0


def _quadruped_height(physics) -> float:
    return float(physics.named.data.xpos["torso", "z"])


def _quadruped_stand(physics) -> float:
    height = rewards.tolerance(
        _quadruped_height(physics),
        bounds=(QUADRUPED_STAND_HEIGHT, math.inf),
        margin=QUADRUPED_STAND_HEIGHT / 2,
    )
    return _quadruped_upright(physics) * float(height)


def _quadruped_jump(physics) -> float:
    rise = _quadruped_height(physics) - QUADRUPED_STAND_HEIGHT
    return _quadruped_upright(physics) * _at_least(
        rise, QUADRUPED_JUMP_HEIGHT - QUADRUPED_STAND_HEIGHT
    )


def _point_mass_reach(physics, goal: tuple[float, float]) -> float:
    distance = np.linalg.norm(physics.named.data.geom_xpos["pointmass", :2] - np.asarray(goal))
    near = rewards.tolerance(
        distance, bounds=(0.0, POINT_MASS_GOAL_RADIUS), margin=POINT_MASS_GOAL_MARGIN
    )
    return float(near)


@cache
def _suite_task(suite_domain: str, task: str):
    """dm_control's own task object; its ``get_reward`` reads only the physics it is given."""
    return _dm_control_suite().load(suite_domain, task).task


def _from_suite(suite_domain: str, task: str) -> Callable[[], RewardFn]:
    def make() -> RewardFn:
        reward = _suite_task(suite_domain, task).get_reward
        return lambda physics: float(reward(physics))

    return make


def _custom(reward: RewardFn) -> Callable[[], RewardFn]:
    return lambda: reward


def _point_mass_goal(x_sign: float, y_sign: float) -> Callable[[], RewardFn]:
    goal = (x_sign * POINT_MASS_GOAL_OFFSET, y_sign * POINT_MASS_GOAL_OFFSET)
    return _custom(partial(_point_mass_reach, goal=goal))


# domain -> task -> maker of the reward function (makers defer loading dm_control).
TASKS: dict[str, dict[str, Callable[[], RewardFn]]] = {
    "walker": {
        "stand": _from_suite("walker", "stand"),
        "walk": _from_suite("walker", "walk"),
        "run": _from_suite("walker", "run"),
        "spin": _custom(_walker_spin),
    },
    "cheetah": {
        "walk": _custom(partial(_cheetah_speed, direction=1.0, target=CHEETAH_WALK_SPEED)),
        "walk_backward": _custom(
            partial(_cheetah_speed, direction=-1.0, target=CHEETAH_WALK_SPEED)
        ),
        "run": _from_suite("cheetah", "run"),
        "run_backward": _custom(partial(_cheetah_speed, direction=-1.0, target=CHEETAH_RUN_SPEED)),
    },
    "quadruped": {
        "stand": _custom(_quadruped_stand),
        "walk": _from_suite("quadruped", "walk"),
        "run": _from_suite("quadruped", "run"),
        "jump": _custom(_quadruped_jump),
    },
    "point_mass": {
        "reach_top_left": _point_mass_goal(-1.0, 1.0),
        "reach_top_right": _point_mass_goal(1.0, 1.0),
        "reach_bottom_left": _point_mass_goal(-1.0, -1.0),
        "reach_bottom_right": _point_mass_goal(1.0, -1.0),
    },
}
assert all(set(TASKS[name]) == set(spec.tasks) for name, spec in DOMAINS.items())


def _check_domain(domain: str) -> Domain:
    if domain not in DOMAINS:
        raise ValueError(f"Unknown ExoRL domain {domain!r}; known: {sorted(DOMAINS)}")
    return DOMAINS[domain]


def task_reward(domain: str, task: str) -> RewardFn:
    """Reward of ``task`` as a function of a physics of ``domain`` (after ``set_state``).

    None of these rewards reads the control signal, which the stored state lacks.
    """
    _check_domain(domain)
    if task not in TASKS[domain]:
        raise ValueError(
            f"Unknown task {task!r} for domain {domain!r}; known: {sorted(TASKS[domain])}"
        )
    return TASKS[domain][task]()


# --------------------------------------------------------------------------
# Environments, observations, pixels
# --------------------------------------------------------------------------


def load_environment(domain: str):
    """The base task of ``domain`` with no time limit: episodes end when we stop stepping."""
    spec = _check_domain(domain)
    task_kwargs = {"time_limit": math.inf}
    return _dm_control_suite().load(spec.suite_domain, spec.base_task, task_kwargs=task_kwargs)


def flatten_observation(observation: Mapping[str, np.ndarray]) -> np.ndarray:
    """One float32 vector, entries in the order the task lists them.

    dm_control tasks build their observation as an OrderedDict in a fixed order
    (walker: orientations, height, velocity); dm_control's own flattening
    (``flat_observation=True``) keeps that order, and so do we. The keys and
    sizes are recorded in meta.json.
    """
    return np.concatenate(
        [np.asarray(value, dtype=np.float32).ravel() for value in observation.values()]
    )


def render_pixels(physics) -> np.ndarray:
    """Camera 0 at 64x64 as uint8 [64, 64, 3]; use it for evaluation frames too, so they match.

    Shadows and reflections are off: software rendering is several times faster
    without them and they add little at 64 pixels.
    """
    return physics.render(
        PIXELS_SIZE, PIXELS_SIZE, camera_id=PIXELS_CAMERA, render_flag_overrides=RENDER_FLAGS
    )


def _scale_to_spec(action: np.ndarray, action_spec) -> np.ndarray:
    """Map [-1, 1] linearly onto the domain's bounds (quadruped's are not symmetric).

    Episodes store the [-1, 1] action, as ExoRL does behind its action-scaling wrapper.
    """
    low, high = action_spec.minimum, action_spec.maximum
    return low + (np.asarray(action, np.float64) + 1.0) * (high - low) / 2.0


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@dataclass
class ExplorationConfig:
    """Everything that determines a collected dataset, bit for bit (per GL backend for pixels).

    ``episodes_per_task`` episodes run in sequence in one Ray task (and, for
    "rnd", one agent learns across them); fixing it here rather than deriving it
    from the worker count keeps the data independent of ``num_workers``.
    ``pixels`` also stores 64x64 frames of camera 0 (12 KiB a step before
    compression). Software rendering (OSMesa) dominates then: on a busy 2-core
    CPU a worker did walker 980 steps/s without pixels and 100 with, quadruped
    1500 and 50; EGL on a GPU is far cheaper. The "rnd" explorer's updates cost
    more still (~35 steps/s a worker at the default sizes).
    ``rnd_hidden`` and ``rnd_lr`` apply to the RND networks and the actor-critic alike.
    """

    domain: str
    policy: str
    num_episodes: int = 8
    episode_length: int = 1000
    seed: int = 0
    pixels: bool = False
    rnd_hidden: int = 256
    rnd_lr: float = 1e-4
    rnd_updates_per_step: int = 1
    rnd_warmup_steps: int = 1000  # uniform random actions before the agent starts learning
    episodes_per_task: int = 4

    def __post_init__(self) -> None:
        _check_domain(self.domain)
        _require(self.policy in POLICIES, f"policy must be one of {POLICIES}, got {self.policy!r}")
        _require(self.num_episodes >= 1, "num_episodes must be >= 1")
        _require(self.episode_length >= 1, "episode_length must be >= 1")
        _require(self.seed >= 0, "seed must be >= 0")
        _require(self.rnd_hidden >= 1, "rnd_hidden must be >= 1")
        _require(self.rnd_lr > 0, "rnd_lr must be > 0")
        _require(self.rnd_updates_per_step >= 0, "rnd_updates_per_step must be >= 0")
        _require(self.rnd_warmup_steps >= 0, "rnd_warmup_steps must be >= 0")
        _require(self.episodes_per_task >= 1, "episodes_per_task must be >= 1")

    def fingerprint(self) -> str:
        """Short hash of the config; a new value means the dataset must be collected again."""
        return _config_fingerprint(self, GENERATOR_VERSION)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"ExplorationConfig: {message}")


# --------------------------------------------------------------------------
# Random Network Distillation explorer
# --------------------------------------------------------------------------

RND_OUTPUT_DIM = 64
RND_BATCH_SIZE = 256
RND_DISCOUNT = 0.99
RND_TARGET_EMA = 0.01  # critic target update rate
RND_ACTION_NOISE = 0.2  # std of the Gaussian exploration noise
RND_TARGET_NOISE = 0.2  # TD3 target-policy smoothing
RND_TARGET_NOISE_CLIP = 0.5
RND_OBS_CLIP = 5.0  # normalised observations are clipped, as in the RND paper


def _mlp(inputs: int, hidden: int, outputs: int, layer_norm: bool = False) -> nn.Sequential:
    """Two hidden layers; an optional LayerNorm + tanh first layer copes with unscaled inputs."""
    if layer_norm:
        first = [nn.Linear(inputs, hidden), nn.LayerNorm(hidden), nn.Tanh()]
    else:
        first = [nn.Linear(inputs, hidden), nn.ReLU()]
    return nn.Sequential(*first, nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


class RunningMeanStd:
    """Mean and variance of a stream of vectors (Chan et al.'s parallel update)."""

    def __init__(self, shape: tuple[int, ...]):
        self.mean = np.zeros(shape)
        self.var = np.ones(shape)
        self.count = 0

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64).reshape(-1, *self.mean.shape)
        n, mean, var = len(batch), batch.mean(axis=0), batch.var(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + var * n + delta**2 * self.count * n / total) / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var) + 1e-8


class RandomNetworkDistillation(nn.Module):
    """Novelty as the error of a predictor trained to match a fixed random network.

    States seen often are predicted well, so the error (the intrinsic reward)
    falls where the agent has been and stays high where it has not.
    """

    def __init__(self, obs_dim: int, hidden: int, lr: float):
        super().__init__()
        self.obs_stats = RunningMeanStd((obs_dim,))
        self.target = _mlp(obs_dim, hidden, RND_OUTPUT_DIM).requires_grad_(False)
        self.predictor = _mlp(obs_dim, hidden, RND_OUTPUT_DIM)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)

    def _normalise(self, observation: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.obs_stats.mean, dtype=torch.float32)
        std = torch.as_tensor(self.obs_stats.std, dtype=torch.float32)
        return ((observation - mean) / std).clamp(-RND_OBS_CLIP, RND_OBS_CLIP)

    def error(self, observation: torch.Tensor) -> torch.Tensor:
        """Per-sample squared prediction error [B]."""
        inputs = self._normalise(observation)
        return (self.predictor(inputs) - self.target(inputs)).pow(2).mean(dim=-1)

    def intrinsic_reward(self, observation: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.error(observation)

    def train_step(self, observation: torch.Tensor) -> float:
        loss = self.error(observation).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()


class _TwinCritic(nn.Module):
    """Two Q heads; the smaller target value curbs overestimation (TD3)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: int):
        super().__init__()
        self.q1 = _mlp(obs_dim + action_dim, hidden, 1, layer_norm=True)
        self.q2 = _mlp(obs_dim + action_dim, hidden, 1, layer_norm=True)

    def forward(self, observation: torch.Tensor, action: torch.Tensor):
        inputs = torch.cat([observation, action], dim=-1)
        return self.q1(inputs).squeeze(-1), self.q2(inputs).squeeze(-1)


class _Replay:
    """Transitions of the explorer's own experience, in a ring buffer."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int):
        self.observation = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, action_dim), np.float32)
        self.next_observation = np.zeros((capacity, obs_dim), np.float32)
        self.discount = np.zeros(capacity, np.float32)
        self.size = 0
        self._next = 0

    def add(self, observation, action, next_observation, discount) -> None:
        i = self._next
        self.observation[i], self.action[i] = observation, action
        self.next_observation[i], self.discount[i] = next_observation, discount
        self._next = (i + 1) % len(self.discount)
        self.size = min(self.size + 1, len(self.discount))

    def sample(self, rng: np.random.Generator, batch_size: int) -> list[torch.Tensor]:
        picks = rng.integers(self.size, size=batch_size)
        arrays = (self.observation, self.action, self.next_observation, self.discount)
        return [torch.from_numpy(array[picks]) for array in arrays]


class RndExplorer:
    """Deterministic actor with Gaussian noise and a twin critic (TD3-style), trained on RND novelty.

    Learns online while collecting: every environment step adds a transition and,
    after ``rnd_warmup_steps`` uniform random steps, runs ``rnd_updates_per_step``
    updates of the RND predictor, critic and actor. Intrinsic rewards are
    computed at update time (novelty changes as the predictor learns) and divided
    by their running std. Episodes end only by time, so every transition bootstraps.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        cfg: ExplorationConfig,
        seed: np.random.SeedSequence,
        capacity: int,
    ):
        self._cfg = cfg
        self._rng = np.random.default_rng(seed.spawn(1)[0])
        torch_seed = int(seed.generate_state(1)[0])
        self._torch_rng = torch.Generator().manual_seed(torch_seed)
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
            torch.manual_seed(torch_seed)
            self.rnd = RandomNetworkDistillation(obs_dim, cfg.rnd_hidden, cfg.rnd_lr)
            self.actor = nn.Sequential(
                _mlp(obs_dim, cfg.rnd_hidden, action_dim, layer_norm=True), nn.Tanh()
            )
            self.critic = _TwinCritic(obs_dim, action_dim, cfg.rnd_hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self._actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.rnd_lr)
        self._critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=cfg.rnd_lr)
        self._reward_stats = RunningMeanStd(())
        self.replay = _Replay(capacity, obs_dim, action_dim)
        self.steps = 0

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        action_dim = self.replay.action.shape[1]
        if self.steps < self._cfg.rnd_warmup_steps:
            return rng.uniform(-1.0, 1.0, size=action_dim).astype(np.float32)
        with torch.no_grad():
            mean = self.actor(torch.from_numpy(observation)[None])[0].numpy()
        noise = RND_ACTION_NOISE * rng.standard_normal(action_dim)
        return np.clip(mean + noise, -1.0, 1.0).astype(np.float32)

    def observe(self, observation, action, next_observation, discount: float) -> None:
        self.replay.add(observation, action, next_observation, discount)
        self.rnd.obs_stats.update(next_observation)
        self.steps += 1
        if self.steps >= self._cfg.rnd_warmup_steps:
            for _ in range(self._cfg.rnd_updates_per_step):
                self.update()

    def _noisy_target_action(self, observation: torch.Tensor) -> torch.Tensor:
        action = self.actor(observation)
        noise = torch.randn(action.shape, generator=self._torch_rng) * RND_TARGET_NOISE
        return (action + noise.clamp(-RND_TARGET_NOISE_CLIP, RND_TARGET_NOISE_CLIP)).clamp(
            -1.0, 1.0
        )

    def _scaled_intrinsic_reward(self, next_observation: torch.Tensor) -> torch.Tensor:
        reward = self.rnd.intrinsic_reward(next_observation)
        self._reward_stats.update(reward.numpy())
        return reward / float(self._reward_stats.std)

    def update(self) -> dict[str, float]:
        observation, action, next_observation, discount = self.replay.sample(
            self._rng, RND_BATCH_SIZE
        )
        rnd_loss = self.rnd.train_step(next_observation)
        reward = self._scaled_intrinsic_reward(next_observation)
        with torch.no_grad():
            target_q = torch.min(
                *self.critic_target(next_observation, self._noisy_target_action(next_observation))
            )
            target = reward + RND_DISCOUNT * discount * target_q
        q1, q2 = self.critic(observation, action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        _step(self._critic_optimizer, critic_loss)
        actor_loss = -self.critic(observation, self.actor(observation))[0].mean()
        _step(self._actor_optimizer, actor_loss)
        _ema(self.critic_target, self.critic, RND_TARGET_EMA)
        return {
            "rnd_loss": rnd_loss,
            "critic_loss": critic_loss.item(),
            "intrinsic_reward": reward.mean().item(),
        }


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@torch.no_grad()
def _ema(target: nn.Module, source: nn.Module, rate: float) -> None:
    for target_param, param in zip(target.parameters(), source.parameters()):
        target_param.lerp_(param, rate)


class RandomExplorer:
    """Uniform random actions over the domain's action bounds (drawn in the stored [-1, 1] scale)."""

    def __init__(self, action_dim: int):
        self._action_dim = action_dim

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=self._action_dim).astype(np.float32)

    def observe(self, observation, action, next_observation, discount: float) -> None:
        pass


# --------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------


def _episode_seed(cfg: ExplorationConfig, index: int) -> np.random.SeedSequence:
    """Per-episode stream (start state, actions, noise): the same whoever collects the episode."""
    return np.random.SeedSequence(cfg.seed, spawn_key=(0, index))


def _explorer_seed(cfg: ExplorationConfig, first_episode: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(cfg.seed, spawn_key=(1, first_episode))


def _make_explorer(cfg: ExplorationConfig, env, episodes: range):
    action_dim = env.action_spec().shape[0]
    if cfg.policy == "random":
        return RandomExplorer(action_dim)
    obs_dim = sum(_observation_sizes(env).values())
    capacity = min(len(episodes) * cfg.episode_length, 1_000_000)
    return RndExplorer(obs_dim, action_dim, cfg, _explorer_seed(cfg, episodes.start), capacity)


def _run_episode(
    env, explorer, cfg: ExplorationConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One episode in ExoRL's layout, row 0 being the dummy reset step."""
    env.task.random.seed(int(rng.integers(2**31)))  # the task draws the start state from it
    timestep = env.reset()
    rows = {key: [] for key in _EPISODE_DTYPES if key != "pixels" or cfg.pixels}

    def record(observation, action, reward, discount) -> None:
        rows["observation"].append(observation)
        rows["action"].append(action)
        rows["reward"].append([reward])
        rows["discount"].append([discount])
        rows["physics"].append(env.physics.get_state())
        if cfg.pixels:
            rows["pixels"].append(render_pixels(env.physics))

    observation = flatten_observation(timestep.observation)
    record(observation, np.zeros(env.action_spec().shape, np.float32), 0.0, 1.0)
    for _ in range(cfg.episode_length):
        action = explorer.act(observation, rng)
        timestep = env.step(_scale_to_spec(action, env.action_spec()))
        next_observation = flatten_observation(timestep.observation)
        explorer.observe(observation, action, next_observation, timestep.discount)
        record(next_observation, action, timestep.reward, timestep.discount)
        observation = next_observation
    return {key: np.asarray(values, dtype=_EPISODE_DTYPES[key]) for key, values in rows.items()}


def episode_name(index: int, length: int) -> str:
    return f"episode_{index:06d}_{length}.npz"


@contextmanager
def _single_threaded_torch():
    """Small networks run fastest on one thread, and results then do not depend on core counts."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def collect_episodes(cfg: ExplorationConfig, episodes: range, buffer: str | Path) -> list[str]:
    """Collect ``episodes`` in sequence (one explorer learning across them) into ``buffer``."""
    if cfg.pixels:
        require_rendering(PIXELS_RENDERING)
    env = load_environment(cfg.domain)
    names = []
    try:
        with _single_threaded_torch():
            explorer = _make_explorer(cfg, env, episodes)
            for index in episodes:
                rng = np.random.default_rng(_episode_seed(cfg, index))
                episode = _run_episode(env, explorer, cfg, rng)
                names.append(episode_name(index, cfg.episode_length))
                _replace_atomically(
                    Path(buffer) / names[-1], partial(np.savez_compressed, **episode)
                )
    finally:
        env.physics.free()  # frees the GL context now rather than noisily at exit
    return names


def _task_shares(cfg: ExplorationConfig) -> list[range]:
    """Episode ranges, one per Ray task, fixed by the config alone."""
    step = cfg.episodes_per_task
    return [
        range(start, min(start + step, cfg.num_episodes))
        for start in range(0, cfg.num_episodes, step)
    ]


def _share_done(cfg: ExplorationConfig, buffer: Path, episodes: range) -> bool:
    return all((buffer / episode_name(index, cfg.episode_length)).is_file() for index in episodes)


def _collect_with_ray(
    cfg: ExplorationConfig, shares: list[range], buffer: Path, num_workers: int
) -> None:
    """At most ``num_workers`` Ray tasks at a time; they write straight into ``buffer``.

    ``buffer`` must be on a filesystem every Ray node sees, as for ``data_root()``.
    """
    import ray

    if not ray.is_initialized():
        # Our own local Ray unless one is named (RAY_ADDRESS, set for Ray job drivers and by `jepa data make
        # --address`): a bare ray.init() joins the last `ray start` cluster of this machine, even a dead one.
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local")
    remote = ray.remote(num_cpus=1)(collect_episodes)
    pending = []
    for share in shares:
        if len(pending) >= num_workers:
            ready, pending = ray.wait(pending, num_returns=1)
            ray.get(ready)  # surface a failure before starting more work
        pending.append(remote.remote(cfg, share, str(buffer)))
    ray.get(pending)


def _observation_sizes(env) -> dict[str, int]:
    return {key: int(np.prod(spec.shape)) for key, spec in env.observation_spec().items()}


def _write_meta(cfg: ExplorationConfig, directory: Path) -> None:
    env = load_environment(cfg.domain)
    spec = DOMAINS[cfg.domain]
    meta = {
        "fingerprint": cfg.fingerprint(),
        "config": asdict(cfg),
        "generator_version": GENERATOR_VERSION,
        "domain": cfg.domain,
        "suite_domain": spec.suite_domain,
        "base_task": spec.base_task,
        "tasks": list(spec.tasks),
        "observation_keys": _observation_sizes(env),  # in flattening order
        "action_dim": int(env.action_spec().shape[0]),
        "physics_dim": int(env.physics.get_state().size),
        "episodes": [episode_name(index, cfg.episode_length) for index in range(cfg.num_episodes)],
        "num_transitions": cfg.num_episodes * cfg.episode_length,
        "mujoco_gl": os.environ.get("MUJOCO_GL") if cfg.pixels else None,
    }
    env.physics.free()
    text = json.dumps(meta, indent=2, sort_keys=True).encode()
    _replace_atomically(directory / META_FILE, lambda handle: handle.write(text))


def _write_exorl(cfg: ExplorationConfig, num_workers: int, directory: Path) -> None:
    buffer = directory / BUFFER_DIR
    buffer.mkdir(parents=True, exist_ok=True)
    # Shares left complete by an interrupted run are kept: each is deterministic on its own.
    shares = [share for share in _task_shares(cfg) if not _share_done(cfg, buffer, share)]
    if num_workers <= 1:
        for share in shares:
            collect_episodes(cfg, share, buffer)
    else:
        _collect_with_ray(cfg, shares, buffer, num_workers)
    _write_meta(cfg, directory)


def exorl_dir(cfg: ExplorationConfig, root: Path | None = None) -> Path:
    """Where the dataset for ``cfg`` lives (whether or not it has been collected)."""
    base = Path(root) if root is not None else data_root()
    return base / "exorl" / cfg.domain / cfg.policy / cfg.fingerprint()


def collect(cfg: ExplorationConfig, root: Path | None = None, num_workers: int = 2) -> Path:
    """Collect the dataset for ``cfg`` unless a complete copy exists; return its directory.

    Episodes are split into shares of ``cfg.episodes_per_task``; each share is one
    Ray task (for "rnd", with its own agent learning over that share only), and
    each episode has its own seed, so the files do not depend on ``num_workers``.
    ``num_workers <= 1`` collects in this process without Ray; otherwise Ray is
    started only if the caller has not already. meta.json is written last, under
    a file lock, so concurrent callers collect once.
    """
    directory = exorl_dir(cfg, root)
    if cfg.pixels and not _is_complete(directory, cfg.fingerprint()):
        require_rendering(PIXELS_RENDERING)  # here, in one line, rather than in every Ray task
    return _ensure_dataset(directory, cfg.fingerprint(), partial(_write_exorl, cfg, num_workers))


# --------------------------------------------------------------------------
# Relabelling and loading
# --------------------------------------------------------------------------


@cache
def _relabel_physics(domain: str):
    return load_environment(domain).physics


def relabel(episode: Mapping[str, np.ndarray], domain: str, task: str) -> np.ndarray:
    """float32 [len+1, 1] rewards of ``task`` at each stored physics state, as ExoRL does.

    Row i is the reward for arriving in state i; row 0 (the reset state) is
    computed too, but the dummy first step carries no transition.
    """
    reward = task_reward(domain, task)
    physics = _relabel_physics(domain)
    states = np.asarray(episode["physics"], dtype=np.float64)
    values = np.empty((len(states), 1), np.float32)
    for row, state in enumerate(states):
        with physics.reset_context():
            physics.set_state(state)
        values[row, 0] = reward(physics)
    return values


def _buffer_dir(path: Path) -> Path:
    """Accept the dataset directory (holding ``buffer/``) or the buffer itself."""
    return path / BUFFER_DIR if (path / BUFFER_DIR).is_dir() else path


def _make_hint(buffer: Path) -> str:
    """The CLI command that makes this dataset, with domain and policy read from our layout if possible."""
    parts = buffer.parts
    if "exorl" in parts[:-1]:
        at = len(parts) - 1 - parts[::-1].index("exorl")
        if len(parts) > at + 2:
            return MAKE_HINT.format(domain=parts[at + 1], policy=parts[at + 2])
    return MAKE_HINT.format(domain="<domain>", policy="<policy>")


def _episode_files(buffer: Path) -> list[Path]:
    """Episode files sorted by their index."""
    matches = (
        [(EPISODE_PATTERN.fullmatch(p.name), p) for p in buffer.glob("episode_*.npz")]
        if buffer.is_dir()
        else []
    )
    files = sorted((int(match.group(1)), path) for match, path in matches if match)
    if not files:
        raise FileNotFoundError(
            f"No ExoRL episodes (episode_<idx>_<len>.npz) in {buffer}. "
            f"Collect them with `{_make_hint(buffer)}` (or envs.exorl.collect)."
        )
    return [path for _, path in files]


def _read_meta(buffer: Path) -> dict | None:
    meta_path = buffer.parent / META_FILE
    return json.loads(meta_path.read_text()) if meta_path.is_file() else None


def _check_complete(buffer: Path, meta: dict | None, files: list[Path]) -> None:
    if meta is not None and len(files) != len(meta["episodes"]):
        raise ValueError(
            f"{buffer} has {len(files)} episodes, {META_FILE} lists {len(meta['episodes'])}; "
            f"delete {buffer.parent} and rerun `{_make_hint(buffer)}`."
        )


def _infer_domain(buffer: Path, meta: dict | None) -> str:
    """Our meta.json names the domain; ExoRL's own layout is ``<domain>/<algorithm>/buffer``."""
    domain = meta["domain"] if meta is not None else buffer.parent.parent.name
    if domain not in DOMAINS:
        raise ValueError(
            f"Cannot relabel {buffer}: domain {domain!r} (from the path) is not one of "
            f"{sorted(DOMAINS)}; pass domain= explicitly."
        )
    return domain


def _read_episode(path: Path, with_pixels: bool) -> dict[str, np.ndarray]:
    keys = ["observation", "action", "discount", "physics"] + (["pixels"] if with_pixels else [])
    with np.load(path, allow_pickle=False) as data:
        missing = sorted(set(keys) - set(data.files))
        if missing:
            raise KeyError(f"{path} lacks {missing}")
        return {key: data[key] for key in keys}


def _transitions(
    episode: Mapping[str, np.ndarray], domain: str | None, task: str | None
) -> dict[str, np.ndarray]:
    """Row i-1 -> row i for i >= 1; the dummy row 0 only serves as the first observation."""
    flat = {
        "observation": episode["observation"][:-1],
        "action": episode["action"][1:],
        "next_observation": episode["observation"][1:],
        "discount": episode["discount"][1:].reshape(-1),
        "physics": episode["physics"][:-1],
        "next_physics": episode["physics"][1:],
    }
    if "pixels" in episode:
        flat["pixels"], flat["next_pixels"] = episode["pixels"][:-1], episode["pixels"][1:]
    if task is not None:
        flat["reward"] = relabel(episode, domain, task)[1:, 0]
    return flat


def load_exorl(
    path_or_dir: str | Path,
    task: str | None = None,
    domain: str | None = None,
    max_episodes: int | None = None,
    pixels: bool = False,
) -> dict[str, np.ndarray]:
    """Episodes of an ExoRL-layout directory (ours or ExoRL's) flattened into transitions.

    Returns ``observation``, ``action``, ``next_observation``, ``discount`` [N],
    ``episode`` [N] (index of the episode in file order),
    ``physics`` and ``next_physics`` (states of the two observations) and, with
    ``task``, its ``reward`` [N] at the next state, relabelled from physics.
    ``pixels`` adds ``pixels``/``next_pixels`` (these are large). ``domain`` is
    read from meta.json or the path unless given. ``max_episodes`` takes the
    first episodes by index (TD-JEPA uses the first 5000).
    """
    buffer = _buffer_dir(Path(path_or_dir))
    files = _episode_files(buffer)
    meta = _read_meta(buffer)
    _check_complete(buffer, meta, files)
    if task is not None:
        domain = domain or _infer_domain(buffer, meta)
        task_reward(domain, task)  # fail on an unknown task before reading anything
    parts = [
        _transitions(_read_episode(path, pixels), domain, task) for path in files[:max_episodes]
    ]
    for index, part in enumerate(parts):
        part["episode"] = np.full(len(part["action"]), index, np.int64)
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
