"""The `lidar_scenes` dataset entry (AD-L-JEPA, issue 21): generated LiDAR scenes (envs/lidar.py) as BEV grids.

Scenes are made once per config and cached under `envs.cache.data_root()/lidar_scenes/<fingerprint>/` (one
`.npz` per split, meta.json last), in chunks over Ray tasks when Ray is up (else in this process), with a
progress bar. A sample: `bev` [3, G, G] (the encoder's input), `bev_tokens` [G·G, 3] (the same cells as
tokens: the raw-input baseline's features), `boxes` [MAX_BOXES, 8] and `occupancy` [G·G] (the labels).

The `lidar_kitti` entry serves the same samples from a user's KITTI-object-style directory (see `LidarKittiData`).
"""
from __future__ import annotations

import functools
import hashlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from envs import lidar
from envs.cache import (
    clip_rng,
    config_fingerprint,
    data_root,
    ensure_dataset,
    is_complete,
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


# ------------------------------------------------------------------------- lidar_kitti: the user's KITTI files
KITTI_KIND = "lidar_kitti"
KITTI_VERSION = 1


@dataclass
class LidarKittiData:
    """Your KITTI-object-style directory, binned to the `lidar_scenes` grid (so the same variants and `bev_detection` run).

    `path/velodyne/<id>.bin` (float32 x, y, z, reflectance) and `path/label_2/<id>.txt` (KITTI label lines: Car/Van,
    Pedestrian/Person_sitting, Cyclist kept; DontCare, Misc, Truck, Tram skipped; others an error), or the same under
    `path/training/`. Split: `path/ImageSets/{train,val}.txt` (one id a line) when present, else the last
    `val_fraction` of the sorted ids (KITTI frames come in sequences; a tail split keeps neighbours out of val).
    Boxes: camera coordinates to the LiDAR frame by `calib/<id>.txt` (R0_rect, Tr_velo_to_cam) where present, else
    the fixed approximation of `envs.lidar.read_labels` (x = z_cam, y = −x_cam, z = −y_cam: frames co-located,
    ~0.3 m off on real KITTI, under a cell). Points off the grid are cropped; boxes whose centre is off it dropped.
    The grid's heights run from z_min = −0.5 m with the ground at 0: KITTI's LiDAR sits 1.73 m up, so use
    data.z_offset=1.73 there (added to every point's and box's z). Converted once, cached like `lidar_scenes`.
    """

    name: str = KITTI_KIND
    path: str = "???"
    val_fraction: float = 0.2  # share of sorted ids held out (the tail) when there is no ImageSets/
    grid: int = 32  # BEV cells per side
    cell: float = 0.5  # metres per cell
    z_offset: float = 0.0  # metres added to z so the ground sits at 0 (KITTI velodyne: 1.73)
    root: str = ""  # cache directory ("" = envs.cache.data_root())


@dataclass(frozen=True)
class _KittiKey:
    """What decides the converted arrays: the directory, the grid, and the files' names, sizes and times."""

    path: str
    grid: int
    cell: float
    z_offset: float
    splits: str
    files: str


def kitti_dir(cfg) -> Path:
    if OmegaConf.is_missing(cfg, "path"):
        raise DataError("data.path is not set. Fix: add data.path=<KITTI-style directory with velodyne/ and label_2/>")
    path = Path(cfg.path).expanduser()
    if not path.is_dir():
        raise DataError(f"data.path: {str(path)!r} is not a directory. Fix: point data.path at a KITTI-style directory "
                        "holding velodyne/<id>.bin and label_2/<id>.txt")
    return path


def kitti_files(path: Path) -> Path:
    """The folder holding velodyne/ and label_2/: `path` itself, or `path/training` (the KITTI download's layout)."""
    for base in (path, path / "training"):
        if (base / "velodyne").is_dir():
            return base
    raise DataError(f"{path / 'velodyne'}: no such folder. Fix: point data.path at the directory holding velodyne/<id>.bin "
                    "and label_2/<id>.txt (KITTI object: .../training)")


def _ids_file(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def kitti_splits(cfg) -> dict[str, list[str]]:
    """Ids per split: ImageSets/{train,val}.txt when present, else the sorted ids' tail as val."""
    path = kitti_dir(cfg)
    sets = path / "ImageSets"
    if sets.is_dir():
        splits = {}
        for split in ("train", "val"):
            if not (sets / f"{split}.txt").is_file():
                raise DataError(f"{sets / f'{split}.txt'}: no such file. Fix: list the {split} ids there, one a line, "
                                "or remove ImageSets/ to split by data.val_fraction")
            splits[split] = _ids_file(sets / f"{split}.txt")
        return splits
    ids = sorted(p.stem for p in (kitti_files(path) / "velodyne").glob("*.bin"))
    val = max(1, round(len(ids) * float(cfg.val_fraction))) if ids else 0
    return {"train": ids[: len(ids) - val], "val": ids[len(ids) - val:]}


def _scene_files(base: Path, scene: str) -> tuple[Path, Path, Path]:
    return base / "velodyne" / f"{scene}.bin", base / "label_2" / f"{scene}.txt", base / "calib" / f"{scene}.txt"


def read_calib(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """R0_rect [3, 3] and Tr_velo_to_cam [4, 4] of a KITTI calib file."""
    rows = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    try:
        r0 = np.array(rows["R0_rect"].split(), float).reshape(3, 3)
        tr = np.vstack([np.array(rows["Tr_velo_to_cam"].split(), float).reshape(3, 4), [0.0, 0.0, 0.0, 1.0]])
    except (KeyError, ValueError):
        raise DataError(f"{path}: needs an R0_rect line of 9 numbers and a Tr_velo_to_cam line of 12. "
                        "Fix: copy the frame's calib file from the KITTI download, or delete it to use the fixed approximation") from None
    return r0, tr


def calibrated(boxes: np.ndarray, r0: np.ndarray, tr: np.ndarray) -> np.ndarray:
    """Boxes from `read_labels` (fixed approximation) moved to the LiDAR frame by the frame's calibration instead.

    Undo the approximation to get KITTI's rectified-camera bottom centre, then LiDAR = Tr⁻¹ · R0⁻¹ · cam; the centre is
    half a height above the bottom. Yaw keeps −ry − π/2 (KITTI's rotation is a near-exact axis swap)."""
    if len(boxes) == 0:
        return boxes
    cam = np.stack([-boxes[:, 2], -(boxes[:, 3] - boxes[:, 6] / 2), boxes[:, 1]], 1)
    ref = np.linalg.solve(r0, cam.T)
    velo = np.linalg.solve(tr, np.vstack([ref, np.ones(len(boxes))]))[:3].T
    out = boxes.copy()
    out[:, 1:4] = velo
    out[:, 3] += boxes[:, 6] / 2
    return out


def kitti_boxes(base: Path, scene: str, z_offset: float) -> np.ndarray:
    """A scene's object boxes [K, 8] in the LiDAR frame, z shifted by `z_offset` (before cropping to the grid)."""
    _, label, calib = _scene_files(base, scene)
    try:
        boxes = lidar.read_labels(label)
    except lidar.LidarError as err:
        raise DataError(str(err)) from None
    if calib.is_file():
        boxes = calibrated(boxes, *read_calib(calib))
    boxes[:, 3] += z_offset
    return boxes


def on_grid(boxes: np.ndarray, grid: lidar.Grid) -> np.ndarray:
    """The boxes whose centre lies in the BEV square (the others have no cells to be detected in)."""
    return boxes[(np.abs(boxes[:, 1]) < grid.half) & (np.abs(boxes[:, 2]) < grid.half)]


def kitti_sample(base: Path, scene: str, grid: lidar.Grid, z_offset: float) -> dict[str, np.ndarray]:
    """One scene as the generated path stores it (`lidar.sample_arrays`): points cropped to the grid by `bev`."""
    bin_path, *_ = _scene_files(base, scene)
    try:
        points = lidar.read_bin(bin_path).copy()
        points[:, 2] += z_offset
        return lidar.sample_arrays(on_grid(kitti_boxes(base, scene, z_offset), grid), points, grid)
    except lidar.LidarError as err:
        raise DataError(str(err)) from None


def check_kitti(cfg) -> None:
    """Every used scene's files present and well-formed, errors naming the file, before any worker starts.

    Sizes are checked by stat (cheap); label files are parsed (unknown classes, short lines, too many objects)."""
    if not 0.0 < float(cfg.val_fraction) < 1.0:
        raise DataError(f"data.val_fraction is {cfg.val_fraction}. Fix: use a share strictly between 0 and 1, e.g. 0.2")
    if int(cfg.grid) < 1 or not float(cfg.cell) > 0:
        raise DataError(f"data.grid={cfg.grid}, data.cell={cfg.cell}. Fix: use a positive number of cells and of metres")
    path = kitti_dir(cfg)
    base = kitti_files(path)
    if not any((base / "velodyne").glob("*.bin")):
        raise DataError(f"{base / 'velodyne'}: no .bin files. Fix: put the KITTI velodyne point files (<id>.bin, float32 "
                        "x, y, z, reflectance) there")
    grid = lidar.Grid(int(cfg.grid), float(cfg.cell))
    for split, ids in kitti_splits(cfg).items():
        if not ids:
            raise DataError(f"{path}: the {split} split has no scenes. Fix: add scenes, list ids in ImageSets/{split}.txt, "
                            "or change data.val_fraction")
        for scene in ids:
            _check_scene(base, scene, split, grid, float(cfg.z_offset))


def _check_scene(base: Path, scene: str, split: str, grid: lidar.Grid, z_offset: float) -> None:
    bin_path, label, _ = _scene_files(base, scene)  # a calib file, if any, is parsed by kitti_boxes
    for f in (bin_path, label):
        if not f.is_file():
            raise DataError(f"{f}: no such file (scene {scene!r} of the {split} split). Fix: add it, or drop the id "
                            f"from ImageSets/{split}.txt")
    size = bin_path.stat().st_size
    if size == 0 or size % 16:
        raise DataError(f"{bin_path}: {size} bytes is not a positive multiple of 16 (4 float32 x, y, z, reflectance per "
                        "point). Fix: the file is empty, truncated or not a KITTI .bin; re-export it")
    objects = on_grid(kitti_boxes(base, scene, z_offset), grid)
    if len(objects) > lidar.MAX_BOXES:
        raise DataError(f"{label}: {len(objects)} labelled objects lie on the grid, more than MAX_BOXES={lidar.MAX_BOXES}. "
                        "Fix: shrink data.grid × data.cell, or raise envs.lidar.MAX_BOXES")


def _kitti_key(cfg) -> _KittiKey:
    """Stat-only: cheap enough to run on every load."""
    path = kitti_dir(cfg)
    base = kitti_files(path)
    splits = kitti_splits(cfg)
    digest = hashlib.sha256()
    for scene in sorted({s for ids in splits.values() for s in ids}):
        for f in _scene_files(base, scene):
            st = f.stat() if f.is_file() else None
            digest.update(f"{f.name}:{st and st.st_size}:{st and st.st_mtime_ns};".encode())
    split_text = ";".join(f"{k}={','.join(v)}" for k, v in splits.items())
    return _KittiKey(str(path.resolve()), int(cfg.grid), float(cfg.cell), float(cfg.z_offset),
                     hashlib.sha256(split_text.encode()).hexdigest(), digest.hexdigest())


def convert_chunk(base: str, scenes: list[str], grid: int, cell: float, z_offset: float) -> dict[str, np.ndarray]:
    g = lidar.Grid(grid, cell)
    samples = [kitti_sample(Path(base), s, g, z_offset) for s in scenes]
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}


def _convert(base: Path, ids: list[str], key: _KittiKey, split: str) -> dict[str, np.ndarray]:
    """Every scene of a split: Ray tasks over chunks when Ray is up, else here; a progress bar on stderr."""
    from tqdm import tqdm

    chunks = [ids[i: i + CHUNK] for i in range(0, len(ids), CHUNK)]
    args = [(str(base), c, key.grid, key.cell, key.z_offset) for c in chunks]
    bar = tqdm(total=len(ids), desc=f"{KITTI_KIND} {split}", unit="scene", file=sys.stderr, disable=len(ids) < CHUNK)
    try:
        import ray

        use_ray = ray.is_initialized()
    except ImportError:
        use_ray = False
    if use_ray:
        remote = ray.remote(num_cpus=1)(convert_chunk)
        refs = [remote.remote(*a) for a in args]
        out = []
        for ref in refs:  # in order: the bar moves as chunks land
            out.append(ray.get(ref))
            bar.update(len(out[-1]["bev"]))
    else:
        out = []
        for a in args:
            out.append(convert_chunk(*a))
            bar.update(len(out[-1]["bev"]))
    bar.close()
    return {k: np.concatenate([c[k] for c in out]) for k in out[0]}


def prepare_kitti(cfg) -> str:
    """The converted arrays' directory: reused while the files and grid are unchanged, else checked and converted."""
    key = _kitti_key(cfg)
    fingerprint = config_fingerprint(key, KITTI_VERSION)
    directory = (Path(cfg.root) if cfg.root else data_root()) / KITTI_KIND / fingerprint
    if is_complete(directory, fingerprint):
        return str(directory)
    check_kitti(cfg)
    splits = kitti_splits(cfg)
    base = kitti_files(kitti_dir(cfg))

    def write(out: Path) -> None:
        for split, ids in splits.items():
            arrays = _convert(base, ids, key, split)
            replace_atomically(out / f"{split}.npz", functools.partial(np.savez, **arrays))
        write_json(out / "meta.json", {"fingerprint": fingerprint, "config": asdict(key),
                                       "counts": {k: len(v) for k, v in splits.items()}, "ids": splits})

    return str(ensure_dataset(directory, fingerprint, write))


def load_kitti(cfg, split: str) -> BEVScenes:
    if split not in ("train", "val"):
        raise DataError(f"data={KITTI_KIND}: no split {split!r}. Fix: use train or val")
    return BEVScenes(_read(prepare_kitti(cfg), split))


def lidar_entries() -> list[DatasetEntry]:
    return [DatasetEntry(KIND, LidarScenesData, "generated LiDAR driving scenes (cars, pedestrians, cyclists, walls, poles) "
                         "ray-cast and binned to BEV grids, with object boxes and per-cell occupancy", prepare, spec, load, check),
            DatasetEntry(KITTI_KIND, LidarKittiData, "your KITTI-object-style LiDAR directory (velodyne/*.bin, label_2/*.txt, "
                         "optional calib/ and ImageSets/) binned to the same BEV grids, boxes and occupancy",
                         prepare_kitti, spec, load_kitti, check_kitti)]
