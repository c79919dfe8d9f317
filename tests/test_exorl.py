"""Tests for ExoRL-layout data: collection and loading (envs.exorl), task rewards and relabelling
(envs.dmc_tasks), and the RND explorer (envs.exploration)."""

from __future__ import annotations

import ast
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from envs import dm_control_suite, rendering_problem
from envs.cache import META_FILE
from envs.dmc_tasks import DOMAINS, TASKS, load_environment, relabel, task_reward
from envs.exorl import ExplorationConfig, collect, load_exorl
from envs.exploration import RandomNetworkDistillation

LENGTH = 20
WALKER = ExplorationConfig(
    "walker", "random", num_episodes=2, episode_length=LENGTH, episodes_per_task=1
)
# A small agent that starts learning within the first episode, so determinism covers its updates.
POINT_MASS_RND = ExplorationConfig(
    "point_mass",
    "rnd",
    num_episodes=2,
    episode_length=LENGTH,
    episodes_per_task=1,
    rnd_hidden=32,
    rnd_warmup_steps=8,
)
EPISODE_KEYS = {"observation", "action", "reward", "discount", "physics"}


@pytest.fixture(scope="module")
def walker_dir(tmp_path_factory):
    return collect(WALKER, tmp_path_factory.mktemp("walker"))


@pytest.fixture(scope="module")
def rnd_dir(tmp_path_factory):
    return collect(POINT_MASS_RND, tmp_path_factory.mktemp("rnd"))


def _episodes(dataset_dir) -> dict[str, dict[str, np.ndarray]]:
    episodes = {}
    for path in sorted((dataset_dir / "buffer").glob("*.npz")):
        with np.load(path) as data:
            episodes[path.name] = {key: data[key] for key in data.files}
    return episodes


def _assert_same_episodes(first, second) -> None:
    assert first.keys() == second.keys()
    for name in first:
        assert first[name].keys() == second[name].keys()
        for key in first[name]:
            np.testing.assert_array_equal(
                first[name][key], second[name][key], err_msg=f"{name}:{key}"
            )


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def test_files_follow_exorl_layout(walker_dir):
    assert walker_dir.parts[-4:-1] == ("exorl", "walker", "random")
    meta = json.loads((walker_dir / META_FILE).read_text())
    assert meta["episodes"] == ["episode_000000_20.npz", "episode_000001_20.npz"]
    episodes = _episodes(walker_dir)
    assert list(episodes) == meta["episodes"]
    for episode in episodes.values():
        assert set(episode) == EPISODE_KEYS
        assert episode["observation"].shape == (LENGTH + 1, 24)
        assert episode["action"].shape == (LENGTH + 1, 6)
        assert episode["reward"].shape == episode["discount"].shape == (LENGTH + 1, 1)
        assert episode["physics"].shape == (LENGTH + 1, 18)
        for key in ("observation", "action", "reward", "discount"):
            assert episode[key].dtype == np.float32
        assert episode["physics"].dtype == np.float64
        # Row 0 is the dummy first step: a placeholder action and reward.
        assert not episode["action"][0].any() and episode["reward"][0, 0] == 0.0
        assert np.all(episode["discount"] == 1.0)
        assert np.abs(episode["action"]).max() <= 1.0


@pytest.mark.skipif(rendering_problem() is not None, reason=str(rendering_problem()))
def test_pixels_are_stored_when_asked(tmp_path):
    cfg = ExplorationConfig("point_mass", "random", num_episodes=1, episode_length=3, pixels=True)
    (episode,) = _episodes(collect(cfg, tmp_path)).values()
    assert episode["pixels"].shape == (4, 64, 64, 3) and episode["pixels"].dtype == np.uint8
    assert episode["pixels"].std() > 5, "blank frames"


def test_collect_is_idempotent(walker_dir):
    stamps = {path: path.stat().st_mtime_ns for path in walker_dir.rglob("*.*")}
    assert collect(WALKER, walker_dir.parents[3]) == walker_dir
    assert {path: path.stat().st_mtime_ns for path in walker_dir.rglob("*.*")} == stamps


def test_collection_is_deterministic_per_seed(rnd_dir, tmp_path):
    again = collect(POINT_MASS_RND, tmp_path / "again")
    _assert_same_episodes(_episodes(rnd_dir), _episodes(again))
    other_seed = replace(POINT_MASS_RND, seed=1)
    other = _episodes(collect(other_seed, tmp_path / "other"))
    first = _episodes(rnd_dir)["episode_000000_20.npz"]["physics"]
    assert not np.array_equal(other["episode_000000_20.npz"]["physics"], first)


def test_ray_workers_write_the_same_episodes(ray_session, rnd_dir, tmp_path):
    """Shares run as Ray tasks (the orchestrator's map, on the shared test session's Ray) write
    the same episodes as the builtin serial map."""
    from orchestrator.rl.datasets import ray_task_map

    parallel = collect(POINT_MASS_RND, tmp_path, map_fn=ray_task_map)
    _assert_same_episodes(_episodes(rnd_dir), _episodes(parallel))
    assert (parallel / META_FILE).is_file()


def test_collector_runs_its_shares_through_the_given_map(tmp_path):
    """Every share goes through `map_fn` (one call per share), so a caller's map really does the work."""
    calls = []

    def recording_map(fn, items):
        calls.extend(items)
        return map(fn, items)

    cfg = replace(WALKER, episode_length=3)
    collect(cfg, tmp_path, map_fn=recording_map)
    assert calls == [range(1), range(1, 2)]
    assert len(_episodes(collect(cfg, tmp_path, map_fn=recording_map))) == 2 and len(calls) == 2  # cached


def test_envs_never_import_ray():
    """envs/ takes a parallel map from its caller; not even a lazy import of Ray hides in it."""
    envs_dir = Path(__file__).resolve().parents[1] / "envs"
    found = []
    for path in sorted(envs_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] == "ray"]
    assert len(list(envs_dir.glob("*.py"))) > 5 and found == []


# --------------------------------------------------------------------------
# Rewards
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "task"), [("walker", "walk"), ("cheetah", "run"), ("quadruped", "walk")]
)
def test_relabel_matches_dm_control_rewards_on_the_live_env(domain, task):
    env = dm_control_suite().load(domain, task, task_kwargs={"random": 3})
    rng = np.random.default_rng(3)
    spec = env.action_spec()
    env.reset()
    states, live_rewards = [], []
    for _ in range(30):
        timestep = env.step(rng.uniform(spec.minimum, spec.maximum))
        states.append(env.physics.get_state())
        live_rewards.append(timestep.reward)
    relabelled = relabel({"physics": np.stack(states)}, domain, task)
    assert relabelled.shape == (30, 1)
    np.testing.assert_allclose(relabelled[:, 0], live_rewards, rtol=0, atol=1e-6)
    assert np.ptp(live_rewards) > 0, "a constant reward would make this test vacuous"


def test_stored_rewards_are_the_base_task(walker_dir):
    for episode in _episodes(walker_dir).values():
        relabelled = relabel(episode, "walker", DOMAINS["walker"].base_task)
        np.testing.assert_allclose(relabelled[1:], episode["reward"][1:], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def random_states() -> dict[str, np.ndarray]:
    """Physics states of a short random episode per domain."""
    states = {}
    rng = np.random.default_rng(0)
    for domain in DOMAINS:
        env = load_environment(domain)
        env.task.random.seed(0)
        env.reset()
        spec = env.action_spec()
        rows = []
        for _ in range(15):
            env.step(rng.uniform(spec.minimum, spec.maximum))
            rows.append(env.physics.get_state())
        states[domain] = np.stack(rows)
    return states


@pytest.mark.parametrize(
    ("domain", "task"), [(domain, task) for domain in DOMAINS for task in DOMAINS[domain].tasks]
)
def test_every_task_reward_is_finite_in_unit_interval(random_states, domain, task):
    values = relabel({"physics": random_states[domain]}, domain, task)
    assert np.all(np.isfinite(values)) and values.min() >= 0.0 and values.max() <= 1.0


def _reward_at(domain: str, task: str, **state) -> float:
    """Reward of ``task`` in the reset state with some qpos/qvel entries (by joint name) changed."""
    physics = load_environment(domain).physics
    with physics.reset_context():
        for field, values in state.items():
            for joint, value in values.items():
                getattr(physics.named.data, field)[joint] = value
    return task_reward(domain, task)(physics)


def test_custom_rewards_reward_what_they_name():
    assert _reward_at("cheetah", "walk", qvel={"rootx": 3.0}) == pytest.approx(1.0)
    assert _reward_at("cheetah", "walk_backward", qvel={"rootx": 3.0}) == 0.0
    assert _reward_at("cheetah", "walk_backward", qvel={"rootx": -1.0}) == pytest.approx(0.5)
    assert _reward_at("cheetah", "run_backward", qvel={"rootx": -10.0}) == pytest.approx(1.0)
    assert _reward_at("walker", "spin", qvel={"rooty": -6.0}) == pytest.approx(1.0)
    assert _reward_at("walker", "spin") == 0.0
    corner = {"root_x": -0.2, "root_y": 0.2}
    assert _reward_at("point_mass", "reach_top_left", qpos=corner) == pytest.approx(1.0)
    assert _reward_at("point_mass", "reach_bottom_right", qpos=corner) < 1e-6
    standing = {"root": [0.0, 0.0, 0.45, 1.0, 0.0, 0.0, 0.0]}
    upside_down = {"root": [0.0, 0.0, 0.45, 0.0, 1.0, 0.0, 0.0]}
    airborne = {"root": [0.0, 0.0, 0.9, 1.0, 0.0, 0.0, 0.0]}
    assert _reward_at("quadruped", "stand", qpos=standing) == pytest.approx(1.0)
    assert _reward_at("quadruped", "stand", qpos=upside_down) == pytest.approx(0.0)
    assert _reward_at("quadruped", "jump", qpos=standing) == pytest.approx(0.0)
    assert _reward_at("quadruped", "jump", qpos=airborne) == pytest.approx(1.0)


def test_unknown_names_are_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match="walker"):
        task_reward("hopper", "hop")
    with pytest.raises(ValueError, match="spin"):
        task_reward("walker", "flip")
    with pytest.raises(ValueError, match="point_mass"):
        ExplorationConfig("point_mass_maze", "rnd")
    with pytest.raises(ValueError, match="rnd"):
        ExplorationConfig("walker", "ppo")
    assert set(TASKS) == set(DOMAINS)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def test_loader_flattens_episodes_into_aligned_transitions(walker_dir):
    data = load_exorl(walker_dir, task="walk")
    n = 2 * LENGTH
    assert data["observation"].shape == data["next_observation"].shape == (n, 24)
    assert data["action"].shape == (n, 6)
    assert data["discount"].shape == data["reward"].shape == (n,)
    assert data["physics"].shape == data["next_physics"].shape == (n, 18)
    within_episode = np.arange(n - 1) % LENGTH != LENGTH - 1
    np.testing.assert_array_equal(
        data["next_observation"][:-1][within_episode], data["observation"][1:][within_episode]
    )
    episodes = list(_episodes(walker_dir).values())
    stored = np.concatenate([episode["reward"][1:, 0] for episode in episodes])
    np.testing.assert_allclose(data["reward"], stored, rtol=0, atol=1e-6)  # walk is the base task
    np.testing.assert_array_equal(data["observation"][LENGTH], episodes[1]["observation"][0])
    np.testing.assert_array_equal(data["action"][0], episodes[0]["action"][1])
    assert "reward" not in load_exorl(walker_dir / "buffer")


def test_loader_reads_a_plain_exorl_directory(walker_dir, tmp_path):
    buffer = tmp_path / "walker" / "rnd" / "buffer"  # ExoRL's <domain>/<algorithm>/buffer
    buffer.mkdir(parents=True)
    for index, path in enumerate(sorted((walker_dir / "buffer").glob("*.npz"))):
        shutil.copy(path, buffer / f"episode_{index}_{LENGTH}.npz")
    data = load_exorl(tmp_path / "walker" / "rnd", task="stand", max_episodes=1)
    assert data["reward"].shape == (LENGTH,)


def test_missing_data_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "exorl" / "walker" / "rnd" / "0123456789ab"
    with pytest.raises(FileNotFoundError, match="jepa data make exorl_walker_rnd") as error:
        load_exorl(missing)
    assert str(missing) in str(error.value)


# --------------------------------------------------------------------------
# RND
# --------------------------------------------------------------------------


def test_rnd_novelty_falls_on_repeated_states():
    torch.manual_seed(0)
    rnd = RandomNetworkDistillation(obs_dim=4, hidden=64, lr=1e-3)
    seen = torch.randn(64, 4)
    unseen = torch.randn(64, 4) + 3.0
    rnd.obs_stats.update(seen.numpy())
    before = rnd.intrinsic_reward(seen).mean()
    for _ in range(100):
        rnd.train_step(seen)
    assert rnd.intrinsic_reward(seen).mean() < 0.2 * before
    assert rnd.intrinsic_reward(unseen).mean() > 2 * rnd.intrinsic_reward(seen).mean()
