"""Shared pieces of the zero-shot RL variants (TD-JEPA, FB): MLPs, task vectors z, TD3 actor.

Everything here is plain PyTorch. Random draws take the variant's CPU `torch.Generator` and
are moved to the data's device afterwards, so a run is reproducible from `cfg.seed` and the
FLOP tracer (meta device) can run a step.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from variants.base import DataSpec, Variant, ZeroShot
from variants.nn.ema import ema_update, frozen_copy


def rl_sizes(spec: DataSpec) -> tuple[int, int]:
    """(obs_dim, action_dim) from the dataset's per-sample input shapes (`DataSpec.inputs`)."""
    missing = [key for key in ("observation", "action") if key not in spec.inputs]
    if missing:
        raise ValueError(f"DataSpec.inputs lacks {missing}: an RL dataset must give the observation and action shapes")
    return int(spec.inputs["observation"][-1]), int(spec.inputs["action"][-1])


def check_rl_config(cfg, fail) -> None:
    """Cross-key checks shared by the RL variants (see `Variant.validate_config`)."""
    if not 0.0 <= float(cfg.variant.goal_mix) <= 1.0:
        fail("variant.goal_mix", f"is {cfg.variant.goal_mix}, not a probability", "use a value in [0, 1]")


# --- networks ---------------------------------------------------------------------------
def mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    """`layers` hidden layers; the first is Linear-LayerNorm-Tanh so raw inputs of any scale are tamed."""
    blocks: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.Tanh()]
    for _ in range(layers - 1):
        blocks += [nn.Linear(hidden, hidden), nn.ReLU()]
    blocks.append(nn.Linear(hidden, out_dim))
    return nn.Sequential(*blocks)


class ConcatMLP(nn.Module):
    """An MLP of several inputs, concatenated on the last axis (encoders, predictors, F)."""

    def __init__(self, in_dims: tuple[int, ...], hidden: int, out_dim: int, layers: int):
        super().__init__()
        self.net = mlp(sum(in_dims), hidden, out_dim, layers)

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.net(torch.cat(inputs, dim=-1))


class TanhActor(ConcatMLP):
    """Deterministic TD3 actor π(x, z) with actions in [-1, 1]."""

    def forward(self, *inputs: Tensor) -> Tensor:
        return torch.tanh(super().forward(*inputs))


# --- random draws -----------------------------------------------------------------------
def gaussian(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """N(0, I) from the variant's CPU generator, on `like`'s device and dtype."""
    return torch.randn(shape, generator=generator).to(device=like.device, dtype=like.dtype)


def bernoulli(n: int, prob: float, generator: torch.Generator, device: torch.device) -> Tensor:
    return (torch.rand(n, generator=generator) < prob).to(device)


# --- task vectors z ---------------------------------------------------------------------
def project_to_sphere(z: Tensor) -> Tensor:
    """z / ||z|| · sqrt(d): every task vector has the norm of a typical N(0, I) draw."""
    return z * (z.shape[-1] ** 0.5) / z.norm(dim=-1, keepdim=True).clamp_min(1e-8)


class OnSphere(nn.Module):
    """A network whose every output row is put on the sphere of radius sqrt(d) (`project_to_sphere`)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, *inputs: Tensor) -> Tensor:
        return project_to_sphere(self.net(*inputs))


def sample_tasks(goal_z: Tensor, goal_mix: float, generator: torch.Generator) -> Tensor:
    """Training z's: uniform on the sphere, and with probability goal_mix an encoded goal instead.

    Goals (encoded future states of the data) put training z's where zero-shot inference will
    put them; the random ones cover the rest of the sphere.
    """
    n, dim = goal_z.shape
    random_z = project_to_sphere(gaussian((n, dim), generator, goal_z))
    use_goal = bernoulli(n, goal_mix, generator, goal_z.device)
    return torch.where(use_goal[:, None], project_to_sphere(goal_z), random_z)


def least_squares_task(features: Tensor, rewards: Tensor, ridge: float = 1e-6) -> Tensor:
    """z minimising ||features · z - r||² (tiny ridge for rank-deficient batches), on the sphere."""
    features, rewards = features.float(), rewards.float().reshape(-1)
    n, dim = features.shape
    gram = features.T @ features / n + ridge * torch.eye(dim, device=features.device)
    return project_to_sphere(torch.linalg.solve(gram, features.T @ rewards / n))


# --- losses -----------------------------------------------------------------------------
def orthonormality_penalty(features: Tensor) -> Tensor:
    """Unbiased batch estimate of ||E[f fᵀ] - I||²_F, up to the constant d (FB's regulariser).

    ||C - I||² = ||C||² - 2 tr C + d with C = E[f(s) f(s)ᵀ]; ||C||² = E[(f(s)ᵀ f(s'))²] over
    *independent* s, s', so only off-diagonal pairs of the batch's Gram matrix estimate it
    without bias, and tr C = E[||f(s)||²] is the diagonal. Keeps features from collapsing.
    """
    gram = features @ features.T
    return off_diagonal_mean(gram.pow(2)) - 2 * gram.diagonal().mean()


def off_diagonal_mean(matrix: Tensor) -> Tensor:
    """Mean of a square matrix's off-diagonal entries (no boolean mask: traces on the meta device)."""
    n = matrix.shape[0]
    return (matrix.sum() - matrix.diagonal().sum()) / (n * (n - 1))


def smoothed_target_action(action: Tensor, noise: float, clip: float, generator: torch.Generator) -> Tensor:
    """TD3 target policy smoothing: a' + clipped noise, kept in the action box."""
    eps = (gaussian(tuple(action.shape), generator, action) * noise).clamp(-clip, clip)
    return (action + eps).clamp(-1.0, 1.0)


def actor_objective(q: Tensor, policy_action: Tensor, data_action: Tensor, bc_weight: float) -> Tensor:
    """TD3+BC: -Q scaled by its batch mean |Q|, plus bc_weight · ||π(s) - a||².

    The scale makes bc_weight mean the same for any reward scale or z norm (TD3+BC's λ).
    """
    q_term = -(q / q.abs().mean().detach().clamp_min(1e-6)).mean()
    bc_term = (policy_action - data_action).pow(2).sum(-1).mean()
    return q_term + bc_weight * bc_term


@contextlib.contextmanager
def no_param_grads(*modules: nn.Module) -> Iterator[None]:
    """Run modules as fixed functions: gradients reach their inputs but not their weights.

    Autograd records `requires_grad` when an op runs, so a forward inside this block adds no
    edges to these weights even though the same backward also trains them through other terms.
    """
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def act_with_noise(action: Tensor, noise: float, generator: torch.Generator) -> Tensor:
    """Exploration/evaluation action: Gaussian noise of std `noise`, kept in [-1, 1]."""
    if noise <= 0.0:
        return action
    return (action + noise * gaussian(tuple(action.shape), generator, action)).clamp(-1.0, 1.0)


class ZeroShotAgent(ZeroShot, Variant):
    """What TD-JEPA and FB share: a representation loss plus an actor loss in one backward,
    and EMA targets (`target_<name>` for each name in `online`) moved by a fixed τ."""

    # What their RLlib learner always used: Adam at a constant optim.lr, no weight decay, no warm-up.
    optim_defaults = {"name": "adam", "lr": 1e-3, "schedule": "constant", "warmup_frac": 0.0, "weight_decay": 0.0,
                      "final_weight_decay": 0.0, "grad_clip": 0.0}
    online: tuple[str, ...] = ()
    task_key: str = ""  # the variant config field that sizes z

    @property
    def task_dim(self) -> int:
        return int(self.cfg.variant[self.task_key])

    @classmethod
    def validate_config(cls, cfg, fail) -> None:
        check_rl_config(cfg, fail)

    def losses(self, modules: nn.ModuleDict, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def step(self, modules: nn.ModuleDict, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        terms = self.losses(modules, batch)
        loss = terms["representation"] + terms["actor"]
        return {"loss": loss, **{k: t.detach() for k, t in terms.items()}}

    def after_step(self, modules: nn.ModuleDict, step: int, total_steps: int, stage: str) -> None:
        """target ← (1 - τ) target + τ online, a fixed step (no schedule)."""
        for name in self.online:
            ema_update(modules[f"target_{name}"], modules[name], 1.0 - float(self.cfg.variant.tau))


def with_targets(online: dict[str, nn.Module], actor: nn.Module) -> nn.ModuleDict:
    """The online networks, the actor, and a frozen `target_<name>` copy of each online network."""
    targets = {f"target_{name}": frozen_copy(m) for name, m in online.items()}
    return nn.ModuleDict({**online, "actor": actor, **targets})
