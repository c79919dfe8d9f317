"""RLlib's offline algorithms (BC, MARWIL, CQL, IQL) as variants: their configs and names only.

Registering variants and composing configs must not import RLlib (it pulls in dm_control and
its GL backend, and takes seconds): the training side lives in `orchestrator/rl/baselines.py`,
imported only by runs that train one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from variants.base import RLlibAlgorithm, Variant

# RLlib's CQL hands its learner a data iterator even with one local learner, which needs more
# than one update per iteration; the others update once per `Algorithm.train()`.
UPDATES_PER_ITERATION = {"bc": 1, "marwil": 1, "cql": 2, "iql": 1}


@dataclass
class BaselineConfig:
    name: str = "bc"
    task: str = ""  # (not OmegaConf's "???": validation must read it to explain) the task whose reward it trains on (and is evaluated on)
    hidden: int = 256
    layers: int = 2
    beta: float = 1.0  # MARWIL's advantage temperature (0 = BC); unused elsewhere
    min_q_weight: float = 5.0  # CQL's conservative penalty weight
    expectile: float = 0.7  # IQL's value expectile


class RLlibBaseline(RLlibAlgorithm, Variant):
    """A variant trained by an RLlib algorithm: no networks of its own, nothing to trace
    (budgeted in steps; FLOPs measured on a real update)."""

    Config = BaselineConfig
    host: ClassVar[str] = "rllib_algorithm"
    optim_defaults: ClassVar[dict] = {**Variant.optim_defaults, "lr": 1e-3, "grad_clip": 0.0}  # RLlib's own settings otherwise

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        if not cfg.variant.task:
            fail("variant.task", f"is not set; the {cls.name} reference trains on one task's reward",
                 "set variant.task=<task> (e.g. walk); `jepa data list` shows each dataset's tasks")
        if cfg.train.num_workers != 1:
            fail("train.num_workers", f"is {cfg.train.num_workers}; RLlib references run on one learner here "
                 "(their FLOPs are measured on it)", "use train.num_workers=1")
        if cfg.budget.steps is None:
            fail("budget.steps", f"is not set; {cls.name} runs are budgeted in updates (their FLOPs are measured "
                 "while they run)", "add budget.steps=<int>")

    def build(self, stage, previous=None):
        raise NotImplementedError(f"{self.name} is trained by RLlib's own {self.algorithm} learner (orchestrator/rl/baselines.py)")

    def step(self, modules, batch, stage):
        raise NotImplementedError(f"{self.name} is trained by RLlib's own {self.algorithm} learner")


def _baseline(name: str, algorithm: str) -> type[RLlibBaseline]:
    config = dataclass(type(f"{algorithm}Config", (BaselineConfig,), {"__annotations__": {"name": str}, "name": name}))
    return type(algorithm, (RLlibBaseline,), {"name": name, "algorithm": algorithm, "Config": config})


BC, MARWIL, CQL, IQL = (_baseline("bc", "BC"), _baseline("marwil", "MARWIL"), _baseline("cql", "CQL"), _baseline("iql", "IQL"))
BASELINES = (BC, MARWIL, CQL, IQL)
