"""linear-JEPA: the implicit bias of deep linear self-distillation (Littwin et al., arXiv 2407.03475).

A deep linear encoder W̄ = W_L…W_1 (square, as wide as the data has features) and a linear predictor V,
trained by plain gradient descent on one of two objectives:

    jepa:  ½ E‖V W̄ x − sg(W̄ y)‖²   (predict the other view's encoding; the target is the same encoder, no grad)
    mae:   ½ E‖V W̄ x − y‖²         (reconstruct the other view itself; V is a decoder)

Balanced small initialisation: every layer and the predictor start at ε^(1/L) times orthogonal matrices that
cancel in the product, so W̄ starts as ε times a rotation and V W̄ as ε^((L+1)/L) times the identity. On views
with diagonal second moments each feature then evolves alone, as variants/linear_ode.py integrates; the
encoder's projection of feature i, w_i = ‖W̄ e_i‖, is logged as a fraction of its fixed point. JEPA learns
features in order of ρ (regression coefficient) once the encoder is deep; MAE in order of λ (covariance).

What a run logs: `frac/<i>` (w_i over its fixed point) at every log step, `t_half/<i>` (time, lr × steps, at
which w_i first reached half its fixed point, interpolated between steps), `learned` (how many have), and
`order_tau_lambda` / `order_tau_rho` (Kendall's τ between how early features were learned and their λ, ρ).
Artifacts: `projection` (w at the step) every log step, and at the last step `trajectory` (log-spaced rows
[step, w_1…w_n] over the whole run, so a fast MAE transition and a slow deep-JEPA one are both resolved).

The nets are this variant's own; like TD-JEPA and FB it reads no `model.*` key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from variants.base import Variant
from variants.linear_ode import (
    HALF,
    OBJECTIVES,
    fixed_point,
    gd_diverges,
    learning_order,
    stable_lr,
)

DIVERGENCE_HORIZON = 5_000  # steps of exact per-feature GD that validation simulates (a bad ε or lr shows early)


@dataclass
class LinearJEPAConfig:
    name: str = "linear_jepa"
    objective: str = "jepa"  # jepa | mae
    depth: int = 3  # L, encoder layers
    init_scale: float = 1e-2  # ε: the encoder's projection of every feature at the start
    history: int = 256  # rows of the log-spaced trajectory kept over the run


class DeepLinear(nn.Module):
    """x ↦ W_L…W_1 x on rows (x @ W_1ᵀ @ … @ W_Lᵀ)."""

    def __init__(self, weights: list[Tensor]):
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(w) for w in weights])

    def forward(self, x: Tensor) -> Tensor:
        for w in self.weights:
            x = x @ w.T
        return x


class Linear(nn.Module):
    """x ↦ V x on rows, without bias."""

    def __init__(self, weight: Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.T


class History(nn.Module):
    """What the run has seen so far, as buffers (so a resumed run keeps them): log-spaced rows of
    [step, w_1…w_n], each feature's half-time (NaN until reached), and w after the latest step."""

    def __init__(self, rows: int, features: int, scale: float):
        super().__init__()
        self.register_buffer("rows", torch.full((rows, features + 1), float("nan"), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("t_half", torch.full((features,), float("nan"), dtype=torch.float64))
        self.register_buffer("current", torch.full((features,), float(scale), dtype=torch.float64))


def balanced_init(features: int, depth: int, scale: float, objective: str, seed: int) -> tuple[list[Tensor], Tensor]:
    """Layers s·Q_1, s·Q_2 Q_1ᵀ, …, s·Q_L Q_{L−1}ᵀ with s = ε^(1/L), so W̄ = ε Q_L; the predictor s·I (JEPA: it maps
    the encoding to the target's encoding) or s·Q_Lᵀ (MAE: back to the data). Float64 orthogonal factors."""
    generator = torch.Generator().manual_seed(int(seed))
    qs = [torch.linalg.qr(torch.randn(features, features, generator=generator, dtype=torch.float64, device="cpu"))[0] for _ in range(depth)]
    s = scale ** (1.0 / depth)
    layers = [s * qs[0]] + [s * qs[k] @ qs[k - 1].T for k in range(1, depth)]
    predictor = s * (torch.eye(features, dtype=torch.float64, device="cpu") if objective == "jepa" else qs[-1].T)
    return [w.float() for w in layers], predictor.float()


def record_step(step: int, total: int, rows: int) -> bool:
    """Whether `step` (1..total) starts a new one of `rows − 2` log-spaced buckets, or is the last step:
    at most `rows − 1` recorded steps, dense early (where MAE moves) and sparse late."""
    if step >= total or step <= 1:
        return True
    buckets = rows - 2
    scale = buckets / math.log(total)
    return math.floor(scale * math.log(step)) > math.floor(scale * math.log(step - 1))


class LinearJEPA(Variant):
    name = "linear_jepa"
    host = "ssl"
    Config = LinearJEPAConfig
    model_families = ("vit", "mlp")  # reads neither: accepts the default node and `model=mlp`
    # Plain gradient descent at a constant lr: the setting the ODE describes (time = lr × steps).
    optim_defaults: ClassVar[dict[str, Any]] = {"name": "sgd", "lr": 0.05, "schedule": "constant", "warmup_frac": 0.0,
                                                "weight_decay": 0.0, "final_weight_decay": 0.0, "grad_clip": 0.0}

    def __init__(self, cfg, data_spec):
        super().__init__(cfg, data_spec)
        v = cfg.variant
        self.objective, self.depth, self.scale = str(v.objective), int(v.depth), float(v.init_scale)
        self.lambdas = np.asarray(cfg.data.lambdas, dtype=float)
        self.rhos = np.asarray(cfg.data.rhos, dtype=float)
        self.targets = fixed_point(self.objective, self.rhos, self.depth)
        self.lr = float(cfg.optim.lr)
        self.done = 0  # optimizer steps finished (after_step's count), to know which step is the last
        self.total = 0

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        v = cfg.variant
        if v.objective not in OBJECTIVES:
            fail("variant.objective", f"is {v.objective!r}", f"use one of {', '.join(OBJECTIVES)}")
        if v.depth < 1:
            fail("variant.depth", f"is {v.depth}", "use at least 1 encoder layer (the paper's effect needs 3 or more)")
        if not (math.isfinite(v.init_scale) and v.init_scale > 0):
            fail("variant.init_scale", f"is {v.init_scale}", "use a small positive scale such as 1e-2 (the paper: 1e-2 to 1e-3)")
        if v.history < 2:
            fail("variant.history", f"is {v.history}", "keep at least 2 trajectory rows, e.g. 256")
        lambdas, rhos = cfg.data.get("lambdas"), cfg.data.get("rhos")
        if lambdas is None or rhos is None:
            fail("data", f"is {cfg.data.name!r}, which sets no per-feature λ and ρ",
                 "use data=linear_features (or linear_vary_lambda, linear_vary_rho, linear_inverted)")
        for key, values in (("data.lambdas", lambdas), ("data.rhos", rhos)):
            bad = [x for x in values if not (math.isfinite(x) and x > 0)]
            if bad or not values:
                fail(key, f"holds {bad[0]}" if bad else "is empty", "use positive numbers, one per feature")
        if len(lambdas) != len(rhos):
            fail("data.rhos", f"has {len(rhos)} values for {len(lambdas)} in data.lambdas", "give one ρ per λ")
        check_convergence(cfg, fail)

    # --- networks ---------------------------------------------------------------------
    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        features = len(self.lambdas)
        layers, predictor = balanced_init(features, self.depth, self.scale, self.objective, int(self.cfg.seed))
        encoder = DeepLinear([torch.empty(w.shape) for w in layers])  # on the caller's device (meta when traced)
        head = Linear(torch.empty(predictor.shape))
        with torch.no_grad():  # copied in, so a build on the meta device (FLOP tracing) needs no random draw there
            for param, value in zip(encoder.weights, layers):
                param.copy_(value)
            head.weight.copy_(predictor)
        return nn.ModuleDict({"encoder": encoder, "predictor": head, "history": History(int(self.cfg.variant.history), features, self.scale)})

    # --- one step ---------------------------------------------------------------------
    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        x, y = batch["x"], batch["y"]
        encoder = modules["encoder"]
        pred = modules["predictor"](encoder(x))
        if self.objective == "jepa":
            with torch.no_grad():
                target = encoder(y)  # sg(W̄ y): the online encoder itself, no EMA
        else:
            target = y
        loss = 0.5 * (pred - target).pow(2).sum(-1).mean()
        # The history's buffers, which after_step fills in place before the host reads a step's artifacts:
        # w after this step's update, and (at the last step) every recorded row including this one.
        history = modules["history"]
        artifacts = {"projection": history.current}
        if self.total and self.done + 1 >= self.total:
            artifacts["trajectory"] = history.rows
        return {"loss": loss, "artifacts": artifacts}

    def after_step(self, modules: nn.ModuleDict, step: int, total_steps: int, stage: str) -> None:
        """Track every feature's projection: its half-time (interpolated between steps) and the log-spaced rows."""
        self.done, self.total = step, total_steps
        history = modules["history"]
        with torch.no_grad():
            w = self.projections(modules).double().cpu().numpy()
            before = history.current.cpu().numpy()
            if step == 1:  # the start, before any update: w = ε
                self._append(history, 0, before)
            t_half = history.t_half.cpu().numpy()
            target = HALF * self.targets
            crossed = np.isnan(t_half) & (w >= target)
            if crossed.any():
                share = np.clip((target - before) / np.maximum(w - before, 1e-300), 0.0, 1.0)
                history.t_half.copy_(torch.from_numpy(np.where(crossed, (step - 1 + share) * self.lr, t_half)))
            history.current.copy_(torch.from_numpy(w))
            if record_step(step, total_steps, history.rows.shape[0]):
                self._append(history, step, w)

    def projections(self, modules: nn.ModuleDict) -> Tensor:
        """w_i = ‖W̄ e_i‖, the encoder's gain on feature i (the columns of W̄)."""
        weights = list(modules["encoder"].weights)
        product = weights[0]
        for w in weights[1:]:
            product = w @ product
        return product.norm(dim=0)

    @staticmethod
    def _append(history: History, step: int, w: np.ndarray) -> None:
        i = int(history.count)
        if i < history.rows.shape[0]:
            history.rows[i, 0] = float(step)
            history.rows[i, 1:] = torch.from_numpy(w)
            history.count += 1

    # --- what is logged -----------------------------------------------------------------
    @torch.no_grad()
    def diagnostics(self, modules: nn.ModuleDict, stage: str) -> dict[str, float]:
        history = modules["history"]
        w = history.current.cpu().numpy()
        t_half = history.t_half.cpu().numpy()
        out = {f"frac/{i}": float(w[i] / self.targets[i]) for i in range(len(w))}
        out.update({f"t_half/{i}": float(t) for i, t in enumerate(t_half) if np.isfinite(t)})
        out["learned"] = float(np.isfinite(t_half).sum())
        out.update(learning_order(np.where(np.isfinite(t_half), t_half, np.inf), self.lambdas, self.rhos))
        return out

    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        return modules["encoder"](batch["x"]).unsqueeze(1)


def check_convergence(cfg, fail) -> None:
    """Plain SGD (the ODE's setting): the lr must be stable at every fixed point, and exact per-feature GD from
    ε must stay bounded over the run's first steps (a large ε starts where the curvature is large)."""
    o, v = cfg.optim, cfg.variant
    if o.name != "sgd" or o.momentum:
        return  # other optimisers are allowed; the divergence bound is plain gradient descent's
    objective, depth, scale, lr = str(v.objective), int(v.depth), float(v.init_scale), float(o.lr)
    lambdas, rhos = list(cfg.data.lambdas), list(cfg.data.rhos)
    limit = stable_lr(objective, lambdas, rhos, depth)
    if lr >= limit:
        fail("optim.lr", f"({lr}) makes gradient descent diverge at the fixed point of the stiffest feature "
             f"({objective}, depth {depth})", f"use optim.lr below {limit:.3g}")
    steps = min(int(cfg.budget.steps or DIVERGENCE_HORIZON), DIVERGENCE_HORIZON)
    if gd_diverges(objective, lambdas, rhos, depth, scale, lr, steps):
        peak = float(np.max(fixed_point(objective, rhos, depth)))
        if scale > peak:
            fail("variant.init_scale", f"({scale}) makes gradient descent at optim.lr={lr} diverge from the start "
                 f"(it is above every fixed point, the largest {peak:.3g})", "use a small scale such as 1e-2, or lower optim.lr")
        fail("optim.lr", f"({lr}) makes gradient descent diverge within {steps} steps from variant.init_scale={scale}",
             f"lower optim.lr (the fixed points alone allow up to {limit:.3g}) or variant.init_scale")
