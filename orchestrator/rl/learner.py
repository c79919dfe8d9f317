"""`ZeroShotLearner`: the variant's loss and scalars under RLlib's learner, EMA targets after each update."""
from __future__ import annotations

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner


class ZeroShotLearner(TorchLearner):
    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        """Adam over trainable weights only: the EMA targets are frozen copies."""
        module = self._module[module_id].unwrapped()
        params = [p for p in module.nets.parameters() if p.requires_grad]
        self.register_optimizer(module_id=module_id, optimizer=torch.optim.Adam(params), params=params,
                                lr_or_lr_schedule=config.lr)

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        for key, value in fwd_out.items():
            self.metrics.log_value((module_id, key), value.detach().float().item(), window=1)
        return fwd_out["loss"]

    def apply_gradients(self, gradients_dict) -> None:
        """The optimizer step, then the EMA targets: once per update, however many updates
        one `Learner.update` call runs."""
        super().apply_gradients(gradients_dict)
        for module_id in self.module.keys():  # noqa: SIM118 (a MultiRLModule, not a dict)
            module = self.module[module_id].unwrapped()
            module.agent.after_step(module.nets, 0, 0, "main")
