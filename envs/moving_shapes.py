"""Moving shapes: a synthetic clip dataset whose labels can only be read across frames.

Each clip has one *target* shape that translates in a straight line and a few *distractor*
shapes that stay put (jittering by at most one pixel). The labels, the target's shape class and
its direction of motion, can only be read by comparing frames, so a probe on frozen features
tells whether an encoder models time rather than single images. Drawn with numpy; cached on disk
by ``envs.cache`` and served by ``envs.clips.VideoClips``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from envs.cache import (
    clip_rng,
    config_fingerprint,
    dataset_dir,
    ensure_dataset,
    load_split,
    write_dataset,
)

SHAPE_CLASSES = ("square", "circle", "triangle", "cross")
NUM_DIRECTIONS = 8
NUM_CLASSES = {"shape": len(SHAPE_CLASSES), "motion": NUM_DIRECTIONS}  # label arrays served, with class counts

# Bump when the drawing code changes so cached datasets are regenerated.
GENERATOR_VERSION = 1

# Shape diameter as a fraction of the frame side, for target and distractors
# alike so that size gives nothing away.
SHAPE_DIAMETER_RANGE = (0.15, 0.25)
# Angle jitter inside a compass sector, as a fraction of the sector width;
# +-0.25 keeps the true direction at least half a sector away from the border.
DIRECTION_JITTER = 0.25
# Probability that a distractor is shifted by one pixel in a given frame.
DISTRACTOR_JITTER_PROB = 0.25
# Shapes always have one channel at least this bright; backgrounds stay far
# below it, so shapes never vanish into the texture.
SHAPE_MIN_PEAK = 170.0
BACKGROUND_LEVEL_RANGE = (25.0, 85.0)
TEXTURE_AMPLITUDE = 15.0
STATIC_NOISE_STD = 4.0
FRAME_NOISE_STD = 2.5

MAKE_HINT = "jepa data make moving_shapes"


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@dataclass
class MovingShapesConfig:
    """Everything that determines the moving-shapes dataset, bit for bit."""

    num_train: int = 2048
    num_val: int = 512
    frames: int = 8
    size: int = 32
    num_distractors: int = 2
    speed_min: float = 0.04
    speed_max: float = 0.12
    seed: int = 0
    shard_size: int = 1024

    def __post_init__(self) -> None:
        _require(self.num_train >= 0 and self.num_val >= 0, "clip counts must be >= 0")
        _require(self.frames >= 2, "frames must be >= 2: motion needs two frames")
        _require(self.size >= 8, "size must be >= 8 pixels")
        _require(self.num_distractors >= 0, "num_distractors must be >= 0")
        _require(0 < self.speed_min <= self.speed_max, "need 0 < speed_min <= speed_max")
        _require(self.seed >= 0, "seed must be >= 0")
        _require(self.shard_size >= 1, "shard_size must be >= 1")

    def fingerprint(self) -> str:
        """Short hash of the config; a new value means the cache must be rebuilt."""
        return config_fingerprint(self, GENERATOR_VERSION)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"MovingShapesConfig: {message}")


# --------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------


@dataclass
class _Sprite:
    """One shape in a clip: what it looks like and where it is in every frame."""

    shape_id: int
    colour: np.ndarray  # float [3]
    radius: float
    centres: np.ndarray  # float [T, 2] as (row, col)


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates of pixel centres, shared by all masks."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    return rows, cols


def _square(dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    return (np.abs(dy) <= r) & (np.abs(dx) <= r)


def _circle(dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    return dy * dy + dx * dx <= r * r


def _triangle(dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    """Apex up: the half-width grows from 0 at the top row to r at the bottom."""
    return (dy <= r) & (np.abs(dx) <= (dy + r) / 2)


def _cross(dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    arm = max(0.35 * r, 0.6)
    ady, adx = np.abs(dy), np.abs(dx)
    return ((adx <= arm) & (ady <= r)) | ((ady <= arm) & (adx <= r))


_SHAPE_MASKS = (_square, _circle, _triangle, _cross)
assert len(_SHAPE_MASKS) == len(SHAPE_CLASSES)


def _sprite_mask(sprite: _Sprite, size: int) -> np.ndarray:
    """Boolean [T, size, size] coverage of a sprite over the whole clip."""
    rows, cols = _pixel_grid(size)
    dy = rows[None] - sprite.centres[:, 0, None, None]
    dx = cols[None] - sprite.centres[:, 1, None, None]
    return _SHAPE_MASKS[sprite.shape_id](dy, dx, sprite.radius)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour with one bright channel, so it always stands out from the background."""
    colour = rng.uniform(40.0, 255.0, size=3)
    colour[rng.integers(3)] = rng.uniform(SHAPE_MIN_PEAK, 255.0)
    return colour


def _random_radius(rng: np.random.Generator, size: int) -> float:
    return float(rng.uniform(*SHAPE_DIAMETER_RANGE) * size / 2)


def _target_path(
    rng: np.random.Generator, cfg: MovingShapesConfig, radius: float
) -> tuple[np.ndarray, int]:
    """Straight-line centres that keep the whole target in view, and the direction label.

    Direction k points at k * 45 degrees counter-clockwise from east, with north
    being up in the image (decreasing row). When the sampled speed would carry
    the target out of the frame, the path is shortened (never bent), so the
    label is always the true direction of motion.
    """
    direction = int(rng.integers(NUM_DIRECTIONS))
    sector = 2 * math.pi / NUM_DIRECTIONS
    angle = (direction + rng.uniform(-DIRECTION_JITTER, DIRECTION_JITTER)) * sector
    speed = rng.uniform(cfg.speed_min, cfg.speed_max) * cfg.size
    travel = np.array([-math.sin(angle), math.cos(angle)]) * speed * (cfg.frames - 1)
    room = cfg.size - 1 - 2 * radius
    longest = np.abs(travel).max()
    if longest > room:
        travel *= room / longest
    low = radius + np.maximum(0.0, -travel)
    high = cfg.size - 1 - radius - np.maximum(0.0, travel)
    start = rng.uniform(low, np.maximum(low, high))  # equal when the path spans the room
    progress = np.linspace(0.0, 1.0, cfg.frames)[:, None]
    return start + progress * travel, direction


def _draw_target(rng: np.random.Generator, cfg: MovingShapesConfig) -> tuple[_Sprite, int]:
    shape_id = int(rng.integers(len(SHAPE_CLASSES)))
    colour = _random_colour(rng)
    radius = _random_radius(rng, cfg.size)
    centres, direction = _target_path(rng, cfg, radius)
    return _Sprite(shape_id, colour, radius, centres), direction


def _draw_distractor(rng: np.random.Generator, cfg: MovingShapesConfig) -> _Sprite:
    """A shape that stays where it is, apart from occasional one-pixel jitter."""
    shape_id = int(rng.integers(len(SHAPE_CLASSES)))
    colour = _random_colour(rng)
    radius = _random_radius(rng, cfg.size)
    home = rng.uniform(radius, cfg.size - 1 - radius, size=2)
    jitters = rng.random(cfg.frames) < DISTRACTOR_JITTER_PROB
    axes = rng.integers(2, size=cfg.frames)
    signs = rng.choice((-1.0, 1.0), size=cfg.frames)
    offsets = np.zeros((cfg.frames, 2))
    offsets[np.arange(cfg.frames), axes] = np.where(jitters, signs, 0.0)
    return _Sprite(shape_id, colour, radius, home + offsets)


@lru_cache(maxsize=8)
def _upsampling_matrix(size: int, coarse: int) -> np.ndarray:
    """Linear interpolation weights [size, coarse] used to smooth the texture."""
    positions = np.linspace(0, coarse - 1, size)
    eye = np.eye(coarse)
    return np.stack([np.interp(positions, np.arange(coarse), eye[j]) for j in range(coarse)], 1)


def _background(rng: np.random.Generator, cfg: MovingShapesConfig) -> np.ndarray:
    """Static tinted texture [size, size, 3]: a smooth luminance field plus fine noise."""
    tint = rng.uniform(*BACKGROUND_LEVEL_RANGE, size=3)
    upsample = _upsampling_matrix(cfg.size, 4)
    smooth = upsample @ rng.uniform(-1.0, 1.0, size=(4, 4)) @ upsample.T
    grain = rng.normal(0.0, STATIC_NOISE_STD, size=(cfg.size, cfg.size))
    return tint + (TEXTURE_AMPLITUDE * smooth + grain)[..., None]


def _render_clip(rng: np.random.Generator, cfg: MovingShapesConfig) -> tuple[np.ndarray, int, int]:
    """Draw one clip; returns (uint8 [T, H, W, 3], shape label, motion label).

    Random draws happen in a fixed order (target, background, frame noise,
    distractors, stacking order) so the target and background of a clip do not
    depend on how many distractors are drawn.
    """
    target, direction = _draw_target(rng, cfg)
    background = _background(rng, cfg)
    frame_noise = rng.normal(0.0, FRAME_NOISE_STD, size=(cfg.frames, cfg.size, cfg.size, 1))
    sprites = [_draw_distractor(rng, cfg) for _ in range(cfg.num_distractors)]
    # Random stacking order, so occlusion does not single out the target.
    sprites.insert(int(rng.integers(len(sprites) + 1)), target)

    canvas = np.broadcast_to(background, (cfg.frames, cfg.size, cfg.size, 3))
    for sprite in sprites:
        canvas = np.where(_sprite_mask(sprite, cfg.size)[..., None], sprite.colour, canvas)
    video = np.clip(np.rint(canvas + frame_noise), 0, 255).astype(np.uint8)
    return video, target.shape_id, direction


def generate_moving_shapes(
    cfg: MovingShapesConfig, split: str, start: int, count: int
) -> dict[str, np.ndarray]:
    """Clips ``start .. start+count-1`` of ``split``.

    Returns ``video`` uint8 [count, T, H, W, 3], ``shape`` int64 [count] (index
    into ``SHAPE_CLASSES``) and ``motion`` int64 [count] (compass sector of the
    target's velocity, 0 = east, counter-clockwise).
    """
    if start < 0 or count < 0:
        raise ValueError(f"start and count must be >= 0, got start={start}, count={count}")
    video = np.empty((count, cfg.frames, cfg.size, cfg.size, 3), dtype=np.uint8)
    shape = np.empty(count, dtype=np.int64)
    motion = np.empty(count, dtype=np.int64)
    for offset in range(count):
        rng = clip_rng(cfg.seed, split, start + offset)
        video[offset], shape[offset], motion[offset] = _render_clip(rng, cfg)
    return {"video": video, "shape": shape, "motion": motion}


# --------------------------------------------------------------------------
# On-disk cache
# --------------------------------------------------------------------------

_ARRAYS = {"shape": np.dtype(np.int64), "motion": np.dtype(np.int64)}


def moving_shapes_dir(cfg: MovingShapesConfig, root: Path | None = None) -> Path:
    """Where the dataset for ``cfg`` lives (whether or not it has been generated)."""
    return dataset_dir("moving_shapes", cfg.fingerprint(), root)


def _write_moving_shapes(cfg: MovingShapesConfig, directory: Path) -> None:
    extra_meta = {
        "generator_version": GENERATOR_VERSION,
        "shape_classes": list(SHAPE_CLASSES),
        "num_directions": NUM_DIRECTIONS,
    }
    write_dataset(cfg, directory, partial(generate_moving_shapes, cfg), extra_meta)


def ensure_moving_shapes(cfg: MovingShapesConfig, root: Path | None = None) -> Path:
    """Generate the dataset for ``cfg`` unless a complete copy exists; return its directory.

    Concurrent callers (several workers starting at once) serialise on a file
    lock: one generates, the others wait and then reuse its output.
    """
    write = partial(_write_moving_shapes, cfg)
    return ensure_dataset(moving_shapes_dir(cfg, root), cfg.fingerprint(), write)


def load_moving_shapes(path: Path, split: str) -> dict[str, np.ndarray]:
    """All clips of ``split`` from a dataset directory made by ``ensure_moving_shapes``."""
    return load_split(path, split, _ARRAYS, "moving_shapes", MAKE_HINT)

