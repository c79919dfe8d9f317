"""Optimisers and schedules from `cfg.optim`, shared by every host (the self-supervised loop and
the RLlib learner), so `optim.name`/`optim.schedule` mean the same wherever a variant trains.

The variant chooses the groups (`param_groups`); a group's `lr_scale` multiplies the scheduled lr
and `no_weight_decay` keeps it out of the weight-decay schedule.
"""
from __future__ import annotations

import math

import torch
from torch import nn

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant", "linear")


def _decay(schedule: str, progress: float) -> float:
    """1 -> 0 over progress 0 -> 1: the shape of the schedule after warm-up."""
    progress = min(1.0, max(0.0, progress))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    return 1.0  # constant


def lr_at(cfg, step: int, total: int) -> float:
    """Linear warm-up over warmup_frac of the steps, then the schedule down to min_lr_frac·lr."""
    o = cfg.optim
    warmup = max(1, int(o.warmup_frac * total))  # (1 step of warm-up is lr itself: none)
    if step < warmup:
        return o.lr * (step + 1) / warmup
    floor = o.lr * o.min_lr_frac
    return floor + (o.lr - floor) * _decay(o.schedule, (step - warmup) / max(1, total - warmup))


def weight_decay_at(cfg, step: int, total: int) -> float:
    """weight_decay -> final_weight_decay along the same schedule (a cosine ramp as in I-JEPA)."""
    o = cfg.optim
    return o.final_weight_decay + (o.weight_decay - o.final_weight_decay) * _decay(o.schedule, step / max(1, total))


def optimizer_for_groups(groups: list[dict], cfg) -> torch.optim.Optimizer:
    """The configured optimiser over ready parameter groups (each with its `lr_scale`)."""
    groups = [dict(g) for g in groups if g["params"]]
    for group in groups:
        group.setdefault("lr_scale", 1.0)
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    kind = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return kind(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


def make_optimizer(variant, modules: nn.ModuleDict, stage: str, cfg) -> torch.optim.Optimizer:
    """The configured optimiser over the variant's parameter groups for this stage."""
    return optimizer_for_groups(variant.param_groups(modules, stage), cfg)


def set_schedules(optimizer: torch.optim.Optimizer, cfg, step: int, total: int) -> float:
    """Set each group's lr and weight decay for `step` of `total`; returns the base lr."""
    lr, wd = lr_at(cfg, step, total), weight_decay_at(cfg, step, total)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        if not group.get("no_weight_decay"):
            group["weight_decay"] = wd
    return lr
