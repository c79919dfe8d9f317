"""FB: forward-backward representations for zero-shot RL (Touati & Ollivier, arXiv 2103.07945).

The baseline TD-JEPA is compared with. The successor measure of the policy for task z is
factorised as M^{π_z}(s, a, ds'') ≈ F(s, a, z)ᵀ B(s'') ρ(ds''), with ρ the data distribution.
Its Bellman equation, M = P + γ P M, is fitted by a measure-valued TD loss over pairs of
the batch: the diagonal (s, a) -> its own s' estimates the P term, the off-diagonal s'' are
independent samples of ρ:

    L = E_{s''≠s'}[(F(s,a,z)ᵀB(s'') - γ F'(s',a',z)ᵀB'(s''))²] - 2 E[F(s,a,z)ᵀB(s')]

with a' ~ π(s', z) and primes for EMA targets. B is kept near-orthonormal under ρ, so
Q(s, a, z) = F(s, a, z)ᵀz for any reward with z = E_ρ[r(s) B(s)]; a TD3 actor π(s, z)
maximises it. Single F head (no twin F/pessimism), MLPs throughout.

Data: as TD-JEPA, sizes come from `DataSpec.inputs`; batches hold observation, action,
next_observation, optionally future_observation, and reward (inference only). `variant.obs=pixels`:
frame stacks read through one DrQ-style conv encoder shared by F and B (and its EMA target), randomly
shifted in training, exactly as TD-JEPA's (`variants/nn/pixel_encoder.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from variants.nn.pixel_encoder import (
    PixelObservations,
    augment,
    encode,
    in_chunks,
    observation_encoders,
    uses_pixels,
)
from variants.nn.rl import (
    ConcatMLP,
    OnSphere,
    TanhActor,
    ZeroShotAgent,
    act_with_noise,
    actor_objective,
    no_param_grads,
    off_diagonal_mean,
    orthonormality_penalty,
    project_to_sphere,
    rl_sizes,
    sample_tasks,
    smoothed_target_action,
    with_targets,
)


@dataclass
class FBConfig:
    name: str = "fb"
    z_dim: int = 50
    hidden: int = 1024
    layers: int = 2
    gamma: float = 0.98
    tau: float = 0.01
    ortho_weight: float = 1.0
    goal_mix: float = 0.5
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    bc_weight: float = 0.0
    actor_weight: float = 1.0
    obs: str = "state"  # or "pixels" (with data.pixels=true): the conv encoder in front of F, B and the actor
    # Put every B(s) on the sphere of radius sqrt(z_dim), as FB's reference code does. Off by default (every
    # number on the results pages was measured without it); from pixels B collapsed to rank 1 without it,
    # and this lifted the collapse in a 500-update test (docs/results/td_jepa.md).
    b_norm: bool = False


ONLINE = ("F", "B")  # each has a "target_" EMA copy


def backward_map(net: nn.Module, on_sphere: bool) -> nn.Module:
    return OnSphere(net) if on_sphere else net


def measure_td_loss(m: Tensor, target_m: Tensor) -> tuple[Tensor, Tensor]:
    """(off-diagonal squared TD error, -2 · mean diagonal) of the [B, B] matrices F Bᵀ."""
    return off_diagonal_mean((m - target_m).pow(2)), -2 * m.diagonal().mean()


class FB(PixelObservations, ZeroShotAgent):
    name = "fb"
    host = "rl_zero_shot"
    Config = FBConfig
    task_key = "z_dim"
    state_networks = ONLINE

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        v = self.cfg.variant
        _, action_dim = rl_sizes(self.data_spec)
        encoders, obs_dim = observation_encoders(self.cfg, self.data_spec.inputs)
        z_dim, hidden, layers = int(v.z_dim), int(v.hidden), int(v.layers)
        online = {
            **encoders,
            "F": ConcatMLP((obs_dim, action_dim, z_dim), hidden, z_dim, layers),
            "B": backward_map(ConcatMLP((obs_dim,), hidden, z_dim, layers), bool(v.b_norm)),
        }
        actor = TanhActor((obs_dim, z_dim), hidden, action_dim, layers)
        return with_targets(online, actor)

    # --- training -----------------------------------------------------------------------
    def losses(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The FB and actor objectives, each with a graph only to its own parameters.

        FB: the TD target, a' and z are computed without grad, so it moves F and B only.
        Actor: F runs under `no_param_grads`, so the gradient of Q reaches the action (hence
        the actor) but not F. The trainer's single backward of their sum trains both.
        """
        v = self.cfg.variant
        obs, action, next_obs = batch["observation"], batch["action"], batch["next_observation"]
        goal_obs = batch.get("future_observation", next_obs)
        obs, next_obs, goal_obs = augment(modules, self.generator, obs, next_obs, goal_obs)
        with torch.no_grad():
            z = sample_tasks(modules["B"](encode(modules, goal_obs)), float(v.goal_mix), self.generator)
            next_action = smoothed_target_action(modules["actor"](encode(modules, next_obs), z),
                                                 float(v.policy_noise), float(v.noise_clip), self.generator)
            next_target = encode(modules, next_obs, target=True)
            target_m = modules["target_F"](next_target, next_action, z) @ modules["target_B"](next_target).T

        features, next_features = encode(modules, obs), encode(modules, next_obs)
        b = modules["B"](next_features)
        m = modules["F"](features, action, z) @ b.T
        off_diagonal, diagonal = measure_td_loss(m, float(v.gamma) * target_m)
        ortho = orthonormality_penalty(b)
        representation = off_diagonal + diagonal + float(v.ortho_weight) * ortho

        state = features.detach() if "encoder" in modules else features  # the actor never trains the encoder
        policy_action = modules["actor"](state, z)
        with no_param_grads(modules["F"]):
            q = (modules["F"](state, policy_action, z) * z).sum(-1)
        actor = float(v.actor_weight) * actor_objective(q, policy_action, action, float(v.bc_weight))
        return {"representation": representation, "actor": actor, "fb_offdiag": off_diagonal,
                "fb_diag": diagonal, "ortho": ortho, "q": q.mean()}

    # --- using the representation -------------------------------------------------------
    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        """B(observation) as one token [B, 1, z_dim]: FB's state representation."""
        return modules["B"](encode(modules, batch["observation"]))[:, None]

    @torch.no_grad()
    def infer_task(self, modules: nn.ModuleDict, next_observations: Tensor, rewards: Tensor) -> Tensor:
        """Zero-shot z = E[r(s') B(s')] over reward-labelled samples, on the sphere."""
        b = in_chunks(lambda o: modules["B"](encode(modules, o)), next_observations, uses_pixels(self.cfg))
        return project_to_sphere((rewards.reshape(-1, 1).to(b.dtype) * b).mean(0))

    @torch.no_grad()
    def infer_goal(self, modules: nn.ModuleDict, goal_observation: Tensor) -> Tensor:
        """Goal-reaching z = B(goal) (reward = Dirac at the goal), on the sphere."""
        return project_to_sphere(modules["B"](encode(modules, goal_observation)))

    @torch.no_grad()
    def act(self, modules: nn.ModuleDict, observation: Tensor, z: Tensor, noise: float = 0.0) -> Tensor:
        z = z.expand(observation.shape[0], -1)  # one task for all rows, or one per row
        return act_with_noise(modules["actor"](encode(modules, observation), z), noise, self.generator)
