"""The Variant contract: declared hosts and members, one host -> loop map, optimisers and schedules
from config honoured by every host, and one composed config / one built variant per trial."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from orchestrator import registry, train
from orchestrator.config import ConfigError, compose_run
from orchestrator.optim import lr_at, make_optimizer, set_schedules, weight_decay_at
from tests.conftest import tiny_overrides
from variants.base import (
    HOST_CAPABILITIES,
    HOSTS,
    ContractError,
    Policy,
    RLlibAlgorithm,
    Variant,
    ZeroShot,
    capability_members,
    check_contract,
)

ROOT = Path(__file__).resolve().parents[1]
MIXINS = (ZeroShot, Policy, RLlibAlgorithm)


# ---------------------------------------------------------------------------- declared contract
@pytest.mark.parametrize("name", sorted(registry.variants()))
def test_every_registered_variant_declares_its_host_and_the_members_it_calls(name):
    cls = registry.variant(name)
    check_contract(cls)
    assert cls.host in HOSTS
    assert any("host" in vars(c) for c in cls.__mro__ if c is not Variant)  # declared, not inherited from base
    for mixin in HOST_CAPABILITIES[cls.host]:
        assert issubclass(cls, mixin)
        for member in capability_members(mixin):
            assert getattr(cls, member) is not getattr(mixin, member), f"{name} lacks {mixin.__name__}.{member}"


def _host_calls() -> set[str]:
    """Attribute names the hosts read off a variant (`variant.x`, `self.agent.x`, `module.agent.x`)."""
    names = set()
    for path in (ROOT / "orchestrator").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id in ("variant", "variant_cls")) or (
                    isinstance(owner, ast.Attribute) and owner.attr == "agent"):
                names.add(node.attr)
    return names


def test_every_member_a_host_calls_is_declared_in_the_contract():
    declared = set(dir(Variant)) | set(Variant.__annotations__) | {m for mixin in MIXINS for m in dir(mixin)}
    declared |= {"cfg", "data_spec", "generator"}  # set by Variant.__init__
    called = _host_calls()
    assert {"after_step", "param_groups", "infer_task", "act", "host"} <= called  # the reader sees them
    assert called - declared == set()


def test_nothing_in_the_orchestrator_probes_a_variant_with_getattr():
    for path in (ROOT / "orchestrator").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
                first = ast.unparse(node.args[0])
                assert "variant" not in first and "agent" not in first, f"{path}: {ast.unparse(node)}"


@pytest.mark.parametrize(("body", "message"), [
    ({}, "host=None"),
    ({"host": "supervised"}, "host='supervised'"),
    ({"host": "rl_zero_shot"}, "subclass variants.base.ZeroShot"),
])
def test_a_variant_without_a_valid_host_fails_registration_naming_the_fix(body, message):
    cls = type("Odd", (Variant,), {"name": "odd", **body})
    with pytest.raises(ContractError, match="Fix:") as err:
        check_contract(cls)
    assert message in str(err.value)


def test_a_capability_left_unimplemented_is_named():
    cls = type("HalfAgent", (ZeroShot, Variant), {"name": "half", "host": "rl_zero_shot", "act": lambda *a: None})
    with pytest.raises(ContractError, match=r"\['task_dim', 'infer_task', 'infer_goal'\]"):
        check_contract(cls)


@pytest.mark.parametrize(("name", "runner"), [
    ("vjepa", train.run_ssl), ("salt", train.run_ssl), ("td_jepa", train.run_rl_zero_shot), ("fb", train.run_rl_zero_shot),
    ("bc", train.run_rllib_algorithm), ("marwil", train.run_rllib_algorithm), ("cql", train.run_rllib_algorithm),
    ("iql", train.run_rllib_algorithm), ("act", train.run_imitation), ("act_jepa", train.run_imitation),
])
def test_the_host_map_picks_each_variants_loop(name, runner):
    assert train.host_runner(registry.variant(name)) is runner


def test_an_imitation_variant_with_act_passes_the_contract():
    cls = type("Imitator", (Policy, Variant), {"name": "imitator", "host": "imitation", "act": lambda *a: None})
    check_contract(cls)
    assert train.host_runner(cls) is train.run_imitation


# ---------------------------------------------------------------------------- optimisers and schedules
class Tiny(Variant):
    """Two linear layers; the second at half the lr (a group's `lr_scale`)."""

    name, host = "tiny", "ssl"

    def build(self, stage, previous=None):
        return nn.ModuleDict({"a": nn.Linear(3, 3), "b": nn.Linear(3, 1)})

    def param_groups(self, modules, stage):
        return [{"params": list(modules["a"].parameters())}, {"params": list(modules["b"].parameters()), "lr_scale": 0.5}]


def _train(cfg, steps: int):
    variant = Tiny(cfg, None)
    modules = variant.build("main")
    optimizer = make_optimizer(variant, modules, "main", cfg)
    lrs = []
    for step in range(steps):
        lrs.append(set_schedules(optimizer, cfg, step, steps))
        optimizer.zero_grad()
        modules["b"](modules["a"](torch.ones(4, 3))).sum().backward()
        optimizer.step()
    return optimizer, lrs


def test_sgd_with_a_constant_lr_is_honoured():
    cfg = compose_run(["budget.steps=8", "optim.name=sgd", "optim.schedule=constant", "optim.momentum=0.9",
                       "optim.warmup_frac=0", "optim.lr=0.05"])
    optimizer, lrs = _train(cfg, 8)
    assert type(optimizer) is torch.optim.SGD
    assert lrs == [0.05] * 8
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.025]
    assert all(optimizer.state[p]["momentum_buffer"] is not None for g in optimizer.param_groups for p in g["params"])


def test_adam_with_a_linear_schedule_is_honoured():
    cfg = compose_run(["budget.steps=10", "optim.name=adam", "optim.schedule=linear", "optim.warmup_frac=0.2",
                       "optim.lr=0.1", "optim.min_lr_frac=0"])
    optimizer, lrs = _train(cfg, 10)
    assert type(optimizer) is torch.optim.Adam
    assert lrs[:2] == pytest.approx([0.05, 0.1])  # warm-up over 2 steps
    assert lrs[2:] == pytest.approx([0.1 * (1 - k / 8) for k in range(8)])  # then a straight line to 0
    assert all("exp_avg" in optimizer.state[p] for g in optimizer.param_groups for p in g["params"])


def test_the_default_is_adamw_with_warm_up_then_cosine():
    """The self-supervised default reproduces the schedule every run used before it was configurable."""
    cfg = compose_run(["budget.steps=100"])
    o = cfg.optim
    assert (o.name, o.schedule, o.warmup_frac, o.weight_decay, o.final_weight_decay) == ("adamw", "cosine", 0.1, 0.04, 0.4)
    for step in (0, 5, 10, 50, 99):
        warmup, floor = 10, o.lr * o.min_lr_frac
        old = o.lr * (step + 1) / warmup if step < warmup else \
            floor + (o.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / 90)))
        assert lr_at(cfg, step, 100) == pytest.approx(old, rel=1e-12)
        assert weight_decay_at(cfg, step, 100) == pytest.approx(0.4 - 0.36 * 0.5 * (1 + math.cos(math.pi * step / 100)))
    assert type(_train(cfg, 2)[0]) is torch.optim.AdamW


def test_zero_shot_agents_default_to_constant_lr_adam_without_weight_decay():
    """What their RLlib learner always used: Adam at optim.lr, nothing scheduled, no decay."""
    cfg = compose_run(["variant=td_jepa", "data=exorl_walker_random", "budget.steps=10"])
    assert (cfg.optim.name, cfg.optim.schedule, cfg.optim.weight_decay) == ("adam", "constant", 0.0)
    assert {lr_at(cfg, s, 10) for s in range(10)} == {cfg.optim.lr}


@pytest.mark.parametrize(("overrides", "lr", "clip"), [
    (["variant=vjepa"], 5e-4, 1.0), (["variant=salt"], 5e-4, 1.0),  # issue 14: 1e-3 unclipped collapsed a SALT teacher
    (["variant=td_jepa", "data=exorl_walker_random"], 1e-3, 0.0),
    (["variant=iql", "variant.task=walk", "data=exorl_walker_random"], 1e-3, 0.0),
    (["variant=vjepa", "optim.lr=2e-4", "optim.grad_clip=0"], 2e-4, 0.0),  # the user's value wins
])
def test_lr_and_grad_clip_come_from_the_variant_unless_set(overrides, lr, clip):
    cfg = compose_run([*overrides, "budget.steps=10"])
    assert (cfg.optim.lr, cfg.optim.grad_clip) == (lr, clip)


@pytest.mark.parametrize(("override", "key"), [("optim.name=lamb", "optim.name"), ("optim.schedule=step", "optim.schedule"),
                                               ("optim.momentum=0.9", "optim.momentum")])
def test_bad_optimiser_settings_name_the_key_and_the_fix(override, key):
    with pytest.raises(ConfigError, match=rf"`{key}`.*Fix: "):
        compose_run(["budget.steps=1", override])


# ---------------------------------------------------------------------------- the RLlib learner
def test_the_rllib_learner_uses_param_groups_the_schedule_and_real_steps(ray_session, tmp_path, data_root, monkeypatch):
    """One local learner, 4 updates in 2 `train()` calls: after_step sees steps 1..4 of 4, and the
    optimiser holds the variant's groups at their scheduled (linear) lr."""
    from orchestrator.rl.data import load_rl_data, rl_spec
    from orchestrator.rl.loop import build_algorithm, stop
    from tests.test_rl import WALKER, rl_overrides
    from variants.td_jepa import TDJEPA

    calls = []
    monkeypatch.setattr(TDJEPA, "after_step", lambda self, modules, step, total, stage: calls.append((step, total, stage)))
    base_groups = TDJEPA.param_groups

    def halved_actor(self, modules, stage):  # the actor at half the lr: the learner must keep it
        groups = base_groups(self, modules, stage)
        actor = {id(p) for p in modules["actor"].parameters()}
        split = [{"params": [p for p in g["params"] if (id(p) in actor) == is_actor], **{k: v for k, v in g.items() if k != "params"},
                  **({"lr_scale": 0.5} if is_actor else {})} for g in groups for is_actor in (False, True)]
        return split

    monkeypatch.setattr(TDJEPA, "param_groups", halved_actor)
    cfg = compose_run([*rl_overrides(tmp_path, "td_jepa", WALKER), "budget.steps=4", "optim.schedule=linear",
                       "optim.min_lr_frac=0", "optim.lr=0.01"])
    data = load_rl_data(cfg)
    algo = build_algorithm(cfg, data, rl_spec(data), updates=2, total_steps=4)
    try:
        algo.train()
        algo.train()
        learner = algo.learner_group._learner
        (optimizer,) = learner._named_optimizers.values()
        scales = sorted({g["lr_scale"] for g in optimizer.param_groups})
        lrs = sorted({round(g["lr"], 12) for g in optimizer.param_groups})
    finally:
        stop(algo)
    assert calls == [(1, 4, "main"), (2, 4, "main"), (3, 4, "main"), (4, 4, "main")]
    assert scales == [0.5, 1.0]
    last = lr_at(cfg, 3, 4)  # the 4th update's: step 1 ends the (1-step) warm-up, then 2/3 of the line down
    assert lrs == pytest.approx([0.5 * last, last]) and last == pytest.approx(0.01 / 3)


# ---------------------------------------------------------------------------- compose once, build once
def test_a_trial_composes_its_config_once_and_builds_its_variant_once(ray_session, tmp_path, data_root, monkeypatch):
    """What `sweep.trial` does (compose, then launch inline), counted: the config is composed once,
    and with the driver's FLOP trace shipped (as a sweep does) the variant is built once."""
    from orchestrator import config, sweep
    from orchestrator.budget import plan_run

    counts = {"compose": 0, "variant": 0}
    compose, init = config.compose_run, Variant.__init__

    def counting_compose(*args, **kwargs):
        counts["compose"] += 1
        return compose(*args, **kwargs)

    def counting_init(self, *args, **kwargs):
        counts["variant"] += 1
        init(self, *args, **kwargs)

    overrides = tiny_overrides(tmp_path, data_root) + ["budget.steps=2", "train.inline=always", "sweep=once"]
    driver_cfg = compose_run(overrides)  # the sweep driver plans every trial (and traces its step) first
    plan_run(registry.variant(driver_cfg.variant.name), driver_cfg, registry.dataset(driver_cfg.data.name).spec(driver_cfg.data))
    monkeypatch.setattr(config, "compose_run", counting_compose)
    monkeypatch.setattr(sweep, "compose_run", counting_compose)
    monkeypatch.setattr(Variant, "__init__", counting_init)
    cfg = sweep.compose_run(overrides)
    train.launch(cfg, "once")
    assert counts == {"compose": 1, "variant": 1}
