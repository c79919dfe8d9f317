"""The evaluation contract. A probe-style evaluation scores frozen tokens (`score`), so the host can
also score a random-init encoder's and the raw inputs' tokens with it; any other kind runs itself
(`run`) on its host (RLlib env runners for returns and rollouts)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from variants.base import DataSpec


@dataclass
class Features:
    """One split's frozen tokens [N, L, D] and its targets (batch keys the spec declares)."""

    tokens: Tensor
    targets: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class EvalContext:
    """What a self-running evaluation may use; `algo` is the RLlib Algorithm on RL hosts; `env` is the
    dataset's env recipe for rollouts, `{"maker": data.env_maker, "kwargs": data.env_kwargs}`."""

    variant: Any
    modules: Any
    cfg: Any
    device: Any = None
    stage: str = "main"
    algo: Any = None
    env: dict | None = None


class Evaluation:
    """Subclass, set `name`, and override `chosen_for` plus `score` (probe-style) or `run`."""

    name: ClassVar[str]
    probe_style: ClassVar[bool] = True  # scores tokens: gets the random_init and raw_input baselines

    def chosen_for(self, spec: DataSpec, host: str) -> bool:
        """Whether this kind runs when `eval.kinds` is empty (automatic choice from the data)."""
        return False

    def targets(self, spec: DataSpec) -> list[str]:
        """Batch keys `score` needs in `Features.targets`."""
        return []

    def score(self, train: Features, val: Features, spec: DataSpec, cfg) -> dict[str, float]:
        """Metrics of a probe fitted on `train` and scored on `val`."""
        raise NotImplementedError(f"evaluation {self.name!r} is not probe-style: it has no `score`")

    def run(self, ctx: EvalContext) -> dict[str, float]:
        """Metrics of a self-running evaluation."""
        raise NotImplementedError(f"evaluation {self.name!r} is probe-style: its host calls `score`")
