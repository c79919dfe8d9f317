"""`ZeroShotLearner`: the variant's loss and scalars under RLlib's learner, with the same optimiser,
schedule, `param_groups` and `after_step(step, total_steps)` calls as the self-supervised loop."""
from __future__ import annotations

from types import SimpleNamespace

import torch
from omegaconf import OmegaConf
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from orchestrator.optim import optimizer_for_groups, set_schedules


class ZeroShotLearner(TorchLearner):
    """Counts its updates (`learner_config_dict`: `start_step`, `total_steps` of the run's plan) so
    schedules and `after_step` see the real step, on every learner alike."""

    def build(self) -> None:
        settings = self.config.learner_config_dict
        self.run_cfg = OmegaConf.create(settings["run"])
        # plain floats for the per-update schedule: OmegaConf look-ups cost ~10 µs each, every update
        self.schedule_cfg = SimpleNamespace(optim=SimpleNamespace(**OmegaConf.to_container(self.run_cfg.optim, resolve=True)))
        self.total_steps = int(settings["total_steps"])
        self.updates_done = int(settings.get("start_step", 0))
        self.last_scalars: dict = {}
        super().build()

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        """`optim.name` over the variant's parameter groups (the EMA targets are frozen, in none)."""
        module = self._module[module_id].unwrapped()
        optimizer = optimizer_for_groups(module.agent.param_groups(module.nets, "main"), self.run_cfg)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.register_optimizer(module_id=module_id, optimizer=optimizer, params=params)

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        """The loss; the step's scalars are kept (detached) and logged once per `Learner.update`, in
        `after_gradient_based_update`: they are logged with window=1, so only the last update's
        values were ever reported, and reading every one back (`.item()`) cost a sync per update."""
        self.last_scalars[module_id] = {key: value.detach() for key, value in fwd_out.items()
                                        if key != "artifacts"}  # arrays a step keeps are not scalars to log
        return fwd_out["loss"]

    def after_gradient_based_update(self, *, timesteps) -> None:
        super().after_gradient_based_update(timesteps=timesteps)
        for module_id, scalars in self.last_scalars.items():
            for key, value in scalars.items():
                self.metrics.log_value((module_id, key), value.float().item(), window=1)
        self.last_scalars = {}

    def apply_gradients(self, gradients_dict) -> None:
        """Schedules, the optimizer step, then `after_step` (EMA targets): once per update,
        however many updates one `Learner.update` call runs."""
        for optimizer in self._named_optimizers.values():
            set_schedules(optimizer, self.schedule_cfg, self.updates_done, self.total_steps)
        if self._plain_step_allowed() and all_finite(list(gradients_dict.values())):
            self._plain_step(gradients_dict)
        else:  # RLlib's own path: per-tensor checks, non-finite gradients zeroed (and warned about)
            super().apply_gradients(gradients_dict)
        self.updates_done += 1
        for module_id in self.module.keys():  # noqa: SIM118 (a MultiRLModule, not a dict)
            module = self.module[module_id].unwrapped()
            module.agent.after_step(module.nets, self.updates_done, self.total_steps, "main")

    def _plain_step_allowed(self) -> bool:
        """RLlib's step is a plain `optimizer.step()` when gradients are finite, unless a grad scaler
        or RLlib's own lr schedulers are in play (ours set the lr in `set_schedules`)."""
        return self._grad_scalers is None and self._lr_scheduler_classes is None

    def _plain_step(self, gradients_dict) -> None:
        """What RLlib's `apply_gradients` does for finite gradients, without its two per-tensor
        `isfinite(...).all()` checks (2 x parameters tensors synchronised every update: 12 % of a
        256-wide TD-JEPA update on CPU, bench/RESULTS.md)."""
        for pid, grad in gradients_dict.items():
            self._params[pid].grad = grad
        for module_id, names in self._module_optimizers.items():
            for name in names:
                self.get_optimizer(module_id, name).step()


def all_finite(grads: list) -> bool:
    """Whether every gradient is finite, in one fused kernel per device and one host sync
    (the check `torch.cuda.amp.GradScaler` uses, with a unit scale that leaves them unchanged)."""
    if not grads or any(g is None or not g.is_floating_point() for g in grads):
        return False  # let RLlib's path decide
    found = {}
    for grad in grads:
        key = (grad.device, grad.dtype)
        if key not in found:
            found[key] = (torch.zeros((), device=grad.device), [])
        found[key][1].append(grad)
    flags = []
    for (device, _), (flag, group) in found.items():
        try:
            torch._amp_foreach_non_finite_check_and_unscale_(group, flag, torch.ones((), device=device))
        except RuntimeError:  # a dtype/device the fused kernel lacks: RLlib's per-tensor path decides
            return False
        flags.append(flag)
    return not any(bool(f) for f in flags)
