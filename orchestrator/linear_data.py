"""Dataset entries for linear-JEPA's paired views (envs/linear_features.py), made in memory from a seed.

`linear_features` holds the planted pair of issue 18 (A = (λ 1.1, ρ 0.5), B = (λ 1.0, ρ 0.95)); one entry per
configuration of the paper's Figure 2 (`linear_vary_lambda`, `linear_vary_rho`, `linear_inverted`), so a sweep
grids over them with `data: [...]`. Any entry takes `data.lambdas=[...] data.rhos=[...]`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field

from envs import linear_features
from orchestrator.datasets import DataError
from orchestrator.entries import DatasetEntry
from variants.base import DataSpec

PLANTED_PAIR = {"lambdas": [1.1, 1.0], "rhos": [0.5, 0.95]}
ENTRIES = {  # name -> (λs and ρs, description)
    "linear_features": (PLANTED_PAIR, "paired views with set per-feature λ and ρ (default: the planted pair A=(1.1, 0.5), B=(1.0, 0.95))"),
    "linear_vary_lambda": (linear_features.PRESETS["vary_lambda"], "paired views: λ from 0.5 to 1.5 at ρ 0.8 (a Fig. 2 setting of the paper)"),
    "linear_vary_rho": (linear_features.PRESETS["vary_rho"], "paired views: ρ from 0.6 to 1 at λ 1 (a Fig. 2 setting of the paper)"),
    "linear_inverted": (linear_features.PRESETS["inverted"], "paired views: λ rising 1.0→1.2 while ρ falls 1.0→0.6 (a Fig. 2 setting of the paper)"),
}


def data_node(name: str, values: dict[str, list[float]]) -> type:
    """The Hydra `data` node: the generator's fields with this entry's λs and ρs as defaults."""
    fields = [("name", str, field(default=name))]
    for f in dataclasses.fields(linear_features.LinearFeaturesConfig):
        if f.name in values:
            fields.append((f.name, list[float], field(default_factory=lambda v=values[f.name]: list(v))))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, f.type, field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, f.type, field(default=f.default)))
    return dataclasses.make_dataclass(f"{name.title().replace('_', '')}Data", fields)


def check(cfg) -> None:
    """Values the generator cannot use, as a user error naming the key (for any variant on this data)."""
    for key, problem, fix in linear_features.problems(cfg):
        raise DataError(f"{key} {problem}. Fix: {fix}")


def prepare(cfg) -> str:
    check(cfg)
    return f"made in memory from data.seed={cfg.seed} at load time ({cfg.samples} samples per split); nothing stored"


def spec(cfg) -> DataSpec:
    features = len(cfg.lambdas)
    return DataSpec(kind="linear_features", input_key="x", inputs={"x": (features,), "y": (features,)})


def load(cfg, split: str) -> linear_features.LinearViews:
    check(cfg)
    return linear_features.LinearViews(*linear_features.make_views(cfg, split))


def linear_entries() -> list[DatasetEntry]:
    return [DatasetEntry(name, data_node(name, values), describe, prepare, spec, load, check)
            for name, (values, describe) in ENTRIES.items()]
