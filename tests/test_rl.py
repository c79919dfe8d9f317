"""The RLlib bridge: zero-shot agents trained on offline data and evaluated through env runners."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from orchestrator import registry
from orchestrator.config import compose_run, to_plain
from orchestrator.datasets import MissingDatasetError
from orchestrator.report import write_report
from orchestrator.results import ResultsStore
from orchestrator.sweep import load_sweep, run_sweep

TINY_AGENT = {
    "td_jepa": ["variant.hidden=64", "variant.phi_dim=16", "variant.psi_dim=8"],
    "fb": ["variant.hidden=64", "variant.z_dim=8"],
}
WALKER = ["data=exorl_walker_random", "data.num_episodes=2", "data.episode_length=100", "data.episodes_per_task=1"]
CUBE = ["data=ogbench_cube_single_play", "data.num_episodes=2", "data.episode_length=60"]


def rl_overrides(storage, variant: str, data: list[str]) -> list[str]:
    return [f"variant={variant}", *data, *TINY_AGENT[variant], f"storage={storage}", "train.batch_size=32",
            "budget.steps=12", "train.log_every=4", "train.checkpoint_every=8", "eval.episodes=2",
            "eval.episode_length=15"]


def module_for(variant: str, data: list[str], tmp_path):
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from orchestrator.rl.data import load_rl_data, rl_spec
    from orchestrator.rl.module import ZeroShotRLModule

    cfg = compose_run(rl_overrides(tmp_path, variant, data))
    data = load_rl_data(cfg)
    spec = rl_spec(data)
    import gymnasium as gym

    module = RLModuleSpec(
        module_class=ZeroShotRLModule,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (data.observation_dim,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (data.action_dim,), np.float32),
        model_config={"run": to_plain(cfg), "inputs": dict(spec.inputs)},
    ).build()
    return module, data


@pytest.mark.slow
@pytest.mark.parametrize("variant, data, kind", [("td_jepa", WALKER, "return"), ("fb", CUBE, "success")])
def test_zero_shot_run_trains_and_evaluates_through_rllib(ray_session, tmp_path, data_root, variant, data, kind):
    from orchestrator.train import launch

    cfg = compose_run(rl_overrides(tmp_path, variant, data))
    launch(cfg, "rl-run")
    store = ResultsStore(tmp_path)
    assert store.runs("adhoc")["status"].to_list()[-1] == "finished"
    final = store.metrics("adhoc", "rl-run").filter(step=12)
    metrics = dict(zip(final["metric"].to_list(), final["value"].to_list()))
    tasks = registry.dataset(cfg.data.name).load(cfg.data, "train").tasks
    for task in tasks:  # one number per task, from episodes an RLlib env runner sampled
        assert f"eval/{task}/{kind}" in metrics
    assert metrics["score"] == pytest.approx(np.mean([metrics[f"eval/{t}/{kind}"] for t in tasks]))
    assert np.isfinite(metrics["loss"]) and final["flops"].max() > 0


def test_rl_module_round_trips_a_checkpoint(tmp_path, data_root):
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModule

    module, data = module_for("td_jepa", WALKER, tmp_path)
    obs = torch.as_tensor(data.transitions["observation"][:5])
    module.set_task(module.infer_reward_task(*data.labelled("walk", 200, seed=0)))
    module.save_to_path(tmp_path / "module")
    restored = RLModule.from_checkpoint(tmp_path / "module")
    for key, value in module.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    act = lambda m: m.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    assert torch.equal(act(module), act(restored))


@pytest.mark.parametrize("variant", ["td_jepa", "fb"])
def test_zero_shot_task_changes_with_the_reward(tmp_path, data_root, variant):
    module, data = module_for(variant, WALKER, tmp_path)
    next_obs, stand = data.labelled("stand", 200, seed=0)
    # two rewards that vary along different state directions (random walker data barely stands or runs)
    upright, fast = next_obs[:, 0] - next_obs[:, 0].mean(), next_obs[:, 8] - next_obs[:, 8].mean()
    z_upright, z_fast = module.infer_reward_task(next_obs, upright), module.infer_reward_task(next_obs, fast)
    assert torch.cosine_similarity(z_upright, z_fast, dim=0) < 0.9
    assert torch.allclose(module.infer_reward_task(next_obs, upright), z_upright)  # a function of the reward only
    assert torch.isfinite(module.infer_reward_task(next_obs, stand)).all()


def test_bad_rl_inputs_give_clear_errors(tmp_path, data_root):
    from orchestrator.rl.data import load_rl_data
    from orchestrator.rl.evaluate import evaluation_tasks

    with pytest.raises(ValueError, match="Unknown ExoRL domain .dog.; known"):
        registry.dataset("exorl_walker_rnd").load(OmegaConf.merge(
            compose_run(rl_overrides(tmp_path, "fb", WALKER)).data, {"domain": "dog"}), "train")
    cfg = compose_run([*rl_overrides(tmp_path, "fb", WALKER), "eval.tasks=[fly]"])
    with pytest.raises(ValueError, match=r"eval.tasks names \['fly'\].*stand"):
        evaluation_tasks(load_rl_data(cfg), cfg)
    cfg = compose_run([*rl_overrides(tmp_path, "fb", WALKER), f"data.path={tmp_path}/absent"])
    with pytest.raises(MissingDatasetError, match="data.path.*Fix"):
        load_rl_data(cfg)
    with pytest.raises(Exception, match="ogbench_nope"):
        compose_run(["variant=fb", "data=ogbench_nope", "budget.steps=1"])


def test_future_observations_stay_in_their_episode():
    from envs.offline import future_rows

    episode = np.repeat(np.arange(4), 25)
    rows = future_rows(episode, 0.9, np.random.default_rng(0))
    assert (episode[rows] == episode).all() and (rows >= np.arange(100)).all()
    assert (rows > np.arange(100)).mean() > 0.5  # mostly later states, not the next one


SWEEP = """
name: rl_tiny
base: {{data: exorl_walker_random, data.num_episodes: 2, data.episode_length: 100, data.episodes_per_task: 1,
        variant.hidden: 64, train.batch_size: 32, budget.steps: 8, train.log_every: 4, train.checkpoint_every: 8,
        eval.episodes: 2, eval.episode_length: 10, eval.tasks: [stand, run]}}
space:
  variant: [td_jepa, fb]
search: {{algorithm: grid, metric: score, mode: max}}
report: {{x: flops_total, y: score, group: variant.name, zero_shot: {{kind: return}}}}
"""


@pytest.mark.slow
def test_rl_sweep_reports_a_zero_shot_table(ray_session, tmp_path, data_root):
    path = tmp_path / "rl.yaml"
    path.write_text(SWEEP.format())
    sweep = load_sweep(path, overrides=[f"storage={tmp_path}"])
    grid = run_sweep(sweep, str(tmp_path))
    assert [r.error for r in grid] == [None, None]
    text = write_report(str(tmp_path), "rl_tiny").read_text()
    assert "Zero-shot return per task" in text
    for cell in ("| exorl_walker_random | stand |", "| exorl_walker_random | (all tasks) |"):
        assert cell in text
    assert "td_jepa" in text and "fb" in text


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["bc", "marwil", "cql", "iql"])
def test_rllib_reference_trains_on_one_task_and_is_charged_measured_flops(ray_session, tmp_path, data_root, variant):
    from orchestrator.train import launch

    cfg = compose_run([f"variant={variant}", "variant.task=run", "variant.hidden=32", *WALKER, f"storage={tmp_path}",
                       "train.batch_size=32", "budget.steps=6", "train.log_every=3", "eval.episodes=2",
                       "eval.episode_length=10"])
    launch(cfg, "reference")
    store = ResultsStore(tmp_path)
    assert store.runs("adhoc")["status"].to_list()[-1] == "finished"
    rows = store.metrics("adhoc", "reference")
    final = rows.filter(step=rows["step"].max())
    assert rows["step"].max() >= 6  # CQL runs 2 updates per iteration and may end one past the budget
    metrics = dict(zip(final["metric"].to_list(), final["value"].to_list()))
    assert "eval/run/return" in metrics and metrics["score"] == metrics["eval/run/return"]
    assert final["flops"].max() > 0  # FlopCounterMode on a real update: RLlib's losses do not trace on meta


def test_rllib_reference_needs_a_task_and_a_step_budget():
    from orchestrator.config import ConfigError

    with pytest.raises(ConfigError, match="variant.task.*Fix: set variant.task"):
        compose_run(["variant=cql", "data=exorl_walker_random", "budget.steps=1"])
    with pytest.raises(ConfigError, match="budget.steps"):
        compose_run(["variant=cql", "variant.task=run", "data=exorl_walker_random", "budget.flops=1e12"])


@pytest.mark.slow
def test_rl_run_resumes_from_its_checkpoint_with_a_larger_budget(ray_session, tmp_path, data_root):
    from orchestrator.train import launch

    base = rl_overrides(tmp_path, "fb", WALKER) + ["eval.tasks=[stand]", "eval.episodes=1"]
    launch(compose_run(base), "resumed")
    launch(compose_run([*base, "budget.steps=16"]), "resumed")  # same run id: continues at step 12
    rows = ResultsStore(tmp_path).metrics("adhoc", "resumed").filter(metric="loss").sort("step")
    assert rows["step"].to_list() == [4, 8, 12, 16]  # nothing replayed, nothing lost


@pytest.mark.slow
def test_two_rllib_learners_train_one_zero_shot_run(ray_session, tmp_path, data_root):
    """train.num_workers=2: two RLlib learner actors (DDP over gloo), each fed by ray.data's streaming split."""
    from orchestrator.train import launch

    cfg = compose_run(rl_overrides(tmp_path, "td_jepa", WALKER) + ["train.num_workers=2", "eval.tasks=[stand]"])
    launch(cfg, "two-learners")
    final = ResultsStore(tmp_path).metrics("adhoc", "two-learners").filter(step=12)
    metrics = dict(zip(final["metric"].to_list(), final["value"].to_list()))
    assert np.isfinite(metrics["loss"]) and "eval/stand/return" in metrics


def test_datasets_a_user_already_has_load_through_data_path(tmp_path, data_root):
    """`data.path` reads an OGBench .npz or an ExoRL buffer instead of generating one."""
    from envs import exorl, ogbench
    from orchestrator.rl.data import load_rl_data

    npz = ogbench.generate(ogbench.OGBenchDataConfig(num_episodes=2, episode_length=30, seed=3), tmp_path / "og")
    cfg = compose_run(["variant=fb", "data=ogbench_cube_single_play", f"data.path={npz}", "budget.steps=1"])
    data = load_rl_data(cfg)
    assert len(data) == 60 and data.task_kind == "goal" and len(data.tasks) == 5
    buffer = exorl.collect(exorl.ExplorationConfig("walker", "random", num_episodes=2, episode_length=20), tmp_path / "ex")
    cfg = compose_run(["variant=td_jepa", "data=exorl_walker_rnd", f"data.path={buffer}", "budget.steps=1"])
    data = load_rl_data(cfg)
    assert len(data) == 40 and data.labelled("walk", 10, seed=0)[1].shape == (10,)


def test_a_fixed_seed_reproduces_a_zero_shot_run(ray_session, tmp_path, data_root):
    """Same seed, same losses at every logged step and the same score, bit for bit (on CPU, same
    thread count); another seed, other batches. 12 updates of 32 rows cross an epoch of the data."""
    from orchestrator.train import launch

    def run(run_id: str, seed: int) -> tuple[list[float], list[float]]:
        launch(compose_run([*rl_overrides(tmp_path, "td_jepa", WALKER), "eval.tasks=[stand]", f"seed={seed}"]), run_id)
        rows = ResultsStore(tmp_path).metrics("adhoc", run_id).sort("step")
        return rows.filter(metric="loss")["value"].to_list(), rows.filter(metric="score")["value"].to_list()

    (loss, score), again, (other_loss, _) = run("seed0", 0), run("seed0-again", 0), run("seed1", 1)
    assert len(loss) == 3 and len(score) == 1
    assert (loss, score) == again
    assert other_loss[0] != loss[0]


def test_each_epoch_of_offline_data_is_reshuffled_from_the_seed(ray_session):
    """The learner's iterator: a fixed seed replays the same batches, yet epochs differ from each other."""
    import ray

    from orchestrator.rl.data import EpochSeededIterator

    def epochs(seed: int) -> list[list[int]]:
        batches = EpochSeededIterator(ray.data.range(64).iterator(), shard=0).iter_torch_batches(
            batch_size=16, local_shuffle_buffer_size=64, local_shuffle_seed=seed)
        return [[int(i) for batch in batches for i in batch["id"]] for _ in range(3)]

    first = epochs(0)
    assert first == epochs(0) and first != epochs(1)
    assert sorted(first[0]) == list(range(64)) and first[0] != first[1] != first[2]
