"""UI-JEPA: V-JEPA on UI activity clips with a temporal mask family beside the spatio-temporal ones (arXiv 2409.04081).

The encoder, predictor, EMA target and L1 latent loss are V-JEPA's (subclassed, not copied). What it adds:
the **temporal** family, which hides whole frames (every token of `temporal_mask_ratio` of the clip's time
tokens) so the predictor must infer what happened on screen between the frames it sees. `mask_families`
picks the families (short, long, temporal); `temporal_mask_ratio=0` drops the temporal one (the
spatial-only condition of sweeps/ui_jepa.yaml).

The paper's second stage, a decoder language model writing the user's intent from the frozen embeddings,
is `IntentDecoder` here: a small transformer decoder over the word vocabulary of the intent templates
(`envs.ui.vocabulary()`; nothing downloaded), trained by the `intent_decoding` evaluation
(orchestrator/evaluate/intent_decoding.py) on the frozen tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.nn.masks import MaskPair
from variants.nn.vit import TokenGrid
from variants.vjepa import (
    VJEPA,
    VJEPAConfig,
    draw_masks,
    token_counts,
    variant_maskers,
    with_clip_variance,
)

FAMILIES = ("short", "long", "temporal")


@dataclass
class UIJEPAConfig(VJEPAConfig):
    """V-JEPA's keys, plus which mask families to draw and the share of time tokens a temporal mask hides."""

    name: str = "ui_jepa"
    mask_families: list[str] = field(default_factory=lambda: list(FAMILIES))
    temporal_mask_ratio: float = 0.5  # 0 = no temporal family (spatial masks only)


class TemporalMasker:
    """Hides whole time slices: every token of `round(ratio * t)` of the grid's t time tokens, per clip.

    The count is fixed per batch, so rows stack without truncation; at least one time slice stays
    visible and at least one is hidden."""

    def __init__(self, grid: tuple[int, int, int], ratio: float):
        t = grid[0]
        if t < 2:
            raise ValueError(f"error: a temporal mask needs at least 2 time tokens, the grid has {t}. "
                             "Fix: use more data.frames (at least 2 x model.tubelet) or drop `temporal` from variant.mask_families")
        self.grid, self.hidden = grid, min(t - 1, max(1, round(ratio * t)))

    def __call__(self, batch_size: int, gen: torch.Generator) -> MaskPair:
        t, h, w = self.grid
        per_slice = torch.arange(h * w)
        contexts, targets = [], []
        for _ in range(batch_size):
            order = torch.randperm(t, generator=gen)
            hidden, shown = order[: self.hidden].sort().values, order[self.hidden:].sort().values
            targets.append((hidden[:, None] * h * w + per_slice).flatten())
            contexts.append((shown[:, None] * h * w + per_slice).flatten())
        return MaskPair(context=torch.stack(contexts), target=torch.stack(targets))


def ui_maskers(cfg, grid: TokenGrid) -> dict[str, object]:
    """The configured families by name: V-JEPA's short/long blocks and the temporal one (unless its ratio is 0)."""
    v = cfg.variant
    short, long = variant_maskers(cfg, grid)
    known = {"short": short, "long": long}
    if float(v.temporal_mask_ratio) > 0 and "temporal" in v.mask_families:
        known["temporal"] = TemporalMasker(grid.shape, float(v.temporal_mask_ratio))
    return {name: known[name] for name in v.mask_families if name in known}


class UIJEPA(VJEPA):
    name = "ui_jepa"
    Config = UIJEPAConfig

    def __init__(self, cfg, data_spec):
        super().__init__(cfg, data_spec)
        self.families = ui_maskers(cfg, self.grid)
        self.maskers = list(self.families.values())

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        super().validate_config(cfg, fail)
        v = cfg.variant
        unknown = [f for f in v.mask_families if f not in FAMILIES]
        if unknown or not v.mask_families:
            fail("variant.mask_families", f"is {list(v.mask_families)}", f"use a non-empty list of {', '.join(FAMILIES)}")
        if not 0.0 <= float(v.temporal_mask_ratio) < 1.0:
            fail("variant.temporal_mask_ratio", f"is {v.temporal_mask_ratio}", "use a share of the time tokens in [0, 1), e.g. 0.5; 0 = no temporal masks")
        if list(v.mask_families) == ["temporal"] and float(v.temporal_mask_ratio) == 0:
            fail("variant.temporal_mask_ratio", "is 0 with only the temporal family", "set a ratio > 0 or add short/long to variant.mask_families")
        frames, tubelet = cfg.data.get("frames"), cfg.model.get("tubelet")
        if "temporal" in v.mask_families and float(v.temporal_mask_ratio) > 0 and frames is not None and tubelet and frames // tubelet < 2:
            fail("data.frames", f"({frames}) gives {frames // tubelet} time token(s) with model.tubelet={tubelet}; a temporal mask hides whole "
                 "time tokens and needs 2", f"use data.frames >= {2 * tubelet}, or drop temporal from variant.mask_families")

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        """V-JEPA's loss over every configured family, each family's loss logged as `loss_<family>`."""
        video = self.check_clip(batch[self.data_spec.input_key])
        target, shares = self.targets(modules, video)
        pairs = draw_masks(self.maskers, video, self.generator)
        losses, penalty = self.masked_losses(modules, video, target, pairs)
        return {**with_clip_variance(torch.stack(losses).mean(), penalty, self.cfg.variant),
                **{f"loss_{name}": loss.detach() for name, loss in zip(self.families, losses)}, **shares,
                **token_counts(pairs, video.device)}

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        return self.probed_encoder(modules)(self.check_clip(batch[self.data_spec.input_key]))

    def check_clip(self, video: Tensor) -> Tensor:
        """A clip of the frames the encoder was built for; a shorter one (less than a tubelet) is a clear error."""
        frames, tubelet = video.size(2), self.grid.tubelet
        if frames < tubelet or frames != self.grid.frames:
            raise ValueError(f"error: the clip has {frames} frames, the encoder takes {self.grid.frames} (tubelet {tubelet}). "
                             f"Fix: give clips of data.frames={self.grid.frames} frames (at least one tubelet of {tubelet})")
        return video


class IntentDecoder(nn.Module):
    """Writes an intent sentence from frozen clip tokens: token embedding + positions, a causal transformer
    decoder cross-attending to the projected clip tokens, and a word head over the template vocabulary."""

    def __init__(self, feature_dim: int, vocab_size: int, max_len: int, dim: int = 64, depth: int = 2, heads: int = 4):
        super().__init__()
        if vocab_size <= 3:
            raise ValueError(f"error: the intent vocabulary has {vocab_size} entries (only <pad> <bos> <eos>). "
                             "Fix: build it from at least one intent template (envs.ui.vocabulary())")
        self.memory = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, dim))
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        layer = nn.TransformerDecoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, depth)
        self.head = nn.Linear(dim, vocab_size)
        self.max_len = max_len

    def forward(self, tokens: Tensor, words: Tensor) -> Tensor:
        """Next-word logits [B, L, V] for `words` [B, L] (teacher forcing) given clip tokens [B, N, D]."""
        length = words.size(1)
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=words.device)
        x = self.embed(words) + self.position[:, :length]
        return self.head(self.decoder(x, self.memory(tokens), tgt_mask=causal, tgt_is_causal=True))

    def loss(self, tokens: Tensor, sentences: Tensor, pad: int = 0) -> Tensor:
        """Cross-entropy of each next word of `sentences` (<bos> ... <eos> <pad>...), padding ignored."""
        logits = self(tokens, sentences[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), sentences[:, 1:].reshape(-1), ignore_index=pad)

    @torch.no_grad()
    def generate(self, tokens: Tensor, bos: int = 1) -> Tensor:
        """Greedy decoding [B, max_len] from <bos>."""
        words = torch.full((tokens.size(0), 1), bos, dtype=torch.long, device=tokens.device)
        for _ in range(self.max_len - 1):
            words = torch.cat([words, self(tokens, words)[:, -1].argmax(-1, keepdim=True)], dim=1)
        return words
