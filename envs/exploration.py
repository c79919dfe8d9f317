"""Exploration policies for reward-free data collection: uniform random actions, and an RND agent.

The "rnd" explorer is an actor-critic (TD3-style) trained online on Random Network Distillation
novelty, so it seeks states it has not seen. Both explorers act in the stored [-1, 1] action
scale and expose ``act(observation, rng)`` and ``observe(...)``; ``envs.exorl`` drives them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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


@dataclass(frozen=True)
class RndSettings:
    """Sizes and rates of the RND networks and the actor-critic alike."""

    hidden: int = 256
    lr: float = 1e-4
    updates_per_step: int = 1
    warmup_steps: int = 1000  # uniform random actions before the agent starts learning


class RndExplorer:
    """Deterministic actor with Gaussian noise and a twin critic (TD3-style), trained on RND novelty.

    Learns online while collecting: every environment step adds a transition and,
    after ``settings.warmup_steps`` uniform random steps, runs ``settings.updates_per_step``
    updates of the RND predictor, critic and actor. Intrinsic rewards are
    computed at update time (novelty changes as the predictor learns) and divided
    by their running std. Episodes end only by time, so every transition bootstraps.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        settings: RndSettings,
        seed: np.random.SeedSequence,
        capacity: int,
    ):
        self._settings = settings
        self._rng = np.random.default_rng(seed.spawn(1)[0])
        torch_seed = int(seed.generate_state(1)[0])
        self._torch_rng = torch.Generator().manual_seed(torch_seed)
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
            torch.manual_seed(torch_seed)
            self.rnd = RandomNetworkDistillation(obs_dim, settings.hidden, settings.lr)
            self.actor = nn.Sequential(
                _mlp(obs_dim, settings.hidden, action_dim, layer_norm=True), nn.Tanh()
            )
            self.critic = _TwinCritic(obs_dim, action_dim, settings.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self._actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=settings.lr)
        self._critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=settings.lr)
        self._reward_stats = RunningMeanStd(())
        self.replay = _Replay(capacity, obs_dim, action_dim)
        self.steps = 0

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        action_dim = self.replay.action.shape[1]
        if self.steps < self._settings.warmup_steps:
            return rng.uniform(-1.0, 1.0, size=action_dim).astype(np.float32)
        with torch.no_grad():
            mean = self.actor(torch.from_numpy(observation)[None])[0].numpy()
        noise = RND_ACTION_NOISE * rng.standard_normal(action_dim)
        return np.clip(mean + noise, -1.0, 1.0).astype(np.float32)

    def observe(self, observation, action, next_observation, discount: float) -> None:
        self.replay.add(observation, action, next_observation, discount)
        self.rnd.obs_stats.update(next_observation)
        self.steps += 1
        if self.steps >= self._settings.warmup_steps:
            for _ in range(self._settings.updates_per_step):
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

