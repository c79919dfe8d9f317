"""V-JEPA 3-D multiblock masks.

A mask is a union of spatial blocks extended over time (tubes). Block size is drawn once
per batch (so every sample masks about the same amount), block positions per sample.
Index lists are truncated to the batch minimum so they stack into dense tensors, as in
the I-JEPA / V-JEPA collators. Everything is drawn on the CPU from a `torch.Generator`,
so masks are reproducible and independent of the device the model runs on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class BlockSpec:
    """One family of blocks: `num_blocks` blocks of `spatial_scale` of the frame each."""

    num_blocks: int
    spatial_scale: tuple[float, float]
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    temporal_scale: tuple[float, float] = (1.0, 1.0)


# V-JEPA's two mask families: many small blocks (short-range) and two large ones (long-range).
SHORT_RANGE = BlockSpec(num_blocks=8, spatial_scale=(0.15, 0.15))
LONG_RANGE = BlockSpec(num_blocks=2, spatial_scale=(0.7, 0.7))


@dataclass
class MaskPair:
    context: Tensor  # [B, Nc] token indices the encoder sees
    target: Tensor  # [B, Nt] token indices the predictor must fill


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=gen).item()


def _block_size(gen: torch.Generator, spec: BlockSpec, grid: tuple[int, int, int]) -> tuple[int, int, int]:
    t, h, w = grid
    area = _uniform(gen, *spec.spatial_scale) * h * w
    log_low, log_high = math.log(spec.aspect_ratio[0]), math.log(spec.aspect_ratio[1])
    aspect = math.exp(_uniform(gen, log_low, log_high))
    bh = max(1, min(h, round(math.sqrt(area * aspect))))
    bw = max(1, min(w, round(math.sqrt(area / aspect))))
    bt = max(1, min(t, round(_uniform(gen, *spec.temporal_scale) * t)))
    return bt, bh, bw


def sample_masked_grid(gen: torch.Generator, spec: BlockSpec, grid: tuple[int, int, int], size: tuple[int, int, int]) -> Tensor:
    """Boolean [T, H, W] grid, True where one of `spec.num_blocks` blocks of `size` lands."""
    t, h, w = grid
    bt, bh, bw = size
    masked = torch.zeros(grid, dtype=torch.bool)
    for _ in range(spec.num_blocks):
        t0 = torch.randint(0, t - bt + 1, (), generator=gen).item()
        h0 = torch.randint(0, h - bh + 1, (), generator=gen).item()
        w0 = torch.randint(0, w - bw + 1, (), generator=gen).item()
        masked[t0 : t0 + bt, h0 : h0 + bh, w0 : w0 + bw] = True
    return masked


class MultiBlockMasker:
    """Draws (context, target) index pairs for a batch from one BlockSpec.

    Every row keeps at least `min_context` context tokens (so does the batch after truncation to
    its shortest row): on small grids large blocks would otherwise leave one or two visible tokens.
    """

    def __init__(self, grid: tuple[int, int, int], spec: BlockSpec, min_context: int = 1):
        if not 1 <= min_context < math.prod(grid):
            raise ValueError(f"min_context {min_context} must be >= 1 and leave a target token on a {grid} grid")
        self.grid = grid
        self.spec = spec
        self.min_context = min_context

    def __call__(self, batch_size: int, gen: torch.Generator) -> MaskPair:
        size = _block_size(gen, self.spec, self.grid)
        contexts, targets = [], []
        for _ in range(batch_size):
            masked = sample_masked_grid(gen, self.spec, self.grid, size).flatten()
            unmask_at_least_context(masked, self.min_context, gen)
            contexts.append(torch.nonzero(~masked).flatten())
            targets.append(torch.nonzero(masked).flatten())
        return MaskPair(context=_truncate_stack(contexts), target=_truncate_stack(targets))


def unmask_at_least_context(masked: Tensor, min_context: int, gen: torch.Generator) -> None:
    """Unmask random masked tokens until `min_context` are visible (in place); the rest stay targets."""
    missing = min_context - int((~masked).sum())
    if missing > 0:
        candidates = torch.nonzero(masked).flatten()
        masked[candidates[torch.randperm(len(candidates), generator=gen)[:missing]]] = False


def _truncate_stack(rows: list[Tensor]) -> Tensor:
    """Stack index rows cut to the shortest one (keeps a random-ish but deterministic subset)."""
    n = min(len(r) for r in rows)
    return torch.stack([r[:n] for r in rows])


def mask_ratio(pair: MaskPair, num_tokens: int) -> float:
    return pair.target.size(1) / num_tokens
