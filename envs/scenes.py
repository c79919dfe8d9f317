"""Generated scenes for image JEPAs: a few objects of known classes on textured backgrounds.

Each scene holds `min_objects`..`max_objects` (default 1-2) shapes (square, circle, triangle, cross) painted in a
random colour family with a random texture (solid, stripes, checks) over a textured background.
Served per scene: the image, per-pixel instance and class masks, a scene label (the class of the
largest visible object) and per-patch labels (the majority class of each `patch`×`patch` cell, 0 =
background) for the dense probe. Shape is the only thing that names a class: colour and texture are
nuisances, so a probe must read form, not a colour histogram. Deterministic per seed; cached on
disk by ``envs.cache``. Also an ImageFolder-style loader for the user's own PNG/JPEG files (Pillow).
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from envs.cache import (
    META_FILE,
    SPLITS,
    clip_rng,
    config_fingerprint,
    dataset_dir,
    ensure_dataset,
    load_npz_split,
    replace_atomically,
    write_json,
)
from envs.clips import normalise

SHAPE_CLASSES = ("square", "circle", "triangle", "cross")
NUM_SCENE_CLASSES = len(SHAPE_CLASSES)
NUM_PATCH_CLASSES = len(SHAPE_CLASSES) + 1  # 0 = background
COLOUR_FAMILIES = ((1.0, 0.25, 0.2), (0.2, 1.0, 0.3), (0.25, 0.35, 1.0), (1.0, 0.9, 0.2), (0.9, 0.3, 1.0))
TEXTURES = ("solid", "stripes", "checks")
GENERATOR_VERSION = 2
MAKE_HINT = "jepa data make scenes"
RADIUS_RANGE = (0.18, 0.3)  # object radius as a share of the image side (smaller: no probe read the label)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


@dataclass
class ScenesConfig:
    """Everything that determines the scenes dataset, bit for bit."""

    num_train: int = 2048
    num_val: int = 512
    size: int = 32
    patch: int = 4  # per-patch labels are cut on this grid: must equal model.patch
    min_objects: int = 1
    max_objects: int = 2  # at 32² more objects occlude each other until the largest one's shape is unreadable
    seed: int = 0

    def __post_init__(self) -> None:
        for key, ok, fix in problems(self):
            if not ok:
                raise ValueError(f"ScenesConfig: data.{key} {fix}")

    def fingerprint(self) -> str:
        return config_fingerprint(self, GENERATOR_VERSION)


def problems(cfg) -> list[tuple[str, bool, str]]:
    """(key, ok, what is wrong and the fix) for every constraint on a scenes config."""
    return [
        ("num_train", cfg.num_train >= 1 and cfg.num_val >= 1, "and data.num_val must be >= 1"),
        ("size", cfg.size >= 16, f"is {cfg.size}; use at least 16 pixels"),
        ("patch", cfg.patch >= 1 and cfg.size % cfg.patch == 0,
         f"({cfg.patch}) does not divide data.size ({cfg.size}); pick a patch that divides it (and the same model.patch)"),
        ("min_objects", 1 <= cfg.min_objects <= cfg.max_objects, "must be >= 1 and <= data.max_objects"),
        ("seed", cfg.seed >= 0, "must be >= 0"),
    ]


# --- drawing ------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    return rows, cols


def _shape_mask(shape_id: int, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    if shape_id == 0:
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if shape_id == 1:
        return dy * dy + dx * dx <= r * r
    if shape_id == 2:  # apex up
        return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)
    arm = max(0.35 * r, 0.8)
    return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))


def _texture(rng: np.random.Generator, size: int, kind: int) -> np.ndarray:
    """A [size, size] modulation in [0.55, 1]: flat, stripes at a random angle, or checks."""
    rows, cols = _pixel_grid(size)
    if kind == 0:
        return np.ones((size, size), np.float32)
    period = rng.uniform(2.5, 5.0)
    if kind == 1:
        angle = rng.uniform(0, np.pi)
        phase = (rows * np.sin(angle) + cols * np.cos(angle)) / period
        return 0.55 + 0.45 * (np.floor(phase) % 2)
    return 0.55 + 0.45 * ((np.floor(rows / period) + np.floor(cols / period)) % 2)


@lru_cache(maxsize=8)
def _upsampling(size: int, coarse: int) -> np.ndarray:
    """Linear interpolation weights [size, coarse] that smooth a coarse random field."""
    eye = np.eye(coarse)
    positions = np.linspace(0, coarse - 1, size)
    return np.stack([np.interp(positions, np.arange(coarse), eye[j]) for j in range(coarse)], 1)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dim tinted texture [size, size, 3]: a smooth field, a weak pattern and pixel noise."""
    tint = rng.uniform(20.0, 80.0, size=3)
    up = _upsampling(size, 4)
    smooth = up @ rng.uniform(-1.0, 1.0, size=(4, 4)) @ up.T
    pattern = _texture(rng, size, int(rng.integers(len(TEXTURES))))
    lum = 14.0 * smooth + 12.0 * pattern + rng.normal(0.0, 3.0, size=(size, size))
    return tint + lum[..., None]


def render_scene(rng: np.random.Generator, cfg: ScenesConfig) -> dict[str, np.ndarray]:
    """One scene: image uint8 [H, W, 3], instance and class masks uint8 [H, W], scene label."""
    size = cfg.size
    rows, cols = _pixel_grid(size)
    image = _background(rng, size)
    instance = np.zeros((size, size), np.uint8)
    classes = np.zeros((size, size), np.uint8)
    shapes = []
    for k in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        shape_id = int(rng.integers(len(SHAPE_CLASSES)))
        r = float(rng.uniform(*RADIUS_RANGE) * size)
        centre = rng.uniform(r, size - 1 - r, size=2)
        mask = _shape_mask(shape_id, rows - centre[0], cols - centre[1], r)
        colour = np.array(COLOUR_FAMILIES[int(rng.integers(len(COLOUR_FAMILIES)))]) * rng.uniform(170.0, 255.0)
        texture = _texture(rng, size, int(rng.integers(len(TEXTURES))))
        image = np.where(mask[..., None], colour * texture[..., None], image)
        instance[mask], classes[mask] = k + 1, shape_id + 1
        shapes.append(shape_id)
    areas = np.bincount(instance.ravel(), minlength=len(shapes) + 1)[1:]
    label = shapes[int(np.argmax(areas))]  # largest visible object (after occlusion)
    image = np.clip(np.rint(image + rng.normal(0.0, 2.0, size=image.shape)), 0, 255).astype(np.uint8)
    return {"image": image, "instance": instance, "classes": classes, "scene": np.int64(label)}


def patch_labels(classes: np.ndarray, patch: int) -> np.ndarray:
    """Per-patch majority class of [..., H, W] class masks -> [..., (H/p)·(W/p)] in raster (row-major) order,
    the order of the ViT's patch tokens; ties go to the lower class (background first)."""
    *lead, h, w = classes.shape
    cells = classes.reshape(*lead, h // patch, patch, w // patch, patch).swapaxes(-3, -2)
    cells = cells.reshape(*lead, (h // patch) * (w // patch), patch * patch)
    counts = (cells[..., None] == np.arange(NUM_PATCH_CLASSES)).sum(-2)
    return counts.argmax(-1).astype(np.int64)


def generate_scenes(cfg: ScenesConfig, split: str, start: int, count: int) -> dict[str, np.ndarray]:
    """Scenes ``start .. start+count-1`` of ``split``; each draws from its own stream (``clip_rng``)."""
    drawn = [render_scene(clip_rng(cfg.seed, split, start + i), cfg) for i in range(count)]
    return {key: np.stack([d[key] for d in drawn]) for key in ("image", "instance", "classes", "scene")}


# --- cache ----------------------------------------------------------------------------------------
def scenes_dir(cfg: ScenesConfig, root: Path | None = None) -> Path:
    return dataset_dir("scenes", cfg.fingerprint(), root)


def _write_scenes(cfg: ScenesConfig, directory: Path) -> None:
    counts = {"train": cfg.num_train, "val": cfg.num_val}
    for split in SPLITS:
        arrays = generate_scenes(cfg, split, 0, counts[split])
        replace_atomically(directory / f"{split}.npz", partial(np.savez, **arrays))
    write_json(directory / META_FILE, {"fingerprint": cfg.fingerprint(), "config": asdict(cfg), "counts": counts,
                                       "shape_classes": list(SHAPE_CLASSES), "generator_version": GENERATOR_VERSION})


def ensure_scenes(cfg: ScenesConfig, root: Path | None = None) -> Path:
    """Generate the dataset for ``cfg`` unless a complete copy exists (one writer among concurrent workers)."""
    return ensure_dataset(scenes_dir(cfg, root), cfg.fingerprint(), partial(_write_scenes, cfg))


def load_scenes(path: Path, split: str) -> dict[str, np.ndarray]:
    """One split as arrays; a missing or truncated copy names the command that makes it."""
    return load_npz_split(path, split, "scenes", MAKE_HINT, "image")


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] to the normalised float32 [3, H, W] model input (the clips' normalisation)."""
    return normalise(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0).contiguous()


class Scenes(Dataset):
    """Scenes as dict samples: ``image`` [3, H, W], ``scene`` label, ``patch_class`` [tokens] (raster order)."""

    def __init__(self, arrays: dict[str, np.ndarray], patch: int):
        self.images = arrays["image"]
        self.scene = arrays["scene"].astype(np.int64)
        self.patch_class = patch_labels(arrays["classes"], patch)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": image_to_tensor(self.images[i]), "scene": torch.tensor(int(self.scene[i])),
                "patch_class": torch.from_numpy(self.patch_class[i])}


# --- ImageFolder-style directories -----------------------------------------------------------------
class ImageFolderError(ValueError):
    """A folder or file the loader cannot use; the message names it and the fix."""


def class_dirs(root: Path) -> list[Path]:
    """The class sub-directories of `root` (sorted: label k is the k-th), each with at least one image."""
    if not root.is_dir():
        raise ImageFolderError(f"data.path: no such directory {str(root)!r}. Fix: point data.path at a folder of "
                               "class sub-folders holding PNG/JPEG images")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise ImageFolderError(f"data.path: {str(root)!r} has no class sub-folders. Fix: put each class's images "
                               "in a sub-folder of its own (data.path/<class>/<image>.png)")
    for d in dirs:
        if not image_files(d):
            raise ImageFolderError(f"data.path: class folder {str(d)!r} has no images ({', '.join(IMAGE_EXTENSIONS)}). "
                                   "Fix: add images to it or remove the folder")
    return dirs


def image_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def folder_split(root: Path, split: str, val_fraction: float) -> list[tuple[Path, int]]:
    """(file, label) pairs of `split`: `root/train` and `root/val` if both exist, else a fixed hash split of `root`."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        return [(f, label) for label, d in enumerate(class_dirs(root / split)) for f in image_files(d)]
    pairs = [(f, label) for label, d in enumerate(class_dirs(root)) for f in image_files(d)]
    in_val = [zlib.crc32(f.name.encode()) % 1000 < val_fraction * 1000 for f, _ in pairs]
    return [p for p, v in zip(pairs, in_val) if v == (split == "val")]


def read_image(path: Path, size: int) -> np.ndarray:
    """A file as uint8 [size, size, 3]: RGB, centre-cropped to a square, resized; an unreadable file names itself."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageFolderError(f"data.path: cannot read image {str(path)!r} ({err}). Fix: replace or delete that file") from None


class ImageFolder(Dataset):
    """Decoded once into memory: ``image`` [3, size, size] and ``label``."""

    def __init__(self, pairs: list[tuple[Path, int]], size: int):
        self.images = np.stack([read_image(f, size) for f, _ in pairs]) if pairs else np.empty((0, size, size, 3), np.uint8)
        self.labels = np.array([label for _, label in pairs], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": image_to_tensor(self.images[i]), "label": torch.tensor(int(self.labels[i]))}
