"""V-JEPA: predict an EMA target encoder's features of masked video regions (arXiv 2404.08471).

Context encoder sees the visible tubelets; a narrow predictor fills the masked ones; the
loss is L1 to the layer-normed target features. The target is an EMA of the encoder, with
momentum ramped 0.998 -> 1.0. Two mask families per clip (short- and long-range blocks).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import Variant
from variants.nn.ema import ema_update, frozen_copy, momentum_at
from variants.nn.masks import LONG_RANGE, SHORT_RANGE, MultiBlockMasker
from variants.nn.vit import Predictor, TokenGrid, VideoViT, gather_tokens


@dataclass
class VJEPAConfig:
    name: str = "vjepa"
    pred_dim: int = 96
    pred_depth: int = 4
    pred_heads: int = 3
    ema_start: float = 0.998
    ema_end: float = 1.0
    loss_exp: float = 1.0  # 1 = L1 (V-JEPA), 2 = squared error


def token_grid(cfg, spec) -> TokenGrid:
    return TokenGrid(frames=spec.frames, size=spec.size, patch=int(cfg.model.patch), tubelet=int(cfg.model.tubelet))


def make_encoder(cfg_model, grid: TokenGrid, channels: int) -> VideoViT:
    return VideoViT(grid, int(cfg_model.dim), int(cfg_model.depth), int(cfg_model.heads), in_channels=channels)


def latent_regression_loss(pred: Tensor, target: Tensor, exponent: float) -> Tensor:
    return (pred - target).abs().pow(exponent).mean() / exponent


def video_maskers(grid: TokenGrid) -> list[MultiBlockMasker]:
    return [MultiBlockMasker(grid.shape, SHORT_RANGE), MultiBlockMasker(grid.shape, LONG_RANGE)]


def draw_masks(maskers: list[MultiBlockMasker], video: Tensor, generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    """One (context, target) index pair per mask family, drawn on the CPU, moved to the clip's device."""
    pairs = []
    for masker in maskers:
        masks = masker(video.size(0), generator)
        pairs.append((masks.context.to(video.device), masks.target.to(video.device)))
    return pairs


def check_heads_divide(v, prefixes: tuple[str, ...], fail) -> None:
    """`variant.<prefix>_heads` must divide `variant.<prefix>_dim` for each narrow transformer."""
    for prefix in prefixes:
        dim, heads = v[f"{prefix}_dim"], v[f"{prefix}_heads"]
        if dim % heads:
            fail(f"variant.{prefix}_heads", f"({heads}) does not divide variant.{prefix}_dim ({dim})", "pick heads that divide dim")


class VJEPA(Variant):
    name = "vjepa"
    host = "ssl"
    Config = VJEPAConfig

    def __init__(self, cfg, data_spec):
        super().__init__(cfg, data_spec)
        self.grid = token_grid(cfg, data_spec)
        self.maskers = video_maskers(self.grid)

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        check_heads_divide(cfg.variant, ("pred",), fail)

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        v = self.cfg.variant
        encoder = make_encoder(self.cfg.model, self.grid, self.data_spec.channels)
        predictor = Predictor(self.grid, encoder.dim, int(v.pred_dim), int(v.pred_depth), int(v.pred_heads))
        return nn.ModuleDict({"encoder": encoder, "predictor": predictor, "target_encoder": frozen_copy(encoder)})

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        video = batch[self.data_spec.input_key]
        with torch.no_grad():
            target = modules["target_encoder"](video)
            target = F.layer_norm(target, target.shape[-1:])
        losses = []
        for ctx, tgt in draw_masks(self.maskers, video, self.generator):
            pred = modules["predictor"](modules["encoder"](video, keep=ctx), ctx, tgt)
            losses.append(latent_regression_loss(pred, gather_tokens(target, tgt), float(self.cfg.variant.loss_exp)))
        loss = torch.stack(losses).mean()
        return {"loss": loss, "loss_short": losses[0].detach(), "loss_long": losses[1].detach()}

    def after_step(self, modules: nn.ModuleDict, step: int, total_steps: int, stage: str) -> None:
        v = self.cfg.variant
        ema_update(modules["target_encoder"], modules["encoder"], momentum_at(step, total_steps, v.ema_start, v.ema_end))

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        return modules["target_encoder"](batch[self.data_spec.input_key])
