"""Video data for JEPA pretraining and probing.

Two sources live here:

* **Moving shapes**: a synthetic clip dataset generated with numpy. Each clip has
  one *target* shape that translates in a straight line and a few *distractor*
  shapes that stay put (jittering by at most one pixel). The labels, the
  target's shape class and its direction of motion, can only be read by
  comparing frames, so a probe on frozen features tells whether an encoder
  models time rather than single images.
* **Mp4 clips**: real videos listed in a V-JEPA style CSV (``<path> <label>``).
* **dm_control clips**: MuJoCo bodies (walker, cheetah, ...) driven by a smooth
  random policy and rendered headless, labelled by domain (readable from one
  frame: a sanity label) and by whether the body moves backward, stays or moves
  forward (readable only across frames).

All datasets yield ``float32`` video tensors shaped ``[3, T, H, W]``, scaled to
``[0, 1]`` and then normalised with mean ``NORM_MEAN`` and std ``NORM_STD``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import platformdirs
import torch
import torch.nn.functional as F
from filelock import FileLock
from torch.utils.data import Dataset

from envs import require_rendering, settle_gl_backend

SHAPE_CLASSES = ("square", "circle", "triangle", "cross")
NUM_DIRECTIONS = 8

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

NORM_MEAN = 0.5
NORM_STD = 0.25

SPLITS = ("train", "val")
META_FILE = "meta.json"
MAKE_HINT = "jepa data make moving_shapes"


def data_root() -> Path:
    """Where datasets are cached: ``$JEPA_DATA`` if set, else the user cache dir."""
    override = os.environ.get("JEPA_DATA")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("jepa-orchestrator"))


# --------------------------------------------------------------------------
# Moving shapes: configuration
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
        return _config_fingerprint(self, GENERATOR_VERSION)


def _config_fingerprint(cfg, generator_version: int) -> str:
    """Short hash of a dataset config together with the version of the code drawing it."""
    payload = {"generator_version": generator_version, **asdict(cfg)}
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _require(condition: bool, message: str, owner: str = "MovingShapesConfig") -> None:
    if not condition:
        raise ValueError(f"{owner}: {message}")


# --------------------------------------------------------------------------
# Moving shapes: drawing
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


def _clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Independent stream per clip, so any chunking of a split gives the same clips."""
    split_id = zlib.crc32(split.encode())
    return np.random.default_rng(np.random.SeedSequence([seed, split_id, index]))


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
        rng = _clip_rng(cfg.seed, split, start + offset)
        video[offset], shape[offset], motion[offset] = _render_clip(rng, cfg)
    return {"video": video, "shape": shape, "motion": motion}


# --------------------------------------------------------------------------
# On-disk cache shared by the generated datasets
# --------------------------------------------------------------------------

# Makes clips ``start .. start+count-1`` of a split, as named arrays of equal length.
ChunkGenerator = Callable[[str, int, int], dict[str, np.ndarray]]


def _dataset_dir(kind: str, fingerprint: str, root: Path | None) -> Path:
    base = Path(root) if root is not None else data_root()
    return base / kind / fingerprint


def _is_complete(dataset_dir: Path, fingerprint: str) -> bool:
    """A dataset counts as present only once its meta.json, written last, exists."""
    try:
        meta = json.loads((dataset_dir / META_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return meta.get("fingerprint") == fingerprint


def _replace_atomically(path: Path, write) -> None:
    """Write through a temporary file so readers never see a partial file."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        write(handle)
    os.replace(tmp, path)


def _write_split(
    generate: ChunkGenerator, shard_size: int, dataset_dir: Path, split: str, total: int
) -> list[str]:
    names = []
    for k, start in enumerate(range(0, total, shard_size)):
        arrays = generate(split, start, min(shard_size, total - start))
        name = f"{split}-{k:05d}.npz"
        _replace_atomically(dataset_dir / name, lambda handle: np.savez(handle, **arrays))
        names.append(name)
    return names


def _write_dataset(cfg, dataset_dir: Path, generate: ChunkGenerator, extra_meta: Mapping) -> None:
    """Shards of every split, then meta.json last, so that it marks a complete dataset.

    ``cfg`` is a dataset config: a dataclass with ``num_train``, ``num_val``,
    ``shard_size`` and ``fingerprint()``.
    """
    counts = {"train": cfg.num_train, "val": cfg.num_val}
    shards = {
        split: _write_split(generate, cfg.shard_size, dataset_dir, split, counts[split])
        for split in SPLITS
    }
    meta = {
        "fingerprint": cfg.fingerprint(),
        "config": asdict(cfg),
        "counts": counts,
        "shards": shards,
        **extra_meta,
    }
    text = json.dumps(meta, indent=2, sort_keys=True).encode()
    _replace_atomically(dataset_dir / META_FILE, lambda handle: handle.write(text))


def _ensure_dataset(dataset_dir: Path, fingerprint: str, write: Callable[[Path], None]) -> Path:
    """Run ``write(dataset_dir)`` unless a complete copy exists; return the directory.

    Concurrent callers (several workers starting at once) serialise on a file
    lock: one generates, the others wait and then reuse its output.
    """
    if _is_complete(dataset_dir, fingerprint):
        return dataset_dir
    dataset_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dataset_dir / ".lock")):
        if not _is_complete(dataset_dir, fingerprint):
            write(dataset_dir)
    return dataset_dir


def _read_meta(path: Path, kind: str, hint: str) -> dict:
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"No complete {kind} dataset at {path} ({META_FILE} is missing). "
            f"Generate it with `{hint}`."
        )
    return json.loads(meta_path.read_text())


def _empty_split(config: Mapping, arrays: Mapping[str, np.dtype]) -> dict[str, np.ndarray]:
    frames, size = config["frames"], config["size"]
    empty = {name: np.empty(0, dtype=dtype) for name, dtype in arrays.items()}
    return {"video": np.empty((0, frames, size, size, 3), dtype=np.uint8), **empty}


def _load_split(
    path: Path, split: str, arrays: Mapping[str, np.dtype], kind: str, hint: str
) -> dict[str, np.ndarray]:
    """``video`` plus the per-clip ``arrays`` of one split, checked against meta.json."""
    path = Path(path)
    meta = _read_meta(path, kind, hint)
    if split not in meta["shards"]:
        raise ValueError(f"Unknown split {split!r} in {path}; available: {sorted(meta['shards'])}")
    keys = ("video", *arrays)
    parts = []
    for name in meta["shards"][split]:
        with np.load(path / name, allow_pickle=False) as shard:
            parts.append({key: shard[key] for key in keys})
    if not parts:
        return _empty_split(meta["config"], arrays)
    loaded = {key: np.concatenate([part[key] for part in parts]) for key in keys}
    expected = meta["counts"][split]
    if len(loaded["video"]) != expected:
        raise ValueError(
            f"{path}: split {split!r} has {len(loaded['video'])} clips, meta.json says {expected}; "
            f"delete the directory and rerun `{hint}`."
        )
    return loaded


# --------------------------------------------------------------------------
# Moving shapes: on-disk cache
# --------------------------------------------------------------------------

_MOVING_SHAPES_ARRAYS = {"shape": np.dtype(np.int64), "motion": np.dtype(np.int64)}


def moving_shapes_dir(cfg: MovingShapesConfig, root: Path | None = None) -> Path:
    """Where the dataset for ``cfg`` lives (whether or not it has been generated)."""
    return _dataset_dir("moving_shapes", cfg.fingerprint(), root)


def _write_moving_shapes(cfg: MovingShapesConfig, dataset_dir: Path) -> None:
    extra_meta = {
        "generator_version": GENERATOR_VERSION,
        "shape_classes": list(SHAPE_CLASSES),
        "num_directions": NUM_DIRECTIONS,
    }
    _write_dataset(cfg, dataset_dir, partial(generate_moving_shapes, cfg), extra_meta)


def ensure_moving_shapes(cfg: MovingShapesConfig, root: Path | None = None) -> Path:
    """Generate the dataset for ``cfg`` unless a complete copy exists; return its directory.

    Concurrent callers (several workers starting at once) serialise on a file
    lock: one generates, the others wait and then reuse its output.
    """
    write = partial(_write_moving_shapes, cfg)
    return _ensure_dataset(moving_shapes_dir(cfg, root), cfg.fingerprint(), write)


def load_moving_shapes(path: Path, split: str) -> dict[str, np.ndarray]:
    """All clips of ``split`` from a dataset directory made by ``ensure_moving_shapes``."""
    return _load_split(path, split, _MOVING_SHAPES_ARRAYS, "moving_shapes", MAKE_HINT)


# --------------------------------------------------------------------------
# Torch datasets
# --------------------------------------------------------------------------


def _normalise(unit_video: torch.Tensor) -> torch.Tensor:
    return (unit_video - NORM_MEAN) / NORM_STD


def clip_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] frames to the normalised float32 [3, T, H, W] model input."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)
    return _normalise(video.float() / 255.0).contiguous()


MOVING_SHAPES_NUM_CLASSES = {"shape": len(SHAPE_CLASSES), "motion": NUM_DIRECTIONS}


class VideoClips(Dataset):
    """Generated clip arrays (``video`` plus integer labels) as a torch dataset.

    ``num_classes`` names the label arrays to serve, in order, with their class
    counts; the default serves moving shapes (from ``load_moving_shapes``).
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        num_classes: Mapping[str, int] = MOVING_SHAPES_NUM_CLASSES,
    ):
        self._num_classes = dict(num_classes)
        missing = {"video", *self.labels} - set(arrays)
        if missing:
            raise KeyError(f"VideoClips needs arrays {sorted(missing)}")
        self._video = arrays["video"]
        self._targets = {name: np.asarray(arrays[name], dtype=np.int64) for name in self.labels}
        for name, values in self._targets.items():
            if len(values) != len(self._video):
                raise ValueError(f"{name!r} has {len(values)} entries for {len(self._video)} clips")

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self._num_classes)

    @property
    def num_classes(self) -> dict[str, int]:
        return dict(self._num_classes)

    def __len__(self) -> int:
        return len(self._video)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"video": clip_to_tensor(self._video[index])}
        for name, values in self._targets.items():
            item[name] = torch.tensor(int(values[index]), dtype=torch.int64)
        return item


# --------------------------------------------------------------------------
# Real videos
# --------------------------------------------------------------------------

_ENCODER_PREFERENCE = ("libx264", "mpeg4")


@lru_cache(maxsize=1)
def _available_encoder() -> str:
    """First encoder this PyAV/FFmpeg build can actually write with."""
    import av

    for name in _ENCODER_PREFERENCE:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # PyAV raises UnknownCodecError or ValueError depending on version
            continue
        return name
    raise RuntimeError(f"PyAV has none of the encoders {_ENCODER_PREFERENCE}")


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError("frames is empty")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even height and width, got {height}x{width}")


def write_mp4(path: Path, frames: np.ndarray, fps: int = 8, codec: str | None = None) -> None:
    """Encode uint8 [T, H, W, 3] RGB frames as an mp4 (libx264 if present, else mpeg4)."""
    import av

    frames = np.asarray(frames)
    _check_frames(frames)
    codec = codec or _available_encoder()
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "16"}
        else:
            stream.bit_rate = max(width * height * fps * 8, 200_000)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush delayed frames


def _parse_clip_line(line: str, csv_path: Path, line_number: int) -> tuple[Path, int]:
    parts = line.rsplit(maxsplit=1)
    if len(parts) != 2 or not parts[1].isdigit():
        raise ValueError(
            f"{csv_path}, line {line_number}: expected '<path> <non-negative integer label>', "
            f"got {line!r}"
        )
    video_path = Path(parts[0]).expanduser()
    if not video_path.is_absolute():
        video_path = csv_path.parent / video_path
    return video_path, int(parts[1])


def _read_clip_csv(csv_path: Path) -> list[tuple[Path, int, int]]:
    """(video path, label, line number) for each non-blank line of a V-JEPA CSV."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"Clip list {csv_path} does not exist")
    entries = []
    for line_number, line in enumerate(csv_path.read_text().splitlines(), start=1):
        if line.strip():
            entries.append((*_parse_clip_line(line.strip(), csv_path, line_number), line_number))
    if not entries:
        raise ValueError(f"Clip list {csv_path} lists no videos")
    return entries


def _decode_first_frames(path: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` RGB frames from the start of the video, stopping early."""
    import av

    decoded = []
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        for frame in container.decode(container.streams.video[0]):
            decoded.append(frame.to_ndarray(format="rgb24"))
            if len(decoded) >= count:
                break
    if not decoded:
        raise ValueError(f"{path} has no decodable frames")
    return decoded


def check_clip_csv(csv_path: Path) -> list[tuple[Path, int, int]]:
    """The CSV's entries, once every listed video exists and decodes its first frame.

    A quick look before training (one frame per file), so a missing or truncated mp4 is
    named with its CSV line instead of failing a trial midway.
    """
    import av

    csv_path = Path(csv_path)
    entries = _read_clip_csv(csv_path)
    for video_path, _, line_number in entries:
        where = f"{video_path} (listed in {csv_path}, line {line_number})"
        if not video_path.is_file():
            raise FileNotFoundError(f"Video {where} does not exist")
        try:
            _decode_first_frames(video_path, 1)
        except (av.error.FFmpegError, ValueError) as err:
            raise ValueError(f"Video {where} cannot be decoded ({err})") from None
    return entries


def _resize(video: torch.Tensor, size: int) -> torch.Tensor:
    """Float [T, 3, H, W] to [T, 3, size, size]; antialiased when shrinking."""
    if video.shape[-2:] == (size, size):
        return video
    shrinking = min(video.shape[-2:]) > size
    return F.interpolate(
        video, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking
    )


class Mp4Clips(Dataset):
    """Videos listed in a V-JEPA style CSV (``<path> <label>`` per line) as fixed-size clips.

    Each item takes ``frames`` frames from the start of the video with stride
    ``frame_step`` (repeating the last frame of short videos) resized to
    ``size`` x ``size``.
    """

    def __init__(self, csv_path: Path, frames: int, size: int, frame_step: int = 1):
        if frames < 1 or size < 1 or frame_step < 1:
            raise ValueError(f"frames, size and frame_step must be >= 1, got {frames}, {size}, {frame_step}")
        self.csv_path = Path(csv_path)
        self.frames = frames
        self.size = size
        self.frame_step = frame_step
        self._entries = _read_clip_csv(self.csv_path)

    @property
    def labels(self) -> tuple[str, ...]:
        return ("label",)

    @property
    def num_classes(self) -> dict[str, int]:
        return {"label": max(label for _, label, _ in self._entries) + 1}

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        video_path, label, line_number = self._entries[index]
        if not video_path.is_file():
            raise FileNotFoundError(
                f"Video {video_path} (listed in {self.csv_path}, line {line_number}) does not exist"
            )
        span = (self.frames - 1) * self.frame_step + 1
        decoded = _decode_first_frames(video_path, span)
        picks = np.minimum(np.arange(self.frames) * self.frame_step, len(decoded) - 1)
        video = torch.from_numpy(np.stack([decoded[i] for i in picks]))
        video = _resize(video.permute(0, 3, 1, 2).float(), self.size)
        video = _normalise(video.permute(1, 0, 2, 3) / 255.0).contiguous()
        return {"video": video, "label": torch.tensor(label, dtype=torch.int64)}


# --------------------------------------------------------------------------
# dm_control clips: configuration
# --------------------------------------------------------------------------

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
RENDER_SUPERSAMPLING = 2
# Without shadows and floor reflections software rendering is ~4x faster, and at
# 32 pixels they add little.
RENDER_FLAGS = {"shadow": False, "reflection": False}


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
        return _config_fingerprint(self, DMC_GENERATOR_VERSION)


def _require_dmc(condition: bool, message: str) -> None:
    _require(condition, message, owner="DmcClipsConfig")


def dmc_num_classes(cfg: DmcClipsConfig) -> dict[str, int]:
    """Label names and class counts of the dm_control clips, for ``VideoClips``."""
    return {"domain": len(cfg.domains), "motion": len(MOTION_CLASSES)}


# --------------------------------------------------------------------------
# dm_control clips: simulation and rendering
# --------------------------------------------------------------------------


def _dm_control_suite():
    """Import dm_control lazily: it picks its GL backend from MUJOCO_GL at first import."""
    settle_gl_backend()
    from dm_control import suite

    return suite


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
            self._loaded[domain] = _dm_control_suite().load(domain, task, task_kwargs=task_kwargs)
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
            rng = _clip_rng(cfg.seed, split, start + offset)
            domain[offset] = rng.integers(len(cfg.domains))
            name = cfg.domains[domain[offset]]
            video[offset], speed[offset] = _simulate_clip(environments[name], name, rng, cfg)
    motion = np.array([_motion_class(value) for value in speed], dtype=np.int64)
    return {"video": video, "domain": domain, "motion": motion, "speed": speed}


# --------------------------------------------------------------------------
# dm_control clips: on-disk cache and torch dataset
# --------------------------------------------------------------------------

_DMC_ARRAYS = {
    "domain": np.dtype(np.int64),
    "motion": np.dtype(np.int64),
    "speed": np.dtype(np.float32),
}


def dmc_clips_dir(cfg: DmcClipsConfig, root: Path | None = None) -> Path:
    """Where the dataset for ``cfg`` lives (whether or not it has been generated)."""
    return _dataset_dir("dmc_clips", cfg.fingerprint(), root)


def _write_dmc_clips(cfg: DmcClipsConfig, dataset_dir: Path) -> None:
    _dm_control_suite()  # settles MUJOCO_GL before it is recorded
    extra_meta = {
        "generator_version": DMC_GENERATOR_VERSION,
        "domains": {name: DMC_DOMAINS[name].task for name in cfg.domains},
        "motion_classes": list(MOTION_CLASSES),
        "still_speed": STILL_SPEED,
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
    }
    _write_dataset(cfg, dataset_dir, partial(generate_dmc_clips, cfg), extra_meta)


def ensure_dmc_clips(cfg: DmcClipsConfig, root: Path | None = None) -> Path:
    """Generate the dataset for ``cfg`` unless a complete copy exists; return its directory.

    Same storage and guarantees as ``ensure_moving_shapes``: shards, meta.json
    written last, and a file lock so concurrent callers generate it once.
    """
    write = partial(_write_dmc_clips, cfg)
    if not _is_complete(dmc_clips_dir(cfg, root), cfg.fingerprint()):
        require_rendering(DMC_RENDERING)  # one line naming the fix, before any file is made
    return _ensure_dataset(dmc_clips_dir(cfg, root), cfg.fingerprint(), write)


def load_dmc_clips(path: Path, split: str) -> dict[str, np.ndarray]:
    """All clips of ``split`` from a dataset directory made by ``ensure_dmc_clips``."""
    return _load_split(path, split, _DMC_ARRAYS, "dmc_clips", DMC_HINT)
