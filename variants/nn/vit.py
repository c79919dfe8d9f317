"""ViT with fixed sin-cos positions and a 1-D, 2-D or 3-D patch embedding.

3-D (V-JEPA style, the default): video [B, C, T, H, W] cut into tubelets. 2-D (I-JEPA style):
images [B, C, H, W] cut into patches. 1-D: sequences [B, T, C] cut into chunks of `patch` steps.
The encoder can be run on a subset of tokens (`keep`), which is how JEPA context
encoders skip masked patches instead of zeroing them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# width, depth, heads of the standard ViT sizes
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
    "vit_large": (1024, 24, 16),
    "vit_huge": (1280, 32, 16),
}


PATCH_DIMS = (1, 2, 3)


@dataclass(frozen=True)
class TokenGrid:
    """How an input is cut into tokens, always as a (t, h, w) grid so masks work on every kind.

    3-D: a clip of `frames`×`size`×`size` into tubelets of `tubelet`×`patch`×`patch`.
    2-D: an image of `size`×`size` into `patch`×`patch` patches (t = 1; frames, tubelet unused).
    1-D: a sequence of `frames` steps into chunks of `patch` steps (h = w = 1; size, tubelet unused).
    """

    frames: int
    size: int
    patch: int
    tubelet: int
    patch_dims: int = 3

    def __post_init__(self):
        if self.patch_dims not in PATCH_DIMS:
            raise ValueError(f"patch_dims is {self.patch_dims}; use 1, 2 or 3")

    @property
    def shape(self) -> tuple[int, int, int]:
        if self.patch_dims == 1:
            return (self.frames // self.patch, 1, 1)
        if self.patch_dims == 2:
            return (1, self.size // self.patch, self.size // self.patch)
        return (self.frames // self.tubelet, self.size // self.patch, self.size // self.patch)

    @property
    def num_tokens(self) -> int:
        t, h, w = self.shape
        return t * h * w


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double()[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_3d(dim: int, grid: tuple[int, int, int]) -> Tensor:
    """Fixed positions: a quarter of the channels for time, the rest split over h and w."""
    t, h, w = grid
    dim_t = (dim // 4) // 2 * 2
    dim_hw = ((dim - dim_t) // 2) // 2 * 2
    dim_t = dim - 2 * dim_hw
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    emb = torch.cat(
        [sincos_1d(dim_t, tt.flatten()), sincos_1d(dim_hw, hh.flatten()), sincos_1d(dim_hw, ww.flatten())],
        dim=1,
    )
    return emb.float()


def sincos_positions(dim: int, grid: TokenGrid) -> Tensor:
    """[N, dim] fixed positions for a grid: all channels on the one axis of a 1-D or 2-D grid's tokens."""
    t, h, w = grid.shape
    if grid.patch_dims == 1:
        return sincos_1d(dim, torch.arange(t)).float()
    if grid.patch_dims == 2:
        half = dim // 2 // 2 * 2
        hh, ww = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        return torch.cat([sincos_1d(half, hh.flatten()), sincos_1d(dim - half, ww.flatten())], dim=1).float()
    return sincos_3d(dim, grid.shape)


def patch_embedding(grid: TokenGrid, in_channels: int, dim: int) -> nn.Module:
    """A strided convolution over patches: Conv3d (tubelets), Conv2d (image patches) or Conv1d (chunks)."""
    if grid.patch_dims == 1:
        return nn.Conv1d(in_channels, dim, kernel_size=grid.patch, stride=grid.patch)
    if grid.patch_dims == 2:
        return nn.Conv2d(in_channels, dim, kernel_size=grid.patch, stride=grid.patch)
    kernel = (grid.tubelet, grid.patch, grid.patch)
    return nn.Conv3d(in_channels, dim, kernel_size=kernel, stride=kernel)


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x[b, index[b]] for a batch of index rows: [B, N, D] × [B, K] -> [B, K, D]."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_weights(module: nn.Module) -> None:
    """Truncated-normal linears, unit LayerNorms (the I-JEPA recipe)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VideoViT(nn.Module):
    """ViT over the grid's patches (tubelets by default); `forward(x, keep)` encodes only the kept tokens.

    Input: [B, C, T, H, W] (3-D), [B, C, H, W] (2-D) or [B, T, C] (1-D), per `grid.patch_dims`.
    """

    def __init__(self, grid: TokenGrid, dim: int, depth: int, heads: int, in_channels: int = 3, mlp_ratio: float = 4.0):
        super().__init__()
        self.grid = grid
        self.dim = dim
        self.patch_embed = patch_embedding(grid, in_channels, dim)
        self.register_buffer("pos_embed", sincos_positions(dim, grid)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        init_weights(self)

    def embed(self, video: Tensor) -> Tensor:
        """[B, C, T, H, W] (or an image, or a sequence) -> [B, N, D] tokens with positions added."""
        if self.grid.patch_dims == 1:
            video = video.transpose(1, 2)  # [B, T, C] -> [B, C, T], as Conv1d reads it
        return self.patch_embed(video).flatten(2).transpose(1, 2) + self.pos_embed

    def forward(self, video: Tensor, keep: Tensor | None = None) -> Tensor:
        x = self.embed(video)
        if keep is not None:
            x = gather_tokens(x, keep)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class Predictor(nn.Module):
    """Narrow ViT that fills mask tokens at target positions from context tokens.

    `out_dim` may differ from `in_dim` so a student can regress a teacher of another width.
    """

    def __init__(self, grid: TokenGrid, in_dim: int, dim: int, depth: int, heads: int, out_dim: int | None = None):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_positions(dim, grid)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim or in_dim)
        init_weights(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context: Tensor, context_idx: Tensor, target_idx: Tensor) -> Tensor:
        b = context.size(0)
        pos = self.pos_embed.expand(b, -1, -1)
        ctx = self.embed(context) + gather_tokens(pos, context_idx)
        queries = self.mask_token.expand(b, target_idx.size(1), -1) + gather_tokens(pos, target_idx)
        x = torch.cat([ctx, queries], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, ctx.size(1):]))


ViT = VideoViT  # the same encoder; the name for images and sequences


def vit_forward_flops(num_tokens: int, dim: int, depth: int, patch_volume: int, in_channels: int = 3, mlp_ratio: float = 4.0) -> float:
    """Analytic matmul FLOPs of one forward pass for one clip (2 FLOPs per multiply-add).

    Used to cross-check the measured counter, never to charge runs.
    """
    n, d = num_tokens, dim
    per_block = 2 * n * (4 * d * d + 2 * mlp_ratio * d * d) + 4 * n * n * d
    return depth * per_block + 2 * n * d * in_channels * patch_volume
