"""The Variant contract: everything the trainer knows about a JEPA method.

A variant is plain PyTorch. It never imports the orchestrator or Ray, so it can be read,
tested and reused alone. The trainer owns devices, DDP, precision, optimizers, budgets,
checkpoints and evaluation; the variant owns networks, masks and the loss.

Multi-stage methods (SALT: teacher then student) list their stages; the trainer runs them
in order, charging each `stage_fraction` of the run's FLOP budget, and hands the modules
of the previous stage to `build` so a later stage can freeze and reuse them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class DataSpec:
    """What a dataset yields, so a variant can size its networks."""

    kind: str  # "video", later "tabular", "bev", "rl", ...
    frames: int = 1
    size: int = 1
    channels: int = 3
    input_key: str = "video"
    num_classes: dict[str, int] = field(default_factory=dict)  # labels for probes
    # Per-sample float input shapes for data that is not a video clip, e.g. {"observation": (24,),
    # "action": (6,)}: the FLOP counter traces `step` on a shape-only batch built from them.
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)


class Variant:
    """Base class with the contract's defaults; subclasses set name, Config and stages."""

    name: ClassVar[str]
    Config: ClassVar[type]
    stages: ClassVar[tuple[str, ...]] = ("main",)
    # Config fields that change how a budget is spent but not what one step computes (SALT's
    # teacher_fraction): the FLOP counter reuses its trace across them.
    budget_keys: ClassVar[tuple[str, ...]] = ()

    # Numbers about parts this run reuses from other runs, logged with its own metrics: e.g. a
    # reused SALT teacher's cost ("teacher_flops", so reports can show costs with and without
    # it) and quality ("teacher/probe_acc").
    inherited: dict[str, float] = {}

    def __init__(self, cfg: Any, data_spec: DataSpec):
        """`cfg` is the whole run config (`cfg.variant` is this variant's Config).

        A variant may narrow `self.stages` here (SALT with a reused teacher has only "student").
        """
        self.cfg = cfg
        self.data_spec = data_spec
        self.generator = torch.Generator().manual_seed(int(cfg.seed))

    def reseed(self, seed: int) -> None:
        """Give each data-parallel rank its own mask stream."""
        self.generator.manual_seed(seed)

    @classmethod
    def validate_config(cls, cfg: Any, fail) -> None:
        """Check cross-key constraints before any trial starts; call fail(key, problem, fix)."""

    # --- the contract -----------------------------------------------------------------
    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        raise NotImplementedError

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        """One forward pass; must return "loss"; other scalars are logged.

        It must also run on the meta device (the FLOP counter traces it there): no `.item()`,
        no shapes that depend on tensor values; draw randomness from `self.generator` on the CPU.
        """
        raise NotImplementedError

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        """Frozen tokens [B, N, D] for probes and policies."""
        raise NotImplementedError

    def after_step(self, modules: nn.ModuleDict, step: int, total_steps: int, stage: str) -> None:
        """Called after each optimizer step (EMA updates go here)."""

    def stage_fraction(self, stage: str) -> float:
        """Share of the run's FLOP/step budget this stage may spend."""
        return 1.0 / len(self.stages)

    def trainable(self, modules: nn.ModuleDict, stage: str) -> list[str]:
        """Names of the modules the optimizer updates in this stage."""
        return [name for name, m in modules.items() if any(p.requires_grad for p in m.parameters())]

    def param_groups(self, modules: nn.ModuleDict, stage: str) -> list[dict]:
        """Weight decay on matrices only (no decay on biases, norms, tokens), as in I-JEPA.

        A group may set `lr_scale` (the scheduled lr is multiplied by it) or `no_weight_decay`.
        """
        decay, no_decay = [], []
        for name in self.trainable(modules, stage):
            for p in modules[name].parameters():
                if p.requires_grad:
                    (decay if p.ndim >= 2 else no_decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0, "no_weight_decay": True}]
