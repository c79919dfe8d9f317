"""linear-JEPA (issue 18): gradient descent against the paper's ODE, the planted inverted pair, bad input, and
one run through the project's loop."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from envs.linear_features import LinearFeaturesConfig, make_views
from orchestrator.config import ConfigError, compose_run
from orchestrator.linear_data import spec
from orchestrator.results import ResultsStore
from orchestrator.train import launch
from variants.linear_jepa import LinearJEPA, record_step
from variants.linear_ode import fixed_point, half_times, solve

A, B, A_FAR = (1.1, 0.5), (1.0, 0.95), (1.5, 0.6)  # the planted features (λ, ρ)


def train(objective: str, depth: int, lambdas, rhos, init: float, lr: float, steps: int, history: int = 256):
    """The variant's own build/step/after_step under full-batch SGD, as the loop runs them (without Ray)."""
    cfg = OmegaConf.create({
        "seed": 0, "optim": {"lr": lr},
        "variant": {"name": "linear_jepa", "objective": objective, "depth": depth, "init_scale": init, "history": history},
        "data": {"name": "linear_features", "lambdas": list(lambdas), "rhos": list(rhos), "samples": 16,
                 "exact_moments": True, "seed": 0},
    })
    x, y = make_views(cfg.data)
    batch = {"x": torch.as_tensor(x, dtype=torch.float32), "y": torch.as_tensor(y, dtype=torch.float32)}
    variant = LinearJEPA(cfg, spec(cfg.data))
    modules = variant.build("main")
    optimizer = torch.optim.SGD([p for p in modules.parameters() if p.requires_grad], lr=lr)
    for step in range(1, steps + 1):
        loss = variant.step(modules, batch, "main")["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        variant.after_step(modules, step, steps, "main")
    return variant, modules


def test_views_have_exactly_the_asked_moments():
    cfg = LinearFeaturesConfig(lambdas=[1.1, 1.0, 2.0], rhos=[0.5, 0.95, 1.5], samples=16)
    x, y = make_views(cfg)
    assert np.allclose(x.T @ x / 16, np.diag(np.array(cfg.lambdas) / np.array(cfg.rhos)), atol=1e-12)
    assert np.allclose(y.T @ x / 16, np.diag(cfg.lambdas), atol=1e-12)
    assert np.allclose(x.mean(0), 0, atol=1e-12)


@pytest.mark.parametrize("objective, t_end", [("jepa", 60.0), ("mae", 10.0)])
def test_small_step_gradient_descent_matches_the_ode(objective, t_end):
    """Each feature's projection as a share of its fixed point, within 0.05 of the ODE's at every recorded step."""
    lambdas, rhos, depth, init, lr = [1.0, 1.5], [0.9, 0.6], 2, 0.05, 0.02
    _, modules = train(objective, depth, lambdas, rhos, init, lr, int(t_end / lr))
    history = modules["history"]
    rows = history.rows[: int(history.count)].numpy()
    assert len(rows) > 100 and rows[-1, 0] == int(t_end / lr)
    targets = fixed_point(objective, rhos, depth)
    simulated = rows[:, 1:] / targets
    ode = solve(objective, lambdas, rhos, depth, init, rows[:, 0] * lr) / targets
    assert np.abs(simulated - ode).max() < 0.05
    assert simulated[-1].min() > 0.95 and simulated[0].max() < 0.2  # the case spans the whole transition
    times = half_times(objective, lambdas, rhos, depth, init, t_end)
    assert np.allclose(history.t_half.numpy(), times, rtol=0.03)


def first_learned(objective: str, depth: int, a, b) -> str:
    """Which of the two planted features the variant's learning-order statistic puts first."""
    lr = 0.5 if objective == "jepa" else 0.05
    lambdas, rhos = [a[0], b[0]], [a[1], b[1]]
    ode = half_times(objective, lambdas, rhos, depth, 1e-2, 1e5)
    variant, modules = train(objective, depth, lambdas, rhos, 1e-2, lr, int(1.2 * ode.max() / lr) + 1, history=8)
    stats = variant.diagnostics(modules, "main")
    assert stats["learned"] == 2.0
    assert (stats["t_half/0"] < stats["t_half/1"]) == (ode[0] < ode[1])  # GD and ODE agree on the order
    return "A" if stats["order_tau_lambda"] == 1.0 else "B"  # A has the larger λ, B the larger ρ


def test_planted_pair_inverts_between_jepa_and_mae_at_depth_3_and_not_at_depth_1():
    assert first_learned("jepa", 3, A, B) == "B"  # influential (high ρ) first
    assert first_learned("mae", 3, A, B) == "A"  # covarying (high λ) first
    assert first_learned("jepa", 1, A, B) == "A" and first_learned("mae", 1, A, B) == "A"


def test_a_larger_lambda_gap_needs_depth_5():
    assert first_learned("jepa", 3, A_FAR, B) == "A"
    assert first_learned("jepa", 5, A_FAR, B) == "B"
    assert first_learned("mae", 5, A_FAR, B) == "A"


def test_trajectory_rows_are_log_spaced_and_bounded():
    for total in (1, 2, 7, 300, 25_000):
        recorded = [s for s in range(1, total + 1) if record_step(s, total, 64)]
        assert recorded[0] == 1 and recorded[-1] == total and len(recorded) <= 63


BASE = ["variant=linear_jepa", "data=linear_features", "budget.steps=100"]


@pytest.mark.parametrize("override, key", [
    ("variant.depth=0", "variant.depth"),
    ("data.lambdas=[1.1,-1.0]", "data.lambdas"),
    ("data.rhos=[0.5,0.0]", "data.rhos"),
    ("data.rhos=[0.5]", "data.rhos"),
    ("variant.objective=byol", "variant.objective"),
    ("optim.lr=3.0", "optim.lr"),  # JEPA on the planted pair is stable at its fixed points below 2.6
    ("variant.init_scale=50", "variant.init_scale"),
    ("variant.init_scale=0", "variant.init_scale"),
])
def test_bad_input_names_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"`{key}` .*Fix: "):
        compose_run([*BASE, override])


def test_mae_step_size_limit_is_checked():
    compose_run([*BASE, "variant.objective=mae", "optim.lr=0.2"])  # below the stable limit: fine
    with pytest.raises(ConfigError, match=r"`optim.lr` .*diverge.*Fix: use optim.lr below"):
        compose_run([*BASE, "variant.objective=mae", "optim.lr=0.9"])


def test_run_through_the_loop_logs_order_and_artifacts(ray_session, tmp_path):
    """JEPA at depth 3 on the planted pair, through `launch` (a Ray Train worker): B (high ρ) is learned first."""
    cfg = compose_run([*BASE[:2], f"storage={tmp_path}", "sweep=linear", "budget.steps=1500", "optim.lr=0.45",
                       "train.batch_size=32", "train.log_every=500", "train.checkpoint_every=1500"])
    metrics = launch(cfg, "linear-run")
    assert metrics["final"] and metrics["step"] == 1500
    assert metrics["order_tau_rho"] == 1.0 and metrics["order_tau_lambda"] == -1.0
    assert metrics["t_half/1"] == pytest.approx(606.4, rel=0.01)  # the ODE's half-time of B
    assert "t_half/0" not in metrics and metrics["learned"] == 1.0  # A (801 by the ODE) not yet
    assert not any(k.startswith(("probe", "feature_rank")) for k in metrics)  # no video probes on this data
    store = ResultsStore(tmp_path)
    steps, projections = store.artifact_arrays("linear", "linear-run", "projection")
    assert steps.tolist() == [500, 1000, 1500] and projections.shape == (3, 2)
    _, trajectory = store.artifact_arrays("linear", "linear-run", "trajectory")
    rows = trajectory[-1][np.isfinite(trajectory[-1][:, 0])]
    assert rows[0, 0] == 0 and rows[-1, 0] == 1500 and np.allclose(rows[-1, 1:], projections[-1])
