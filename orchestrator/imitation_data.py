"""Dataset entries of goal-directed manipulation demos (envs/manipulation.py), for the imitation host.

`manip_cube_single`, `manip_puzzle_3x3`: episodes made with OGBench's oracles at each evaluation task, as Ray tasks with a
progress bar; or `data.path=` an HDF5 file or a folder of ACT/ALOHA `episode_<i>.hdf5` files. The
node adds `chunk` (the action chunk k every window carries) and `failed` (what failed and extra
episodes do: drop | jepa | actions). No RLlib here: the registry imports this module to list datasets.
"""
from __future__ import annotations

import dataclasses
import sys
from functools import cache
from pathlib import Path

from envs import manipulation
from orchestrator.datasets import DataError, data_node, generator_config, root_path
from orchestrator.entries import DatasetEntry
from variants.base import DataSpec

DEFAULT_CHUNK = 10  # cube-single demos last ~40-60 steps, puzzle-3x3's ~30-110; ACT's 100 fits its 400-step episodes


def ray_progress_map(fn, items: list) -> list:
    """`map` as Ray tasks of one CPU each, in order, with a progress bar over the tasks."""
    items = list(items)
    if not items:
        return []
    import ray
    from tqdm import tqdm

    from orchestrator.ray_connect import start_ray

    start_ray()
    remote = ray.remote(num_cpus=1)(_call)
    refs = [remote.remote(fn, item) for item in items]
    pending = list(refs)
    with tqdm(total=len(refs), desc="manipulation demos", unit="task", file=sys.stderr) as bar:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            bar.update(len(ready))
    return ray.get(refs)


def _call(fn, item):
    return fn(item)


def _demo_config(cfg) -> manipulation.DemoConfig:
    try:
        return generator_config(manipulation.DemoConfig, cfg)
    except manipulation.DemoError as err:
        raise DataError(f"data: {err}") from None


def source(cfg) -> Path:
    """The user's files (`data.path`), or the generated dataset's directory (made here if missing)."""
    if cfg.get("path"):
        return Path(cfg.path).expanduser()
    return manipulation.generate(_demo_config(cfg), root_path(cfg), map_fn=ray_progress_map)


def prepare(cfg) -> str:
    return str(source(cfg))


def episodes(cfg, split: str) -> list[manipulation.Episode]:
    """A split's episodes: `<dir>/<split>/demos.hdf5` when generated; a user's files serve both splits
    (the last tenth of their episodes is the val split)."""
    try:
        if cfg.get("path"):
            found = manipulation.load_episodes(Path(cfg.path).expanduser())
            cut = len(found) - max(1, len(found) // 10) if len(found) > 1 else len(found)
            return found[:cut] if split == "train" else (found[cut:] or found)
        return manipulation.load_episodes(source(cfg) / split / manipulation.FILE)
    except manipulation.DemoError as err:
        raise DataError(f"data: {err}") from None


def load(cfg, split: str) -> manipulation.DemoWindows:
    try:
        return manipulation.DemoWindows(episodes(cfg, split), int(cfg.chunk), str(cfg.failed))
    except manipulation.DemoError as err:
        raise DataError(f"data: {err}") from None


def spec(cfg) -> DataSpec:
    """Shapes from the env (generated data) or the user's first file; `chunk` sets k."""
    if cfg.get("path"):
        first = episodes(cfg, "train")[0]
        obs_dim, action_dim = first.observations.shape[1], first.actions.shape[1]
    else:
        obs_dim, action_dim = _env_dims(str(cfg.env_name))
    k = int(cfg.chunk)
    inputs = {"observation": (2 * obs_dim,), "actions": (k, action_dim), "action_mask": (k,),
              "next_observations": (k, obs_dim), "next_mask": (k,), "labelled": ()}
    targets = {} if cfg.get("path") else {"future_state": manipulation.OBJECT_STATE_DIM[str(cfg.env_name)]}
    return DataSpec(kind="demos", inputs=inputs, float_targets=targets)


@cache
def _env_dims(env_name: str) -> tuple[int, int]:
    try:
        env = manipulation.make_goal_env(env_name)
    except manipulation.DemoError as err:
        raise DataError(f"data: {err}") from None
    dims = (env.env.observation_space.shape[0], env.action_space.shape[0])
    env.close()
    return dims


def check(cfg) -> None:
    """Cheap checks before Ray starts: the generator's keys, the user's files, the chunk and `failed`."""
    if cfg.get("path"):
        path = Path(cfg.path).expanduser()
        if not path.exists():
            raise DataError(f"data.path: no such file or directory {str(path)!r}. Fix: point data.path at a demos "
                            "HDF5 file or a folder of ACT/ALOHA episode_<i>.hdf5 files, or drop it to generate demos")
        load(cfg, "train")  # reads the files: corrupt ones and a too-long chunk fail here
    else:
        demo = _demo_config(cfg)
        if int(cfg.chunk) > demo.max_steps:
            raise DataError(f"data.chunk={cfg.chunk} is longer than the episodes (at most data.max_steps={demo.max_steps} "
                            f"steps). Fix: use data.chunk between 1 and {demo.max_steps}")
    if str(cfg.failed) not in manipulation.FAILED_CHOICES:
        raise DataError(f"data.failed is {cfg.failed!r}. Fix: use one of {list(manipulation.FAILED_CHOICES)}")
    if int(cfg.chunk) < 1:
        raise DataError(f"data.chunk is {cfg.chunk}. Fix: use a chunk of at least 1 step")


def manipulation_entries() -> list[DatasetEntry]:
    entries = []
    for env_name in manipulation.SUPPORTED:
        name = "manip_" + env_name.replace("-", "_")
        base = data_node(name, manipulation.DemoConfig, env_name=env_name)
        node = dataclasses.make_dataclass(base.__name__, [
            ("chunk", int, dataclasses.field(default=DEFAULT_CHUNK)),
            ("failed", str, dataclasses.field(default="drop")),
            ("path", "str | None", dataclasses.field(default=None))], bases=(base,))
        entries.append(DatasetEntry(
            name, node, f"OGBench {env_name}: oracle demos at the 5 evaluation goals (HDF5), for ACT / ACT-JEPA",
            prepare, spec, load, check))
    return entries
