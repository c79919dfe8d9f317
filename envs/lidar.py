"""Generated LiDAR driving scenes (AD-L-JEPA, issue 21): boxes ray-cast by a spinning LiDAR, binned to BEV.

A scene is a ground plane (z = 0) with oriented boxes: cars, pedestrians and cyclists (the labelled classes),
walls and poles (background). A LiDAR at `sensor_height` spins `azimuths` steps of `beams` elevation rays;
each ray returns its nearest hit (slab test on every box, the plane for the ground) within `max_range`, with
Gaussian range noise and random dropout, so clouds differ in size. Points [N, 4] are (x, y, z, intensity),
intensity a per-class reflectivity fading with range.

BEV: a `grid` × `grid` square of `cell`-metre cells centred on the sensor, channels occupancy (0/1), top height
(share of `z_range`) and mean intensity. Labels per scene: the object boxes (class, x, y, z, l, w, h, yaw),
padded to MAX_BOXES rows with class −1, and per-cell occupancy (1 where a cell centre lies in an object's
footprint). Every scene draws from its own seeded stream, so any chunking gives the same scenes.

KITTI-style files: `read_bin` (float32 x, y, z, reflectance rows) and `read_labels` (label_2 text lines in
camera coordinates, converted to the LiDAR frame without calibration: x = z_cam, y = −x_cam). Errors name the
file and the fix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("car", "pedestrian", "cyclist")  # labelled objects; class id = index
KITTI_CLASSES = {"Car": 0, "Van": 0, "Pedestrian": 1, "Person_sitting": 1, "Cyclist": 2}
KITTI_IGNORED = {"DontCare", "Misc", "Truck", "Tram"}
SIZES = {  # class -> (length, width, height) in metres, mean; drawn ±10 %
    "car": (4.2, 1.8, 1.5), "pedestrian": (0.6, 0.6, 1.7), "cyclist": (1.8, 0.6, 1.7),
    "wall": (8.0, 0.3, 2.5), "pole": (0.3, 0.3, 4.0),
}
REFLECTIVITY = {"car": 0.8, "pedestrian": 0.4, "cyclist": 0.6, "wall": 0.3, "pole": 0.9, "ground": 0.1}
MAX_BOXES = 16
BOX_FIELDS = 8  # class, x, y, z (centre), l, w, h, yaw


class LidarError(ValueError):
    """Bad LiDAR input (empty cloud, points off the grid, malformed file, unknown class): names what and the fix."""


@dataclass(frozen=True)
class Grid:
    """The BEV square: `size` × `size` cells of `cell` metres centred on the sensor, heights in z_range."""

    size: int = 32
    cell: float = 0.5
    z_min: float = -0.5
    z_max: float = 3.5

    @property
    def half(self) -> float:
        return self.size * self.cell / 2


@dataclass(frozen=True)
class Lidar:
    beams: int = 16
    azimuths: int = 360
    fov_low: float = -25.0  # degrees
    fov_high: float = 3.0
    max_range: float = 20.0
    sensor_height: float = 1.8
    range_noise: float = 0.02  # metres (std)
    dropout: float = 0.05  # share of returns lost


@dataclass(frozen=True)
class Scene:
    boxes: np.ndarray  # [K, 8] every box (class id: 0..2 objects, 3 wall, 4 pole)
    points: np.ndarray  # [N, 4]


KINDS = (*CLASSES, "wall", "pole")


# ------------------------------------------------------------------------- scenes
def random_scene_boxes(rng: np.random.Generator, grid: Grid, objects: tuple[int, int] = (2, 6),
                       clutter: tuple[int, int] = (1, 3)) -> np.ndarray:
    """Boxes [K, 8] placed in the grid, 2 m clear of the sensor and (by footprint circles) of each other."""
    placed: list[np.ndarray] = []
    kinds = [int(rng.integers(0, len(CLASSES))) for _ in range(rng.integers(*objects, endpoint=True))]
    kinds += [int(rng.integers(len(CLASSES), len(KINDS))) for _ in range(rng.integers(*clutter, endpoint=True))]
    margin = grid.half - 1.0
    for kind in kinds:
        length, width, height = (np.array(SIZES[KINDS[kind]]) * rng.uniform(0.9, 1.1, 3))
        radius = 0.5 * math.hypot(length, width)
        for _ in range(30):
            x, y = rng.uniform(-margin, margin, 2)
            if math.hypot(x, y) < radius + 2.0:
                continue
            if all(math.hypot(x - b[1], y - b[2]) > radius + 0.5 * math.hypot(b[4], b[5]) + 0.3 for b in placed):
                placed.append(np.array([kind, x, y, height / 2, length, width, height, rng.uniform(-math.pi, math.pi)]))
                break
    return np.stack(placed) if placed else np.zeros((0, BOX_FIELDS))


def ray_directions(lidar: Lidar) -> np.ndarray:
    """Unit directions [beams · azimuths, 3] of one spin."""
    elevation = np.deg2rad(np.linspace(lidar.fov_low, lidar.fov_high, lidar.beams))
    azimuth = np.linspace(-math.pi, math.pi, lidar.azimuths, endpoint=False)
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)


def box_hits(origin: np.ndarray, dirs: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Entry distance [R, K] of each ray into each oriented box (inf where it misses), by the slab test in the box frame."""
    if len(boxes) == 0:
        return np.full((len(dirs), 0), np.inf)
    cos, sin = np.cos(boxes[:, 7]), np.sin(boxes[:, 7])
    rel = origin[None, :] - boxes[:, 1:4]  # [K, 3]
    o = np.stack([cos * rel[:, 0] + sin * rel[:, 1], -sin * rel[:, 0] + cos * rel[:, 1], rel[:, 2]], -1)  # [K, 3]
    d = np.stack([dirs[:, None, 0] * cos + dirs[:, None, 1] * sin, -dirs[:, None, 0] * sin + dirs[:, None, 1] * cos,
                  np.broadcast_to(dirs[:, None, 2], (len(dirs), len(boxes)))], -1)  # [R, K, 3]
    half = boxes[:, 4:7] / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1, t2 = (-half - o) * inv, (half - o) * inv
    t1, t2 = np.nan_to_num(t1, nan=-np.inf), np.nan_to_num(t2, nan=np.inf)
    near = np.minimum(t1, t2).max(-1)
    far = np.maximum(t1, t2).min(-1)
    return np.where((far >= near) & (far > 0), np.maximum(near, 0.0), np.inf)


def ray_cast(boxes: np.ndarray, lidar: Lidar, rng: np.random.Generator | None = None) -> np.ndarray:
    """Points [N, 4] (x, y, z, intensity): each ray's nearest hit on the boxes or the ground within range,
    noisy and with dropout when `rng` is given (exact otherwise)."""
    origin = np.array([0.0, 0.0, lidar.sensor_height])
    dirs = ray_directions(lidar)
    t_box = box_hits(origin, dirs, boxes)
    with np.errstate(divide="ignore"):
        t_ground = np.where(dirs[:, 2] < 0, -origin[2] / dirs[:, 2], np.inf)
    t_all = np.concatenate([t_box, t_ground[:, None]], 1)
    which = t_all.argmin(1)
    t = t_all[np.arange(len(dirs)), which]
    keep = t <= lidar.max_range
    t = np.where(keep, t, 0.0)  # misses (inf) carry no point
    if rng is not None:
        t = t + rng.normal(0.0, lidar.range_noise, len(t))
        keep &= rng.random(len(t)) >= lidar.dropout
    reflect = np.array([REFLECTIVITY[KINDS[int(k)]] for k in boxes[:, 0]] + [REFLECTIVITY["ground"]])
    kind = np.where(which < len(boxes), which, len(boxes))
    xyz = origin + dirs * t[:, None]
    intensity = reflect[kind] * np.exp(-t / lidar.max_range)
    if rng is not None:
        intensity = np.clip(intensity + rng.normal(0.0, 0.02, len(t)), 0.0, 1.0)
    return np.concatenate([xyz, intensity[:, None]], 1)[keep].astype(np.float32)


def make_scene(rng: np.random.Generator, grid: Grid, lidar: Lidar) -> Scene:
    boxes = random_scene_boxes(rng, grid)
    return Scene(boxes, ray_cast(boxes, lidar, rng))


# ------------------------------------------------------------------------- BEV
def in_grid(points: np.ndarray, grid: Grid) -> np.ndarray:
    """Which points [N, ≥3] lie in the BEV square [−half, half)² and the height range [z_min, z_max]."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return (x >= -grid.half) & (x < grid.half) & (y >= -grid.half) & (y < grid.half) & (z >= grid.z_min) & (z <= grid.z_max)


def crop(points: np.ndarray, grid: Grid) -> np.ndarray:
    return points[in_grid(points, grid)]


def check_points(points: np.ndarray, where: str = "point cloud") -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 4:
        raise LidarError(f"{where}: points have shape {points.shape}, not [N, 4] (x, y, z, intensity). Fix: pass rows of 4 floats")
    if len(points) == 0:
        raise LidarError(f"{where}: the point cloud is empty. Fix: check the file or scan (a LiDAR frame has thousands of points)")
    if not np.isfinite(points[:, :4]).all():
        raise LidarError(f"{where}: {int((~np.isfinite(points[:, :4])).any(1).sum())} point(s) hold NaN or inf. Fix: drop them first")
    return points


def cell_index(points: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of each point: row from x, column from y, clipped at the far edges."""
    row = np.clip(np.floor((points[:, 0] + grid.half) / grid.cell).astype(np.int64), 0, grid.size - 1)
    col = np.clip(np.floor((points[:, 1] + grid.half) / grid.cell).astype(np.int64), 0, grid.size - 1)
    return row, col


def bev(points: np.ndarray, grid: Grid, crop_outside: bool = False, where: str = "point cloud") -> np.ndarray:
    """BEV [3, size, size] float32: occupancy, top height (share of z_range) and mean intensity per cell.

    Points off the grid are an error unless `crop_outside` (the ray-caster's returns beyond the square are)."""
    points = check_points(points, where)
    inside = in_grid(points, grid)
    if not inside.all():
        if not crop_outside:
            raise LidarError(f"{where}: {int((~inside).sum())} of {len(points)} points lie outside the grid "
                             f"(x, y in [-{grid.half}, {grid.half}) m, z in [{grid.z_min}, {grid.z_max}] m). "
                             "Fix: crop them first (crop_outside=True) or enlarge data.grid / data.cell")
        points = points[inside]
    out = np.zeros((3, grid.size, grid.size), np.float32)
    if len(points) == 0:
        return out
    row, col = cell_index(points, grid)
    flat = row * grid.size + col
    cells = grid.size * grid.size
    count = np.bincount(flat, minlength=cells)
    height = np.full(cells, -np.inf)
    np.maximum.at(height, flat, (points[:, 2] - grid.z_min) / (grid.z_max - grid.z_min))
    intensity = np.bincount(flat, weights=points[:, 3], minlength=cells)
    filled = count > 0
    out[0].flat[filled] = 1.0
    out[1].flat[filled] = height[filled]
    out[2].flat[filled] = intensity[filled] / count[filled]
    return out


def occupancy_labels(boxes: np.ndarray, grid: Grid) -> np.ndarray:
    """[size, size] int64: 1 where a cell centre lies in the footprint of an object (car, pedestrian, cyclist)."""
    centres = (np.arange(grid.size) + 0.5) * grid.cell - grid.half
    cx, cy = np.meshgrid(centres, centres, indexing="ij")
    out = np.zeros((grid.size, grid.size), np.int64)
    for b in boxes[boxes[:, 0] < len(CLASSES)] if len(boxes) else []:
        dx, dy = cx - b[1], cy - b[2]
        u = np.cos(b[7]) * dx + np.sin(b[7]) * dy
        v = -np.sin(b[7]) * dx + np.cos(b[7]) * dy
        out[(np.abs(u) <= b[4] / 2) & (np.abs(v) <= b[5] / 2)] = 1
    return out


def padded_objects(boxes: np.ndarray, where: str = "labels") -> np.ndarray:
    """The object boxes (classes 0..2) as [MAX_BOXES, 8], unused rows class −1."""
    objects = boxes[boxes[:, 0] < len(CLASSES)] if len(boxes) else np.zeros((0, BOX_FIELDS))
    if len(objects) > MAX_BOXES:
        raise LidarError(f"{where}: {len(objects)} labelled objects, more than MAX_BOXES={MAX_BOXES}. Fix: raise envs.lidar.MAX_BOXES")
    out = np.zeros((MAX_BOXES, BOX_FIELDS), np.float32)
    out[:, 0] = -1
    out[: len(objects)] = objects
    return out


def sample_arrays(boxes: np.ndarray, points: np.ndarray, grid: Grid) -> dict[str, np.ndarray]:
    """One scene's stored arrays: BEV, padded object boxes, per-cell occupancy, and its point count."""
    return {"bev": bev(points, grid, crop_outside=True), "boxes": padded_objects(boxes),
            "occupancy": occupancy_labels(boxes, grid), "points": np.int64(len(points))}


# ------------------------------------------------------------------------- KITTI-style files
def read_bin(path: str | Path) -> np.ndarray:
    """A KITTI velodyne `.bin`: float32 rows (x, y, z, reflectance) -> [N, 4]."""
    path = Path(path)
    if not path.is_file():
        raise LidarError(f"{path}: no such file. Fix: point at a KITTI velodyne .bin file")
    raw = path.read_bytes()
    if len(raw) % 16:
        raise LidarError(f"{path}: {len(raw)} bytes is not a whole number of points (16 bytes: 4 float32 x, y, z, "
                         "reflectance each). Fix: the file is truncated or not a KITTI .bin; re-export it")
    return check_points(np.frombuffer(raw, dtype=np.float32).reshape(-1, 4), str(path))


def read_labels(path: str | Path) -> np.ndarray:
    """A KITTI label_2 text file -> object boxes [K, 8] in the LiDAR frame (DontCare/Misc/Truck/Tram skipped)."""
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        kind = fields[0]
        if kind in KITTI_IGNORED:
            continue
        if kind not in KITTI_CLASSES:
            raise LidarError(f"{path}:{number}: unknown label class {kind!r}. Fix: use one of "
                             f"{', '.join(sorted(KITTI_CLASSES))} (or {', '.join(sorted(KITTI_IGNORED))}, skipped)")
        try:
            h, w, length, x, y, z, ry = (float(v) for v in fields[8:15])
        except ValueError:
            raise LidarError(f"{path}:{number}: expected 15 fields (type, truncated, occluded, alpha, 4 bbox, h, w, l, "
                             f"x, y, z, rotation_y), got {len(fields)}. Fix: correct the line") from None
        rows.append([KITTI_CLASSES[kind], z, -x, -y + h / 2, length, w, h, -ry - math.pi / 2])
    return np.array(rows, dtype=np.float64).reshape(-1, BOX_FIELDS)


def write_bin(path: str | Path, points: np.ndarray) -> None:
    np.asarray(points, dtype=np.float32)[:, :4].tofile(path)
