"""The `lidar_scenes` dataset entry (AD-L-JEPA, issue 21): generated LiDAR scenes (envs/lidar.py) as BEV grids.

Scenes are made once per config and cached under `envs.cache.data_root()/lidar_scenes/<fingerprint>/` (one
`.npz` per split, meta.json last), in chunks over Ray tasks when Ray is up (else in this process), with a
progress bar. A sample: `bev` [3, G, G] (the encoder's input), `bev_tokens` [G·G, 3] (the same cells as
tokens: the raw-input baseline's features), `boxes` [MAX_BOXES, 8] and `occupancy` [G·G] (the labels).
"""
from __future__ import annotations

import functools
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from envs import lidar
from envs.cache import (
    clip_rng,
    config_fingerprint,
    data_root,
    ensure_dataset,
    replace_atomically,
    write_json,
)
from orchestrator.datasets import DataError
from orchestrator.entries import DatasetEntry
from variants.base import DataSpec

GENERATOR_VERSION = 1
CHUNK = 64  # scenes per Ray task
KIND = "lidar_scenes"


@dataclass
class LidarScenesData:
    name: str = KIND
    seed: int = 0  # the scenes (fixed across the run's seeds: every seed sees the same data)
    num_train: int = 512
    num_val: int = 128
    grid: int = 32  # BEV cells per side
    cell: float = 0.5  # metres per cell (the 0.5 m)
    beams: int = 16
    azimuths: int = 360
    max_range: float = 20.0
    root: str = ""  # cache directory ("" = envs.cache.data_root())


@dataclass(frozen=True)
class _Key:
    """What decides the scenes (the fingerprint's input)."""

    seed: int
    num_train: int
    num_val: int
    grid: int
    cell: float
    beams: int
    azimuths: int
    max_range: float


def _key(cfg) -> _Key:
    return _Key(int(cfg.seed), int(cfg.num_train), int(cfg.num_val), int(cfg.grid), float(cfg.cell), int(cfg.beams),
                int(cfg.azimuths), float(cfg.max_range))


def _parts(key: _Key) -> tuple[lidar.Grid, lidar.Lidar]:
    return lidar.Grid(key.grid, key.cell), lidar.Lidar(key.beams, key.azimuths, max_range=key.max_range)


def make_chunk(key: _Key, split: str, start: int, count: int) -> dict[str, np.ndarray]:
    """Scenes start..start+count-1 of a split, each from its own stream."""
    grid, sensor = _parts(key)
    samples = [lidar.sample_arrays(*_scene(clip_rng(key.seed, split, i), grid, sensor), grid) for i in range(start, start + count)]
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}


def _scene(rng, grid, sensor):
    scene = lidar.make_scene(rng, grid, sensor)
    return scene.boxes, scene.points


def _generate(key: _Key, split: str, total: int) -> dict[str, np.ndarray]:
    """Every scene of a split: Ray tasks over chunks when Ray is up, else here; a progress bar on stderr."""
    from tqdm import tqdm

    starts = list(range(0, total, CHUNK))
    bar = tqdm(total=total, desc=f"lidar_scenes {split}", unit="scene", file=sys.stderr, disable=total < CHUNK)
    chunks = []
    try:
        import ray

        use_ray = ray.is_initialized()
    except ImportError:
        use_ray = False
    if use_ray:
        remote = ray.remote(num_cpus=1)(make_chunk)
        pending = {remote.remote(key, split, s, min(CHUNK, total - s)): s for s in starts}
        done = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            start = pending.pop(ready[0])
            done[start] = ray.get(ready[0])
            bar.update(len(done[start]["bev"]))
        chunks = [done[s] for s in starts]
    else:
        for s in starts:
            chunks.append(make_chunk(key, split, s, min(CHUNK, total - s)))
            bar.update(len(chunks[-1]["bev"]))
    bar.close()
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def dataset_path(cfg) -> Path:
    key = _key(cfg)
    return (Path(cfg.root) if cfg.root else data_root()) / KIND / config_fingerprint(key, GENERATOR_VERSION)


def prepare(cfg) -> str:
    check(cfg)
    key = _key(cfg)
    fingerprint = config_fingerprint(key, GENERATOR_VERSION)

    def write(directory: Path) -> None:
        counts = {"train": key.num_train, "val": key.num_val}
        for split, total in counts.items():
            arrays = _generate(key, split, total)
            replace_atomically(directory / f"{split}.npz", functools.partial(np.savez, **arrays))
        write_json(directory / "meta.json", {"fingerprint": fingerprint, "config": asdict(key), "counts": counts})

    return str(ensure_dataset(dataset_path(cfg), fingerprint, write))


def check(cfg) -> None:
    """Sizes the generator can use, as user errors naming the key."""
    for k in ("num_train", "num_val", "grid", "beams", "azimuths"):
        if int(cfg[k]) < 1:
            raise DataError(f"data.{k} is {cfg[k]}. Fix: use a positive integer")
    for k in ("cell", "max_range"):
        if not float(cfg[k]) > 0:
            raise DataError(f"data.{k} is {cfg[k]}. Fix: use a positive number of metres")
    if cfg.grid * cfg.cell / 2 < 4.0:
        raise DataError(f"data.grid × data.cell is {cfg.grid * cfg.cell} m, too small for a car 2 m clear of the sensor. "
                        "Fix: use at least 8 m (e.g. data.grid=32 data.cell=0.5)")


class BEVScenes(Dataset):
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.bev = torch.from_numpy(arrays["bev"])
        self.boxes = torch.from_numpy(arrays["boxes"])
        self.occupancy = torch.from_numpy(arrays["occupancy"]).flatten(1)

    def __len__(self) -> int:
        return len(self.bev)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        bev = self.bev[i]
        return {"bev": bev, "bev_tokens": bev.flatten(1).T, "boxes": self.boxes[i], "occupancy": self.occupancy[i]}


@functools.lru_cache(maxsize=8)
def _read(path: str, split: str) -> dict[str, np.ndarray]:
    with np.load(Path(path) / f"{split}.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load(cfg, split: str) -> BEVScenes:
    if split not in ("train", "val"):
        raise DataError(f"data={KIND}: no split {split!r}. Fix: use train or val")
    return BEVScenes(_read(prepare(cfg), split))


def spec(cfg) -> DataSpec:
    g = int(cfg.grid)
    return DataSpec(kind="bev", size=g, channels=3, input_key="bev", raw_key="bev_tokens", inputs={"bev": (3, g, g)})


def lidar_entries() -> list[DatasetEntry]:
    return [DatasetEntry(KIND, LidarScenesData, "generated LiDAR driving scenes (cars, pedestrians, cyclists, walls, poles) "
                         "ray-cast and binned to BEV grids, with object boxes and per-cell occupancy", prepare, spec, load, check)]
