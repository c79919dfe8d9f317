"""Frozen-feature evaluation: attentive and linear probes.

The attentive probe (V-JEPA's protocol) pools the encoder's tokens with one learned
query per task through cross-attention, then classifies. Probes train on features
extracted once, so evaluation costs a few seconds even on a CPU.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AttentivePooler(nn.Module):
    """Cross-attention from one learned query to the token set."""

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, tokens: Tensor) -> Tensor:
        tokens = self.norm(tokens)
        pooled, _ = self.attn(self.query.expand(tokens.size(0), -1, -1), tokens, tokens)
        return pooled[:, 0]


class Probe(nn.Module):
    """One classifier head per label over pooled tokens ('attentive') or mean tokens ('linear')."""

    def __init__(self, dim: int, num_classes: Mapping[str, int], kind: str = "attentive"):
        super().__init__()
        if kind not in ("attentive", "linear"):
            raise ValueError(f"probe kind must be 'attentive' or 'linear', got {kind!r}")
        self.kind = kind
        heads = next(h for h in (4, 3, 2, 1) if dim % h == 0)
        self.poolers = nn.ModuleDict(
            {k: AttentivePooler(dim, heads) for k in num_classes} if kind == "attentive" else {}
        )
        self.heads = nn.ModuleDict({k: nn.Linear(dim, n) for k, n in num_classes.items()})

    def forward(self, tokens: Tensor) -> dict[str, Tensor]:
        if self.kind == "linear":
            pooled = tokens.mean(dim=1)
            return {k: head(pooled) for k, head in self.heads.items()}
        return {k: head(self.poolers[k](tokens)) for k, head in self.heads.items()}


def fit_probe(
    train_tokens: Tensor,
    train_labels: Mapping[str, Tensor],
    val_tokens: Tensor,
    val_labels: Mapping[str, Tensor],
    num_classes: Mapping[str, int],
    kind: str = "attentive",
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """Train a probe on frozen tokens [N, L, D]; return validation accuracy per label."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mean, std = train_tokens.mean(dim=(0, 1), keepdim=True), train_tokens.std(dim=(0, 1), keepdim=True) + 1e-6
    train_tokens, val_tokens = (train_tokens - mean) / std, (val_tokens - mean) / std
    probe = Probe(train_tokens.size(-1), num_classes, kind).to(train_tokens.device)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.01)
    n = train_tokens.size(0)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(train_tokens.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            logits = probe(train_tokens[idx])
            loss = sum(F.cross_entropy(logits[k], train_labels[k][idx]) for k in num_classes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    probe.eval()
    with torch.no_grad():
        logits = probe(val_tokens)
    return {k: (logits[k].argmax(-1) == val_labels[k]).float().mean().item() for k in num_classes}
