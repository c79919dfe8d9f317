"""Dense probe (I-JEPA/DMT-JEPA segmentation): a linear classifier on every token against per-patch
labels; `dense_acc_<target>` and `dense_miou_<target>`."""
from __future__ import annotations

import torch

from orchestrator.evaluate.base import Evaluation, Features
from variants.nn.probes import fit_dense


class DenseProbe(Evaluation):
    name = "dense_probe"

    def chosen_for(self, spec, host: str) -> bool:
        return bool(spec.patch_labels)

    def targets(self, spec) -> list[str]:
        return list(spec.patch_labels)

    def score(self, train: Features, val: Features, spec, cfg) -> dict[str, float]:
        keys = self.targets(spec)
        with torch.enable_grad():
            scores = fit_dense(train.tokens, {k: train.targets[k] for k in keys}, val.tokens, {k: val.targets[k] for k in keys},
                               spec.patch_labels, epochs=cfg.eval.epochs, lr=cfg.eval.lr, seed=cfg.seed)
        out = {}
        for k, (acc, miou) in scores.items():
            out[f"dense_acc_{k}"], out[f"dense_miou_{k}"] = acc, miou
        return out
