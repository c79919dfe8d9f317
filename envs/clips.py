"""Generated clip arrays as a torch dataset, and the one normalisation every video dataset shares.

All video datasets yield ``float32`` tensors shaped ``[3, T, H, W]``, scaled to ``[0, 1]`` and then
normalised with mean ``NORM_MEAN`` and std ``NORM_STD``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

NORM_MEAN = 0.5
NORM_STD = 0.25


def normalise(unit_video: torch.Tensor) -> torch.Tensor:
    """Video scaled to [0, 1] to the model's input scale."""
    return (unit_video - NORM_MEAN) / NORM_STD


def clip_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] frames to the normalised float32 [3, T, H, W] model input."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)
    return normalise(video.float() / 255.0).contiguous()


class VideoClips(Dataset):
    """Generated clip arrays (``video`` plus integer labels) as a torch dataset.

    ``num_classes`` names the label arrays to serve, in order, with their class
    counts (``moving_shapes.NUM_CLASSES``, ``dmc_clips.num_classes(cfg)``).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], num_classes: Mapping[str, int]):
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
