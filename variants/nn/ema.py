"""EMA target networks with I-JEPA's linear momentum schedule."""
from __future__ import annotations

import copy

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy that never receives gradients (the EMA target starts equal to the online net)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def momentum_at(step: int, total_steps: int, start: float = 0.996, end: float = 1.0) -> float:
    """Linear ramp start -> end over the run."""
    frac = min(1.0, step / max(1, total_steps))
    return start + (end - start) * frac


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target = m * target + (1 - m) * online, fused over all tensors."""
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - momentum)
