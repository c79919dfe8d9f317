"""TD-JEPA: latent-predictive successor features for zero-shot RL (arXiv 2510.00739).

Two encoders of states: φ (state features, the policy's input) and ψ (task features, z lives
in their span). Two predictors learn, by temporal differences, the discounted sum of the
*other* encoder's future features under the policy for task z:

    Pred_φ(φ(s), a, z) ≈ ψ'(s') + γ Pred_φ'(φ'(s'), a', z)      a' ~ π(s', z)
    Pred_ψ(ψ(s), a, z) ≈ φ'(s') + γ Pred_ψ'(ψ'(s'), a', z)

(primes: EMA targets). Then Q(s, a, z) = Pred_φ(φ(s), a, z)ᵀz for any reward r ≈ ψ'(s')ᵀz,
and a TD3 actor π(φ(s), z) maximises it. Task space is read through the target ψ' everywhere
(goals mixed into training z's, `infer_task`, `infer_goal`): it is what Pred_φ predicts.
An orthonormality penalty on φ and ψ keeps the features from collapsing. Rewards are used
only at test time (`infer_task`).

Data: sizes come from `DataSpec.inputs` (observation and action shapes); batches hold observation, action,
next_observation, optionally future_observation (a later state of the same trajectory) and
reward. `variant.obs=pixels`: observations are stacks of 3 64 × 64 frames, read through one DrQ-style
conv encoder shared by φ and ψ (and its EMA target), randomly shifted in training
(`variants/nn/pixel_encoder.py`).
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
    TanhActor,
    ZeroShotAgent,
    act_with_noise,
    actor_objective,
    least_squares_task,
    no_param_grads,
    orthonormality_penalty,
    project_to_sphere,
    rl_sizes,
    sample_tasks,
    smoothed_target_action,
    with_targets,
)


@dataclass
class TDJEPAConfig:
    name: str = "td_jepa"
    phi_dim: int = 256  # state features (50 on OGBench)
    psi_dim: int = 50  # task features = dimension of z
    hidden: int = 1024
    layers: int = 2
    gamma: float = 0.98
    tau: float = 0.001  # EMA step of the targets (0.005 on OGBench)
    ortho_weight: float = 1.0
    goal_mix: float = 0.5  # share of training z's that are encoded goals
    policy_noise: float = 0.2  # TD3 target policy smoothing
    noise_clip: float = 0.5
    bc_weight: float = 0.0  # behaviour cloning (> 0 on OGBench)
    actor_weight: float = 1.0
    obs: str = "state"  # or "pixels" (with data.pixels=true): the conv encoder in front of φ and ψ


ONLINE = ("phi", "psi", "pred_phi", "pred_psi")  # each has a "target_" EMA copy


def td_error(pred: Tensor, target: Tensor) -> Tensor:
    """Squared TD error summed over feature dimensions, averaged over the batch."""
    return (pred - target).pow(2).sum(-1).mean()


class TDJEPA(PixelObservations, ZeroShotAgent):
    name = "td_jepa"
    host = "rl_zero_shot"
    Config = TDJEPAConfig
    task_key = "psi_dim"
    state_networks = ONLINE

    def build(self, stage: str, previous: nn.ModuleDict | None = None) -> nn.ModuleDict:
        v = self.cfg.variant
        _, action_dim = rl_sizes(self.data_spec)
        encoders, obs_dim = observation_encoders(self.cfg, self.data_spec.inputs)
        phi_dim, psi_dim, hidden, layers = int(v.phi_dim), int(v.psi_dim), int(v.hidden), int(v.layers)
        online = {
            **encoders,
            "phi": ConcatMLP((obs_dim,), hidden, phi_dim, layers),
            "psi": ConcatMLP((obs_dim,), hidden, psi_dim, layers),
            "pred_phi": ConcatMLP((phi_dim, action_dim, psi_dim), hidden, psi_dim, layers),  # -> ψ-space
            "pred_psi": ConcatMLP((psi_dim, action_dim, psi_dim), hidden, phi_dim, layers),  # -> φ-space
        }
        actor = TanhActor((phi_dim, psi_dim), hidden, action_dim, layers)
        return with_targets(online, actor)

    # --- training -----------------------------------------------------------------------
    def losses(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The two objectives, each with a graph only to its own parameters.

        The trainer sums them into one backward, so isolation is built into the graph:
          representation: TD targets, a' and z are computed without grad, so it moves
                          φ, ψ and both predictors, never the actor;
          actor:          φ(s) is detached and Pred_φ runs under `no_param_grads`, so the
                          gradient reaches the action (hence the actor) and nothing else.
        """
        v = self.cfg.variant
        obs, action, next_obs = batch["observation"], batch["action"], batch["next_observation"]
        goal_obs = batch.get("future_observation", next_obs)
        obs, next_obs, goal_obs = augment(modules, self.generator, obs, next_obs, goal_obs)
        with torch.no_grad():
            z = sample_tasks(modules["target_psi"](encode(modules, goal_obs, target=True)), float(v.goal_mix),
                             self.generator)
            next_action = smoothed_target_action(modules["actor"](modules["phi"](encode(modules, next_obs)), z),
                                                 float(v.policy_noise), float(v.noise_clip), self.generator)
            next_target = encode(modules, next_obs, target=True)
            next_phi, next_psi = modules["target_phi"](next_target), modules["target_psi"](next_target)
            gamma = float(v.gamma)
            target_for_phi = next_psi + gamma * modules["target_pred_phi"](next_phi, next_action, z)
            target_for_psi = next_phi + gamma * modules["target_pred_psi"](next_psi, next_action, z)

        features = encode(modules, obs)
        phi, psi = modules["phi"](features), modules["psi"](features)
        td_phi = td_error(modules["pred_phi"](phi, action, z), target_for_phi)
        td_psi = td_error(modules["pred_psi"](psi, action, z), target_for_psi)
        ortho = orthonormality_penalty(phi) + orthonormality_penalty(psi)
        representation = td_phi + td_psi + float(v.ortho_weight) * ortho

        state = phi.detach()
        policy_action = modules["actor"](state, z)
        with no_param_grads(modules["pred_phi"]):
            q = (modules["pred_phi"](state, policy_action, z) * z).sum(-1)
        actor = float(v.actor_weight) * actor_objective(q, policy_action, action, float(v.bc_weight))
        return {"representation": representation, "actor": actor, "td_phi": td_phi, "td_psi": td_psi,
                "ortho": ortho, "q": q.mean()}

    # --- using the representation -------------------------------------------------------
    def features(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> Tensor:
        """φ(observation) as one token [B, 1, phi_dim], the layout the generic probes read."""
        return modules["phi"](encode(modules, batch["observation"]))[:, None]

    @torch.no_grad()
    def infer_task(self, modules: nn.ModuleDict, next_observations: Tensor, rewards: Tensor) -> Tensor:
        """Zero-shot z: least squares of r(s') on ψ'(s') (Q is linear in z through ψ')."""
        psi = in_chunks(lambda o: modules["target_psi"](encode(modules, o, target=True)), next_observations,
                        uses_pixels(self.cfg))
        return least_squares_task(psi, rewards)

    @torch.no_grad()
    def infer_goal(self, modules: nn.ModuleDict, goal_observation: Tensor) -> Tensor:
        """Goal-reaching z: the goal's task features, on the sphere (as the goals mixed in training)."""
        return project_to_sphere(modules["target_psi"](encode(modules, goal_observation, target=True)))

    @torch.no_grad()
    def act(self, modules: nn.ModuleDict, observation: Tensor, z: Tensor, noise: float = 0.0) -> Tensor:
        z = z.expand(observation.shape[0], -1)  # one task for all rows, or one per row
        return act_with_noise(modules["actor"](modules["phi"](encode(modules, observation)), z), noise, self.generator)
