"""ACT-JEPA (arXiv 2501.14622): ACT plus a JEPA branch that predicts the next observations in latent space.

Beside ACT's action chunk, a predictor (k queries on the same context tokens) regresses an EMA
target encoder's embeddings of the next k observations o_{t+1..t+k}, so the context encoder must
also model how the scene will move (a world model); loss = action loss + `jepa_weight` · latent L2
(targets layer-normalised, padding past the episode masked). The target is a frozen copy of the
online observation encoder, moved only by EMA (variants/ema_target.py) and computed without grad.

Rows with `labelled` = 0 (failed or unlabelled episodes, `data.failed=jepa`) add nothing to the
action loss (ACT's masking) but do train the JEPA branch: the paper's use of action-free data.
No public code exists; sizes and the loss form are ours (docs/results/act_jepa.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.act import ACT, ACTConfig, ChunkDecoder, masked_mean
from variants.ema_target import EMATarget, check_ema_config


@dataclass
class ACTJEPAConfig(ACTConfig):
    name: str = "act_jepa"
    jepa_weight: float = 1.0  # the latent loss against the action loss
    predictor_layers: int = 1
    ema_start: float = 0.0  # 0: derived from ema_half_life
    ema_half_life: float = 0.1
    ema_end: float = 1.0
    probe_encoder: str = "target"


class ACTJEPA(EMATarget, ACT):
    name = "act_jepa"
    Config = ACTJEPAConfig

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        super().validate_config(cfg, fail)
        check_ema_config(cfg.variant, fail)
        if float(cfg.variant.jepa_weight) < 0:
            fail("variant.jepa_weight", f"is {cfg.variant.jepa_weight}", "use a weight >= 0 (0 is ACT)")

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        modules = super().build(stage, previous)
        v = self.cfg.variant
        h = int(v.hidden)
        modules["target_encoder"] = self.make_target(modules["encoder"])
        modules["predictor"] = ChunkDecoder(self.k, h, int(v.heads), int(v.ff), int(v.predictor_layers), h)
        return modules

    def jepa_loss(self, modules: nn.ModuleDict, batch: dict[str, Tensor], memory: Tensor) -> Tensor:
        """L2 between predicted and target embeddings of o_{t+1..t+k}; no gradient reaches the target."""
        with torch.no_grad():
            target = modules["target_encoder"](batch["next_observations"])
            target = F.layer_norm(target, target.shape[-1:])
        predicted = modules["predictor"](memory)
        return masked_mean((predicted - target).pow(2), batch["next_mask"])

    def losses(self, modules: nn.ModuleDict, batch: dict[str, Tensor], memory: Tensor, extra: dict) -> dict[str, Tensor]:
        """ACT's terms plus the JEPA term, both on the same context tokens (trained end to end)."""
        out = super().losses(modules, batch, memory, extra)
        out["jepa"] = self.jepa_loss(modules, batch, memory)
        out["loss"] = out["loss"] + float(self.cfg.variant.jepa_weight) * out["jepa"]
        return out

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        return self.context(modules, batch["observation"])

    def probed_encoder(self, modules: nn.ModuleDict) -> nn.Module:
        return modules["encoder"]
