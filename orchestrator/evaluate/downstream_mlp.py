"""Downstream MLP on frozen mean-pooled features (T-JEPA's protocol): `mlp_acc_<label>` for class labels,
`mlp_rmse_<target>` for float targets. Chosen by default for tables; elsewhere through `eval.kinds`."""
from __future__ import annotations

import torch

from orchestrator.evaluate.base import Evaluation, Features
from variants.nn.probes import fit_mlp


class DownstreamMLP(Evaluation):
    name = "downstream_mlp"

    def chosen_for(self, spec, host: str) -> bool:
        """Tables with a target: the paper's protocol for them."""
        return spec.kind == "tabular" and bool(spec.num_classes or spec.float_targets)

    def targets(self, spec) -> list[str]:
        return [*spec.num_classes, *spec.float_targets]

    def score(self, train: Features, val: Features, spec, cfg) -> dict[str, float]:
        keys = self.targets(spec)
        with torch.enable_grad():
            scores = fit_mlp(train.tokens, {k: train.targets[k] for k in keys}, val.tokens, {k: val.targets[k] for k in keys},
                             spec.num_classes, epochs=cfg.eval.epochs, lr=cfg.eval.lr, seed=cfg.seed)
        return {f"mlp_acc_{k}" if k in spec.num_classes else f"mlp_rmse_{k}": v for k, v in scores.items()}
