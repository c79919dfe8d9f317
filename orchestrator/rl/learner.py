"""`ZeroShotLearner`: the variant's loss and scalars under RLlib's learner, with the same optimiser,
schedule, `param_groups` and `after_step(step, total_steps)` calls as the self-supervised loop."""
from __future__ import annotations

from omegaconf import OmegaConf
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from orchestrator.optim import optimizer_for_groups, set_schedules


class ZeroShotLearner(TorchLearner):
    """Counts its updates (`learner_config_dict`: `start_step`, `total_steps` of the run's plan) so
    schedules and `after_step` see the real step, on every learner alike."""

    def build(self) -> None:
        settings = self.config.learner_config_dict
        self.run_cfg = OmegaConf.create(settings["run"])
        self.total_steps = int(settings["total_steps"])
        self.updates_done = int(settings.get("start_step", 0))
        super().build()

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        """`optim.name` over the variant's parameter groups (the EMA targets are frozen, in none)."""
        module = self._module[module_id].unwrapped()
        optimizer = optimizer_for_groups(module.agent.param_groups(module.nets, "main"), self.run_cfg)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.register_optimizer(module_id=module_id, optimizer=optimizer, params=params)

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        for key, value in fwd_out.items():
            if key != "artifacts":  # arrays a step keeps are not scalars to log (RL runs do not store them yet)
                self.metrics.log_value((module_id, key), value.detach().float().item(), window=1)
        return fwd_out["loss"]

    def apply_gradients(self, gradients_dict) -> None:
        """Schedules, the optimizer step, then `after_step` (EMA targets): once per update,
        however many updates one `Learner.update` call runs."""
        for optimizer in self._named_optimizers.values():
            set_schedules(optimizer, self.run_cfg, self.updates_done, self.total_steps)
        super().apply_gradients(gradients_dict)
        self.updates_done += 1
        for module_id in self.module.keys():  # noqa: SIM118 (a MultiRLModule, not a dict)
            module = self.module[module_id].unwrapped()
            module.agent.after_step(module.nets, self.updates_done, self.total_steps, "main")
