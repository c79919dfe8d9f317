"""A JEPA on vectors: predict an EMA target's embedding of the whole vector from a masked copy."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import Variant
from variants.nn.ema import ema_update, frozen_copy
from variants.nn.mlp import make_mlp


@dataclass
class ToyJEPAConfig:  # no `name` field: the registry adds it
    pred_hidden: int = 64
    mask_ratio: float = 0.5
    ema: float = 0.99


def predictor(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class ToyJEPA(Variant):
    name = "toy_jepa"
    Config = ToyJEPAConfig
    host = "ssl"  # trained by the self-supervised loop
    model_families = ("mlp",)  # the encoder is `model=mlp` (its keys: model.hidden_dim, model.depth, ...)

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        encoder = make_mlp(self.cfg.model, self.data_spec.inputs[self.data_spec.input_key][0])
        return nn.ModuleDict({"encoder": encoder, "predictor": predictor(self.dim, int(self.cfg.variant.pred_hidden)),
                              "target_encoder": frozen_copy(encoder)})

    @property
    def dim(self) -> int:
        return int(self.cfg.model.out_dim) or int(self.cfg.model.hidden_dim)

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        x = batch[self.data_spec.input_key]
        keep = (torch.rand(x.shape, generator=self.generator) >= float(self.cfg.variant.mask_ratio)).to(x.device)
        with torch.no_grad():
            target = F.layer_norm(modules["target_encoder"](x), (self.dim,))
        pred = modules["predictor"](modules["encoder"](x * keep))
        return {"loss": F.smooth_l1_loss(pred, target)}

    def after_step(self, modules: nn.ModuleDict, step: int, total_steps: int, stage: str) -> None:
        ema_update(modules["target_encoder"], modules["encoder"], float(self.cfg.variant.ema))

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        return modules["target_encoder"](batch[self.data_spec.input_key])[:, None, :]
