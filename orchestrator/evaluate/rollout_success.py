"""Rollout success of an `act`-capable policy (`variants.base.Policy`) driven through RLlib env runners.

The host passes the dataset's env recipe in `EvalContext.env` (`{"maker": data.env_maker, "kwargs":
data.env_kwargs}` of an `OfflineRLData`); `eval.episodes` episodes run, each cut at `eval.episode_length`
(> 0) steps, on `eval.env_runners` remote env runners or, when 0, one in this process.
"""
from __future__ import annotations

from orchestrator.evaluate.base import EvalContext, Evaluation
from variants.base import Policy


class RolloutSuccess(Evaluation):
    name = "rollout_success"
    probe_style = False

    def chosen_for(self, spec, host: str) -> bool:
        return host == "imitation"

    def run(self, ctx: EvalContext) -> dict[str, float]:
        """`rollout/success`, `rollout/return` (each with `_se`) and `rollout/episodes`."""
        if not isinstance(ctx.variant, Policy):
            raise TypeError(f"evaluation 'rollout_success' needs a variant with `act` (variants.base.Policy); "
                            f"{type(ctx.variant).__name__} is not one. Fix: drop it from eval.kinds")
        if ctx.env is None:
            raise ValueError("evaluation 'rollout_success' needs an env to act in, and this host gave none "
                             "(EvalContext.env). Fix: use a dataset with an env (OGBench, ExoRL) or drop it from eval.kinds")
        # RLlib is heavy: imported where RL runs
        from orchestrator.rl.policy_module import env_recipe, rollout

        cfg = ctx.cfg
        return rollout(ctx.variant, ctx.modules, env_recipe(ctx.env["maker"], ctx.env.get("kwargs", {}), cfg),
                       int(cfg.eval.episodes), int(cfg.eval.get("env_runners", 0)), int(cfg.seed))
