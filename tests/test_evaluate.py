"""Evaluations as plug-ins: the registry, the choice from a DataSpec, each probe kind on planted signals,
the random-init and raw-input baselines in a tiny run (cached once), entry points and config errors."""
from __future__ import annotations

import json
import sys
from importlib.metadata import EntryPoint

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from envs.dmc_gym import DMCTaskEnv
from envs.ogbench import make_env as make_ogbench_env
from orchestrator.config import ConfigError, compose_run, to_plain
from orchestrator.evaluate import baselines, registry
from orchestrator.evaluate.base import EvalContext, Evaluation, Features
from orchestrator.results import ResultsStore
from orchestrator.train import train_loop
from tests.conftest import tiny_overrides
from variants.base import DataSpec, Policy, Variant

SIX = {"class_probe", "regression_probe", "dense_probe", "downstream_mlp", "zero_shot_returns", "rollout_success"}


def probe_cfg(probe: str = "linear", epochs: int = 60, lr: float = 1e-2):
    return OmegaConf.create({"eval": {"probe": probe, "epochs": epochs, "lr": lr}, "seed": 0})


def split(tokens: torch.Tensor, targets: dict[str, torch.Tensor], n_train: int) -> tuple[Features, Features]:
    return (Features(tokens[:n_train], {k: v[:n_train] for k, v in targets.items()}),
            Features(tokens[n_train:], {k: v[n_train:] for k, v in targets.items()}))


def test_registry_lists_the_six_kinds():
    assert SIX <= set(registry.evaluations())
    with pytest.raises(Exception, match="known: .*class_probe"):
        registry.evaluation("nope")


def test_the_spec_picks_the_kinds():
    assert registry.choose(DataSpec("video", num_classes={"shape": 4})) == ["class_probe", "feature_stats"]
    assert registry.choose(DataSpec("views", float_targets={"rotation": 1})) == ["regression_probe", "feature_stats"]
    assert registry.choose(DataSpec("image", patch_labels={"segment": 5})) == ["dense_probe"]
    assert registry.choose(DataSpec("rl"), host="rl_zero_shot") == ["zero_shot_returns"]
    assert registry.choose(DataSpec("tabular"), host="imitation") == ["rollout_success"]
    both = DataSpec("views", num_classes={"object": 3}, float_targets={"rotation": 1})
    assert registry.choose(both) == ["class_probe", "regression_probe", "feature_stats"]
    assert registry.choose(both, kinds=["downstream_mlp"]) == ["downstream_mlp"]  # eval.kinds overrides


def test_regression_probe_r2_near_one_on_linear_features_and_near_zero_on_noise():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(600, 4, 16, generator=gen)
    signal = tokens.mean(1) @ torch.randn(16, 2, generator=gen)
    noise = torch.randn(600, 2, generator=gen)
    spec = DataSpec("views", float_targets={"signal": 2, "noise": 2})
    train, val = split(tokens, {"signal": signal, "noise": noise}, 400)
    out = registry.evaluation("regression_probe").score(train, val, spec, probe_cfg())
    assert out["probe_r2_signal"] > 0.95
    assert abs(out["probe_r2_noise"]) < 0.15


def test_dense_probe_beats_chance_on_a_planted_per_token_signal():
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (300, 8), generator=gen)
    tokens = torch.randn(300, 8, 12, generator=gen) * 0.5
    tokens[..., :3] += torch.nn.functional.one_hot(labels, 3).float()
    spec = DataSpec("image", patch_labels={"segment": 3})
    train, val = split(tokens, {"segment": labels}, 200)
    out = registry.evaluation("dense_probe").score(train, val, spec, probe_cfg(epochs=20))
    assert out["dense_acc_segment"] > 0.8  # chance is 1/3
    assert 0.5 < out["dense_miou_segment"] <= 1.0


def test_downstream_mlp_scores_classes_and_floats():
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randn(600, 3, 8, generator=gen)
    pooled = tokens.mean(1)
    label = (pooled[:, 0] > 0).long()
    value = 2.0 * pooled[:, 1:2] + 3.0
    spec = DataSpec("tabular", num_classes={"label": 2}, float_targets={"value": 1})
    train, val = split(tokens, {"label": label, "value": value}, 400)
    out = registry.evaluation("downstream_mlp").score(train, val, spec, probe_cfg(epochs=15))
    assert set(out) == {"mlp_acc_label", "mlp_rmse_value"}
    assert out["mlp_acc_label"] > 0.85
    assert out["mlp_rmse_value"] < 0.5 * float(value[400:].std())  # far better than predicting the mean


def test_tiny_run_reports_both_baselines_and_caches_the_random_init_one(tmp_path, data_root):
    cfg = compose_run(tiny_overrides(tmp_path, data_root) + ["budget.steps=2", "sweep=baselines", "seed=11"])
    assert cfg.eval.baselines and list(cfg.eval.kinds) == []
    cache = baselines.cache_path(cfg, "main")
    cache.unlink(missing_ok=True)
    metrics = train_loop({"config": to_plain(cfg), "run_id": "b0", "session": "local"})
    names = {f"probe_acc{label}/{base}" for label in ("", "_shape", "_motion") for base in ("random_init", "raw_input")}
    assert names <= set(metrics)
    assert all(0.0 <= metrics[name] <= 1.0 for name in names)
    assert names <= set(ResultsStore(tmp_path).metrics("baselines", "b0")["metric"].to_list())
    assert cache.is_file()
    planted = {k: 0.123 for k in json.loads(cache.read_text())}  # a second run must read, not recompute
    cache.write_text(json.dumps(planted))
    again = train_loop({"config": to_plain(cfg), "run_id": "b1", "session": "local"})
    assert again["probe_acc/random_init"] == 0.123 and again["probe_acc_shape/raw_input"] == 0.123
    assert again["probe_acc"] == metrics["probe_acc"]  # the trained encoder's probe is not cached


def test_concurrent_first_trials_compute_the_baselines_once(tmp_path, data_root):
    """Trials starting together wait on the cache's lock and read the first one's baselines."""
    import threading
    import time

    cfg = compose_run(tiny_overrides(tmp_path, data_root) + ["budget.steps=2", "seed=12"])
    baselines.cache_path(cfg, "main").unlink(missing_ok=True)
    calls, results = [], []

    def compute():
        calls.append(1)
        time.sleep(0.5)
        return {"probe_acc/random_init": 0.5 + len(calls)}

    threads = [threading.Thread(target=lambda: results.append(baselines.cached(cfg, "main", compute))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [{"probe_acc/random_init": 1.5}] * 3


class PlantedEvaluation(Evaluation):
    """A third party's kind: scores how many train samples it saw."""

    name = "planted_count"

    def chosen_for(self, spec, host: str) -> bool:
        return "count" in spec.float_targets

    def score(self, train: Features, val: Features, spec, cfg) -> dict[str, float]:
        return {"planted_count": float(len(train.tokens))}


def test_an_entry_point_evaluation_is_loaded(monkeypatch):
    ep = EntryPoint(name="planted_count", value=f"{__name__}:PlantedEvaluation", group=registry.GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == registry.GROUP else [])
    registry.evaluations.cache_clear()
    try:
        assert SIX | {"planted_count"} <= set(registry.evaluations())
        assert "planted_count" in registry.choose(DataSpec("tabular", float_targets={"count": 1}))
        tokens = torch.zeros(5, 1, 2)
        assert registry.evaluation("planted_count").score(Features(tokens), Features(tokens), None, None) == {"planted_count": 5.0}
    finally:
        monkeypatch.undo()
        registry.evaluations.cache_clear()
    assert "planted_count" not in registry.evaluations()


def test_an_unknown_eval_kind_fails_composing_and_lists_the_known(tmp_path, data_root):
    with pytest.raises(ConfigError, match=r"eval.kinds.*'nope'.*class_probe, dense_probe, downstream_mlp"):
        compose_run(tiny_overrides(tmp_path, data_root) + ["budget.steps=2", "eval.kinds=[class_probe,nope]"])


# ---------------------------------------------------------------------------- rollout success (an `act` policy)
class ConstantPolicy(Variant, Policy):
    """A scripted `Policy`: the same action everywhere (its one parameter is that action)."""

    name, host = "constant_policy", "imitation"

    def __init__(self, value: float, action_dim: int):
        self.value, self.action_dim = value, action_dim

    def build(self, stage, previous=None):
        return nn.ModuleDict({"action": nn.Linear(1, self.action_dim)})

    def act(self, modules, observation):
        return torch.full((observation.shape[0], self.action_dim), self.value)


def rollout_cfg(episodes: int = 3, env_runners: int = 0):
    return OmegaConf.create({"eval": {"episodes": episodes, "episode_length": 15, "env_runners": env_runners}, "seed": 0})


def rollout_metrics(policy: ConstantPolicy, env: dict, cfg) -> dict[str, float]:
    return registry.evaluation("rollout_success").run(EvalContext(policy, policy.build("main"), cfg, env=env))


WALKER = {"maker": DMCTaskEnv, "kwargs": {"domain": "walker"}}
ROLLOUT_KEYS = {"rollout/success", "rollout/success_se", "rollout/return", "rollout/return_se", "rollout/episodes"}


def test_rollout_success_reports_returns_that_follow_the_policy():
    still, pushing = (rollout_metrics(ConstantPolicy(value, 6), WALKER, rollout_cfg()) for value in (0.0, 1.0))
    assert set(still) == set(pushing) == ROLLOUT_KEYS
    assert still["rollout/episodes"] == pushing["rollout/episodes"] == 3
    assert 0.0 <= still["rollout/success"] <= 1.0 and still["rollout/return_se"] >= 0.0
    assert abs(still["rollout/return"] - pushing["rollout/return"]) > 1e-3  # same seeded starts, other actions
    assert rollout_metrics(ConstantPolicy(1.0, 6), WALKER, rollout_cfg())["rollout/return"] == pushing["rollout/return"]


def test_rollout_success_on_an_ogbench_goal_env():
    env = {"maker": make_ogbench_env, "kwargs": {"env_name": "cube-single-play"}}
    out = rollout_metrics(ConstantPolicy(0.0, 5), env, rollout_cfg(episodes=2))
    assert set(out) == ROLLOUT_KEYS and out["rollout/episodes"] == 2
    assert 0.0 <= out["rollout/success"] <= 1.0 and out["rollout/return"] == out["rollout/success"]  # reward 1 at the goal


def test_episode_success_reads_the_env_info_else_termination():
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from orchestrator.rl.policy_module import episode_success

    def episode(infos, terminated):
        ep = SingleAgentEpisode(observations=[0] * len(infos), infos=infos, actions=[0] * (len(infos) - 1),
                                rewards=[0.0] * (len(infos) - 1), len_lookback_buffer=0)
        ep.is_terminated = terminated
        return ep

    assert episode_success(episode([{}, {"success": False}, {"success": True}], False)) == 1.0
    assert episode_success(episode([{}, {"success": False}, {"success": False}], True)) == 0.0
    assert episode_success(episode([{}, {}, {}], True)) == 1.0
    assert episode_success(episode([{}, {}, {}], False)) == 0.0


def test_rollout_success_refuses_a_variant_without_act_or_an_env():
    with pytest.raises(TypeError, match="variants.base.Policy"):
        registry.evaluation("rollout_success").run(EvalContext(object(), None, rollout_cfg(), env=WALKER))
    with pytest.raises(ValueError, match="EvalContext.env"):
        registry.evaluation("rollout_success").run(EvalContext(ConstantPolicy(0.0, 6), None, rollout_cfg()))


@pytest.mark.slow
def test_rollout_success_on_remote_env_runners(ray_session):
    from ray import cloudpickle

    test_module = sys.modules[ConstantPolicy.__module__]
    cloudpickle.register_pickle_by_value(test_module)  # the runners cannot import this test file
    try:
        out = rollout_metrics(ConstantPolicy(0.0, 6), WALKER, rollout_cfg(episodes=4, env_runners=2))
    finally:
        cloudpickle.unregister_pickle_by_value(test_module)
    assert set(out) == ROLLOUT_KEYS and out["rollout/episodes"] == 4
