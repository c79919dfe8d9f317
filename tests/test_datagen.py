"""OGBench generation through a parallel map (issue 23): Ray tasks write the same files as one process,
and every share goes through the map the caller gives."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from envs import ogbench
from envs.cache import META_FILE

# 6 train episodes (shares of 4 + 2) and 1 validation episode: three calls of the map
CUBE = ogbench.OGBenchDataConfig(num_episodes=6, episode_length=25, seed=5)


def files(train_file) -> dict[str, dict[str, np.ndarray]]:
    return {path.name: dict(np.load(path)) for path in sorted(train_file.parent.glob("*.npz"))}


def test_ray_tasks_write_the_files_one_process_writes(ray_session, tmp_path):
    from orchestrator.rl.datasets import ray_task_map

    serial = files(ogbench.generate(CUBE, tmp_path / "serial"))
    parallel_file = ogbench.generate(CUBE, tmp_path / "ray", map_fn=ray_task_map)
    parallel = files(parallel_file)
    assert serial.keys() == parallel.keys() == {"cube-single-play-v0.npz", "cube-single-play-v0-val.npz"}
    for name, arrays in serial.items():
        assert arrays.keys() == parallel[name].keys()
        for key, value in arrays.items():
            assert value.dtype == parallel[name][key].dtype
            np.testing.assert_array_equal(value, parallel[name][key], err_msg=f"{name}:{key}")
    assert serial["cube-single-play-v0.npz"]["observations"].shape[0] == 6 * 26
    assert (parallel_file.parent / META_FILE).is_file()


def test_generation_runs_its_shares_through_the_given_map(tmp_path):
    calls = []

    def recording_map(fn, items):
        calls.extend(items)
        return map(fn, items)

    ogbench.generate(replace(CUBE, episode_length=3), tmp_path, map_fn=recording_map)
    assert calls == [("train", range(4)), ("train", range(4, 6)), ("val", range(1))]
