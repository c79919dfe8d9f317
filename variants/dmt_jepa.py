"""DMT-JEPA: I-JEPA with discriminative masked targets (arXiv 2405.17995).

For every masked patch, the target is no longer its own target-encoder token alone: from its
`window`×`window` neighbourhood (3×3 in the paper) the `k` (4) neighbours whose target-encoder tokens are
most cosine-similar to its own are chosen, and class-attention blocks whose query is the patch's own token
aggregate them (the token itself is always a key, so a patch with no usable neighbour, at a corner or with
every neighbour hidden, still gets a defined target). The online side aggregates the predictor's output in
the same way, with the same neighbours, read from the online tokens that exist for that block (context
encoder outputs and the block's own predictions); the aggregation head's target copy follows the encoder's
EMA. Masks, EMA, loss and probes are I-JEPA's, imported.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.ijepa import IJEPA, IJEPAConfig, check_image_keys, mask_counts, smooth_l1
from variants.nn.ema import ema_update, frozen_copy
from variants.nn.vit import gather_tokens, init_weights


@dataclass
class DMTJEPAConfig(IJEPAConfig):
    """I-JEPA's keys plus the neighbour targets': `k` neighbours from a `window`² patch, `agg_depth`
    class-attention blocks of `agg_heads` heads."""

    name: str = "dmt_jepa"
    k: int = 4
    window: int = 3
    agg_depth: int = 2
    agg_heads: int = 4


def neighbour_offsets(window: int) -> list[tuple[int, int]]:
    """(dy, dx) of a patch's neighbours in a window×window square, the patch itself left out."""
    r = window // 2
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]


def neighbour_table(hw: tuple[int, int], window: int, device=None) -> tuple[Tensor, Tensor]:
    """For every token of an (h, w) raster: its neighbours' indices [N, W] and whether each lies on the grid."""
    h, w = hw
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    idx, inside = [], []
    for dy, dx in neighbour_offsets(window):
        r, c = rows + dy, cols + dx
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        idx.append(torch.where(ok, r.clamp(0, h - 1) * w + c.clamp(0, w - 1), 0))
        inside.append(ok)
    return torch.stack(idx, 1).to(device), torch.stack(inside, 1).to(device)


def select_neighbours(tokens: Tensor, hw: tuple[int, int], k: int, window: int = 3,
                      available: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The `k` neighbours of every token most cosine-similar to it: indices [B, N, k] and validity [B, N, k].

    Candidates are the window's patches on the grid (and `available` [B, N], if given); a slot with no
    candidate left is invalid (its index is a placeholder the aggregation ignores).
    """
    b, n, _ = tokens.shape
    table, inside = neighbour_table(hw, window, tokens.device)  # [N, W]
    unit = F.normalize(tokens.float(), dim=-1)
    neigh = gather_tokens(unit, table.flatten()[None].expand(b, -1)).view(b, n, table.size(1), -1)
    sim = (neigh * unit.unsqueeze(2)).sum(-1)  # [B, N, W]
    ok = inside[None].expand(b, -1, -1)
    if available is not None:
        ok = ok & torch.gather(available, 1, table.flatten()[None].expand(b, -1)).view(b, n, -1)
    sim = sim.masked_fill(~ok, float("-inf"))
    top = sim.topk(min(k, table.size(1)), dim=-1)
    return torch.gather(table[None].expand(b, -1, -1), 2, top.indices), top.values > float("-inf")


class ClassAttentionBlock(nn.Module):
    """CaiT's class attention: only the query token is updated, attending to itself and its neighbours."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, query: Tensor, keys: Tensor, valid: Tensor) -> Tensor:
        """query [M, D]; keys [M, k+1, D] (the query's own token first); valid [M, k+1] -> [M, D]."""
        m, length, d = keys.shape
        hd = d // self.heads
        x = self.norm1(keys)
        q = self.q(self.norm1(query)).view(m, 1, self.heads, hd).transpose(1, 2)
        kv = self.kv(x).view(m, length, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=valid[:, None, None, :])
        query = query + self.proj(out.transpose(1, 2).reshape(m, d))
        return query + self.mlp(self.norm2(query))


class NeighbourAggregator(nn.Module):
    """Class-attention blocks that fold a patch's chosen neighbours into its own token."""

    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(ClassAttentionBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        init_weights(self)

    def forward(self, own: Tensor, neighbours: Tensor, valid: Tensor) -> Tensor:
        """own [..., D], neighbours [..., k, D], valid [..., k] -> [..., D]."""
        lead, d = own.shape[:-1], own.size(-1)
        own, neighbours = own.reshape(-1, d), neighbours.reshape(-1, neighbours.size(-2), d)
        valid = torch.cat([torch.ones_like(valid.reshape(-1, valid.size(-1))[:, :1]), valid.reshape(-1, valid.size(-1))], 1)
        keys = torch.cat([own[:, None], neighbours], 1)
        query = own
        for block in self.blocks:
            query = block(query, keys, valid)
        return self.norm(query).view(*lead, d)


def gather_neighbours(tokens: Tensor, index: Tensor) -> Tensor:
    """tokens [B, N, D] at index [B, K, k] -> [B, K, k, D]."""
    b, kk, k = index.shape
    return gather_tokens(tokens, index.reshape(b, kk * k)).view(b, kk, k, -1)


class DMTJEPA(IJEPA):
    name = "dmt_jepa"
    host = "ssl"
    Config = DMTJEPAConfig

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        check_image_keys(cfg, fail)
        v = cfg.variant
        if v.window < 3 or v.window % 2 == 0:
            fail("variant.window", f"is {v.window}", "use an odd neighbourhood side >= 3 (the paper's 3)")
        elif not 1 <= v.k <= v.window ** 2 - 1:
            fail("variant.k", f"is {v.k}", f"use 1 to {v.window ** 2 - 1} neighbours of a {v.window}x{v.window} window (the paper's 4)")
        if v.agg_depth < 1:
            fail("variant.agg_depth", f"is {v.agg_depth}", "use at least 1 class-attention block (the paper's 2)")
        if cfg.model.dim % v.agg_heads:
            fail("variant.agg_heads", f"({v.agg_heads}) does not divide model.dim ({cfg.model.dim})", "pick heads that divide it")

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        modules = super().build(stage, previous)
        v = self.cfg.variant
        aggregator = NeighbourAggregator(modules["encoder"].dim, int(v.agg_depth), int(v.agg_heads))
        modules["aggregator"] = aggregator
        modules["target_aggregator"] = frozen_copy(aggregator)
        return modules

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        v = self.cfg.variant
        image = batch[self.data_spec.input_key]
        masks = self.draw(image)
        b, m, _ = masks.targets.shape
        context, pred, tgt = self.predict(modules, image, masks)  # pred, tgt: [B·M, K, ...] block-major
        # The online tokens that exist for each block: its context outputs and its own predictions.
        online = torch.zeros(b * m, self.grid.num_tokens, pred.size(-1), device=pred.device, dtype=pred.dtype)
        online = online.scatter(1, masks.context.repeat(m, 1)[..., None].expand(-1, -1, pred.size(-1)), context.repeat(m, 1, 1))
        online = online.scatter(1, tgt[..., None].expand(-1, -1, pred.size(-1)), pred)
        available = torch.zeros(b * m, self.grid.num_tokens, dtype=torch.bool, device=pred.device)
        available = available.scatter(1, masks.context.repeat(m, 1), True).scatter(1, tgt, True)
        with torch.no_grad():
            target = modules["target_encoder"](image)
            target = F.layer_norm(target, target.shape[-1:]).repeat(m, 1, 1)
            index, valid = select_neighbours(target, self.grid.shape[1:], int(v.k), int(v.window), available)
            index, valid = gather_rows(index, tgt), gather_rows(valid, tgt)
            aimed = modules["target_aggregator"](gather_tokens(target, tgt), gather_neighbours(target, index), valid)
            aimed = F.layer_norm(aimed, aimed.shape[-1:])
        guess = modules["aggregator"](pred, gather_neighbours(online, index), valid)
        return {"loss": smooth_l1(guess, aimed), "neighbours_valid": valid.float().sum(-1).mean().detach(),
                **mask_counts(masks, image.device)}

    def after_step(self, modules: nn.ModuleDict, step: int, total_steps: int, stage: str) -> None:
        super().after_step(modules, step, total_steps, stage)
        ema_update(modules["target_aggregator"], modules["aggregator"], self.momentum(step, total_steps))


def gather_rows(table: Tensor, index: Tensor) -> Tensor:
    """table [B, N, k] at token rows index [B, K] -> [B, K, k]."""
    return torch.gather(table, 1, index[..., None].expand(-1, -1, table.size(-1)))

