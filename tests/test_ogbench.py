"""Tests for envs.ogbench: locally made OGBench datasets, their loader and the goal-task envs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from envs import rendering_problem
from envs.cache import META_FILE
from envs.ogbench import (
    RENDER_QUALITY,
    SUPPORTED,
    GoalTaskEnv,
    OGBenchDataConfig,
    collect_split,
    dataset_dir,
    env_id,
    generate,
    load_ogbench,
    make_env,
    make_pixel_env,
)

# OGBench's action_space builds a float64 Box; gymnasium warns each time.
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")

LENGTH = 50  # transitions per episode; rows per episode are LENGTH + 1
CUBE = OGBenchDataConfig("cube-single-play", num_episodes=2, episode_length=LENGTH, seed=0)
FILE_KEYS = {"observations", "actions", "terminals", "qpos", "qvel"}
CUBE_OBS_DIM = 28


def _read(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _val_path(train_path):
    return train_path.with_name(train_path.name.replace(".npz", "-val.npz"))


@pytest.fixture(scope="module")
def cube_path(tmp_path_factory):
    return generate(CUBE, tmp_path_factory.mktemp("cube"))


def test_generation_is_deterministic_per_seed(cube_path, tmp_path):
    again = generate(CUBE, tmp_path / "again")
    other = generate(replace(CUBE, seed=1), tmp_path / "other")
    first, second, third = _read(cube_path), _read(again), _read(other)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert not np.array_equal(first["observations"], third["observations"])
    assert not np.array_equal(first["actions"], third["actions"])
    # The validation split is drawn from its own seeds, not a copy of training episodes.
    val = _read(_val_path(cube_path))
    np.testing.assert_array_equal(val["observations"], _read(_val_path(again))["observations"])
    assert not np.array_equal(val["observations"], first["observations"][: LENGTH + 1])
    # Episodes do not depend on what the env simulated before (here, the training split).
    alone = collect_split(CUBE, "val")
    for key in val:
        np.testing.assert_array_equal(alone[key], val[key], err_msg=key)


def test_layout(cube_path):
    assert cube_path.name == "cube-single-play-v0.npz"
    assert cube_path.parent == dataset_dir(CUBE, cube_path.parents[3])
    meta = json.loads((cube_path.parent / META_FILE).read_text())
    assert meta["fingerprint"] == CUBE.fingerprint() and meta["env_id"] == "cube-single-v0"

    for path, episodes in ((cube_path, CUBE.num_episodes), (_val_path(cube_path), 1)):
        data = _read(path)
        rows = episodes * (LENGTH + 1)
        assert set(data) == FILE_KEYS
        assert data["observations"].dtype == np.float32
        assert data["observations"].shape == (rows, CUBE_OBS_DIM)
        assert data["actions"].dtype == np.float32 and data["actions"].shape == (rows, 5)
        assert np.abs(data["actions"]).max() <= 1.0
        assert data["terminals"].dtype == bool and data["terminals"].shape == (rows,)
        ends = np.flatnonzero(data["terminals"])
        np.testing.assert_array_equal(ends, np.arange(1, episodes + 1) * (LENGTH + 1) - 1)
        assert data["qpos"].dtype == np.float32 and data["qpos"].shape == (rows, 21)
        assert data["qvel"].dtype == np.float32 and data["qvel"].shape == (rows, 20)
        assert np.isfinite(data["observations"]).all()

    # The oracle moves the arm: observations change within an episode.
    data = _read(cube_path)
    assert np.abs(np.diff(data["observations"][: LENGTH + 1, 14:17], axis=0)).max() > 0


def test_cached_dataset_is_reused(cube_path):
    before = cube_path.stat().st_mtime_ns
    assert generate(CUBE, cube_path.parents[3]) == cube_path
    assert cube_path.stat().st_mtime_ns == before


def test_load_never_crosses_episode_ends(cube_path):
    data = load_ogbench(cube_path)
    raw = _read(cube_path)
    n = CUBE.num_episodes * LENGTH
    assert data["observation"].shape == (n, CUBE_OBS_DIM)
    assert data["next_observation"].shape == (n, CUBE_OBS_DIM)
    assert data["action"].shape == (n, 5)
    for key in ("observation", "action", "next_observation", "terminal"):
        assert data[key].dtype == np.float32, key
    assert data["episode"].dtype == np.int64
    np.testing.assert_array_equal(data["episode"], np.repeat(np.arange(CUBE.num_episodes), LENGTH))
    np.testing.assert_array_equal(np.flatnonzero(data["terminal"]), np.arange(1, 3) * LENGTH - 1)

    same = data["episode"][1:] == data["episode"][:-1]
    np.testing.assert_array_equal(
        data["next_observation"][:-1][same], data["observation"][1:][same]
    )
    # Each episode's last transition leads to its last stored row, not to the next episode.
    for e in range(CUBE.num_episodes):
        last = (e + 1) * LENGTH - 1
        np.testing.assert_array_equal(
            data["next_observation"][last], raw["observations"][(e + 1) * (LENGTH + 1) - 1]
        )
    last_rows = [LENGTH, 2 * LENGTH + 1]
    np.testing.assert_array_equal(data["qpos"], np.delete(raw["qpos"], last_rows, 0))

    # OGBench's own loader reads our file the same way.
    from ogbench.utils import load_dataset

    theirs = load_dataset(str(cube_path))
    np.testing.assert_array_equal(data["observation"], theirs["observations"])
    np.testing.assert_array_equal(data["next_observation"], theirs["next_observations"])
    np.testing.assert_array_equal(data["terminal"], theirs["terminals"])


def test_load_compact(cube_path):
    data = load_ogbench(cube_path, compact=True)
    rows = CUBE.num_episodes * (LENGTH + 1)
    assert "next_observation" not in data
    assert data["observation"].shape == (rows, CUBE_OBS_DIM)
    np.testing.assert_array_equal(np.flatnonzero(data["valid"] == 0), [LENGTH, 2 * LENGTH + 1])

    from ogbench.utils import load_dataset

    theirs = load_dataset(str(cube_path), compact_dataset=True)
    np.testing.assert_array_equal(data["valid"], theirs["valids"])
    np.testing.assert_array_equal(data["terminal"], theirs["terminals"])


def test_load_accepts_stored_next_observations(tmp_path):
    observations = np.arange(12, dtype=np.float32).reshape(6, 2)
    path = tmp_path / "transitions.npz"
    np.savez(
        path,
        observations=observations,
        next_observations=observations + 100,
        actions=np.zeros((6, 5), np.float32),
        terminals=np.array([0, 0, 1, 0, 0, 1], np.float32),
    )
    data = load_ogbench(path)
    np.testing.assert_array_equal(data["next_observation"], observations + 100)
    np.testing.assert_array_equal(data["episode"], [0, 0, 0, 1, 1, 1])


def test_missing_file_names_path_and_fix(tmp_path):
    path = tmp_path / "cube-single-play-v0.npz"
    with pytest.raises(FileNotFoundError) as error:
        load_ogbench(path)
    assert str(path) in str(error.value)
    assert "jepa data make ogbench_cube_single_play" in str(error.value)
    assert "envs.ogbench.generate" in str(error.value)


def test_malformed_file_names_missing_keys(tmp_path):
    path = tmp_path / "broken.npz"
    np.savez(path, observations=np.zeros((4, 3), np.float32), actions=np.zeros((4, 5)))
    with pytest.raises(ValueError, match="terminals"):
        load_ogbench(path)


def test_env_ids():
    assert [env_id(name) for name in SUPPORTED] == ["cube-single-v0", "scene-v0", "puzzle-3x3-v0"]


@pytest.mark.parametrize("call", [env_id, make_env, lambda name: OGBenchDataConfig(name)])
def test_unknown_env_name(call):
    with pytest.raises(ValueError) as error:
        call("cube-double-noisy")
    assert all(name in str(error.value) for name in SUPPORTED)


@pytest.fixture(scope="module")
def cube_env():
    env = make_env("cube-single-play", max_episode_steps=20)
    yield env
    env.close()


def test_goal_tasks(cube_env):
    assert isinstance(cube_env, GoalTaskEnv) and cube_env.num_tasks == 5
    assert cube_env.observation_space.shape == (CUBE_OBS_DIM,)
    goals = []
    for task_id in range(1, 6):
        goal = cube_env.set_task(task_id)
        assert goal.dtype == np.float32 and goal.shape == (CUBE_OBS_DIM,)
        assert cube_env.unwrapped.cur_task_id == task_id
        goals.append(goal)
    # The cube's goal position (observation entries 19:22) differs between tasks.
    cube_goals = np.stack(goals)[:, 19:22]
    assert len({tuple(np.round(g, 3)) for g in cube_goals}) == 5

    # The remembered task survives resets without options; explicit options win for one reset.
    cube_env.set_task(3)
    ob, info = cube_env.reset()
    assert cube_env.unwrapped.cur_task_id == 3 and ob.dtype == np.float32
    np.testing.assert_array_equal(info["goal"][19:22], goals[2][19:22])
    cube_env.reset(options={"task_id": 4})
    assert cube_env.unwrapped.cur_task_id == 4
    cube_env.reset()
    assert cube_env.unwrapped.cur_task_id == 3
    with pytest.raises(ValueError):
        cube_env.set_task(6)


def test_random_episode_runs_to_time_limit(cube_env):
    cube_env.set_task(1)
    cube_env.action_space.seed(0)
    steps, done = 0, False
    while not done:
        ob, reward, terminated, truncated, info = cube_env.step(cube_env.action_space.sample())
        assert reward in (0.0, 1.0) and reward == float(info["success"])
        assert ob.shape == (CUBE_OBS_DIM,) and ob.dtype == np.float32
        steps += 1
        done = terminated or truncated
    assert steps <= 20 and (terminated or steps == 20)


def test_success_gives_reward_and_terminates(cube_env):
    cube_env.set_task(2)
    base = cube_env.unwrapped
    target = base._data.mocap_pos[base._cube_target_mocap_ids[0]].copy()
    base._data.joint("object_joint_0").qpos[:3] = target  # put the cube on its goal
    _, reward, terminated, _, info = cube_env.step(np.zeros(5, np.float32))
    assert info["success"] is True and reward == 1.0 and terminated


@pytest.mark.parametrize(
    ("env_name", "obs_dim", "buttons"), [("scene-play", 40, 2), ("puzzle-3x3-play", 55, 9)]
)
def test_scene_and_puzzle(env_name, obs_dim, buttons, tmp_path):
    cfg = OGBenchDataConfig(env_name, num_episodes=1, episode_length=20)
    data = _read(generate(cfg, tmp_path))
    assert data["observations"].shape == (21, obs_dim)
    assert data["button_states"].dtype == np.int64 and data["button_states"].shape == (21, buttons)
    env = make_env(env_name, max_episode_steps=5)
    try:
        assert env.set_task(5).shape == (obs_dim,)
        _, reward, *_ = env.step(np.zeros(5, np.float32))
        assert reward in (0.0, 1.0)
    finally:
        env.close()


def test_markov_oracle(tmp_path):
    cfg = replace(CUBE, num_episodes=1, episode_length=20, oracle="markov")
    markov = _read(generate(cfg, tmp_path))
    assert markov["observations"].shape == (21, CUBE_OBS_DIM)
    assert np.abs(markov["actions"]).max() <= 1.0
    assert dataset_dir(cfg, tmp_path) != dataset_dir(replace(cfg, oracle="plan"), tmp_path)


@pytest.mark.skipif(rendering_problem() is not None, reason=str(rendering_problem()))
def test_light_rendering_survives_recompiles_and_matches_full_quality():
    """`render="light"` must reach every renderer OGBench builds (it recompiles the model on resets) and
    change the frames only slightly: the same state, rendered both ways, differs by a few levels of 255."""
    frames = {}
    for render in ("full", "light"):
        env = make_pixel_env("cube-single-play", render=render)
        env.reset(seed=0)
        renderer = env.unwrapped._renderer
        env.unwrapped.mark_dirty()  # the next reset recompiles OGBench's model and rebuilds its renderer
        env.reset(seed=0)
        assert env.unwrapped._renderer is not renderer
        quality = env.unwrapped._model.vis.quality
        expected = RENDER_QUALITY[render] or {"offsamples": 4, "shadowsize": 4096}
        assert (quality.offsamples, quality.shadowsize) == (expected["offsamples"], expected["shadowsize"])
        frames[render] = env.step(np.zeros(env.action_space.shape, np.float32))[0].astype(np.float64)
        env.close()
    difference = np.abs(frames["light"] - frames["full"])
    assert 0 < difference.mean() < 8, difference.mean()
    with pytest.raises(ValueError, match="render must be one of"):
        OGBenchDataConfig("cube-single-play", pixels=True, render="fast")
