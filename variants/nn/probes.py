"""Frozen-feature evaluation: attentive and linear probes (classes, floats), per-token and MLP heads.

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
        """`self.attn(query, tokens, tokens)`, factored for one query: the keys' projection is folded
        into the query (q·(W_k x + b_k) = (W_kᵀq)·x + const, the constant cancels in the softmax) and the
        values' projection applied after pooling (Σ a_i (W_v x_i + b_v) = W_v Σ a_i x_i + b_v). Same
        parameters, same output up to rounding, ~D/heads times fewer FLOPs than projecting every token."""
        tokens = self.norm(tokens)
        attn = self.attn
        dim, heads = tokens.size(-1), attn.num_heads
        head_dim = dim // heads
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
        b_q, _, b_v = attn.in_proj_bias.chunk(3)
        q = (self.query[0, 0] @ w_q.T + b_q).view(heads, head_dim) * head_dim**-0.5  # [H, d]
        keys = torch.einsum("hd,hde->he", q, w_k.view(heads, head_dim, dim))  # [H, D]: W_k,hᵀ q_h
        weights = torch.softmax(tokens @ keys.T, dim=1)  # [N, L, H]
        pooled = torch.einsum("nlh,nld->nhd", weights, tokens)  # [N, H, D]
        values = torch.einsum("nhe,hde->nhd", pooled, w_v.view(heads, head_dim, dim)) + b_v.view(heads, head_dim)
        return attn.out_proj(values.reshape(len(tokens), dim))


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
    torch.manual_seed(seed)
    train_tokens, val_tokens = _standardize(train_tokens, val_tokens, (0, 1))
    probe = Probe(train_tokens.size(-1), num_classes, kind).to(train_tokens.device)
    _fit(probe, len(train_tokens),
         lambda idx: sum(F.cross_entropy(out, train_labels[k][idx]) for k, out in probe(train_tokens[idx]).items()),
         epochs, lr, batch_size, seed, train_tokens.device)
    with torch.no_grad():
        logits = probe(val_tokens)
    return {k: (logits[k].argmax(-1) == val_labels[k]).float().mean().item() for k in num_classes}


def _standardize(train: Tensor, val: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Both splits scaled by the train split's statistics over `dims`. A feature constant on the train split
    (a raw pixel that is always background) carries nothing to learn: it becomes 0 in both splits, where
    dividing by ~1e-6 would blow its val values up to ~1e6 (a raw-pixel R² of −2e7)."""
    mean, std = train.mean(dim=dims, keepdim=True), train.std(dim=dims, keepdim=True)
    std = torch.where(std > 1e-6, std, torch.full_like(std, torch.inf))
    return (train - mean) / std, (val - mean) / std


def _fit(model: nn.Module, n: int, loss_of, epochs: int, lr: float, batch_size: int, seed: int, device) -> None:
    """Minibatch AdamW on `loss_of(indices)` with a seeded order: the one training protocol of every probe here."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, batch_size):
            loss = loss_of(order[start : start + batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()


def r2_score(pred: Tensor, target: Tensor) -> float:
    """Coefficient of determination over all output dimensions: 1 - SSE / SST (0 = the mean's score)."""
    sse = ((pred - target) ** 2).sum()
    sst = ((target - target.mean(dim=0, keepdim=True)) ** 2).sum().clamp_min(1e-12)
    return float(1.0 - sse / sst)


def fit_regressor(
    train_tokens: Tensor,
    train_targets: Mapping[str, Tensor],
    val_tokens: Tensor,
    val_targets: Mapping[str, Tensor],
    kind: str = "attentive",
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """The probe of `fit_probe` regressing float targets [N, d] (MSE on standardised targets); val R² per target."""
    torch.manual_seed(seed)
    train_tokens, val_tokens = _standardize(train_tokens, val_tokens, (0, 1))
    ys = {k: _standardize(train_targets[k].float().reshape(len(train_tokens), -1),
                          val_targets[k].float().reshape(len(val_tokens), -1), (0,)) for k in train_targets}
    probe = Probe(train_tokens.size(-1), {k: y[0].size(-1) for k, y in ys.items()}, kind).to(train_tokens.device)
    _fit(probe, len(train_tokens),
         lambda idx: sum(F.mse_loss(out, ys[k][0][idx]) for k, out in probe(train_tokens[idx]).items()),
         epochs, lr, batch_size, seed, train_tokens.device)
    with torch.no_grad():
        pred = probe(val_tokens)
    return {k: r2_score(pred[k], ys[k][1]) for k in ys}


def fit_dense(
    train_tokens: Tensor,
    train_labels: Mapping[str, Tensor],
    val_tokens: Tensor,
    val_labels: Mapping[str, Tensor],
    num_classes: Mapping[str, int],
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """A linear classifier on every token (labels [N, L], one per token); val (accuracy, mIoU) per target."""
    torch.manual_seed(seed)
    train_tokens, val_tokens = _standardize(train_tokens, val_tokens, (0, 1))
    heads = nn.ModuleDict({k: nn.Linear(train_tokens.size(-1), n) for k, n in num_classes.items()}).to(train_tokens.device)
    labels = {k: (train_labels[k].reshape(len(train_tokens), -1).long(), val_labels[k].reshape(len(val_tokens), -1).long())
              for k in num_classes}
    _fit(heads, len(train_tokens),
         lambda idx: sum(F.cross_entropy(h(train_tokens[idx]).flatten(0, 1), labels[k][0][idx].flatten()) for k, h in heads.items()),
         epochs, lr, batch_size, seed, train_tokens.device)
    out = {}
    with torch.no_grad():
        for k, head in heads.items():
            pred, truth = head(val_tokens).argmax(-1).flatten(), labels[k][1].flatten()
            out[k] = ((pred == truth).float().mean().item(), mean_iou(pred, truth, num_classes[k]))
    return out


def mean_iou(pred: Tensor, truth: Tensor, num_classes: int) -> float:
    """Intersection over union averaged over the classes present in truth or prediction."""
    ious = []
    for c in range(num_classes):
        union = ((pred == c) | (truth == c)).sum()
        if union:
            ious.append((((pred == c) & (truth == c)).sum() / union).item())
    return sum(ious) / max(1, len(ious))


class MLPHead(nn.Module):
    """Two hidden layers on mean-pooled frozen features, one output per target."""

    def __init__(self, dim: int, outputs: Mapping[str, int], hidden: int = 256):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, n) for k, n in outputs.items()})

    def forward(self, tokens: Tensor) -> dict[str, Tensor]:
        h = self.body(tokens.mean(dim=1))
        return {k: head(h) for k, head in self.heads.items()}


def fit_mlp(
    train_tokens: Tensor,
    train_targets: Mapping[str, Tensor],
    val_tokens: Tensor,
    val_targets: Mapping[str, Tensor],
    num_classes: Mapping[str, int],
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, float]:
    """T-JEPA's downstream protocol: an MLP on frozen features; val accuracy for a target named in
    `num_classes`, RMSE (in the target's own units) for a float one."""
    torch.manual_seed(seed)
    train_tokens, val_tokens = _standardize(train_tokens, val_tokens, (0, 1))
    floats = {k: _float_scaling(train_targets[k], len(train_tokens)) for k in train_targets if k not in num_classes}
    outputs = {k: num_classes.get(k) or floats[k][0].size(-1) for k in train_targets}
    mlp = MLPHead(train_tokens.size(-1), outputs).to(train_tokens.device)

    def loss_of(idx: Tensor) -> Tensor:
        out = mlp(train_tokens[idx])
        return sum(F.cross_entropy(out[k], train_targets[k][idx].long()) if k in num_classes
                   else F.mse_loss(out[k], (train_targets[k][idx].float().reshape(len(idx), -1) - floats[k][0]) / floats[k][1])
                   for k in out)

    _fit(mlp, len(train_tokens), loss_of, epochs, lr, batch_size, seed, train_tokens.device)
    with torch.no_grad():
        out = mlp(val_tokens)
    scores = {}
    for k, pred in out.items():
        truth = val_targets[k]
        if k in num_classes:
            scores[k] = (pred.argmax(-1) == truth).float().mean().item()
        else:
            mean, std = floats[k]
            scores[k] = ((pred * std + mean - truth.float().reshape(len(truth), -1)) ** 2).mean().sqrt().item()
    return scores


def _float_scaling(target: Tensor, n: int) -> tuple[Tensor, Tensor]:
    flat = target.float().reshape(n, -1)
    return flat.mean(dim=0, keepdim=True), flat.std(dim=0, keepdim=True) + 1e-6
