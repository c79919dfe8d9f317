"""FLOPs accounting: every run is charged in measured FLOPs so any two runs compare.

One training step is traced with `torch.utils.flop_counter.FlopCounterMode` on the meta
device (no memory, no compute, milliseconds even for ViT-H), forward and backward of what
trains and forward of what is frozen; the trainer multiplies by steps and workers.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from variants.base import DataSpec, Variant


class BudgetError(ValueError):
    pass


def meta_batch(spec: DataSpec, batch_size: int) -> dict[str, torch.Tensor]:
    """A shape-only batch like the dataset's, for tracing: `spec.inputs` if given, else a video clip."""
    if spec.inputs:
        batch = {name: torch.empty(batch_size, *shape, device="meta") for name, shape in spec.inputs.items()}
    elif spec.kind == "video":
        batch = {spec.input_key: torch.empty(batch_size, spec.channels, spec.frames, spec.size, spec.size, device="meta")}
    else:
        raise NotImplementedError(f"data kind {spec.kind!r}: give its DataSpec `inputs` (name -> per-sample shape)")
    for label in spec.num_classes:
        batch[label] = torch.zeros(batch_size, dtype=torch.long, device="meta")
    return batch


FLOP_TRACES = 8  # masks vary per step; the charge is the mean over this many traced draws


def measure_step_flops(
    variant_cls: type[Variant], cfg, spec: DataSpec, stage: str, batch_size: int, previous: nn.ModuleDict | None = None
) -> float:
    """Mean FLOPs of one optimizer step on one worker (fwd+bwd of trainable, fwd of frozen).

    Averaged over fixed mask draws, so the charge neither depends on `seed` nor on one lucky draw.
    Cached per architecture: a sweep's corners differ mostly in budget and seed.
    """
    key = (variant_cls.name, _architecture_key(cfg, variant_cls), repr(spec), stage, batch_size)
    if key not in _STEP_FLOPS:
        _STEP_FLOPS[key] = _trace_step_flops(variant_cls, cfg, spec, stage, batch_size, previous)
    return _STEP_FLOPS[key]


_STEP_FLOPS: dict[tuple, float] = {}
NOT_ARCHITECTURE = ("budget", "seed", "sweep", "storage", "name", "eval", "optim")


def traced_step_flops() -> list[tuple[tuple, float]]:
    """This process's traces, to ship to trials and workers so they never trace again."""
    return list(_STEP_FLOPS.items())


def reuse_step_flops(items) -> None:
    _STEP_FLOPS.update((tuple(key), value) for key, value in items)


def _architecture_key(cfg, variant_cls: type[Variant]) -> str:
    """The config minus what cannot change a step's compute (budgets, seeds, a variant's `budget_keys`).
    The data's own seed (which split, which draw) goes too: the key carries the DataSpec's shapes instead."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    kept = {k: v for k, v in plain.items() if k not in NOT_ARCHITECTURE}
    kept["data"] = {k: v for k, v in (kept.get("data") or {}).items() if k != "seed"}
    kept["variant"] = {k: v for k, v in kept.get("variant", {}).items() if k not in variant_cls.budget_keys}
    return json.dumps(kept, sort_keys=True, default=str)


def _trace_step_flops(
    variant_cls: type[Variant], cfg, spec: DataSpec, stage: str, batch_size: int, previous: nn.ModuleDict | None
) -> float:
    variant = variant_cls(cfg, spec)  # own instance: tracing must not advance the training mask stream
    meta_previous = copy.deepcopy(previous).to("meta") if previous is not None else None
    with torch.device("meta"):
        modules = variant.build(stage, meta_previous)
    batch = meta_batch(spec, batch_size)
    total = 0.0
    for draw in range(FLOP_TRACES):
        variant.reseed(draw)
        with FlopCounterMode(display=False) as counter:
            out = variant.step(modules, batch, stage)
            out["loss"].backward()
        total += counter.get_total_flops()
    return total / FLOP_TRACES


@dataclass(frozen=True)
class StagePlan:
    stage: str
    flops_per_step: float  # all workers together
    steps: int

    @property
    def flops(self) -> float:
        return self.flops_per_step * self.steps


def plan_stage(stage: str, flops_per_step: float, fraction: float, budget_flops: float | None, budget_steps: int | None) -> StagePlan:
    """Steps this stage may take: its share of the FLOP budget, capped by the step budget."""
    candidates = []
    if budget_flops is not None:
        share = budget_flops * fraction
        if share < flops_per_step:
            raise BudgetError(
                f"budget.flops={budget_flops:.3g} gives stage {stage!r} {share:.3g} FLOPs, less than one step "
                f"({flops_per_step:.3g} FLOPs). Fix: raise budget.flops to at least {flops_per_step / fraction:.3g}, "
                "or shrink train.batch_size / the model"
            )
        candidates.append(int(share // flops_per_step))
    if budget_steps is not None:
        candidates.append(max(1, math.floor(budget_steps * fraction)))
    return StagePlan(stage, flops_per_step, min(candidates))


def selected_stages(variant: Variant, cfg) -> list[str]:
    """The variant's stages, narrowed by `train.stages` (e.g. [teacher] trains only a SALT teacher)."""
    wanted = list(cfg.train.get("stages") or [])
    unknown = [s for s in wanted if s not in variant.stages]
    if unknown:
        raise BudgetError(
            f"train.stages names {unknown}, but variant {cfg.variant.name!r} has stages {list(variant.stages)}. "
            "Fix: list only those, or leave train.stages empty for all"
        )
    return [s for s in variant.stages if not wanted or s in wanted]


def plan_run(variant_cls: type[Variant], cfg, spec: DataSpec, variant: Variant | None = None) -> list[StagePlan]:
    """Plan every stage of a run before it starts (also how budgets are validated).

    Stage shares of the budget are renormalised over the stages that run. Pass the run's `variant`
    when it is already built (a run builds its variant once); else one is built here.
    """
    world = int(cfg.train.num_workers)
    if variant_cls.host == "rllib_algorithm":  # RLlib's own algorithms: FLOPs measured as they run
        if cfg.budget.steps is None:
            raise BudgetError(f"variant {variant_cls.name!r} is budgeted in updates. Fix: set budget.steps")
        return [StagePlan("main", math.nan, int(cfg.budget.steps))]
    variant = variant if variant is not None else variant_cls(cfg, spec)
    stages = selected_stages(variant, cfg)
    total_share = sum(variant.stage_fraction(s) for s in stages)
    plans, previous = [], None
    for stage in stages:
        per_worker = measure_step_flops(variant_cls, cfg, spec, stage, int(cfg.train.batch_size), previous)
        share = variant.stage_fraction(stage) / total_share
        plans.append(plan_stage(stage, per_worker * world, share, cfg.budget.flops, cfg.budget.steps))
        with torch.device("meta"):
            previous = variant.build(stage, previous)
    return plans


def measure_bf16_peak(device: torch.device, n: int = 8192, iters: int = 20) -> float:
    """Achieved bf16 matmul FLOP/s on this accelerator: the denominator of MFU."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * n**3 * iters / (time.perf_counter() - start)
