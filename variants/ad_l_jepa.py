"""AD-L-JEPA: predict BEV embeddings of masked LiDAR cells (arXiv 2501.04969), on dense BEV grids.

The non-empty BEV cells of each scene are split at random, `target_share` (50 %) into target and the rest into
context. The online encoder (a stride-1 2-D CNN from `model=cnn`: the dense stand-in for the paper's sparse 3-D
convs) sees only the context cells' points. Its embedding map keeps the context cells; target cells get a
learnable mask token, empty cells a learnable empty token. A predictor of three 3×3 convs maps that to an
embedding per cell. The EMA target encoder sees only the target cells' points. Loss: (1 − cosine) between
prediction and target embedding, averaged over the target cells (weight `nonempty_weight`, 0.75) and over the
empty cells (`empty_weight`, 0.25; the target there is the target encoder's embedding, which a dense conv
defines), plus the variance hinge mean_c max(0, γ − std_c) on the online embeddings of context cells and on
the predictions at target cells (switch: `variance_hinge`), against collapse.

`features` gives one token per BEV cell [B, G·G, D] from the online encoder on the whole scene.
The EMA momentum follows V-JEPA's half-life rule (variants/nn/ema.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import Variant
from variants.ema_target import EMATarget, check_ema_config
from variants.nn.cnn import make_cnn


@dataclass
class ADLJEPAConfig:
    name: str = "ad_l_jepa"
    target_share: float = 0.5  # share of non-empty cells in the target (the paper's 50/50 split)
    nonempty_weight: float = 0.75
    empty_weight: float = 0.25
    variance_hinge: bool = True  # the ablation switch
    variance_weight: float = 1.0
    variance_gamma: float = 1.0  # the hinge's target std per channel
    ema_start: float = 0.0  # 0 = derived from ema_half_life
    ema_half_life: float = 0.1
    ema_end: float = 1.0
    probe_encoder: str = "online"  # which encoder `features` reads: "online", the EMA "target", or "both" (online/<metric>)


# ---------------------------------------------------------------------------- pieces both BEV variants share
def split_cells(bev: Tensor, share: float, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(non-empty, context, target) cell masks [B, G, G]: each non-empty cell joins the target with probability
    `share`, else the context, so the two are disjoint and together cover the non-empty cells. Draws on the CPU."""
    nonempty = bev[:, 0] > 0
    draw = torch.rand(nonempty.shape, generator=generator, device="cpu").to(bev.device)
    target = nonempty & (draw < share)
    return nonempty, nonempty & ~target, target


def keep_cells(bev: Tensor, cells: Tensor) -> Tensor:
    """The BEV with every other cell emptied (its points removed)."""
    return bev * cells.unsqueeze(1).to(bev.dtype)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def variance_hinge(z: Tensor, weights: Tensor | None = None, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """mean over channels of max(0, γ − std) of rows z [N, D] (weighted by `weights` [N], e.g. a cell mask):
    zero for embeddings that spread, positive for collapsed ones (VICReg's variance term)."""
    w = torch.ones(len(z), device=z.device, dtype=z.dtype) if weights is None else weights.to(z.dtype)
    total = w.sum()
    mean = (z * w[:, None]).sum(0) / total.clamp(min=1.0)
    var = ((z - mean).pow(2) * w[:, None]).sum(0) / (total - 1).clamp(min=1.0)
    return F.relu(gamma - torch.sqrt(var + eps)).mean()


def cells_as_rows(x: Tensor) -> Tensor:
    """[B, D, G, G] -> [B·G·G, D]."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def conv_head(dim: int, out: int, layers: int = 3) -> nn.Sequential:
    """`layers` 3×3 convs, GELU between: the predictor (AD-L-JEPA) or the occupancy decoder (Occupancy-MAE)."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Conv2d(dim, out if i == layers - 1 else dim, 3, padding=1))
        if i < layers - 1:
            mods.append(nn.GELU())
    return nn.Sequential(*mods)


def check_bev_model(cfg, fail) -> None:
    """A dense per-cell encoder: stride 1 everywhere, so each BEV cell keeps its own embedding."""
    if cfg.model.get("family") == "cnn" and any(int(s) != 1 for s in cfg.model.strides):
        fail("model.strides", f"is {list(cfg.model.strides)}; the BEV variants embed every cell", "use model.strides=[1,1,1] (one 1 per stage)")
    if cfg.data.get("grid") is None:
        fail("data", f"is {cfg.data.name!r}, not a BEV dataset", "use data=lidar_scenes or data=lidar_kitti data.path=DIR")


def bev_features(encoder: nn.Module, bev: Tensor) -> Tensor:
    """One token per cell [B, G·G, D]."""
    return encoder(bev).flatten(2).transpose(1, 2)


# ---------------------------------------------------------------------------- the variant
class ADLJEPA(EMATarget, Variant):
    name = "ad_l_jepa"
    host = "ssl"
    Config = ADLJEPAConfig
    model_families = ("cnn",)  # a stride-1 `model=cnn` encoder: one embedding per BEV cell

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        v = cfg.variant
        if not 0.0 < v.target_share < 1.0:
            fail("variant.target_share", f"is {v.target_share}", "use a share strictly between 0 and 1 (the paper's is 0.5)")
        if v.nonempty_weight < 0 or v.empty_weight < 0 or v.nonempty_weight + v.empty_weight <= 0:
            fail("variant.nonempty_weight", f"and variant.empty_weight are {v.nonempty_weight}, {v.empty_weight}",
                 "use non-negative weights, not both 0 (the paper's: 0.75 and 0.25)")
        check_ema_config(v, fail)
        check_bev_model(cfg, fail)

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        encoder = make_cnn(self.cfg.model, self.data_spec.channels)
        dim = encoder.out_channels
        target = self.make_target(encoder)
        tokens = nn.ParameterDict({"mask": nn.Parameter(torch.zeros(dim)), "empty": nn.Parameter(torch.zeros(dim))})
        nn.init.normal_(tokens["mask"], std=0.02)
        nn.init.normal_(tokens["empty"], std=0.02)
        return nn.ModuleDict({"encoder": encoder, "target_encoder": target, "predictor": conv_head(dim, dim), "tokens": tokens})

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        v = self.cfg.variant
        bev = batch["bev"]
        nonempty, context, target = split_cells(bev, float(v.target_share), self.generator)
        z = modules["encoder"](keep_cells(bev, context))  # [B, D, G, G]
        tokens = modules["tokens"]
        filler = torch.where(target.unsqueeze(1), tokens["mask"][None, :, None, None], tokens["empty"][None, :, None, None])
        pred = modules["predictor"](torch.where(context.unsqueeze(1), z, filler))
        with torch.no_grad():
            goal = modules["target_encoder"](keep_cells(bev, target))
        miss = 1.0 - F.cosine_similarity(pred, goal, dim=1)  # [B, G, G]
        loss_nonempty, loss_empty = masked_mean(miss, target), masked_mean(miss, ~nonempty)
        loss = float(v.nonempty_weight) * loss_nonempty + float(v.empty_weight) * loss_empty
        z_rows, p_rows = cells_as_rows(z), cells_as_rows(pred)
        hinge = (variance_hinge(z_rows, context.flatten(), float(v.variance_gamma))
                 + variance_hinge(p_rows, target.flatten(), float(v.variance_gamma)))
        if v.variance_hinge:
            loss = loss + float(v.variance_weight) * hinge
        std = torch.sqrt(((z_rows - masked_mean_rows(z_rows, context.flatten())) ** 2 * context.flatten()[:, None]).sum(0)
                         / context.sum().clamp(min=1.0) + 1e-8).mean()
        return {"loss": loss, "loss_nonempty": loss_nonempty.detach(), "loss_empty": loss_empty.detach(),
                "variance_hinge": hinge.detach(), "embed_std": std.detach(), "target_cells": target.float().mean().detach()}

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        return bev_features(self.probed_encoder(modules), batch["bev"])


def masked_mean_rows(rows: Tensor, mask: Tensor) -> Tensor:
    """Per-channel mean [D] of the rows a mask [N] selects."""
    w = mask.to(rows.dtype)
    return (rows * w[:, None]).sum(0) / w.sum().clamp(min=1.0)
