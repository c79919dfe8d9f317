"""dm_control clips: MuJoCo bodies (walker, cheetah, ...) driven by a smooth random policy, rendered headless.

Each clip is labelled by domain (readable from one frame: a sanity label) and by whether the body
moves backward, stays or moves forward (readable only across frames). Cached on disk by
``envs.cache`` and served by ``envs.clips.VideoClips`` with ``dmc_num_classes(cfg)``.
"""

from __future__ import annotations

import os
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from envs import RENDER_FLAGS, dm_control_suite, require_rendering
from envs.cache import (
    clip_rng,
    config_fingerprint,
    dataset_dir,
    ensure_dataset,
    is_complete,
    load_split,
    write_dataset,
)

# Bump when the simulation or rendering code changes so cached datasets are regenerated.
DMC_GENERATOR_VERSION = 1
DMC_HINT = "jepa data make dmc_clips"
DMC_RENDERING = "rendering dm_control clips (data=dmc_clips)"


@dataclass(frozen=True)
class DmcDomain:
    """Which task of a dm_control domain is simulated and how its forward position is read."""

    task: str
    body: str
    # Side cameras of the legged domains track the centre of mass of ``body``'s
    # subtree, so that is the motion the video shows (as the floor sliding by).
    # Cartpole's camera is fixed and the cart itself is what visibly slides.
    centre_of_mass: bool


DMC_DOMAINS = {
    "walker": DmcDomain("walk", "torso", centre_of_mass=True),
    "cheetah": DmcDomain("run", "torso", centre_of_mass=True),
    "hopper": DmcDomain("hop", "torso", centre_of_mass=True),
    "cartpole": DmcDomain("swingup", "cart", centre_of_mass=False),
}

MOTION_CLASSES = ("backward", "still", "forward")
# Mean forward speed over the clip (m/s, +x is forward) below which a clip counts
# as still. Under the random policy below and the default config this splits
# clips of every domain roughly into thirds.
STILL_SPEED = 0.25

# Smooth random policy: an Ornstein-Uhlenbeck process pulled towards a random
# per-episode bias. The persistent push moves bodies somewhere, forwards or
# backwards, where independent per-step noise would only make them jitter.
ACTION_REVERSION = 0.15
ACTION_NOISE = 0.3
ACTION_BIAS_MAX = 0.5

# Frames are rendered this many times larger and box-filtered down: cheap antialiasing.
RENDER_SUPERSAMPLING = 2  # shadows and reflections are off (envs.RENDER_FLAGS): ~4x faster in software


@dataclass
class DmcClipsConfig:
    """Everything that determines the dm_control clip dataset, bit for bit (per GL backend)."""

    domains: tuple[str, ...] = ("walker", "cheetah", "hopper", "cartpole")
    num_train: int = 512
    num_val: int = 128
    frames: int = 8
    size: int = 32
    frame_skip: int = 4  # control steps (action repeats) between rendered frames: enough motion to see at 32 px
    warmup_steps: int = 20  # random control steps before the first frame, so bodies move
    seed: int = 0
    shard_size: int = 256

    def __post_init__(self) -> None:
        self.domains = tuple(self.domains)  # lists arrive from YAML; a tuple keeps it hashable
        unknown = sorted(set(self.domains) - set(DMC_DOMAINS))
        _require_dmc(len(self.domains) > 0, "domains must not be empty")
        _require_dmc(not unknown, f"unknown domains {unknown}; known: {sorted(DMC_DOMAINS)}")
        _require_dmc(len(set(self.domains)) == len(self.domains), "domains must be distinct")
        _require_dmc(self.num_train >= 0 and self.num_val >= 0, "clip counts must be >= 0")
        _require_dmc(self.frames >= 2, "frames must be >= 2: motion needs two frames")
        _require_dmc(self.size >= 8, "size must be >= 8 pixels")
        _require_dmc(self.frame_skip >= 1, "frame_skip must be >= 1")
        _require_dmc(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        _require_dmc(self.seed >= 0, "seed must be >= 0")
        _require_dmc(self.shard_size >= 1, "shard_size must be >= 1")

    def fingerprint(self) -> str:
        """Short hash of the config; a new value means the cache must be rebuilt."""
        return config_fingerprint(self, DMC_GENERATOR_VERSION)


def _require_dmc(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"DmcClipsConfig: {message}")


def dmc_num_classes(cfg: DmcClipsConfig) -> dict[str, int]:
    """Label names and class counts of the dm_control clips, for ``VideoClips``."""
    return {"domain": len(cfg.domains), "motion": len(MOTION_CLASSES)}


# --------------------------------------------------------------------------
# Simulation and rendering
# --------------------------------------------------------------------------


class _Environments:
    """One dm_control environment per domain, loaded on first use and freed by ``close``.

    Reusing an environment, and so its GL context, across clips is far cheaper
    than loading one per clip. Freeing the contexts explicitly avoids the errors
    dm_control prints when they are left for interpreter exit.
    """

    def __init__(self) -> None:
        self._loaded = {}

    def __getitem__(self, domain: str):
        if domain not in self._loaded:
            # No time limit: an episode must never end (and reset) in the middle of a clip.
            task_kwargs = {"time_limit": float("inf")}
            task = DMC_DOMAINS[domain].task
            self._loaded[domain] = dm_control_suite().load(domain, task, task_kwargs=task_kwargs)
        return self._loaded[domain]

    def close(self) -> None:
        for env in self._loaded.values():
            env.physics.free()
        self._loaded.clear()


class _SmoothRandomActions:
    """Ornstein-Uhlenbeck actions around a random per-episode bias, within [-1, 1].

    All suite tasks used here take actions in [-1, 1].
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, ...]):
        self._rng = rng
        self._bias = rng.uniform(-ACTION_BIAS_MAX, ACTION_BIAS_MAX, size=shape)
        self._action = rng.uniform(-1.0, 1.0, size=shape)

    def __call__(self) -> np.ndarray:
        pull = ACTION_REVERSION * (self._bias - self._action)
        noise = ACTION_NOISE * self._rng.normal(size=self._action.shape)
        self._action = np.clip(self._action + pull + noise, -1.0, 1.0)
        return self._action


def _forward_position(physics, domain: str) -> float:
    """x coordinate (forward is +x) of what the camera shows moving."""
    spec = DMC_DOMAINS[domain]
    positions = physics.named.data.subtree_com if spec.centre_of_mass else physics.named.data.xpos
    return float(positions[spec.body, "x"])


def _render_frame(physics, size: int) -> np.ndarray:
    """Camera 0 as uint8 [size, size, 3], rendered larger and box-filtered down."""
    scale = RENDER_SUPERSAMPLING
    side = size * scale
    image = physics.render(side, side, camera_id=0, render_flag_overrides=RENDER_FLAGS)
    pooled = image.reshape(size, scale, size, scale, 3).mean(axis=(1, 3))
    return np.rint(pooled).astype(np.uint8)


def _motion_class(speed: float) -> int:
    """Index into ``MOTION_CLASSES`` for a mean forward speed in m/s."""
    if speed <= -STILL_SPEED:
        return 0
    if speed >= STILL_SPEED:
        return 2
    return 1


def _simulate_clip(
    env, domain: str, rng: np.random.Generator, cfg: DmcClipsConfig
) -> tuple[np.ndarray, float]:
    """Run one random episode; returns uint8 frames [T, H, W, 3] and the mean forward speed."""
    env.task.random.seed(int(rng.integers(2**31)))  # the task draws the initial pose from it
    env.reset()
    actions = _SmoothRandomActions(rng, env.action_spec().shape)
    for _ in range(cfg.warmup_steps):
        env.step(actions())
    start = _forward_position(env.physics, domain)
    frames = [_render_frame(env.physics, cfg.size)]
    for _ in range(cfg.frames - 1):
        for _ in range(cfg.frame_skip):
            env.step(actions())
        frames.append(_render_frame(env.physics, cfg.size))
    duration = (cfg.frames - 1) * cfg.frame_skip * env.control_timestep()
    return np.stack(frames), (_forward_position(env.physics, domain) - start) / duration


def generate_dmc_clips(
    cfg: DmcClipsConfig, split: str, start: int, count: int
) -> dict[str, np.ndarray]:
    """Clips ``start .. start+count-1`` of ``split``, each from its own random episode.

    Returns ``video`` uint8 [count, T, H, W, 3], ``domain`` int64 [count] (index
    into ``cfg.domains``), ``motion`` int64 [count] (index into ``MOTION_CLASSES``)
    and ``speed`` float32 [count], the mean forward speed in m/s that ``motion``
    thresholds at ``STILL_SPEED``. Every clip has its own random stream, so any
    chunking of a split (across processes, say) gives the same clips.
    """
    if start < 0 or count < 0:
        raise ValueError(f"start and count must be >= 0, got start={start}, count={count}")
    require_rendering(DMC_RENDERING)
    video = np.empty((count, cfg.frames, cfg.size, cfg.size, 3), dtype=np.uint8)
    domain = np.empty(count, dtype=np.int64)
    speed = np.empty(count, dtype=np.float32)
    with closing(_Environments()) as environments:
        for offset in range(count):
            rng = clip_rng(cfg.seed, split, start + offset)
            domain[offset] = rng.integers(len(cfg.domains))
            name = cfg.domains[domain[offset]]
            video[offset], speed[offset] = _simulate_clip(environments[name], name, rng, cfg)
    motion = np.array([_motion_class(value) for value in speed], dtype=np.int64)
    return {"video": video, "domain": domain, "motion": motion, "speed": speed}


# --------------------------------------------------------------------------
# On-disk cache
# --------------------------------------------------------------------------

_DMC_ARRAYS = {
    "domain": np.dtype(np.int64),
    "motion": np.dtype(np.int64),
    "speed": np.dtype(np.float32),
}


def dmc_clips_dir(cfg: DmcClipsConfig, root: Path | None = None) -> Path:
    """Where the dataset for ``cfg`` lives (whether or not it has been generated)."""
    return dataset_dir("dmc_clips", cfg.fingerprint(), root)


def _write_dmc_clips(cfg: DmcClipsConfig, directory: Path) -> None:
    dm_control_suite()  # settles MUJOCO_GL before it is recorded
    extra_meta = {
        "generator_version": DMC_GENERATOR_VERSION,
        "domains": {name: DMC_DOMAINS[name].task for name in cfg.domains},
        "motion_classes": list(MOTION_CLASSES),
        "still_speed": STILL_SPEED,
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
    }
    write_dataset(cfg, directory, partial(generate_dmc_clips, cfg), extra_meta)


def ensure_dmc_clips(cfg: DmcClipsConfig, root: Path | None = None) -> Path:
    """Generate the dataset for ``cfg`` unless a complete copy exists; return its directory.

    Same storage and guarantees as ``ensure_moving_shapes``: shards, meta.json
    written last, and a file lock so concurrent callers generate it once.
    """
    write = partial(_write_dmc_clips, cfg)
    if not is_complete(dmc_clips_dir(cfg, root), cfg.fingerprint()):
        require_rendering(DMC_RENDERING)  # one line naming the fix, before any file is made
    return ensure_dataset(dmc_clips_dir(cfg, root), cfg.fingerprint(), write)


def load_dmc_clips(path: Path, split: str) -> dict[str, np.ndarray]:
    """All clips of ``split`` from a dataset directory made by ``ensure_dmc_clips``."""
    return load_split(path, split, _DMC_ARRAYS, "dmc_clips", DMC_HINT)
