"""I-JEPA: predict an EMA target encoder's features of image blocks from one context block (arXiv 2301.08243).

Masks as in the reference config: 4 target blocks (scale 0.15–0.2 of the grid, aspect 0.75–1.5) and one
context block (scale 0.85–1.0, aspect 1) with the target patches removed; block sizes drawn once per batch,
positions per sample. The scales are shares of the token grid, so they shrink with it; on small grids
(32² images at patch 4: 8×8 tokens) four blocks can cover almost everything, so target positions are redrawn
while they leave fewer than `min_context` tokens outside them, and the context is topped up from those
tokens when the context block keeps fewer. A narrow predictor
fills each target block (the four run as one batch); smooth-L1 to the layer-normed target features. The EMA
schedule, its half-life rule, the diagnostics and the probed encoder come from `variants/ema_target.py`.
Images are always cut into 2-D patches (`model.patch`; `model.patch_dims` and `model.tubelet` are not read).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import Variant
from variants.ema_target import EMATarget, check_ema_config
from variants.nn.masks import BlockSpec, _block_size, sample_masked_grid
from variants.nn.vit import Predictor, TokenGrid, VideoViT, gather_tokens
from variants.vjepa import check_heads_divide


@dataclass
class IJEPAConfig:
    """I-JEPA's hyper-parameters (EMA keys as in V-JEPA: `ema_start=0` derives the start from `ema_half_life`;
    the paper's 0.996 is `variant.ema_start=0.996`)."""

    name: str = "ijepa"
    pred_dim: int = 96
    pred_depth: int = 4
    pred_heads: int = 3
    ema_start: float = 0.0
    ema_half_life: float = 0.1
    ema_end: float = 1.0
    num_targets: int = 4
    target_scale: list[float] = field(default_factory=lambda: [0.15, 0.2])
    target_aspect: list[float] = field(default_factory=lambda: [0.75, 1.5])
    context_scale: list[float] = field(default_factory=lambda: [0.85, 1.0])
    min_context: int = 8
    probe_encoder: str = "target"  # the EMA "target" (the paper's), the "online" one, or "both" (online/<metric>)


TRIES = 20  # target-block redraws per sample to keep min_context tokens outside them
SINGLE = BlockSpec(1, (0.0, 0.0))  # one block of a size given by the caller


@dataclass
class ImageMasks:
    context: Tensor  # [B, Nc] token indices the encoder sees
    targets: Tensor  # [B, M, K] token indices of M target blocks of K tokens each


class ImageMultiBlockMasker:
    """I-JEPA's multiblock masks on an (h, w) token grid."""

    def __init__(self, hw: tuple[int, int], num_targets: int = 4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                 context_scale=(0.85, 1.0), min_context: int = 8):
        self.grid = (1, *hw)
        self.target = BlockSpec(num_targets, tuple(target_scale), tuple(target_aspect))
        self.context = BlockSpec(1, tuple(context_scale), (1.0, 1.0))
        self.min_context = min_context
        left = math.prod(hw) - largest_block(hw, target_scale, target_aspect)
        if not 1 <= min_context <= left:
            raise ValueError(f"min_context {min_context}: a target block of up to {max(target_scale)} of the "
                             f"{hw[0]}x{hw[1]} grid leaves {left} tokens; use 1 to {left}")

    def __call__(self, batch_size: int, gen: torch.Generator) -> ImageMasks:
        target_size = _block_size(gen, self.target, self.grid)
        context_size = _block_size(gen, self.context, self.grid)
        contexts, targets = [], []
        for _ in range(batch_size):
            blocks, covered = self.target_blocks(target_size, gen)
            visible = sample_masked_grid(gen, self.context, self.grid, context_size).flatten() & ~covered
            top_up(visible, covered, self.min_context, gen)
            contexts.append(torch.nonzero(visible).flatten())
            targets.append(torch.stack([torch.nonzero(b).flatten() for b in blocks]))
        n = min(len(c) for c in contexts)  # truncated to the batch minimum, as in the reference collator
        return ImageMasks(context=torch.stack([c[:n] for c in contexts]), targets=torch.stack(targets))

    def target_blocks(self, size: tuple[int, int, int], gen: torch.Generator) -> tuple[list[Tensor], Tensor]:
        """`num_targets` flat block masks and their union, redrawn (up to `TRIES` times) while they leave fewer
        than `min_context` tokens outside every block; past that, the draw that left the most."""
        best = None
        for _ in range(TRIES):
            blocks = [sample_masked_grid(gen, SINGLE, self.grid, size).flatten() for _ in range(self.target.num_blocks)]
            covered = torch.stack(blocks).any(0)
            free = int((~covered).sum())
            if best is None or free > best[0]:
                best = (free, blocks, covered)
            if free >= self.min_context:
                break
        return best[1], best[2]


def largest_block(hw: tuple[int, int], scale, aspect) -> int:
    """Tokens in the largest block the masker draws (sizes rounded as `variants.nn.masks._block_size` does,
    over a fine sweep of scales and aspects)."""
    h, w = hw
    largest = 0
    for s in torch.linspace(float(min(scale)), float(max(scale)), 65).tolist():
        for a in torch.linspace(math.log(min(aspect)), math.log(max(aspect)), 65).exp().tolist():
            area = s * h * w
            largest = max(largest, max(1, min(h, round(math.sqrt(area * a)))) * max(1, min(w, round(math.sqrt(area / a)))))
    return largest


def top_up(visible: Tensor, covered: Tensor, min_context: int, gen: torch.Generator) -> None:
    """Make random tokens outside every target block visible (in place) until `min_context` are."""
    missing = min_context - int(visible.sum())
    if missing > 0:
        free = torch.nonzero(~visible & ~covered).flatten()
        visible[free[torch.randperm(len(free), generator=gen)[:missing]]] = True


def image_grid(cfg, spec) -> TokenGrid:
    return TokenGrid(frames=1, size=int(spec.size), patch=int(cfg.model.patch), tubelet=1, patch_dims=2)


def smooth_l1(pred: Tensor, target: Tensor) -> Tensor:
    return F.smooth_l1_loss(pred, target)


def check_image_keys(cfg, fail) -> None:
    """Keys every image variant shares: EMA, mask ranges, min_context against the grid, and image data."""
    v = cfg.variant
    check_heads_divide(v, ("pred",), fail)
    check_ema_config(v, fail, paper_start=0.996)
    if v.num_targets < 1:
        fail("variant.num_targets", f"is {v.num_targets}", "use at least 1 target block (the paper's 4)")
    for key in ("target_scale", "context_scale", "target_aspect"):
        low, high = (list(v[key]) + [None, None])[:2]
        upper = math.inf if key == "target_aspect" else 1.0
        if len(v[key]) != 2 or not 0.0 < low <= high <= upper:
            fail(f"variant.{key}", f"is {list(v[key])}", f"give [low, high] with 0 < low <= high{' <= 1' if upper == 1 else ''}")
    if cfg.data.get("frames") is not None or cfg.data.get("size") is None:
        fail("data", f"is {cfg.data.name!r}, not images", "use data=scenes or data=image_folder")
        return
    if cfg.data.get("patch") is not None and cfg.data.patch != cfg.model.patch:
        fail("data.patch", f"({cfg.data.patch}) differs from model.patch ({cfg.model.patch}): the per-patch labels would "
             "not line up with the tokens", f"set data.patch={cfg.model.patch} (or model.patch={cfg.data.patch})")
    if cfg.data.size % cfg.model.patch:
        return  # model.patch not dividing data.size is reported by the model check
    hw = (cfg.data.size // cfg.model.patch,) * 2
    left = math.prod(hw) - largest_block(hw, v.target_scale, v.target_aspect)
    if not 1 <= v.min_context <= left:
        fail("variant.min_context", f"is {v.min_context}, but a target block can leave only {left} of the "
             f"{hw[0]}x{hw[1]} tokens", f"use 1 to {left}, smaller target blocks, or a smaller model.patch")


class IJEPA(EMATarget, Variant):
    name = "ijepa"
    host = "ssl"
    Config = IJEPAConfig

    def __init__(self, cfg, data_spec):
        super().__init__(cfg, data_spec)
        v = cfg.variant
        self.grid = image_grid(cfg, data_spec)
        self.masker = ImageMultiBlockMasker(self.grid.shape[1:], int(v.num_targets), list(v.target_scale),
                                            list(v.target_aspect), list(v.context_scale), int(v.min_context))

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        check_image_keys(cfg, fail)

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        v, m = self.cfg.variant, self.cfg.model
        encoder = VideoViT(self.grid, int(m.dim), int(m.depth), int(m.heads), in_channels=self.data_spec.channels)
        predictor = Predictor(self.grid, encoder.dim, int(v.pred_dim), int(v.pred_depth), int(v.pred_heads))
        return nn.ModuleDict({"encoder": encoder, "predictor": predictor, "target_encoder": self.make_target(encoder)})

    def draw(self, image: Tensor) -> ImageMasks:
        masks = self.masker(image.size(0), self.generator)
        return ImageMasks(masks.context.to(image.device), masks.targets.to(image.device))

    def predict(self, modules: nn.ModuleDict, image: Tensor, masks: ImageMasks) -> tuple[Tensor, Tensor, Tensor]:
        """Context tokens [B, Nc, D], and the predictions [B·M, K, D] for every target block with their
        indices [B·M, K] (the M blocks of a sample run as one predictor batch, block-major)."""
        b, m, k = masks.targets.shape
        context = modules["encoder"](image, keep=masks.context)
        ctx_rep = context.repeat(m, 1, 1)
        idx_rep = masks.context.repeat(m, 1)
        tgt = masks.targets.transpose(0, 1).reshape(m * b, k)
        return context, modules["predictor"](ctx_rep, idx_rep, tgt), tgt

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        image = batch[self.data_spec.input_key]
        with torch.no_grad():
            target = modules["target_encoder"](image)
            target = F.layer_norm(target, target.shape[-1:])
        masks = self.draw(image)
        _, pred, tgt = self.predict(modules, image, masks)
        loss = smooth_l1(pred, gather_tokens(target.repeat(masks.targets.size(1), 1, 1), tgt))
        return {"loss": loss, **mask_counts(masks, image.device)}

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        return self.probed_encoder(modules)(batch[self.data_spec.input_key])


def mask_counts(masks: ImageMasks, device: torch.device) -> dict[str, Tensor]:
    """Context tokens per image and target tokens per block; from shapes only (traced on meta too)."""
    return {"tokens_context": torch.tensor(float(masks.context.size(1)), device=device),
            "tokens_target": torch.tensor(float(masks.targets.size(2)), device=device)}
