"""Built-in dataset entries: generated moving shapes and user mp4 folders (V-JEPA CSV)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import ListConfig, OmegaConf

from envs import video
from orchestrator import registry
from orchestrator.config import ConfigError
from orchestrator.registry import DatasetEntry
from variants.base import DataSpec


class MissingDatasetError(FileNotFoundError):
    pass


class DataError(ConfigError):
    """The data a config points at cannot be used; the message names the file and the fix."""


def check_data(data_cfg, seen: set[str] | None = None) -> None:
    """Run the dataset's own checks of the user's files (once per distinct data config in `seen`).

    Called on the driver before Ray starts, so bad files fail in seconds with `error: ... Fix:`.
    """
    key = json.dumps(OmegaConf.to_container(data_cfg, resolve=False), sort_keys=True, default=str)
    if seen is not None:
        if key in seen:
            return
        seen.add(key)
    entry = registry.dataset(data_cfg.name)
    if entry.check is not None:
        entry.check(data_cfg)


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


MovingShapesData = data_node("moving_shapes", video.MovingShapesConfig)
DmcClipsData = data_node("dmc_clips", video.DmcClipsConfig)


def _generator_config(cls: type, cfg):
    """A data node back to the generator's config (lists back to tuples)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, (list, tuple, ListConfig)) else v for k, v in cfg.items() if k in names})


def _shapes_config(cfg) -> video.MovingShapesConfig:
    return _generator_config(video.MovingShapesConfig, cfg)


def _root(cfg) -> Path | None:
    return Path(cfg.root) if cfg.get("root") else None


def prepare_moving_shapes(cfg) -> str:
    return str(video.ensure_moving_shapes(_shapes_config(cfg), _root(cfg)))


def load_moving_shapes(cfg, split: str) -> video.VideoClips:
    path = video.ensure_moving_shapes(_shapes_config(cfg), _root(cfg))
    return video.VideoClips(video.load_moving_shapes(path, split))


def moving_shapes_spec(cfg) -> DataSpec:
    return DataSpec(
        kind="video",
        frames=cfg.frames,
        size=cfg.size,
        channels=3,
        num_classes={"shape": len(video.SHAPE_CLASSES), "motion": video.NUM_DIRECTIONS},
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
            entries = video.check_clip_csv(csv_path)
        except (FileNotFoundError, ValueError) as err:
            raise DataError(f"data.{key}: {err}. Fix: correct or remove that line of {csv_path}") from None
        label, line = max((label, line) for _, label, line in entries)
        if label >= cfg.num_classes:
            raise DataError(f"data.{key}: {csv_path}, line {line} has label {label}, but data.num_classes is "
                            f"{cfg.num_classes}. Fix: set data.num_classes={label + 1} (labels are 0 .. num_classes - 1)")


def load_video_csv(cfg, split: str) -> video.Mp4Clips:
    prepare_video_csv(cfg)
    return video.Mp4Clips(cfg[f"{split}_csv"], frames=cfg.frames, size=cfg.size, frame_step=cfg.frame_step)


def video_csv_spec(cfg) -> DataSpec:
    return DataSpec(kind="video", frames=cfg.frames, size=cfg.size, channels=3, num_classes={"label": cfg.num_classes})


def _dmc_config(cfg) -> video.DmcClipsConfig:
    return _generator_config(video.DmcClipsConfig, cfg)


def prepare_dmc_clips(cfg) -> str:
    return str(video.ensure_dmc_clips(_dmc_config(cfg), _root(cfg)))


def load_dmc_clips(cfg, split: str) -> video.VideoClips:
    dmc = _dmc_config(cfg)
    path = video.ensure_dmc_clips(dmc, _root(cfg))
    return video.VideoClips(video.load_dmc_clips(path, split), num_classes=video.dmc_num_classes(dmc))


def dmc_clips_spec(cfg) -> DataSpec:
    return DataSpec(kind="video", frames=cfg.frames, size=cfg.size, channels=3, num_classes=video.dmc_num_classes(_dmc_config(cfg)))


def builtin_datasets() -> list[DatasetEntry]:
    from orchestrator import rl_datasets  # builds on this module's helpers

    return video_datasets() + rl_datasets.exorl_entries() + rl_datasets.ogbench_entries()


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
