"""TD-JEPA and FB: losses, gradient isolation, EMA, zero-shot inference, and a tiny MDP (no Ray)."""
from dataclasses import asdict

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from variants.base import DataSpec
from variants.fb import FB, FBConfig
from variants.nn.rl import orthonormality_penalty
from variants.td_jepa import TDJEPA, TDJEPAConfig

OBS, ACT = 2, 2
SPEC = DataSpec(kind="rl", inputs={"observation": (OBS,), "action": (ACT,)})
TINY = {
    TDJEPA: {"phi_dim": 8, "psi_dim": 8, "hidden": 64, "layers": 2, "gamma": 0.9, "tau": 0.02},
    FB: {"z_dim": 8, "hidden": 64, "layers": 2, "gamma": 0.9, "tau": 0.02},
}
REPRESENTATION = {TDJEPA: ("phi", "psi", "pred_phi", "pred_psi"), FB: ("F", "B")}
Z_DIM = 8
VARIANTS = pytest.mark.parametrize("cls", [TDJEPA, FB], ids=["td_jepa", "fb"])


def make(cls, seed=0, **overrides):
    variant_cfg = {**asdict(cls.Config()), **TINY[cls], **overrides}
    cfg = OmegaConf.create({"seed": seed, "variant": variant_cfg})
    variant = cls(cfg, SPEC)
    return variant, variant.build("main")


# --- a 2-D point mass: s' = clip(s + 0.2 a), data from uniform states and actions ----------
def env_step(obs, action):
    return (obs + 0.2 * action).clamp(-1.0, 1.0)


def transitions(generator, n=256, future=False):
    obs = torch.rand(n, OBS, generator=generator) * 2 - 1
    action = torch.rand(n, ACT, generator=generator) * 2 - 1
    batch = {"observation": obs, "action": action, "next_observation": env_step(obs, action)}
    if future:  # any later state of the trajectory would do; two random steps here
        batch["future_observation"] = env_step(batch["next_observation"], torch.rand(n, ACT, generator=generator) * 2 - 1)
    batch["reward"] = batch["next_observation"][:, 0]
    return batch


def go_right(obs):
    return obs[:, 0]


def go_up(obs):
    return obs[:, 1]


def train(variant, modules, steps, generator, lr=1e-3):
    optimizer = torch.optim.Adam([p for p in modules.parameters() if p.requires_grad], lr=lr)
    for step in range(steps):
        out = variant.step(modules, transitions(generator), "main")
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        variant.after_step(modules, step + 1, steps, "main")


def rollout_return(variant, modules, z, reward, generator, horizon=5):
    """Mean reward over a short rollout of the policy for z from uniform start states."""
    obs, total = torch.rand(256, OBS, generator=generator) * 2 - 1, 0.0
    for _ in range(horizon):
        obs = env_step(obs, variant.act(modules, obs, z))
        total += float(reward(obs).mean())
    return total / horizon


# --- the loss ---------------------------------------------------------------------------
def test_configs_match_the_papers_defaults():
    td = TDJEPAConfig()
    assert (td.name, td.phi_dim, td.psi_dim, td.hidden, td.layers, td.gamma, td.tau) == ("td_jepa", 256, 50, 1024, 2, 0.98, 0.001)
    assert (td.goal_mix, td.policy_noise, td.noise_clip, td.bc_weight, td.actor_weight) == (0.5, 0.2, 0.5, 0.0, 1.0)
    assert FBConfig().name == "fb" and FBConfig().z_dim == 50


@VARIANTS
@pytest.mark.parametrize("future", [False, True])
def test_step_returns_finite_scalars(cls, future):
    variant, modules = make(cls, bc_weight=0.5)
    out = variant.step(modules, transitions(torch.Generator().manual_seed(0), future=future), "main")
    assert out["loss"].requires_grad and out["loss"].ndim == 0
    for name, value in out.items():
        assert value.ndim == 0 and torch.isfinite(value), name
        assert name == "loss" or not value.requires_grad, name  # logged scalars carry no graph
    assert variant.trainable(modules, "main") == [*REPRESENTATION[cls], "actor"]  # targets are frozen


def test_orthonormality_penalty_is_smallest_for_orthonormal_features():
    generator = torch.Generator().manual_seed(0)
    orthonormal = torch.linalg.qr(torch.randn(512, 6, generator=generator)).Q * 512 ** 0.5  # E[f fᵀ] = I
    assert orthonormality_penalty(orthonormal) == pytest.approx(-6.0, abs=0.2)  # ||C - I||² - d
    assert orthonormality_penalty(2 * orthonormal) > orthonormality_penalty(orthonormal)
    assert orthonormality_penalty(0.5 * orthonormal) > orthonormality_penalty(orthonormal)


def grads_after(modules, loss) -> dict[str, float]:
    """Gradient norm per module after one backward of `loss` alone (0 where none arrives)."""
    modules.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {name: sum(float(p.grad.norm()) for p in m.parameters() if p.grad is not None) for name, m in modules.items()}


@VARIANTS
def test_each_objective_moves_only_its_own_parameters(cls):
    variant, modules = make(cls, bc_weight=0.5)
    terms = variant.losses(modules, transitions(torch.Generator().manual_seed(0), future=True))

    representation = grads_after(modules, terms["representation"])
    assert representation["actor"] == 0.0
    assert all(representation[name] > 0 for name in REPRESENTATION[cls])

    actor = grads_after(modules, terms["actor"])
    assert actor["actor"] > 0
    assert all(actor[name] == 0.0 for name in REPRESENTATION[cls])

    assert all(norm == 0.0 for name, norm in actor.items() if name.startswith("target_"))
    assert all(p.requires_grad for name in REPRESENTATION[cls] for p in modules[name].parameters())  # restored


@VARIANTS
def test_after_step_moves_targets_by_tau(cls):
    variant, modules = make(cls, tau=0.1)
    with torch.no_grad():
        for name in REPRESENTATION[cls]:
            for p in modules[name].parameters():
                p.add_(torch.randn_like(p))
    before = {name: [p.clone() for p in modules[f"target_{name}"].parameters()] for name in REPRESENTATION[cls]}
    variant.after_step(modules, 1, 10, "main")
    for name in REPRESENTATION[cls]:
        for old, new, online in zip(before[name], modules[f"target_{name}"].parameters(), modules[name].parameters()):
            torch.testing.assert_close(new, old + 0.1 * (online - old))


# --- zero-shot inference ----------------------------------------------------------------
@VARIANTS
def test_inference_returns_task_vectors_on_the_sphere(cls):
    variant, modules = make(cls)
    generator = torch.Generator().manual_seed(0)
    next_obs = torch.rand(512, OBS, generator=generator) * 2 - 1
    z_right, z_up = variant.infer_task(modules, next_obs, go_right(next_obs)), variant.infer_task(modules, next_obs, go_up(next_obs))
    assert z_right.shape == (Z_DIM,)
    assert not torch.allclose(z_right, z_up)
    goal = variant.infer_goal(modules, next_obs[:3])
    assert goal.shape == (3, Z_DIM)
    for z in (z_right, z_up, *goal):
        assert float(z.norm()) == pytest.approx(Z_DIM ** 0.5, rel=1e-4)

    action = variant.act(modules, next_obs[:5], z_right, noise=0.3)
    assert action.shape == (5, ACT) and action.abs().max() <= 1.0
    assert variant.features(modules, {"observation": next_obs[:5]}).shape[:2] == (5, 1)


def test_validate_config_names_a_bad_goal_mix():
    cfg = OmegaConf.create({"seed": 0, "variant": {**asdict(TDJEPAConfig()), "goal_mix": 1.5}})
    problems = []
    TDJEPA.validate_config(cfg, lambda key, problem, fix: problems.append(key))
    assert problems == ["variant.goal_mix"]


def test_sizes_come_from_the_data_spec():
    cfg = OmegaConf.create({"seed": 0, "variant": asdict(TDJEPAConfig())})
    with pytest.raises(ValueError, match="observation"):
        TDJEPA(cfg, DataSpec(kind="rl")).build("main")


@VARIANTS
def test_step_traces_on_the_meta_device(cls):
    """The trainer's FLOP counter runs one step on meta tensors: no data-dependent Python, a scalar
    loss whose backward reaches every trainable weight, and at least the FLOPs of one forward and
    one weight-gradient pass of every trainable matrix over the whole batch."""
    variant, _ = make(cls)
    with torch.device("meta"):
        modules = variant.build("main")
        batch = {k: v.to("meta") for k, v in transitions(torch.Generator().manual_seed(0)).items()}
    with FlopCounterMode(display=False) as counter:
        loss = variant.step(modules, batch, "main")["loss"]
        loss.backward()
    assert loss.device.type == "meta" and loss.shape == ()
    trainable = [(name, p) for name, p in modules.named_parameters() if p.requires_grad]
    assert trainable and [n for n, p in trainable if p.grad is None or p.grad.device.type != "meta"] == []
    rows = batch["observation"].shape[0]
    matrices = sum(p.numel() for _, p in trainable if p.ndim == 2)
    assert counter.get_total_flops() >= 4 * rows * matrices  # 2·rows·numel forward, as much again for the weight's grad


# --- a tiny MDP -------------------------------------------------------------------------
@VARIANTS
def test_policy_for_a_reward_beats_the_policy_for_another_reward(cls):
    """Reward-free training, then z from each reward: each policy wins on its own reward.

    The point mass's rewards are its x (go right) and its y (go up); a random policy scores
    about 0 on both, a perfect one about 0.55. 300 steps (~3 s on one core) suffice for both
    methods on every seed tried; the margin is loose on purpose.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add contention on a shared CPU
    try:
        torch.manual_seed(0)
        variant, modules = make(cls)
        generator = torch.Generator().manual_seed(0)
        train(variant, modules, 300, generator)
        next_obs = torch.rand(1024, OBS, generator=generator) * 2 - 1
        z_right = variant.infer_task(modules, next_obs, go_right(next_obs))
        z_up = variant.infer_task(modules, next_obs, go_up(next_obs))
        right_on_right = rollout_return(variant, modules, z_right, go_right, generator)
        up_on_right = rollout_return(variant, modules, z_up, go_right, generator)
        up_on_up = rollout_return(variant, modules, z_up, go_up, generator)
        right_on_up = rollout_return(variant, modules, z_right, go_up, generator)
    finally:
        torch.set_num_threads(threads)
    assert right_on_right > 0.25 and up_on_up > 0.25
    assert right_on_right > up_on_right + 0.1
    assert up_on_up > right_on_up + 0.1
