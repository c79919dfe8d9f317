"""Collapse detector: how many directions the frozen features use (`feature_rank`), how much they vary
(`feature_var`), and `feature_collapsed` = 1.0 when the rank falls below `eval.collapse_rank_frac` of
their width (or of their row count, if smaller). Probe-style, so the random-init and raw-input baselines get the same numbers to compare.

A collapsed encoder (one that maps every clip to about the same tokens) can still drive a JEPA loss
down; its probes then sit at chance and nothing else in the log says why.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from orchestrator.evaluate.base import Evaluation, Features

MAX_ROWS = 4096  # token rows the SVD sees: enough for a rank in the hundreds, milliseconds on a CPU
NOISE = 1e-5  # singular values below this share of the features' norm are float round-off, not directions


def centred_rows(tokens: Tensor, seed: int, max_rows: int = MAX_ROWS) -> tuple[Tensor, float]:
    """Tokens [N, L, D], each position centred over the clips, as at most `max_rows` rows [n, D] drawn with a
    seeded generator; and the norm of those rows before centring (the scale round-off is measured against).

    Centring per position means features that vary only with position (an encoder that ignores its input
    but keeps its position embeddings) count as collapsed."""
    tokens = tokens.double().cpu()
    rows = tokens.reshape(-1, tokens.shape[-1])
    pick = None
    if len(rows) > max_rows:
        pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(int(seed)))[:max_rows]
    scale = float(torch.linalg.matrix_norm(rows if pick is None else rows[pick]))
    if len(tokens) > 1:
        rows = (tokens - tokens.mean(0, keepdim=True)).reshape(-1, tokens.shape[-1])
    return (rows if pick is None else rows[pick]), scale


def effective_rank(rows: Tensor, scale: float | None = None) -> float:
    """exp of the entropy of the normalised singular values of the centred rows (Roy & Vetterli, 2007);
    0 for features that do not vary. Singular values below NOISE × `scale` (default: the rows' norm) are
    round-off, not directions."""
    floor = NOISE * (float(torch.linalg.matrix_norm(rows)) if scale is None else scale)
    sigma = torch.linalg.svdvals(rows - rows.mean(0))
    sigma = sigma[sigma > floor]
    if len(sigma) == 0:
        return 0.0
    p = sigma / sigma.sum()
    return math.exp(float(-(p * p.log()).sum()))


def total_variance(rows: Tensor) -> float:
    """Trace of the rows' covariance."""
    return float(rows.var(0, correction=1 if len(rows) > 1 else 0).sum())


class FeatureStats(Evaluation):
    name = "feature_stats"

    def chosen_for(self, spec, host: str) -> bool:
        """Every self-supervised run that is probed on class or float targets (moving shapes, clips, views)."""
        return host == "ssl" and bool(spec.num_classes or spec.float_targets)

    def score(self, train: Features, val: Features, spec, cfg) -> dict[str, float]:
        rows, scale = centred_rows(val.tokens, cfg.seed)
        rank = effective_rank(rows, scale)
        return {"feature_rank": rank, "feature_var": total_variance(rows),
                # the rank cannot exceed the rows either (a small table's val split flattened to wide features)
                "feature_collapsed": float(rank < float(cfg.eval.collapse_rank_frac) * min(rows.shape))}


def collapse_warning(metrics: dict, cfg, run_id: str, stage: str) -> str | None:
    """The log line for an evaluation that found collapsed features, else None."""
    if metrics.get("feature_collapsed") != 1.0:
        return None
    threshold = float(cfg.eval.collapse_rank_frac)
    return (f"warning: run {run_id!r} stage {stage!r} at step {metrics.get('step')}: features collapsed (effective rank "
            f"{metrics['feature_rank']:.2f} < eval.collapse_rank_frac {threshold} x feature width). "
            f"Fix: lower optim.lr (now {cfg.optim.lr}) or set optim.grad_clip (now {cfg.optim.grad_clip}, e.g. 1.0)")
