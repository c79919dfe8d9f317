"""Speed paths (issue 23) give the results of the paths they replace: the learner's fused gradient check
against RLlib's per-tensor checks, the module's `forward_train` modes against RLlib's, and the attentive
probe's factored attention against torch's."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from variants.nn.probes import AttentivePooler

OBS, ACT = 24, 6


def learner(tmp_path, stock: bool, module_class=None):
    """A ZeroShotLearner (TD-JEPA, tiny) built in this process; `stock`: RLlib's own apply_gradients;
    `module_class`: a ZeroShotRLModule subclass (default: ZeroShotRLModule)."""
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from orchestrator.config import compose_run, to_plain
    from orchestrator.rl.learner import ZeroShotLearner
    from orchestrator.rl.loop import ZeroShotConfig
    from orchestrator.rl.module import ZeroShotRLModule

    class Stock(ZeroShotLearner):
        def _plain_step_allowed(self) -> bool:
            return False

    cfg = compose_run(["variant=td_jepa", "data=exorl_walker_random", "variant.hidden=32", "variant.phi_dim=8",
                       "variant.psi_dim=4", "budget.steps=4", "optim.schedule=cosine", "optim.warmup_frac=0.5",
                       f"storage={tmp_path}"])
    inputs = {"observation": (OBS,), "action": (ACT,), "next_observation": (OBS,), "future_observation": (OBS,)}
    config = (ZeroShotConfig()
              .environment(observation_space=gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32),
                           action_space=gym.spaces.Box(-1.0, 1.0, (ACT,), np.float32))
              .framework("torch")
              .rl_module(rl_module_spec=RLModuleSpec(module_class=module_class or ZeroShotRLModule,
                                                     model_config={"run": to_plain(cfg), "inputs": inputs, "frames": None}))
              .learners(learner_class=Stock if stock else ZeroShotLearner,
                        learner_config_dict={"run": to_plain(cfg), "total_steps": 4, "start_step": 0}))
    return config.build_learner(env=None, spaces={DEFAULT_MODULE_ID: (config.observation_space, config.action_space)})


def batches(n: int):
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.columns import Columns

    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        yield {DEFAULT_MODULE_ID: {Columns.OBS: torch.randn(16, OBS, generator=g), Columns.NEXT_OBS: torch.randn(16, OBS, generator=g),
                                   "future_obs": torch.randn(16, OBS, generator=g), Columns.ACTIONS: torch.rand(16, ACT, generator=g) * 2 - 1}}


def weights(lrn) -> dict[str, torch.Tensor]:
    from ray.rllib.core import DEFAULT_MODULE_ID

    return {k: v.detach().clone() for k, v in lrn.module[DEFAULT_MODULE_ID].state_dict().items()}


def test_fused_gradient_check_takes_the_same_steps_as_rllibs_own(tmp_path):
    """Same seed, same batches: identical weights after 4 updates (schedules and EMA targets included),
    whether the step goes through our one fused finiteness check or RLlib's per-tensor ones."""
    ours, stock = learner(tmp_path, stock=False), learner(tmp_path, stock=True)
    assert all(torch.equal(a, b) for a, b in zip(weights(ours).values(), weights(stock).values(), strict=True))
    for lrn in (ours, stock):
        torch.manual_seed(1)  # the variant samples task vectors inside its loss
        for batch in batches(4):
            lrn._update(batch)
    after, reference = weights(ours), weights(stock)
    assert ours.updates_done == stock.updates_done == 4
    assert all(torch.equal(after[k], reference[k]) for k in reference)
    assert any(not torch.equal(after[k], v) for k, v in weights(learner(tmp_path, stock=False)).items())  # they moved


def test_a_non_finite_gradient_is_zeroed_as_rllib_does(tmp_path):
    """A NaN gradient leaves the fused path for RLlib's: the tensor is zeroed and the step still taken."""
    from orchestrator.rl.learner import all_finite

    assert all_finite([torch.ones(3), torch.zeros(2, 2)])
    assert not all_finite([torch.ones(3), torch.tensor([1.0, float("inf")])])
    assert not all_finite([torch.tensor([float("nan")])]) and not all_finite([])
    results = []
    for stock in (False, True):
        lrn = learner(tmp_path, stock)
        grads = {pid: torch.full_like(p, 0.1) for pid, p in lrn._params.items()}
        first = next(iter(grads))
        grads[first][..., 0] = float("nan")
        lrn.apply_gradients(grads)
        results.append(weights(lrn))
        assert torch.isfinite(lrn._params[first]).all()
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def stock_module_class():
    """ZeroShotRLModule with RLlib's own `forward_train` (`self.train()` before every update)."""
    from ray.rllib.core.rl_module.torch import TorchRLModule

    from orchestrator.rl.module import ZeroShotRLModule

    class StockModule(ZeroShotRLModule):
        forward_train = TorchRLModule.forward_train

    return StockModule


def modes_seen(lrn) -> list[tuple[str, tuple[bool, ...]]]:
    """Run updates and action passes around mode changes; record, for each forward, every
    submodule's `training` flag as its forward starts (what dropout or batch norm would read)."""
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.columns import Columns

    module = lrn.module[DEFAULT_MODULE_ID].unwrapped()
    submodules = [m for _, m in module.nets.named_modules()]
    seen, phase = [], ["?"]
    for sub in submodules:
        sub.register_forward_pre_hook(lambda m, args: seen.append((phase[0], id(m), m.training)))
    obs = {Columns.OBS: torch.randn(3, OBS)}
    torch.manual_seed(1)
    for step, batch in enumerate(batches(6)):
        if step == 2:
            module.eval()  # the whole module switched off between updates
        if step == 3:
            phase[0] = "inference"
            module.forward_inference(obs)
            phase[0] = "exploration"
            module.forward_exploration(obs)
        if step == 4:
            next(iter(module.nets.children())).eval()  # one network left in eval mode by someone
        phase[0] = f"update {step}"
        lrn._update(batch)
    order = {id(m): i for i, m in enumerate(submodules)}
    return [(ph, order[mid], training) for ph, mid, training in seen]


def test_forward_train_sets_the_same_modes_as_rllibs(tmp_path):
    """Our `forward_train` (mode set only when a submodule is not already training) shows every
    network the same `training` flags as RLlib's (`self.train()` every update): train mode in every
    update, also after `eval()` or one network switched off, eval mode in inference/exploration."""
    ours = modes_seen(learner(tmp_path, stock=False))
    stock = modes_seen(learner(tmp_path, stock=False, module_class=stock_module_class()))
    assert ours == stock
    assert ours and all(training for phase, _, training in ours if phase.startswith("update"))
    assert {phase for phase, _, _ in ours} >= {"inference", "exploration", *(f"update {i}" for i in range(6))}
    assert not any(training for phase, _, training in ours if phase in ("inference", "exploration"))


@pytest.mark.parametrize("heads", [1, 4])
def test_factored_attentive_pooler_equals_torch_attention(heads):
    """One query over [N, L, D] tokens: folding W_k into the query and applying W_v after pooling gives
    nn.MultiheadAttention's output (same parameters), gradients included."""
    torch.manual_seed(0)
    pooler = AttentivePooler(32, heads)
    with torch.no_grad():
        for p in pooler.parameters():
            p.normal_(0.0, 0.3)
    tokens = torch.randn(5, 17, 32, dtype=torch.float64)
    pooler = pooler.double()
    fast = pooler(tokens)
    normed = pooler.norm(tokens)
    reference = pooler.attn(pooler.query.expand(5, -1, -1), normed, normed)[0][:, 0]
    torch.testing.assert_close(fast, reference, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(fast.square().sum(), list(pooler.parameters()))
    expected = torch.autograd.grad(reference.square().sum(), list(pooler.parameters()))
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)
