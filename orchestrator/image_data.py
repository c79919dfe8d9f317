"""Dataset entries for images (I-JEPA, DMT-JEPA): generated `scenes` and the user's `image_folder`.

Both yield `image` [3, size, size]; scenes add a scene label (`scene`) and per-patch labels (`patch_class`,
so the dense probe runs), a folder its class label (`label`, one class per sub-folder).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from envs import scenes
from orchestrator.datasets import DataError, data_node, generator_config, root_path
from orchestrator.entries import DatasetEntry
from variants.base import DataSpec

ScenesData = data_node("scenes", scenes.ScenesConfig)


def _scenes_config(cfg) -> scenes.ScenesConfig:
    check_scenes(cfg)
    return generator_config(scenes.ScenesConfig, cfg)


def check_scenes(cfg) -> None:
    """Values the generator cannot use, as a user error naming the key."""
    for key, ok, fix in scenes.problems(cfg):
        if not ok:
            raise DataError(f"data.{key} {fix}. Fix: change data.{key}")


def prepare_scenes(cfg) -> str:
    return str(scenes.ensure_scenes(_scenes_config(cfg), root_path(cfg)))


def load_scenes(cfg, split: str) -> scenes.Scenes:
    path = scenes.ensure_scenes(_scenes_config(cfg), root_path(cfg))
    return scenes.Scenes(scenes.load_scenes(path, split), int(cfg.patch))


def scenes_spec(cfg) -> DataSpec:
    return DataSpec(kind="image", size=cfg.size, channels=3, input_key="image", inputs={"image": (3, cfg.size, cfg.size)},
                    num_classes={"scene": scenes.NUM_SCENE_CLASSES}, patch_labels={"patch_class": scenes.NUM_PATCH_CLASSES})


@dataclass
class ImageFolderData:
    """Your images, one sub-folder per class (`path/<class>/*.png|jpg`), or `path/train/<class>` and `path/val/<class>`."""

    name: str = "image_folder"
    path: str = "???"
    size: int = 32  # centre-cropped to a square, resized to size x size
    val_fraction: float = 0.2  # share held out (by file-name hash) when there are no train/ and val/ folders


def _folder(cfg) -> Path:
    if OmegaConf.is_missing(cfg, "path"):
        raise DataError("data.path is not set. Fix: add data.path=<folder of class sub-folders of PNG/JPEG images>")
    return Path(cfg.path).expanduser()


def check_image_folder(cfg) -> None:
    """Folder, class sub-folders and every image readable, before any worker starts."""
    if not 0.0 < cfg.val_fraction < 1.0:
        raise DataError(f"data.val_fraction is {cfg.val_fraction}. Fix: use a share strictly between 0 and 1, e.g. 0.2")
    if cfg.size < 8:
        raise DataError(f"data.size is {cfg.size}. Fix: use at least 8 pixels")
    try:
        for split in ("train", "val"):
            pairs = scenes.folder_split(_folder(cfg), split, float(cfg.val_fraction))
            if not pairs:
                raise DataError(f"data.path: {str(_folder(cfg))!r} leaves no {split} images. Fix: add images, or "
                                "change data.val_fraction")
            for f, _ in pairs:
                scenes.read_image(f, 8)
    except scenes.ImageFolderError as err:
        raise DataError(str(err)) from None


def prepare_image_folder(cfg) -> str:
    check_image_folder(cfg)
    return str(_folder(cfg))


def load_image_folder(cfg, split: str) -> scenes.ImageFolder:
    try:
        return scenes.ImageFolder(scenes.folder_split(_folder(cfg), split, float(cfg.val_fraction)), int(cfg.size))
    except scenes.ImageFolderError as err:
        raise DataError(str(err)) from None


def image_folder_spec(cfg) -> DataSpec:
    folder = _folder(cfg)
    root = folder / "train" if (folder / "train").is_dir() and (folder / "val").is_dir() else folder
    try:
        classes = len(scenes.class_dirs(root))
    except scenes.ImageFolderError as err:
        raise DataError(str(err)) from None
    return DataSpec(kind="image", size=cfg.size, channels=3, input_key="image", inputs={"image": (3, cfg.size, cfg.size)},
                    num_classes={"label": classes})


def image_entries() -> list[DatasetEntry]:
    return [
        DatasetEntry("scenes", ScenesData, "generated scenes: 1-2 shapes (4 classes) with nuisance colours/textures on textured "
                     "backgrounds; scene label (largest object) and per-patch labels (dense probe)",
                     prepare_scenes, scenes_spec, load_scenes, check_scenes),
        DatasetEntry("image_folder", ImageFolderData, "your PNG/JPEG images, one sub-folder per class (Pillow)",
                     prepare_image_folder, image_folder_spec, load_image_folder, check_image_folder),
    ]
