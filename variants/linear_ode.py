"""The per-feature learning dynamics of a deep linear JEPA or MAE (arXiv 2407.03475), as ODEs and as exact GD.

Setting (see variants/linear_jepa.py): views x, y whose second moments are diagonal, feature i with covariance
λ_i = E[x_i y_i] and regression coefficient ρ_i = λ_i / E[x_i²]; encoder W̄ = W_L…W_1, predictor V, every layer
and the predictor started at ε^(1/L) times an orthogonal matrix, so the encoder's projection of feature i starts
at w_i = ε. Gradient flow then keeps the layers balanced and each feature evolves alone:

    JEPA (½‖V W̄ x − sg(W̄ y)‖²):  dw/dt = L λ (w^(3−1/L) − w³/ρ),   fixed point ρ^L
    MAE  (½‖V W̄ x − y‖²):         dw/dt = L λ (w^(2−1/L) − w³/ρ),   fixed point ρ^(L/(L+1))

(the paper's equations up to the factor L, which only rescales time: t here is lr × steps). Both start
like λ·w^k, so both are greedy in λ; ρ enters JEPA's learning time through terms (ε^(1/L)/ρ)^n that are
sub-leading in ε but grow with depth, which is why only deep JEPA learns influential (high-ρ) features first.

Numpy and scipy only: the report panel, the variant's input checks and the tests all use it.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp
from scipy.stats import kendalltau

OBJECTIVES = ("jepa", "mae")
HALF = 0.5  # a feature is "learned" once its projection reaches this share of its fixed point


def fixed_point(objective: str, rho, depth: int) -> np.ndarray:
    """The nonzero fixed point of w (the encoder's projection of each feature)."""
    rho = np.asarray(rho, dtype=float)
    return rho**depth if objective == "jepa" else rho ** (depth / (depth + 1))


def _lead_power(objective: str, depth: int) -> float:
    return (3.0 if objective == "jepa" else 2.0) - 1.0 / depth


def rate(objective: str, w, lam, rho, depth: int) -> np.ndarray:
    """dw/dt for every feature."""
    w = np.maximum(np.asarray(w, dtype=float), 0.0)
    lam, rho = np.asarray(lam, dtype=float), np.asarray(rho, dtype=float)
    return depth * lam * (w ** _lead_power(objective, depth) - w**3 / rho)


def solve(objective: str, lam, rho, depth: int, init: float, times) -> np.ndarray:
    """w(t) [len(times), features] from w(0) = init, by scipy's LSODA (the flow is stiff near its fixed point)."""
    lam, rho, times = np.atleast_1d(lam).astype(float), np.atleast_1d(rho).astype(float), np.asarray(times, dtype=float)
    start = np.full(lam.shape, float(init))
    result = solve_ivp(lambda _, w: rate(objective, w, lam, rho, depth), (0.0, float(times.max(initial=0.0))), start,
                       method="LSODA", t_eval=times, rtol=1e-9, atol=1e-12 * max(init, 1e-12))
    if not result.success:
        raise RuntimeError(f"ODE integration failed: {result.message}")
    return result.y.T


def half_times(objective: str, lam, rho, depth: int, init: float, t_max: float) -> np.ndarray:
    """Time at which each feature first reaches half its fixed point (0 if it starts there, inf if not by t_max)."""
    lam, rho = np.atleast_1d(lam).astype(float), np.atleast_1d(rho).astype(float)
    target = HALF * fixed_point(objective, rho, depth)
    out = np.full(lam.shape, np.inf)
    for i in range(len(lam)):
        if init >= target[i]:
            out[i] = 0.0
            continue
        event = lambda _, w, i=i: w[0] - target[i]
        event.terminal, event.direction = True, 1
        result = solve_ivp(lambda _, w, i=i: rate(objective, w, lam[i], rho[i], depth), (0.0, t_max), [float(init)],
                           method="LSODA", events=event, rtol=1e-9, atol=1e-12 * max(init, 1e-12))
        if result.t_events[0].size:
            out[i] = float(result.t_events[0][0])
    return out


def learning_order(times, lam, rho) -> dict[str, float]:
    """Kendall's τ between how early each feature is learned (−time; not yet learned = last, tied) and its λ,
    and its ρ: +1 = learned in that order. Left out while nothing is learned or where a property does not vary."""
    times = np.asarray(times, dtype=float)
    learned = np.isfinite(times)
    if not learned.any() or len(times) < 2:
        return {}
    times = np.where(learned, times, 2.0 * times[learned].max() + 1.0)
    out = {}
    for name, values in (("lambda", lam), ("rho", rho)):
        values = np.asarray(values, dtype=float)
        if np.ptp(values) > 0 and np.ptp(times) > 0:
            out[f"order_tau_{name}"] = round(float(kendalltau(-times, values).statistic), 12)  # 1.0, not 0.99…9
    return out


# ---------------------------------------------------------------------------- gradient descent, exactly
def gd_step(objective: str, a: np.ndarray, v: np.ndarray, lam, rho, depth: int, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """One full-batch GD step of the balanced per-feature parameters: a (each of the L layers), v (predictor).

    Exact for the variant on data with exactly these second moments: every layer gets the same update.
    """
    w = a**depth
    var = lam / rho
    if objective == "jepa":  # the target's W̄ is a constant (stop-gradient)
        residual = w * w * (v * var - lam)
        grad_v, grad_a = residual, residual * v / a
    else:
        residual = v * w * var - lam
        grad_v, grad_a = w * residual, v * residual * w / a
    return a - lr * grad_a, v - lr * grad_v


def gd_projections(objective: str, lam, rho, depth: int, init: float, lr: float, steps: int, every: int = 1) -> np.ndarray:
    """w = a^L every `every` steps of exact GD (row 0 is the start); stops early (rows of NaN) once non-finite."""
    lam, rho = np.atleast_1d(lam).astype(float), np.atleast_1d(rho).astype(float)
    a = np.full(lam.shape, float(init) ** (1.0 / depth))
    v = a.copy()
    rows = [a**depth]
    with np.errstate(all="ignore"):
        for step in range(1, steps + 1):
            a, v = gd_step(objective, a, v, lam, rho, depth, lr)
            if step % every == 0:
                rows.append(a**depth)
            if not (np.all(np.isfinite(a)) and np.all(np.isfinite(v))):
                rows += [np.full(lam.shape, np.nan)] * (steps // every + 1 - len(rows))
                break
    return np.stack(rows)


def stable_lr(objective: str, lam, rho, depth: int) -> float:
    """The largest lr for which GD is stable at every feature's fixed point (2 / the largest curvature there).

    JEPA: the stop-gradient leaves one nonzero eigenvalue, w*² E[x²] = λ ρ^(2L−1); MAE: the loss's Hessian is
    rank one there, E[x²]·|∇(v·w)|² = λ (L+1) ρ^((L−1)/(L+1)).
    """
    lam, rho = np.atleast_1d(lam).astype(float), np.atleast_1d(rho).astype(float)
    if objective == "jepa":
        curvature = lam * rho ** (2 * depth - 1)
    else:
        curvature = lam * (depth + 1) * rho ** ((depth - 1) / (depth + 1))
    return float(2.0 / curvature.max())


def gd_diverges(objective: str, lam, rho, depth: int, init: float, lr: float, steps: int) -> bool:
    """Whether exact GD leaves every sane range within `steps` steps (non-finite, or 1e3 × the larger of ε and
    the fixed points)."""
    w = gd_projections(objective, lam, rho, depth, init, lr, steps, every=max(1, steps // 50))
    bound = 1e3 * max(float(init), float(np.max(fixed_point(objective, rho, depth))), 1.0)
    return bool(not np.all(np.isfinite(w)) or np.abs(w).max() > bound)


def time_scale(objective: str, lam, rho, depth: int, init: float) -> float:
    """About how long the slowest feature takes to grow from ε (leading order; for horizons and budgets)."""
    lam = float(np.min(lam))
    k = _lead_power(objective, depth) - 1.0  # dw/dt ≈ Lλ w^(k+1)
    if k <= 0:
        return math.log(max(float(np.max(fixed_point(objective, rho, depth))) / init, math.e)) / (depth * lam)
    return init ** (-k) / (depth * lam * k)
