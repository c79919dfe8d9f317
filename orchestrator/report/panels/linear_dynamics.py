"""Linear-dynamics panel (`report.linear_dynamics`): deep linear JEPA vs MAE, simulation against the ODE.

For runs of `variant=linear_jepa` (arXiv 2407.03475): per data configuration, each feature's projection as a
share of its fixed point over time (each subplot on its own time span: MAE moves ~100× sooner than JEPA),
simulation solid and the ODE (variants/linear_ode.py) dashed, one subplot per objective × depth; and every feature's learning time
(time to half its fixed point) relative to the run's fastest feature, against ρ and against λ. A table gives,
per run, the learning-order τ's of simulation and ODE and the largest simulation-ODE gap in that share.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import polars as pl

from orchestrator.report.figures import blank_figure, new_axes, save_figure
from orchestrator.report.markdown import (
    image_name,
    markdown_table,
    missing_columns_line,
)
from orchestrator.report.registry import PanelContext, register_panel
from orchestrator.report.rows import absent_columns
from variants.linear_ode import fixed_point, half_times, learning_order, solve

NEEDED = ("run_id", "variant.objective", "variant.depth", "variant.init_scale", "optim.lr", "data.name",
          "data.lambdas", "data.rhos")
TRAJECTORY = "trajectory"  # the artifact variants/linear_jepa.py keeps at a run's last step


@dataclass
class LinearRun:
    """One finished run: its setting, and its recorded trajectory (times, shares of the fixed points)."""

    run_id: str
    data: str
    objective: str
    depth: int
    init: float
    lambdas: np.ndarray
    rhos: np.ndarray
    times: np.ndarray
    shares: np.ndarray  # [rows, features]

    @property
    def targets(self) -> np.ndarray:
        return fixed_point(self.objective, self.rhos, self.depth)

    def ode_shares(self, times: np.ndarray) -> np.ndarray:
        return solve(self.objective, self.lambdas, self.rhos, self.depth, self.init, times) / self.targets

    def sim_half_times(self) -> np.ndarray:
        """First time each feature's share reaches ½ (linear interpolation between recorded rows; inf if never)."""
        out = np.full(len(self.lambdas), np.inf)
        for i in range(len(out)):
            above = np.nonzero(self.shares[:, i] >= 0.5)[0]
            if above.size:
                k = int(above[0])
                if k == 0:
                    out[i] = 0.0
                else:
                    s0, s1 = self.shares[k - 1, i], self.shares[k, i]
                    out[i] = self.times[k - 1] + (0.5 - s0) / max(s1 - s0, 1e-300) * (self.times[k] - self.times[k - 1])
        return out

    def ode_half_times(self) -> np.ndarray:
        return half_times(self.objective, self.lambdas, self.rhos, self.depth, self.init, max(float(self.times[-1]), 1.0) * 10)


def load_runs(ctx: PanelContext) -> list[LinearRun]:
    """The finished linear-JEPA runs that kept a trajectory."""
    runs = []
    for row in ctx.finished.iter_rows(named=True):
        if row.get("variant.name", "linear_jepa") != "linear_jepa":
            continue
        steps, arrays = ctx.store.artifact_arrays(ctx.sweep, row["run_id"], TRAJECTORY)
        if not len(steps):
            continue
        rows = arrays[-1]
        rows = rows[np.isfinite(rows[:, 0])]
        run = LinearRun(row["run_id"], str(row["data.name"]), str(row["variant.objective"]), int(row["variant.depth"]),
                        float(row["variant.init_scale"]), np.asarray(json.loads(row["data.lambdas"]), dtype=float),
                        np.asarray(json.loads(row["data.rhos"]), dtype=float), rows[:, 0] * float(row["optim.lr"]),
                        np.empty(0))
        run.shares = rows[:, 1:] / run.targets
        runs.append(run)
    return sorted(runs, key=lambda r: (r.data, r.objective, r.depth))


def plot_trajectories(runs: list[LinearRun], path: str, title: str) -> None:
    """Share of the fixed point against time: one subplot per (objective, depth), simulation solid, ODE dashed
    (on a dense grid); each subplot spans 1.5 × its slowest half-time, where the transitions are."""
    objectives = sorted({r.objective for r in runs})
    depths = sorted({r.depth for r in runs})
    figure = blank_figure((3.2 * len(depths), 2.6 * len(objectives) + 0.6))
    for row, objective in enumerate(objectives):
        for col, depth in enumerate(depths):
            axes = new_axes(figure, len(objectives), len(depths), row * len(depths) + col + 1)
            axes.set_title(f"{objective}, L={depth}", fontsize="small")
            for run in (r for r in runs if r.objective == objective and r.depth == depth):
                half = run.ode_half_times()
                half = half[np.isfinite(half)]
                end = min(1.5 * float(half.max()), float(run.times[-1])) if half.size else float(run.times[-1])
                shown = run.times <= end
                grid = np.linspace(0.0, end, 400)
                ode = run.ode_shares(grid)
                for i in range(len(run.lambdas)):
                    label = f"λ={run.lambdas[i]:g} ρ={run.rhos[i]:g}"
                    axes.plot(run.times[shown], run.shares[shown, i], color=f"C{i % 10}", label=label)
                    axes.plot(grid, ode[:, i], color=f"C{i % 10}", linestyle="--", linewidth=1)
                axes.axhline(0.5, color="grey", linewidth=0.5)
                axes.set_xlim(0.0, end)
            if row == len(objectives) - 1:
                axes.set_xlabel("time (lr × steps)")
            if col == 0:
                axes.set_ylabel("w / fixed point")
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize="x-small")
    figure.suptitle(f"{title} (solid: simulation, dashed: ODE)", fontsize="small")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(figure, path)


def plot_learning_times(runs: list[LinearRun], prop: str, path: str, title: str) -> None:
    """Learning time relative to the run's fastest feature against λ or ρ: a line per (objective, depth),
    simulation as markers, ODE as lines."""
    figure = blank_figure((7, 4.5))
    axes = new_axes(figure)
    depths = sorted({r.depth for r in runs})
    for run in runs:
        x = run.lambdas if prop == "lambda" else run.rhos
        order = np.argsort(x)
        sim, ode = run.sim_half_times(), run.ode_half_times()
        color = f"C{depths.index(run.depth) % 10}"
        style = "-" if run.objective == "jepa" else ":"
        marker = "o" if run.objective == "jepa" else "s"
        axes.plot(x[order], (ode / ode.min())[order], color=color, linestyle=style, linewidth=1)
        axes.plot(x[order], (sim / sim.min())[order], color=color, marker=marker, linestyle="none",
                  label=f"{run.objective} L={run.depth}")
    axes.set_xlabel("λ (covariance)" if prop == "lambda" else "ρ (regression coefficient)")
    axes.set_ylabel("time to ½ fixed point / fastest feature's")
    axes.set_title(f"{title} (markers: simulation, lines: ODE)", fontsize="small")
    axes.legend(fontsize="x-small", ncol=2)
    save_figure(figure, path)


def order_table(runs: list[LinearRun]) -> pl.DataFrame:
    """Per run: which property orders learning (simulation and ODE τ's) and the largest simulation-ODE gap."""
    rows = []
    for run in runs:
        sim = learning_order(run.sim_half_times(), run.lambdas, run.rhos)
        ode = learning_order(run.ode_half_times(), run.lambdas, run.rhos)
        gap = float(np.max(np.abs(run.shares - run.ode_shares(run.times))))
        rows.append({"data": run.data, "objective": run.objective, "depth": run.depth,
                     "τ_λ sim": sim.get("order_tau_lambda"), "τ_λ ODE": ode.get("order_tau_lambda"),
                     "τ_ρ sim": sim.get("order_tau_rho"), "τ_ρ ODE": ode.get("order_tau_rho"),
                     "max gap sim vs ODE": gap, "run": run.run_id})
    return pl.DataFrame(rows)


def varied(values: np.ndarray) -> bool:
    return bool(np.ptp(values) > 0)


@register_panel("linear_dynamics", options=())
def linear_dynamics_section(ctx: PanelContext, options: dict) -> list[str]:
    """Per-feature trajectories (simulation vs ODE) and learning times against λ and ρ."""
    lines = ["## Linear dynamics: JEPA vs MAE, simulation against the ODE", ""]
    missing = absent_columns(ctx.finished, NEEDED)
    if missing:
        return [*lines, missing_columns_line("linear-dynamics", ctx.finished, missing), ""]
    runs = load_runs(ctx)
    if not runs:
        return [*lines, "No finished `linear_jepa` run kept a trajectory.", ""]
    for data in sorted({r.data for r in runs}):
        group = [r for r in runs if r.data == data]
        image = image_name(f"linear_trajectories_{data}")
        plot_trajectories(group, os.path.join(ctx.directory, image), f"{ctx.sweep}: {data}")
        lines += [f"### `{data}`", "", f"![trajectories {data}]({image})", ""]
        for prop in ("lambda", "rho"):
            if varied(group[0].lambdas if prop == "lambda" else group[0].rhos):
                image = image_name(f"linear_times_{data}_{prop}")
                plot_learning_times(group, prop, os.path.join(ctx.directory, image), f"{data}: learning time vs {prop}")
                lines += [f"![learning time vs {prop} ({data})]({image})", ""]
    legend = ("Learning order: Kendall's τ between how early features reach half their fixed point and their λ "
              "or ρ (+1: learned in that order); `max gap sim vs ODE`: the largest gap, over recorded steps and "
              "features, between simulated and ODE shares of the fixed point.")
    lines += [legend, "", markdown_table(order_table(runs)), ""]
    return lines
