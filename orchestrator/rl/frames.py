"""Pixel observations for RLlib-hosted runs without copying frames: every frame stored once, frame
*indices* through RLlib's offline pipeline, frame stacks gathered where a batch is used.

A 3-frame stack of 64 × 64 RGB as float32 is 147 KB; observation, next and future observation
columns would be ~9 GB per 20k transitions. Instead `FrameStore` keeps uint8 frames [F, 3, 64, 64]
(one per stored step, ~12 KB) and, per frame, the rows of its stack [F, 3] (oldest first; at an
episode's first frames the first frame repeats, so no stack reaches into the previous episode).
The Parquet file carries one int64 frame index per observation column; the learner's module turns
them into uint8 stacks [B, 9, 64, 64] per batch (`FrameStore.stacks`), and zero-shot inference on
the env runners does the same from the store's files (memory-mapped, shared by every process).
No RLlib here: the dataset entries (`orchestrator.rl.datasets`) build these.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.offline import OfflineRLData

STACK = 3
FRAMES_FILE, ROWS_FILE = "frames.npy", "rows.npy"


def stack_rows(episode_start: np.ndarray, stack: int = STACK) -> np.ndarray:
    """Rows [F, stack] of each frame's stack, oldest first, clipped at its episode's first frame."""
    start = np.asarray(episode_start, bool).copy()
    start[0] = True
    index = np.arange(len(start))
    first = np.maximum.accumulate(np.where(start, index, 0))  # each frame's episode start
    return np.maximum(index[:, None] - np.arange(stack - 1, -1, -1)[None, :], first[:, None])


class FrameStore:
    """uint8 frames [F, C, H, W] and stack rows [F, STACK]; `stacks(indices)` -> uint8 [B, STACK·C, H, W]."""

    def __init__(self, frames: np.ndarray, rows: np.ndarray, path: str | None = None):
        self.frames, self.rows, self.path = frames, rows, path

    @classmethod
    def from_episodes(cls, frames_hwc: np.ndarray, episode_start: np.ndarray) -> FrameStore:
        """Frames as envs store them (HWC) with a flag on each episode's first frame."""
        frames = np.ascontiguousarray(np.asarray(frames_hwc, np.uint8).transpose(0, 3, 1, 2))
        return cls(frames, stack_rows(episode_start))

    @classmethod
    def open(cls, path: str | Path) -> FrameStore:
        """A saved store, memory-mapped (read-only): processes on one machine share its pages."""
        path = Path(path)
        return cls(np.load(path / FRAMES_FILE, mmap_mode="r"), np.load(path / ROWS_FILE), str(path))

    def save(self, path: Path) -> None:
        """Both arrays into `path`, atomically (concurrent trials may write the same store)."""
        import os
        import shutil
        import time

        if (path / ROWS_FILE).is_file():
            return
        partial = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        partial.mkdir(parents=True)
        np.save(partial / FRAMES_FILE, self.frames)
        np.save(partial / ROWS_FILE, self.rows)
        try:
            partial.rename(path)
        except OSError:  # another trial got there first: same content
            shutil.rmtree(partial, ignore_errors=True)
        self.path = str(path)

    @property
    def stack_shape(self) -> tuple[int, int, int]:
        c, h, w = self.frames.shape[1:]
        return (self.rows.shape[1] * c, h, w)

    def stacks(self, indices) -> np.ndarray:
        """Frame stacks of frame indices [B] (any integer array), uint8 [B, STACK·C, H, W]."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        gathered = self.frames[self.rows[indices].reshape(-1)]
        return gathered.reshape(len(indices), *self.stack_shape)

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class FrameRLData(OfflineRLData):
    """Offline RL data whose observation columns hold frame indices into `frames`."""

    frames: FrameStore | None = None

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return self.frames.stack_shape

    @property
    def observation_dim(self) -> int:
        return int(np.prod(self.observation_shape))


def frame_transitions(lengths: np.ndarray) -> dict[str, np.ndarray]:
    """Frame indices of episodes stored as `lengths[e] + 1` consecutive frames each (ExoRL's layout):
    `observation`, `next_observation` and `episode` per transition, and `episode_start` per frame."""
    lengths = np.asarray(lengths, np.int64)
    frame_offsets = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    episode = np.repeat(np.arange(len(lengths)), lengths)
    transition_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    position = np.arange(len(episode)) - transition_offsets[episode]
    observation = frame_offsets[episode] + position
    start = np.zeros(int((lengths + 1).sum()), bool)
    start[frame_offsets] = True
    return {"observation": observation, "next_observation": observation + 1, "episode": episode,
            "episode_start": start}
