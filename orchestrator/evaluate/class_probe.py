"""Classification probe (V-JEPA's attentive probe, or linear) per class label: `probe_acc_<label>`, and
their mean `probe_acc`."""
from __future__ import annotations

import torch

from orchestrator.evaluate.base import Evaluation, Features
from variants.nn.probes import fit_probe


class ClassProbe(Evaluation):
    name = "class_probe"

    def chosen_for(self, spec, host: str) -> bool:
        return bool(spec.num_classes) and host != "rl_zero_shot"

    def targets(self, spec) -> list[str]:
        return list(spec.num_classes)

    def score(self, train: Features, val: Features, spec, cfg) -> dict[str, float]:
        with torch.enable_grad():
            acc = fit_probe(train.tokens, train.targets, val.tokens, val.targets, spec.num_classes,
                            kind=cfg.eval.probe, epochs=cfg.eval.epochs, lr=cfg.eval.lr, seed=cfg.seed)
        out = {f"probe_acc_{k}": v for k, v in acc.items()}
        out["probe_acc"] = sum(acc.values()) / len(acc)
        return out
