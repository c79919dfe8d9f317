"""Rollout success of an `act`-capable policy driven through RLlib env runners (ACT-JEPA).

Not a thin wrapper over `orchestrator/rl/evaluate.py`: that code drives a zero-shot module (infer z,
set it, act greedily), while rollouts need an RLModule around a variant's `act` on action chunks and
an env with a success signal. Both arrive with ACT-JEPA (issue 19); registered now so the name is known.
"""
from __future__ import annotations

from orchestrator.evaluate.base import EvalContext, Evaluation


class RolloutSuccess(Evaluation):
    name = "rollout_success"
    probe_style = False

    def chosen_for(self, spec, host: str) -> bool:
        return host == "imitation"

    def run(self, ctx: EvalContext) -> dict[str, float]:
        raise NotImplementedError(
            "evaluation 'rollout_success' (an `act` policy on RLlib env runners) is built with ACT-JEPA, issue 19. "
            "Fix: drop it from eval.kinds until then")
