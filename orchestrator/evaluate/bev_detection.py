"""BEV detection and occupancy with a fraction of the labels (AD-L-JEPA's label efficiency, issue 21).

On frozen per-cell tokens [N, G·G, D] (standardised per channel on the labelled scenes), a small conv head
(3×3 conv to 32, GELU, 1×1 conv to one centre heatmap per class plus one occupancy logit) is trained on the
first `fraction` of the train scenes, for each fraction in FRACTIONS (5 / 20 / 100 %), for the same number of
steps (`eval.epochs` passes over the full train split, batches of 32, Adam at `eval.lr`), so a small
fraction is not also a shorter training. Heatmaps: CenterNet's focal loss on Gaussians (σ one cell) at the
object centres; occupancy: class-weighted binary cross-entropy.

Scored on val: `bev_ap_<pct>`, the mean over classes of the average precision of heatmap peaks (3×3 local
maxima), a peak counted a true positive when its centre lies within MATCH_RADIUS (2 m) of an unmatched
ground-truth box of its class (greedy by score); `occ_iou_<pct>`, the IoU of predicted object cells.
Probe-style: the host also scores a random-init encoder (no pretraining) and the raw BEV cells with it.
The paper fine-tunes the whole detector; a frozen encoder keeps the comparison about the pretraining.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.lidar import CLASSES
from orchestrator.evaluate.base import Evaluation, Features

FRACTIONS = (0.05, 0.2, 1.0)
MATCH_RADIUS = 2.0  # metres
BATCH = 32
MAX_PEAKS = 32  # per class per scene


def centre_heatmaps(boxes: Tensor, size: int, cell: float, sigma: float = 1.0) -> Tensor:
    """[N, classes, G, G]: per class the max over its boxes of a Gaussian (σ in cells) peaking at 1 in the centre's cell."""
    n = len(boxes)
    half = size * cell / 2
    out = torch.zeros(n, len(CLASSES), size, size)
    grid = torch.arange(size, dtype=torch.float32)
    for i in range(n):
        for box in boxes[i]:
            k = int(box[0])
            if k < 0:
                continue
            r, c = int((box[1] + half) // cell), int((box[2] + half) // cell)
            if not (0 <= r < size and 0 <= c < size):
                continue
            g = torch.exp(-((grid[:, None] - r) ** 2 + (grid[None, :] - c) ** 2) / (2 * sigma**2))
            out[i, k] = torch.maximum(out[i, k], g)
    return out


def focal_loss(logits: Tensor, heat: Tensor) -> Tensor:
    """CenterNet's penalty-reduced focal loss, per positive cell."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat >= 1.0 - 1e-6
    pos_loss = -(torch.log(p) * (1 - p) ** 2)[pos].sum()
    neg_loss = -(torch.log(1 - p) * p**2 * (1 - heat) ** 4)[~pos].sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1)


def peaks(heat: Tensor, size: int, cell: float, floor: float = 0.01) -> list[np.ndarray]:
    """Per scene, detections [K, 4] (class, x, y, score): 3×3 local maxima of each class's heatmap above `floor`."""
    half = size * cell / 2
    local = heat == F.max_pool2d(heat, 3, stride=1, padding=1)
    out = []
    for i in range(len(heat)):
        rows = []
        for k in range(heat.shape[1]):
            score = torch.where(local[i, k] & (heat[i, k] > floor), heat[i, k], torch.zeros(()))
            top = torch.topk(score.flatten(), min(MAX_PEAKS, score.numel()))
            for s, idx in zip(top.values.tolist(), top.indices.tolist()):
                if s > 0:
                    r, c = divmod(idx, size)
                    rows.append([k, (r + 0.5) * cell - half, (c + 0.5) * cell - half, s])
        out.append(np.array(rows, dtype=np.float64).reshape(-1, 4))
    return out


def average_precision(detections: list[np.ndarray], boxes: np.ndarray, radius: float = MATCH_RADIUS) -> dict[int, float]:
    """Per class with ground truth: the all-point interpolated AP, a detection (class, x, y, score) in scene i a
    true positive when within `radius` m of an unmatched box of its class in boxes[i] ([MAX, 8], class −1 unused)."""
    out = {}
    for k in range(len(CLASSES)):
        truth = [b[b[:, 0] == k, 1:3] for b in boxes]
        total = sum(len(t) for t in truth)
        if total == 0:
            continue
        found = [(d[3], i, d[1], d[2]) for i, ds in enumerate(detections) for d in ds if int(d[0]) == k]
        found.sort(key=lambda row: -row[0])
        used = [np.zeros(len(t), bool) for t in truth]
        hits = np.zeros(len(found))
        for j, (_, i, x, y) in enumerate(found):
            if len(truth[i]) == 0:
                continue
            dist = np.hypot(truth[i][:, 0] - x, truth[i][:, 1] - y)
            dist[used[i]] = np.inf
            best = int(dist.argmin())
            if dist[best] <= radius:
                used[i][best] = True
                hits[j] = 1
        tp = np.cumsum(hits)
        recall = np.concatenate([[0.0], tp / total, [tp[-1] / total if len(tp) else 0.0]])
        precision = np.concatenate([[1.0], tp / np.arange(1, len(hits) + 1), [0.0]])
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        out[k] = float(np.sum(np.diff(recall) * precision[1:]))
    return out


def occupancy_iou(pred: Tensor, truth: Tensor) -> float:
    inter = (pred & truth).sum().item()
    union = (pred | truth).sum().item()
    return inter / union if union else 1.0


def head(dim: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(dim, 32, 3, padding=1), nn.GELU(), nn.Conv2d(32, len(CLASSES) + 1, 1))


def as_maps(tokens: Tensor, size: int) -> Tensor:
    """[N, G·G, D] -> [N, D, G, G]."""
    if tokens.shape[1] != size * size:
        raise ValueError(f"bev_detection needs one token per BEV cell ({size}×{size}), got {tokens.shape[1]} tokens. "
                         "Fix: use a stride-1 encoder (model.strides=[1,1,1])")
    return tokens.transpose(1, 2).reshape(len(tokens), -1, size, size).float()


def fit_and_score(train_x: Tensor, train_heat: Tensor, train_occ: Tensor, val_x: Tensor, val_boxes: Tensor,
                  val_occ: Tensor, n: int, steps: int, lr: float, seed: int, size: int, cell: float) -> tuple[float, float]:
    """The head trained on the first `n` train scenes for `steps` steps; (mean AP, occupancy IoU) on val."""
    gen = torch.Generator().manual_seed(seed)
    x, heat, occ = train_x[:n], train_heat[:n], train_occ[:n].float()
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True).clamp(min=1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = head(x.shape[1])
    pos = occ.mean().clamp(min=1e-4)
    pos_weight = torch.sqrt((1 - pos) / pos).clamp(max=20.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        pick = torch.randint(0, n, (min(BATCH, n),), generator=gen)
        out = net((x[pick] - mean) / std)
        loss = focal_loss(out[:, :-1], heat[pick]) + F.binary_cross_entropy_with_logits(out[:, -1], occ[pick], pos_weight=pos_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = torch.cat([net((val_x[i:i + 64] - mean) / std) for i in range(0, len(val_x), 64)])
    ap = average_precision(peaks(torch.sigmoid(out[:, :-1]), size, cell), val_boxes.numpy())
    return (float(np.mean(list(ap.values()))) if ap else float("nan")), occupancy_iou(out[:, -1] > 0, val_occ.bool())


class BEVDetection(Evaluation):
    name = "bev_detection"

    def chosen_for(self, spec, host: str) -> bool:
        return spec.kind == "bev"

    def targets(self, spec) -> list[str]:
        return ["boxes", "occupancy"]

    def score(self, train: Features, val: Features, spec, cfg) -> dict[str, float]:
        size, cell = int(spec.size), float(cfg.data.cell)
        train_x, val_x = as_maps(train.tokens, size), as_maps(val.tokens, size)
        heat = centre_heatmaps(train.targets["boxes"].float(), size, cell)
        train_occ = train.targets["occupancy"].reshape(-1, size, size)
        val_occ = val.targets["occupancy"].reshape(-1, size, size)
        steps = max(1, int(cfg.eval.epochs) * math.ceil(len(train_x) / BATCH))
        out = {}
        with torch.enable_grad():
            for fraction in FRACTIONS:
                n = max(1, round(fraction * len(train_x)))
                ap, iou = fit_and_score(train_x, heat, train_occ, val_x, val.targets["boxes"].float(), val_occ, n, steps,
                                        float(cfg.eval.lr), int(cfg.seed), size, cell)
                pct = round(100 * fraction)
                out[f"bev_ap_{pct}"], out[f"occ_iou_{pct}"] = ap, iou
        return out
