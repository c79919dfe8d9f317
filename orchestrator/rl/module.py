"""`ZeroShotRLModule`: a zero-shot agent's networks and its task vector z, as an RLlib module.

Pixel data: batches and reward-labelled samples arrive as frame indices; the module gathers their
uint8 frame stacks from the run's `FrameStore` (`model_config["frames"]`, memory-mapped) right
before its networks read them, so no float frames ever travel through RLlib."""
from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch import TorchRLModule

from orchestrator import registry
from orchestrator.rl.data import COLUMNS, OBSERVATION_KEYS
from orchestrator.rl.frames import FrameStore
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
        self._frames = None

    @property
    def frames(self) -> FrameStore | None:
        """The run's frame store (pixel data), opened on first use; None for state data."""
        path = self.model_config.get("frames")
        if path and self._frames is None:
            self._frames = FrameStore.open(path)
        return self._frames

    def stacks(self, indices) -> torch.Tensor:
        """uint8 frame stacks of frame indices, on the module's device."""
        array = indices.cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
        return torch.from_numpy(self.frames.stacks(array)).to(self.task.device)

    def set_task(self, z: torch.Tensor) -> None:
        self.task.copy_(z.reshape(1, -1).to(self.task))

    @torch.no_grad()
    def infer_reward_task(self, next_observations: np.ndarray, rewards: np.ndarray) -> torch.Tensor:
        """z for a reward; with pixel data `next_observations` are frame indices."""
        observations = self.stacks(next_observations) if self.frames is not None else self._tensor(next_observations)
        return self.agent.infer_task(self.nets, observations, self._tensor(rewards))

    @torch.no_grad()
    def infer_goal_task(self, goal: np.ndarray) -> torch.Tensor:
        goal = np.asarray(goal)
        if goal.dtype == np.uint8:  # a frame stack: kept uint8, the encoder scales it
            return self.agent.infer_goal(self.nets, torch.from_numpy(goal).to(self.task.device)[None])[0]
        return self.agent.infer_goal(self.nets, self._tensor(goal).reshape(1, -1))[0]

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=torch.float32, device=self.task.device)

    def _forward_inference(self, batch, **kwargs):
        return {Columns.ACTIONS: self.agent.act(self.nets, batch[Columns.OBS].float(), self.task)}

    def _forward_exploration(self, batch, **kwargs):
        return self._forward_inference(batch)

    def forward_train(self, batch, **kwargs):
        """RLlib's `forward_train`, which calls `self.train()` before every update: a recursive walk
        setting `training` on every submodule (74 for TD-JEPA: ~0.2 ms an update, bench/RESULTS.md).
        The walk runs only when some submodule is not in train mode (after `eval()`, an inference
        pass, or a variant switching one off), so the modes the loss sees are exactly RLlib's."""
        if not all(module.training for module in self.modules()):
            self.train()
        return RLModule.forward_train(self, batch, **kwargs)  # the inference-only check, then `_forward_train`

    def _forward_train(self, batch, **kwargs):
        """The variant's loss (see the module docstring for why it lives in forward)."""
        inputs = {key: batch[col] for key, col in COLUMNS.items() if col in batch}
        if self.frames is not None:
            inputs.update({key: self.stacks(inputs[key]) for key in OBSERVATION_KEYS if key in inputs})
        return self.agent.step(self.nets, inputs, "main")
