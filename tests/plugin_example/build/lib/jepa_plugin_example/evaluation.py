"""Nearest-centroid accuracy on frozen features: a probe with nothing to train."""
from __future__ import annotations

import torch

from orchestrator.evaluate.base import Evaluation, Features


class NearestCentroid(Evaluation):
    name = "centroid"

    def chosen_for(self, spec, host: str) -> bool:
        return spec.kind == "vector" and bool(spec.num_classes)

    def targets(self, spec) -> list[str]:
        return list(spec.num_classes)

    def score(self, train: Features, val: Features, spec, cfg) -> dict[str, float]:
        out = {}
        for label, classes in spec.num_classes.items():
            x, y = train.tokens.mean(1), train.targets[label]
            centres = torch.stack([x[y == c].mean(0) if (y == c).any() else torch.zeros(x.shape[1]) for c in range(classes)])
            guess = torch.cdist(val.tokens.mean(1), centres).argmin(1)
            out[f"centroid_acc_{label}"] = (guess == val.targets[label]).float().mean().item()
        return out
