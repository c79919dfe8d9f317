"""An EMA target encoder, as V-JEPA, I-JEPA, T-JEPA and AD-L-JEPA keep one: its momentum schedule sized
to the run, its update after each step, and the instruments that show whether it ever left its init.

Its config keys (in each variant's Config): `ema_start` (0 = derived from `ema_half_life`, the share of
the run's steps after which the target keeps half its initial weights), `ema_end`, and `probe_encoder`
(which encoder the probes read). A paper's start momentum, chosen for ~100k-step runs, keeps a short
run's target at its random init (docs/results/learning_signal.md).
"""
from __future__ import annotations

import weakref

import torch
from torch import Tensor, nn

from variants.nn.ema import (
    ema_start_for_half_life,
    ema_update,
    frozen_copy,
    initial_weight_share,
    momentum_at,
)

PROBE_ENCODERS = {"target": "target_encoder", "online": "encoder"}  # variant.probe_encoder -> module key
# `both`: the probes read the target (metrics as usual) and the online encoder too (`online/<metric>`).
PROBE_CHOICES = (*PROBE_ENCODERS, "both")


def flat_weights(module: nn.Module) -> Tensor:
    """All of a module's parameters as one detached vector."""
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def check_ema_config(v, fail, paper_start: float | None = None) -> None:
    """The EMA keys of `variant` (`v`), each wrong value a config error naming its key."""
    if v.ema_start == 0 and not 0.0 < v.ema_half_life < 1.0:
        fail("variant.ema_half_life", f"is {v.ema_half_life}", "use a share of the run's steps strictly between 0 and 1, e.g. 0.1")
    if not 0.0 < v.ema_end <= 1.0:
        fail("variant.ema_end", f"is {v.ema_end}", "use a momentum in (0, 1]; the papers end at 1.0")
    if v.ema_start == 0 and v.ema_end != 1.0:
        # a ramp towards an end below 1 forgets the init faster the longer the run: no start gives a fixed half-life
        fail("variant.ema_end", f"is {v.ema_end} with a start derived from variant.ema_half_life",
             "keep variant.ema_end=1.0, or set variant.ema_start explicitly (e.g. 0.996)")
    if v.ema_start != 0 and not 0.0 < v.ema_start < 1.0:
        paper = f" (the paper's is {paper_start})" if paper_start else ""
        fail("variant.ema_start", f"is {v.ema_start}", f"use a momentum strictly between 0 and 1{paper}, "
             "or 0 to derive it from variant.ema_half_life")
    if v.probe_encoder not in PROBE_CHOICES:
        fail("variant.probe_encoder", f"is {v.probe_encoder!r}", f"use one of {', '.join(PROBE_CHOICES)}")


class EMATarget:
    """Mixin for a Variant (listed before `Variant`) whose modules hold `encoder` and `target_encoder`.

    Build the target with `make_target(encoder)`; the EMA's bookkeeping starts in `__init__`."""

    cfg: object

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_ema()

    def init_ema(self) -> None:
        self.ema_progress = (0, 1)  # (last step, total steps) after_step saw, for diagnostics
        # The target's weights as built, per target module (a fresh baseline copy does not clobber them).
        self.initial_target: weakref.WeakKeyDictionary[nn.Module, Tensor] = weakref.WeakKeyDictionary()

    def ema_start(self, total_steps: int) -> float:
        """The configured start momentum, or the one that gives the configured half-life over `total_steps`."""
        v = self.cfg.variant
        if float(v.ema_start):
            return float(v.ema_start)
        return ema_start_for_half_life(int(total_steps), float(v.ema_half_life), float(v.ema_end))

    def make_target(self, encoder: nn.Module) -> nn.Module:
        """A frozen copy of `encoder`, remembered as built so `ema_drift` can measure from it."""
        target = frozen_copy(encoder)
        self.initial_target[target] = flat_weights(target).clone()
        return target

    def momentum(self, step: int, total_steps: int) -> float:
        """The EMA momentum after `step` of `total_steps` (a linear ramp from `ema_start` to `ema_end`)."""
        return momentum_at(step, total_steps, self.ema_start(total_steps), float(self.cfg.variant.ema_end))

    def after_step(self, modules: nn.ModuleDict, step: int, total_steps: int, stage: str) -> None:
        self.ema_progress = (step, total_steps)
        ema_update(modules["target_encoder"], modules["encoder"], self.momentum(step, total_steps))

    @torch.no_grad()
    def diagnostics(self, modules: nn.ModuleDict, stage: str) -> dict[str, float]:
        """The EMA's last momentum, the share of its initial weights the target still holds, and how far
        (relative L2) the target has moved from them: a target that never left its init teaches nothing."""
        step, total = self.ema_progress
        start, end = self.ema_start(total), float(self.cfg.variant.ema_end)
        out = {"ema_momentum": self.momentum(step, total), "ema_init_share": initial_weight_share(step, total, start, end)}
        target = modules["target_encoder"]
        initial = self.initial_target.get(target)
        if initial is not None:
            initial = self.initial_target[target] = initial.to(next(target.parameters()).device)  # moved once
            out["ema_drift"] = float(torch.linalg.vector_norm(flat_weights(target) - initial) / torch.linalg.vector_norm(initial))
        return out

    def probed_encoder(self, modules: nn.ModuleDict) -> nn.Module:
        """The encoder `variant.probe_encoder` names: the EMA target (the papers'; also for `both`) or the online one."""
        which = str(self.cfg.variant.probe_encoder)
        return modules[PROBE_ENCODERS["target" if which == "both" else which]]

    def extra_features(self, modules: nn.ModuleDict) -> dict:
        """With `variant.probe_encoder=both`, the online encoder as a second view (`online/probe_acc`, ...)."""
        if str(self.cfg.variant.probe_encoder) != "both":
            return {}
        return {"online": lambda batch: self.features({**modules, "target_encoder": modules["encoder"]}, batch)}
