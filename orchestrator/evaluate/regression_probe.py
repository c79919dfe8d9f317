"""Regression probe per float target (seq-JEPA's relative rotation, ...): validation R², `probe_r2_<target>`."""
from __future__ import annotations

import torch

from orchestrator.evaluate.base import Evaluation, Features
from variants.nn.probes import fit_regressor


class RegressionProbe(Evaluation):
    name = "regression_probe"

    def chosen_for(self, spec, host: str) -> bool:
        return bool(spec.float_targets)

    def targets(self, spec) -> list[str]:
        return list(spec.float_targets)

    def score(self, train: Features, val: Features, spec, cfg) -> dict[str, float]:
        keys = self.targets(spec)
        with torch.enable_grad():
            r2 = fit_regressor(train.tokens, {k: train.targets[k] for k in keys}, val.tokens, {k: val.targets[k] for k in keys},
                               kind=cfg.eval.probe, epochs=cfg.eval.epochs, lr=cfg.eval.lr, seed=cfg.seed)
        return {f"probe_r2_{k}": v for k, v in r2.items()}
