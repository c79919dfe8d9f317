"""V-JEPA: predict an EMA target encoder's features of masked video regions (arXiv 2404.08471).

Context encoder sees the visible tubelets; a narrow predictor fills the masked ones; the
loss is L1 to the layer-normed target features. The target is an EMA of the encoder, with
momentum ramped linearly to 1.0 from a start sized to the run (the paper's 0.998 is one override
away). Two mask families per clip (short- and long-range blocks), each leaving at least
`min_context` visible tokens; blocks span `mask_temporal_scale` of the clip's time (the paper: all of it).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import Variant
from variants.ema_target import (  # noqa: F401 (re-exported)
    PROBE_ENCODERS,
    EMATarget,
    check_ema_config,
    flat_weights,
)
from variants.nn.masks import LONG_RANGE, SHORT_RANGE, MultiBlockMasker
from variants.nn.vit import Predictor, TokenGrid, VideoViT, gather_tokens


@dataclass
class VJEPAConfig:
    """V-JEPA's hyper-parameters.

    The EMA momentum ramps linearly from `ema_start` to `ema_end` over the run. `ema_start=0`
    derives the start from `ema_half_life`: the fraction of the run's steps after which the target
    keeps half of its initial (random) weights, whatever the run's length. The paper's fixed start,
    chosen for ~90k-step runs, is `variant.ema_start=0.998` (after 256 steps it keeps 77 % of its init).
    """

    name: str = "vjepa"
    pred_dim: int = 96
    pred_depth: int = 4
    pred_heads: int = 3
    ema_start: float = 0.0  # 0 = derived from ema_half_life; the paper's is 0.998
    ema_half_life: float = 0.1  # share of the run's steps until the target holds half its initial weights
    ema_end: float = 1.0
    loss_exp: float = 1.0  # 1 = L1 (V-JEPA), 2 = squared error
    min_context: int = 8  # fewest visible tokens a mask leaves (small grids leave ~2 without it)
    # Share of the clip's time tokens a mask block spans. The paper's tubes (1.0) never ask the predictor
    # where something is at one time given other times; at laptop scale that lost the motion label
    # (docs/results/learning_signal.md), and 0.5 kept it.
    mask_temporal_scale: float = 0.5
    probe_encoder: str = "target"  # which encoder the probes read: the EMA "target" (the paper's), the "online" one, or "both" (online/<metric>)
    # Remove a shortcut component from the layer-normed targets, then layer-norm again: "position" takes
    # each token position's batch mean out (DINO's centring, per position), "clip" each clip's mean token
    # (what every token of the clip shares). The `target_*_share` metrics log how much of each is there.
    target_centring: str = "none"  # none | position | clip
    # Weight of VICReg's variance hinge taken across the tokens of each clip, on the online encoder's
    # layer-normed context tokens (`clip_variance_penalty`): it acts on the encoder against the per-clip
    # collapse that centring the targets could not stop. 0 = off (the paper's).
    clip_variance_weight: float = 0.0
    clip_variance_floor: float = 0.5  # the hinge's std floor per channel (layer-normed tokens have std 1 in all)



def token_grid(cfg, spec) -> TokenGrid:
    return TokenGrid(frames=spec.frames, size=spec.size, patch=int(cfg.model.patch), tubelet=int(cfg.model.tubelet))


def make_encoder(cfg_model, grid: TokenGrid, channels: int) -> VideoViT:
    return VideoViT(grid, int(cfg_model.dim), int(cfg_model.depth), int(cfg_model.heads), in_channels=channels)


def latent_regression_loss(pred: Tensor, target: Tensor, exponent: float) -> Tensor:
    return (pred - target).abs().pow(exponent).mean() / exponent


CENTRINGS = ("none", "position", "clip")


def centre_targets(targets: Tensor, centring: str) -> Tensor:
    """Layer-normed targets [B, N, D] less each position's batch mean ("position") or each clip's mean
    token ("clip"), layer-normed again; unchanged for "none"."""
    if centring == "none":
        return targets
    targets = targets - targets.mean(dim=0 if centring == "position" else 1, keepdim=True)
    return F.layer_norm(targets, targets.shape[-1:])


def clip_variance_penalty(tokens: Tensor, positions: Tensor, num_positions: int, floor: float) -> Tensor:
    """VICReg's variance hinge on what differs between a clip's tokens beyond where they are.

    The layer-normed tokens [B, K, D] at `positions` [B, K] (of `num_positions`) lose each clip's mean token, then each
    position's batch mean (else position embeddings alone would satisfy the hinge: with them left in,
    the encoder's position share rose to 0.87 by step 100); the mean over clips and channels of
    relu(floor - std over the clip's tokens) of what is left grows as an encoder maps every token of a
    clip to one vector, or to its position."""
    tokens = F.layer_norm(tokens, tokens.shape[-1:])
    tokens = tokens - tokens.mean(dim=1, keepdim=True)
    flat = positions.reshape(-1)
    sums = tokens.new_zeros(num_positions, tokens.size(-1)).index_add(0, flat, tokens.reshape(-1, tokens.size(-1)))
    counts = tokens.new_zeros(num_positions).index_add(0, flat, tokens.new_ones(flat.shape)).clamp_min(1).unsqueeze(-1)
    content = tokens - (sums / counts)[positions]
    std = (content.pow(2).mean(dim=1) + 1e-4).sqrt()
    return F.relu(floor - std).mean()


def variance_shares(tokens: Tensor, time_tokens: int = 1) -> dict[str, Tensor]:
    """Shares of the tokens' variance [B, N, D] that position alone (variance of the per-position batch
    means), the clip alone (variance of the per-clip token means) and, for N = time_tokens × places in
    time-major order, the place alone (variance of each clip's place means over time) explain, over the
    total. Near 1: the targets say where, which clip, or what never moves, not what happens. By chance
    B clips, N tokens and T time tokens leave about 1/B, 1/N and 1/T."""
    tokens = tokens.detach().float()
    total = tokens.var(dim=(0, 1), correction=0).sum().clamp_min(1e-12)
    shares = {"target_position_share": tokens.mean(dim=0).var(dim=0, correction=0).sum() / total,
              "target_clip_share": tokens.mean(dim=1).var(dim=0, correction=0).sum() / total}
    if time_tokens > 1:
        places = tokens.unflatten(1, (time_tokens, -1)).mean(dim=1)  # [B, places, D]
        shares["target_static_share"] = places.var(dim=(0, 1), correction=0).sum() / total
    return shares


def video_maskers(grid: TokenGrid, min_context: int = 1, temporal_scale: float = 1.0) -> list[MultiBlockMasker]:
    """V-JEPA's short- and long-range families, each block spanning `temporal_scale` of the time tokens."""
    spans = (temporal_scale, temporal_scale)
    return [MultiBlockMasker(grid.shape, dataclasses.replace(family, temporal_scale=spans), min_context)
            for family in (SHORT_RANGE, LONG_RANGE)]


def variant_maskers(cfg, grid: TokenGrid) -> list[MultiBlockMasker]:
    """The maskers a V-JEPA-style variant's `variant.min_context` and `variant.mask_temporal_scale` ask for."""
    return video_maskers(grid, int(cfg.variant.min_context), float(cfg.variant.mask_temporal_scale))


def check_target_centring(v, fail) -> None:
    if v.target_centring not in CENTRINGS:
        fail("variant.target_centring", f"is {v.target_centring!r}", f"use one of {', '.join(CENTRINGS)}")


def check_masks(cfg, fail) -> None:
    """The mask keys: a block spans part of the clip's time, and every mask keeps context and target."""
    scale = cfg.variant.mask_temporal_scale
    if not 0.0 < scale <= 1.0:
        fail("variant.mask_temporal_scale", f"is {scale}", "use a share of the time tokens in (0, 1]; 1 = the paper's tubes")
    check_min_context(cfg, fail)


def with_clip_variance(prediction: Tensor, penalty: Tensor, v) -> dict[str, Tensor]:
    """The loss optimised (prediction + `variant.clip_variance_weight` × penalty) and the penalty, logged either way."""
    weight = float(v.clip_variance_weight)
    return {"loss": prediction + weight * penalty if weight else prediction, "loss_clip_variance": penalty.detach()}


def check_clip_variance_weight(v, fail) -> None:
    if v.clip_variance_weight < 0:
        fail("variant.clip_variance_weight", f"is {v.clip_variance_weight}", "use 0 (off) or a positive weight, e.g. 1.0")
    if not 0.0 < v.clip_variance_floor <= 1.0:
        fail("variant.clip_variance_floor", f"is {v.clip_variance_floor}", "use a std in (0, 1] (layer-normed tokens have std 1), e.g. 0.5")


def token_counts(pairs: list[tuple[Tensor, Tensor]], device: torch.device) -> dict[str, Tensor]:
    """Context and target tokens per clip, mean over the mask families; from shapes only (traced on meta too)."""
    def mean_width(column: int) -> Tensor:
        return torch.tensor(sum(pair[column].size(1) for pair in pairs) / len(pairs), device=device)

    return {"tokens_context": mean_width(0), "tokens_target": mean_width(1)}


def check_min_context(cfg, fail) -> None:
    """`variant.min_context` >= 1 and below the run's token count, so every mask keeps a target token."""
    min_context = int(cfg.variant.min_context)
    if min_context < 1:
        fail("variant.min_context", f"is {min_context}", "use at least 1 visible token, e.g. 8")
    if None in (cfg.data.get("frames"), cfg.data.get("size"), cfg.model.get("patch"), cfg.model.get("tubelet")):
        return  # not a clip or not a ViT: no token grid to check against
    grid = token_grid(cfg, cfg.data)
    tokens = grid.shape[0] * grid.shape[1] * grid.shape[2]
    if min_context >= tokens:
        fail("variant.min_context", f"({min_context}) leaves no target token on the {'x'.join(map(str, grid.shape))} "
             f"token grid ({tokens} tokens)", f"use fewer than {tokens}, or a smaller model.patch / model.tubelet")


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


class VJEPA(EMATarget, Variant):
    name = "vjepa"
    host = "ssl"
    Config = VJEPAConfig

    def __init__(self, cfg, data_spec):
        super().__init__(cfg, data_spec)
        self.grid = token_grid(cfg, data_spec)
        self.maskers = variant_maskers(cfg, self.grid)

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        v = cfg.variant
        check_heads_divide(v, ("pred",), fail)
        check_ema_config(v, fail, paper_start=0.998)
        check_target_centring(v, fail)
        check_clip_variance_weight(v, fail)
        check_masks(cfg, fail)

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        v = self.cfg.variant
        encoder = make_encoder(self.cfg.model, self.grid, self.data_spec.channels)
        predictor = Predictor(self.grid, encoder.dim, int(v.pred_dim), int(v.pred_depth), int(v.pred_heads))
        return nn.ModuleDict({"encoder": encoder, "predictor": predictor, "target_encoder": self.make_target(encoder)})

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        video = batch[self.data_spec.input_key]
        target, shares = self.targets(modules, video)
        pairs = draw_masks(self.maskers, video, self.generator)
        losses, penalty = self.masked_losses(modules, video, target, pairs)
        return {**with_clip_variance(torch.stack(losses).mean(), penalty, self.cfg.variant), "loss_short": losses[0].detach(),
                "loss_long": losses[1].detach(), **shares, **token_counts(pairs, video.device)}

    def masked_losses(self, modules: nn.ModuleDict, video: Tensor, target: Tensor,
                      pairs: list[tuple[Tensor, Tensor]]) -> tuple[list[Tensor], Tensor]:
        """The latent regression loss of each (context, target) mask pair, and the context tokens'
        `clip_variance_penalty`, mean over the pairs."""
        losses, spread = [], []
        for ctx, tgt in pairs:
            context = modules["encoder"](video, keep=ctx)
            pred = modules["predictor"](context, ctx, tgt)
            losses.append(latent_regression_loss(pred, gather_tokens(target, tgt), float(self.cfg.variant.loss_exp)))
            spread.append(clip_variance_penalty(context, ctx, self.grid.num_tokens, float(self.cfg.variant.clip_variance_floor)))
        return losses, torch.stack(spread).mean()

    @torch.no_grad()
    def targets(self, modules: nn.ModuleDict, video: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The EMA target's layer-normed tokens (centred as `variant.target_centring` asks), and
        their `variance_shares` before centring: whether the target drifts towards position, the clip, or what is static."""
        target = modules["target_encoder"](video)
        target = F.layer_norm(target, target.shape[-1:])
        shares = variance_shares(target, self.grid.shape[0])
        return centre_targets(target, str(self.cfg.variant.target_centring)), shares

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        return self.probed_encoder(modules)(batch[self.data_spec.input_key])
