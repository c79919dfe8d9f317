"""`ZeroShotRLModule`: a zero-shot agent's networks and its task vector z, as an RLlib module."""
from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule

from orchestrator import registry
from orchestrator.rl.data import COLUMNS
from variants.base import DataSpec


class ZeroShotRLModule(TorchRLModule):
    """A zero-shot agent's networks plus the current task vector z."""

    def setup(self):
        run = OmegaConf.create(self.model_config["run"])
        spec = DataSpec(kind="rl", inputs={key: tuple(shape) for key, shape in self.model_config["inputs"].items()})
        self.agent = registry.variant(run.variant.name)(run, spec)
        with torch.random.fork_rng(devices=[]):  # initial weights from the run's seed alone, whatever RLlib drew before
            torch.manual_seed(int(run.seed))
            self.nets = self.agent.build("main")
        self.register_buffer("task", torch.zeros(1, self.agent.task_dim))

    def set_task(self, z: torch.Tensor) -> None:
        self.task.copy_(z.reshape(1, -1).to(self.task))

    @torch.no_grad()
    def infer_reward_task(self, next_observations: np.ndarray, rewards: np.ndarray) -> torch.Tensor:
        return self.agent.infer_task(self.nets, self._tensor(next_observations), self._tensor(rewards))

    @torch.no_grad()
    def infer_goal_task(self, goal: np.ndarray) -> torch.Tensor:
        return self.agent.infer_goal(self.nets, self._tensor(goal).reshape(1, -1))[0]

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=torch.float32, device=self.task.device)

    def _forward_inference(self, batch, **kwargs):
        return {Columns.ACTIONS: self.agent.act(self.nets, batch[Columns.OBS].float(), self.task)}

    def _forward_exploration(self, batch, **kwargs):
        return self._forward_inference(batch)

    def _forward_train(self, batch, **kwargs):
        """The variant's loss (see the module docstring for why it lives in forward)."""
        return self.agent.step(self.nets, {key: batch[col] for key, col in COLUMNS.items() if col in batch}, "main")
