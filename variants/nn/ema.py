"""EMA target networks with I-JEPA's linear momentum schedule, and its start sized to the run."""
from __future__ import annotations

import copy
import functools
import math

import numpy as np
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


def _log_momenta(steps: int, total_steps: int, start: float, end: float) -> np.ndarray:
    """log m(s) for s = 1..steps under `momentum_at`, from 1 - m so momenta near 1 keep their digits."""
    frac = np.minimum(1.0, np.arange(1, steps + 1, dtype=np.float64) / max(1, total_steps))
    return np.log1p(-((1.0 - start) * (1.0 - frac) + (1.0 - end) * frac))


def initial_weight_share(step: int, total_steps: int, start: float, end: float = 1.0) -> float:
    """Share of the target's initial weights still in it after `step` updates: the product of momenta 1..step."""
    if step < 1:
        return 1.0
    return float(np.exp(_log_momenta(step, total_steps, start, end).sum()))


@functools.lru_cache(maxsize=64)
def ema_start_for_half_life(total_steps: int, half_life_frac: float, end: float = 1.0) -> float:
    """The start momentum whose ramp to `end` halves the target's initial weights after
    round(half_life_frac · total_steps) steps: the EMA then forgets its random init at the same
    pace whatever the run's length (a fixed 0.998 keeps 77 % of it after 256 steps)."""
    steps = max(1, round(half_life_frac * total_steps))
    half = math.log(0.5)

    def excess(start: float) -> float:
        return float(_log_momenta(steps, total_steps, start, end).sum()) - half

    low, high = 0.0, math.nextafter(1.0, 0.0)
    if excess(low) > 0 or excess(high) < 0:
        raise ValueError(f"no start momentum in [0, 1) halves the initial weights after {steps} of {total_steps} "
                         f"steps with end momentum {end}")
    # imported here, not at module import: the GPU bench machine has torch but no scipy
    from scipy.optimize import brentq

    return float(brentq(excess, low, high, xtol=1e-15, rtol=4 * np.finfo(float).eps))


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target = m * target + (1 - m) * online, fused over all tensors."""
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - momentum)
