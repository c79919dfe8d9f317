"""The `object_views` dataset entry (seq-JEPA, issue 16): MuJoCo-rendered objects under known rotations.

Rendered once per config (envs/object_views.py) and cached under `envs.cache.data_root()/object_views/<fingerprint>/`,
in chunks over Ray tasks when Ray is up (else in this process), with a progress bar. A sample is one object:
`views` [V, 3, H, W] with their orientations `quats` [V, 4] (the variant turns them into actions), the class
`label`, the relative rotation from view 0 to view 1 as a quaternion `rel_rotation` [4] (w >= 0) and as a
rotation matrix `rel_rotation_matrix` [9] (the equivariance probes' targets; the matrix is continuous, where the
quaternion's sign fix jumps at 180°), and `raw_pair` [1, 2·3·16·16], views 0 and 1 pooled to 16 px (the raw-pixel
baseline's features).

The set serves every object once per ordered pair of its views (V·(V−1) items per object), interleaved: item k
is object k mod N with its views reordered so that pair round k // N comes first (round 0 is the stored order,
views 0 → 1). So the probes' first `eval.train_clips` items are each object once when that is <= N, and r pairs
of every object at r·N: the relative-rotation probe gets many pairs per object, its splits still object-disjoint.
Training draws its views at random per object, so the repetition does not change what it sees.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from envs import object_views as ov
from envs import require_rendering
from envs.cache import ensure_dataset, is_complete, replace_atomically, write_json
from envs.clips import normalise
from orchestrator.datasets import DataError, data_node, generator_config, root_path
from orchestrator.entries import DatasetEntry
from variants.base import DataSpec
from variants.seq_jepa import relative_rotation

ObjectViewsData = data_node("object_views", ov.ObjectViewsConfig)
CHUNK = 32  # objects per Ray task
RAW_SIZE = 16  # side the raw-pixel baseline pools each view to (its one token stays small enough for a probe)


def check(cfg) -> None:
    """Values the generator cannot use, as a user error naming the key."""
    try:
        ov.check(cfg)
    except ValueError as err:
        raise DataError(str(err)) from None


def _config(cfg) -> ov.ObjectViewsConfig:
    check(cfg)
    return generator_config(ov.ObjectViewsConfig, cfg)


def _generate(cfg: ov.ObjectViewsConfig, split: str, total: int) -> dict[str, np.ndarray]:
    """Every object of a split: Ray tasks over chunks when Ray is up, else here; a progress bar on stderr."""
    import ray
    from tqdm import tqdm

    starts = list(range(0, total, CHUNK))
    bar = tqdm(total=total, desc=f"object_views {split}", unit="object", file=sys.stderr)
    done = {}
    if ray.is_initialized():
        remote = ray.remote(num_cpus=1)(ov.make_chunk)
        pending = {remote.remote(cfg, split, s, min(CHUNK, total - s)): s for s in starts}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            start = pending.pop(ready[0])
            done[start] = ray.get(ready[0])
            bar.update(len(done[start]["label"]))
    else:
        for s in starts:
            done[s] = ov.make_chunk(cfg, split, s, min(CHUNK, total - s))
            bar.update(len(done[s]["label"]))
    bar.close()
    return {k: np.concatenate([done[s][k] for s in starts]) for k in done[starts[0]]}


def _write(cfg: ov.ObjectViewsConfig, directory: Path) -> None:
    import os

    counts = {"train": cfg.num_train, "val": cfg.num_val}
    for split, total in counts.items():
        replace_atomically(directory / f"{split}.npz", partial(np.savez, **_generate(cfg, split, total)))
    write_json(directory / "meta.json", {"fingerprint": cfg.fingerprint(), "config": asdict(cfg), "counts": counts,
                                         "classes": list(ov.OBJECT_SETS[cfg.object_set]),
                                         "generator_version": ov.GENERATOR_VERSION, "mujoco_gl": os.environ.get("MUJOCO_GL")})


def prepare(cfg) -> str:
    data = _config(cfg)
    directory = ov.views_dir(data, root_path(cfg))
    if not is_complete(directory, data.fingerprint()):
        require_rendering(ov.RENDERING)  # one line naming the fix, before any file is made
    return str(ensure_dataset(directory, data.fingerprint(), partial(_write, data)))


@functools.lru_cache(maxsize=4)
def _read(path: str, split: str) -> dict[str, np.ndarray]:
    return ov.load_object_views(Path(path), split)


def ordered_pairs(views: int) -> list[tuple[int, int]]:
    """Every ordered pair of distinct views, by offset then first view: (0,1), (1,2), …, (V−1,0), (0,2), …; each
    round of V pairs uses every view once as first and once as second."""
    return [(a, (a + offset) % views) for offset in range(1, views) for a in range(views)]


def rotation_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternions (w, x, y, z) [..., 4] as flattened rotation matrices [..., 9] (the same for q and −q)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)


class ObjectViews(Dataset):
    """One object per item, once per ordered view pair (see the module docstring): its views, their orientations,
    its class and the probes' targets."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.views = arrays["views"]  # uint8 [N, V, H, W, 3]
        self.quats = torch.from_numpy(arrays["quat"]).float()
        self.labels = torch.from_numpy(arrays["label"]).long()
        views = self.views.shape[1]
        self.orders = [[a, b, *(v for v in range(views) if v not in (a, b))] for a, b in ordered_pairs(views)]

    def __len__(self) -> int:
        return len(self.views) * len(self.orders)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        round_, i = divmod(k, len(self.views))
        order = self.orders[round_]
        views = normalise(torch.from_numpy(np.ascontiguousarray(self.views[i][order])).permute(0, 3, 1, 2).float() / 255.0)
        quats = self.quats[i][order]
        rel = relative_rotation(quats[0], quats[1])  # data.views >= 2 (checked)
        return {"views": views.contiguous(), "quats": quats, "label": self.labels[i],
                "rel_rotation": rel, "rel_rotation_matrix": rotation_matrix(rel),
                "raw_pair": F.adaptive_avg_pool2d(views[:2], RAW_SIZE).reshape(1, -1)}


def load(cfg, split: str) -> ObjectViews:
    return ObjectViews(_read(prepare(cfg), split))


def spec(cfg) -> DataSpec:
    v, s = int(cfg.views), int(cfg.size)
    return DataSpec(kind="object_views", frames=v, size=s, channels=3, input_key="views", raw_key="raw_pair",
                    inputs={"views": (v, 3, s, s), "quats": (v, 4)},
                    num_classes={"label": len(ov.OBJECT_SETS.get(cfg.object_set, ()))}, float_targets={"rel_rotation": 4, "rel_rotation_matrix": 9})


def object_views_entries() -> list[DatasetEntry]:
    return [DatasetEntry("object_views", ObjectViewsData, "MuJoCo-rendered objects (8 composed classes, or primitives) "
                         "under known random rotations, several views per object (3DIEBench-like; seq-JEPA)",
                         prepare, spec, load, check)]
