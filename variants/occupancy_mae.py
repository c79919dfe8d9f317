"""Occupancy-MAE (Min et al., 2023): reconstruct the occupancy of masked LiDAR cells, the baseline AD-L-JEPA beats.

The same dense BEV encoder as AD-L-JEPA (`model=cnn`, stride 1) sees the scene with `mask_ratio` of its
non-empty cells emptied; a decoder of three 3×3 convs predicts, for every cell the encoder did not see (the
masked non-empty ones and the empty ones), whether it holds points: binary cross-entropy, the masked cells
weighted `occupied_weight` against the empty ones, as occupied cells are the rarer class. The original masks
voxels range-aware and predicts 3-D occupancy; this is its BEV form of equal backbone. No EMA, no target encoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from variants.ad_l_jepa import (
    bev_features,
    check_bev_model,
    conv_head,
    keep_cells,
    masked_mean,
    split_cells,
)
from variants.base import Variant
from variants.nn.cnn import make_cnn


@dataclass
class OccupancyMAEConfig:
    name: str = "occupancy_mae"
    mask_ratio: float = 0.5  # share of non-empty cells hidden (AD-L-JEPA's target share, so both see as much)
    occupied_weight: float = 1.0  # weight of the masked non-empty cells' loss against the empty cells'


class OccupancyMAE(Variant):
    name = "occupancy_mae"
    host = "ssl"
    Config = OccupancyMAEConfig
    model_families = ("cnn",)

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        v = cfg.variant
        if not 0.0 < v.mask_ratio < 1.0:
            fail("variant.mask_ratio", f"is {v.mask_ratio}", "use a share strictly between 0 and 1, e.g. 0.5")
        if v.occupied_weight <= 0:
            fail("variant.occupied_weight", f"is {v.occupied_weight}", "use a positive weight, e.g. 1.0")
        check_bev_model(cfg, fail)

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        encoder = make_cnn(self.cfg.model, self.data_spec.channels)
        return nn.ModuleDict({"encoder": encoder, "decoder": conv_head(encoder.out_channels, 1)})

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        v = self.cfg.variant
        bev = batch["bev"]
        nonempty, visible, masked = split_cells(bev, float(v.mask_ratio), self.generator)
        logits = modules["decoder"](modules["encoder"](keep_cells(bev, visible)))[:, 0]
        bce = F.binary_cross_entropy_with_logits(logits, nonempty.to(logits.dtype), reduction="none")
        loss_occupied, loss_empty = masked_mean(bce, masked), masked_mean(bce, ~nonempty)
        loss = (float(v.occupied_weight) * loss_occupied + loss_empty) / (float(v.occupied_weight) + 1.0)
        hit = ((logits > 0) == nonempty)
        return {"loss": loss, "loss_occupied": loss_occupied.detach(), "loss_empty": loss_empty.detach(),
                "masked_recall": masked_mean(hit.float(), masked).detach()}

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        return bev_features(modules["encoder"], batch["bev"])
