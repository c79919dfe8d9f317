"""Zero-shot returns on RLlib env runners (TD-JEPA, FB): `orchestrator/rl/evaluate.py` unchanged,
registered here so the registry lists it. The RL loop calls that module itself."""
from __future__ import annotations

from orchestrator.evaluate.base import EvalContext, Evaluation


class ZeroShotReturns(Evaluation):
    name = "zero_shot_returns"
    probe_style = False

    def chosen_for(self, spec, host: str) -> bool:
        return spec.kind == "rl" or host == "rl_zero_shot"

    def run(self, ctx: EvalContext) -> dict[str, float]:
        if ctx.algo is None:
            raise ValueError("evaluation 'zero_shot_returns' runs on the RLlib zero-shot host (a trained Algorithm), "
                             "not in the self-supervised loop. Fix: drop it from eval.kinds")
        from orchestrator.rl.evaluate import evaluate_zero_shot  # RLlib is heavy: imported where RL runs

        return evaluate_zero_shot(ctx.algo)
