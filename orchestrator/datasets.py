"""Built-in dataset entries: generated moving shapes and user mp4 folders (V-JEPA CSV)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from omegaconf import ListConfig, OmegaConf

from envs import dmc_clips, moving_shapes, mp4
from envs.clips import VideoClips
from orchestrator.entries import ConfigError, DatasetEntry
from variants.base import DataSpec


class MissingDatasetError(FileNotFoundError):
    pass


class DataError(ConfigError):
    """The data a config points at cannot be used; the message names the file and the fix."""


STORAGE_ONLY = ("shard_size",)  # how files are cut, not what the data is


def data_node(name: str, generator_config: type, **defaults) -> type:
    """The Hydra `data` node of a generated dataset: the generator's own fields, plus name and root.

    Derived, not restated, so the two can never drift apart; `defaults` fill or replace the
    generator's defaults (e.g. the domain of an `exorl_walker_rnd` entry).
    """
    fields = [("name", str, dataclasses.field(default=name))]
    for f in dataclasses.fields(generator_config):
        if f.name in STORAGE_ONLY:
            continue
        if f.name in defaults:
            default = defaults[f.name]
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, tuple):  # OmegaConf keeps lists, not tuples
            fields.append((f.name, list[str], dataclasses.field(default_factory=lambda d=default: list(d))))
        else:
            fields.append((f.name, f.type, dataclasses.field(default=default)))
    fields.append(("root", "str | None", dataclasses.field(default=None)))  # default: $JEPA_DATA or the user cache dir
    return dataclasses.make_dataclass(f"{generator_config.__name__}Node", fields)


MovingShapesData = data_node("moving_shapes", moving_shapes.MovingShapesConfig)
DmcClipsData = data_node("dmc_clips", dmc_clips.DmcClipsConfig)


def generator_config(cls: type, cfg):
    """A data node back to the generator's config (lists back to tuples)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, (list, tuple, ListConfig)) else v for k, v in cfg.items() if k in names})


def _shapes_config(cfg) -> moving_shapes.MovingShapesConfig:
    return generator_config(moving_shapes.MovingShapesConfig, cfg)


def root_path(cfg) -> Path | None:
    """`data.root` as a path, or None for the default cache (`envs.cache.data_root()`)."""
    return Path(cfg.root) if cfg.get("root") else None


def prepare_moving_shapes(cfg) -> str:
    return str(moving_shapes.ensure_moving_shapes(_shapes_config(cfg), root_path(cfg)))


def load_moving_shapes(cfg, split: str) -> VideoClips:
    path = moving_shapes.ensure_moving_shapes(_shapes_config(cfg), root_path(cfg))
    return VideoClips(moving_shapes.load_moving_shapes(path, split), moving_shapes.NUM_CLASSES)


def moving_shapes_spec(cfg) -> DataSpec:
    return DataSpec(
        kind="video",
        frames=cfg.frames,
        size=cfg.size,
        channels=3,
        num_classes=moving_shapes.NUM_CLASSES,
    )


@dataclass
class VideoCsvData:
    """Real clips listed V-JEPA style: one `path label` line per video."""

    name: str = "video_csv"
    train_csv: str = "???"
    val_csv: str = "???"
    num_classes: int = 2
    frames: int = 8
    size: int = 32
    frame_step: int = 1


def prepare_video_csv(cfg) -> str:
    for key in ("train_csv", "val_csv"):
        if not Path(cfg[key]).is_file():
            raise MissingDatasetError(
                f"data.{key}: no such file {cfg[key]!r}. Fix: point data.{key} at a CSV of `path label` lines"
            )
    return str(Path(cfg.train_csv).parent)


def check_video_csv(cfg) -> None:
    """Both CSVs set and readable, every listed video there and decodable, labels < num_classes."""
    for key in ("train_csv", "val_csv"):
        fix = f"Fix: point data.{key} at a CSV of `path label` lines (relative video paths start at the CSV's folder)"
        if OmegaConf.is_missing(cfg, key):
            raise DataError(f"data.{key} is not set. {fix}")
        csv_path = Path(cfg[key]).expanduser()
        if not csv_path.is_file():
            raise DataError(f"data.{key}: no such file {str(csv_path)!r}. {fix}")
        try:
            entries = mp4.check_clip_csv(csv_path)
        except (FileNotFoundError, ValueError) as err:
            raise DataError(f"data.{key}: {err}. Fix: correct or remove that line of {csv_path}") from None
        label, line = max((label, line) for _, label, line in entries)
        if label >= cfg.num_classes:
            raise DataError(f"data.{key}: {csv_path}, line {line} has label {label}, but data.num_classes is "
                            f"{cfg.num_classes}. Fix: set data.num_classes={label + 1} (labels are 0 .. num_classes - 1)")


def load_video_csv(cfg, split: str) -> mp4.Mp4Clips:
    prepare_video_csv(cfg)
    return mp4.Mp4Clips(cfg[f"{split}_csv"], frames=cfg.frames, size=cfg.size, frame_step=cfg.frame_step)


def video_csv_spec(cfg) -> DataSpec:
    return DataSpec(kind="video", frames=cfg.frames, size=cfg.size, channels=3, num_classes={"label": cfg.num_classes})


def _dmc_config(cfg) -> dmc_clips.DmcClipsConfig:
    return generator_config(dmc_clips.DmcClipsConfig, cfg)


def prepare_dmc_clips(cfg) -> str:
    return str(dmc_clips.ensure_dmc_clips(_dmc_config(cfg), root_path(cfg)))


def load_dmc_clips(cfg, split: str) -> VideoClips:
    dmc = _dmc_config(cfg)
    path = dmc_clips.ensure_dmc_clips(dmc, root_path(cfg))
    return VideoClips(dmc_clips.load_dmc_clips(path, split), num_classes=dmc_clips.dmc_num_classes(dmc))


def dmc_clips_spec(cfg) -> DataSpec:
    return DataSpec(kind="video", frames=cfg.frames, size=cfg.size, channels=3, num_classes=dmc_clips.dmc_num_classes(_dmc_config(cfg)))


def video_datasets() -> list[DatasetEntry]:
    return [
        DatasetEntry(
            "moving_shapes",
            MovingShapesData,
            "generated clips: a moving target among static distractors; labels shape (4) and motion direction (8)",
            prepare_moving_shapes,
            moving_shapes_spec,
            load_moving_shapes,
        ),
        DatasetEntry(
            "dmc_clips",
            DmcClipsData,
            "rendered dm_control clips (MuJoCo, headless); labels domain (4) and motion backward/still/forward (3)",
            prepare_dmc_clips,
            dmc_clips_spec,
            load_dmc_clips,
        ),
        DatasetEntry(
            "video_csv",
            VideoCsvData,
            "your mp4 files listed in train/val CSVs (`path label` per line), decoded with PyAV",
            prepare_video_csv,
            video_csv_spec,
            load_video_csv,
            check_video_csv,
        ),
    ]
