"""Vectors drawn around one of a few class centres: labels for probes, features for a JEPA."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from envs.cache import data_root
from orchestrator.entries import DatasetEntry
from variants.base import DataSpec


@dataclass
class ToyVectorsData:
    name: str = "toy_vectors"
    num_train: int = 512
    num_val: int = 256
    dim: int = 16
    classes: int = 4
    noise: float = 0.5
    seed: int = 0


def _path(cfg) -> Path:
    fields = {k: cfg[k] for k in ("num_train", "num_val", "dim", "classes", "noise", "seed")}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return data_root() / "toy_vectors" / f"{key}.npz"


def prepare(cfg) -> str:
    path = _path(cfg)
    if not path.is_file():
        rng = np.random.default_rng(int(cfg.seed))
        centres = rng.normal(size=(int(cfg.classes), int(cfg.dim)))
        arrays = {}
        for split, n in (("train", int(cfg.num_train)), ("val", int(cfg.num_val))):
            labels = rng.integers(0, int(cfg.classes), n)
            arrays[f"{split}_x"] = (centres[labels] + float(cfg.noise) * rng.normal(size=(n, int(cfg.dim)))).astype(np.float32)
            arrays[f"{split}_label"] = labels
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
    return str(path.parent)


class Vectors(Dataset):
    def __init__(self, x: np.ndarray, label: np.ndarray):
        self.x, self.label = torch.from_numpy(x), torch.from_numpy(label).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "label": self.label[i]}


def load(cfg, split: str) -> Vectors:
    prepare(cfg)
    with np.load(_path(cfg)) as f:
        return Vectors(f[f"{split}_x"], f[f"{split}_label"])


def spec(cfg) -> DataSpec:
    return DataSpec(kind="vector", input_key="x", inputs={"x": (int(cfg.dim),)}, num_classes={"label": int(cfg.classes)})


ENTRY = DatasetEntry("toy_vectors", ToyVectorsData, "plug-in: noisy vectors around class centres", prepare, spec, load)
