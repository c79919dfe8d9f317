"""Offline RL datasets in one shape, whatever their source (ExoRL layout, OGBench npz).

A zero-shot agent needs three things from a dataset: reward-free transitions to train on,
a way to state each evaluation task (reward-labelled samples, or a goal), and an env to
act in. `OfflineRLData` holds all three so the trainer handles ExoRL and OGBench alike.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

TRANSITION_KEYS = ("observation", "action", "next_observation", "future_observation")


@dataclass
class OfflineRLData:
    transitions: dict[str, np.ndarray]  # TRANSITION_KEYS (float32 [N, ...]) plus "episode" (int64 [N])
    tasks: tuple[str, ...]
    task_kind: str  # "reward": z from labelled samples; "goal": z from the goal observation
    env_maker: Callable[..., object]  # env_maker(**env_kwargs) -> gymnasium env with set_task(task)
    env_kwargs: dict = field(default_factory=dict)
    rewards: Callable[[str, np.ndarray], np.ndarray] | None = None  # (task, row indices) -> reward at next_observation

    def labelled(self, task: str, num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(next_observations, rewards) of `num_samples` random transitions: what zero-shot
        inference of a reward task may see, as in the paper's protocol."""
        if self.rewards is None:
            raise ValueError(f"task {task!r}: this dataset states tasks as goals, not rewards")
        rows = np.random.default_rng(seed).choice(len(self), size=min(num_samples, len(self)), replace=False)
        rows.sort()
        return self.transitions["next_observation"][rows], self.rewards(task, rows)

    def __len__(self) -> int:
        return len(self.transitions["observation"])

    @property
    def observation_dim(self) -> int:
        return int(self.transitions["observation"].shape[-1])

    @property
    def action_dim(self) -> int:
        return int(self.transitions["action"].shape[-1])


def future_rows(episode: np.ndarray, discount: float, rng: np.random.Generator) -> np.ndarray:
    """For each row, a later row of the same episode at a geometric offset (mean 1/(1-discount)).

    The next state is offset 1; offsets that run past the episode's end stop at its last
    transition. These are the goals mixed into training task vectors (HER-style).
    """
    n = len(episode)
    offset = rng.geometric(1.0 - discount, size=n) - 1  # 0, 1, ... -> next state, ...
    starts = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])
    ends = np.r_[starts[1:], n] - 1  # last row of each episode
    last = ends[np.searchsorted(starts, np.arange(n), side="right") - 1]
    return np.minimum(np.arange(n) + offset, last)


def with_future(transitions: dict[str, np.ndarray], discount: float, seed: int) -> dict[str, np.ndarray]:
    """Add `future_observation`: the next_observation of a `future_rows` row."""
    rows = future_rows(transitions["episode"], discount, np.random.default_rng(seed))
    return {**transitions, "future_observation": transitions["next_observation"][rows]}
