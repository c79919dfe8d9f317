"""Paired views (x, y) whose features have independently set covariance λ_i and regression coefficient ρ_i.

The setting of "How JEPA Avoids Noisy Features" (arXiv 2407.03475): the second moments are diagonal, with
λ_i = E[x_i y_i] (how much feature i co-varies across the views) and ρ_i = λ_i / E[x_i²] (how much of x_i
predicts y_i; a low ρ is a noisy feature). Each feature is a shared latent seen through independent noise:

    ρ ≤ 1:  x = z + n,  y = z + n',  Var z = λ,  Var n = Var n' = λ/ρ − λ
    ρ > 1:  x = z,      y = ρ z,     Var z = λ/ρ

With `exact_moments` the samples are built from orthonormal columns, so their empirical second moments are
exactly those (full-batch gradient descent on them is gradient descent on the population loss, the ODE's
setting); otherwise they are plain Gaussian draws. Made in memory from a seed in milliseconds: no cache.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

# The paper's three configurations (its Figure 2): vary λ at one ρ, vary ρ at one λ, and λ rising while ρ falls,
# where the order in which features are learned inverts between JEPA and MAE. The values are this project's (the
# paper's figure does not list them): ρ ≥ 0.6 keeps JEPA's fixed point ρ^L at 4ε or more up to L = 5 at ε = 1e-2,
# and the inverted set changes λ by 5 % per feature against 10 % steps of ρ, so depth decides which one wins.
PRESETS: dict[str, dict[str, list[float]]] = {
    "vary_lambda": {"lambdas": [0.5, 0.75, 1.0, 1.25, 1.5], "rhos": [0.8] * 5},
    "vary_rho": {"lambdas": [1.0] * 5, "rhos": [0.6, 0.7, 0.8, 0.9, 1.0]},
    "inverted": {"lambdas": [1.0, 1.05, 1.1, 1.15, 1.2], "rhos": [1.0, 0.9, 0.8, 0.7, 0.6]},
}


@dataclass
class LinearFeaturesConfig:
    """Per-feature λ and ρ (same length), how many samples, and the seed that draws them."""

    lambdas: list[float] = field(default_factory=lambda: list(PRESETS["inverted"]["lambdas"]))
    rhos: list[float] = field(default_factory=lambda: list(PRESETS["inverted"]["rhos"]))
    samples: int = 32  # per split; full-batch GD when train.batch_size equals it
    exact_moments: bool = True
    seed: int = 0


def min_samples(features: int) -> int:
    """Fewest samples with exactly the asked moments: two orthonormal, zero-mean columns per feature."""
    return 2 * features + 1


def problems(cfg) -> list[tuple[str, str, str]]:
    """(key, problem, fix) for every value the generator cannot use."""
    lambdas, rhos = list(cfg.lambdas), list(cfg.rhos)
    out = []
    if not lambdas:
        out.append(("data.lambdas", "is empty", "give one covariance per feature, e.g. [1.0,1.1]"))
    if len(lambdas) != len(rhos):
        out.append(("data.rhos", f"has {len(rhos)} values for {len(lambdas)} in data.lambdas", "give one ρ per λ"))
    for key, values in (("data.lambdas", lambdas), ("data.rhos", rhos)):
        bad = [v for v in values if not (np.isfinite(v) and v > 0)]
        if bad:
            out.append((key, f"holds {bad[0]}", "use positive numbers only (λ: a covariance, ρ: a regression coefficient)"))
    if cfg.samples < 2:
        out.append(("data.samples", f"is {cfg.samples}", "use at least 2"))
    elif cfg.exact_moments and cfg.samples < min_samples(len(lambdas)):
        out.append(("data.samples", f"({cfg.samples}) is too few for exact moments of {len(lambdas)} features",
                    f"use at least {min_samples(len(lambdas))}, or data.exact_moments=false"))
    return out


def moment_roots(lam: float, rho: float) -> np.ndarray:
    """A 2×2 matrix R with Rᵀ R = the (x, y) second-moment block of one feature."""
    var_x, var_y = lam / rho, max(lam / rho, lam * rho)
    block = np.array([[var_x, lam], [lam, var_y]])
    vals, vecs = np.linalg.eigh(block)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def white_columns(rows: int, columns: int, exact: bool, rng: np.random.Generator) -> np.ndarray:
    """[rows, columns] with E[c cᵀ] = I: exactly (zero-mean orthonormal columns × √rows), or as Gaussian draws."""
    draws = rng.standard_normal((rows, columns))
    if not exact:
        return draws
    basis, _ = np.linalg.qr(np.concatenate([np.ones((rows, 1)), draws], axis=1))
    return basis[:, 1:] * np.sqrt(rows)


def make_views(cfg, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each [samples, features], drawn from `seed` (the val split from the next stream)."""
    lambdas, rhos = np.asarray(cfg.lambdas, dtype=float), np.asarray(cfg.rhos, dtype=float)
    rng = np.random.default_rng([int(cfg.seed), 0 if split == "train" else 1])
    white = white_columns(int(cfg.samples), 2 * len(lambdas), bool(cfg.exact_moments), rng)
    x, y = np.empty((cfg.samples, len(lambdas))), np.empty((cfg.samples, len(lambdas)))
    for i, (lam, rho) in enumerate(zip(lambdas, rhos)):
        pair = white[:, 2 * i: 2 * i + 2] @ moment_roots(lam, rho)
        x[:, i], y[:, i] = pair[:, 0], pair[:, 1]
    return x, y


class LinearViews(Dataset):
    """The views as samples {"x": [features], "y": [features]} (float32)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x = torch.as_tensor(x, dtype=torch.float32)
        self.y = torch.as_tensor(y, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "y": self.y[index]}
