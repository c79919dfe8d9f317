"""Offline RL dataset entries: ExoRL-style dm_control data and OGBench data, made locally.

Names follow `exorl_<domain>_<policy>` (e.g. `exorl_walker_rnd`) and `ogbench_<dataset>`
(e.g. `ogbench_cube_single_play`). Every node also takes `path=` to read a dataset the user
already has (an ExoRL buffer directory or an OGBench .npz) instead of generating one.
No RLlib here: the registry imports this module to list datasets.
"""
from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from collections.abc import Callable, Iterator
from functools import cache, partial
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from envs import dmc_tasks, exorl, ogbench
from envs.dmc_gym import STACK, DMCTaskEnv, dmc_pixel_env
from envs.dmc_tasks import PIXELS_SIZE
from envs.offline import TRANSITION_KEYS, OfflineRLData, with_future
from orchestrator.datasets import (
    DataError,
    MissingDatasetError,
    data_node,
    generator_config,
    root_path,
)
from orchestrator.entries import DatasetEntry
from orchestrator.rl.frames import FrameRLData, FrameStore, frame_transitions
from variants.base import DataSpec

FUTURE_DISCOUNT = 0.98  # goals for training z's: next states at a geometric offset (mean 50 steps)
RL_KEYS = (*TRANSITION_KEYS, "episode")


def user_path(cfg) -> Path | None:
    """`data.path`, checked: a clear error names the key and the fix when it does not exist."""
    if not cfg.get("path"):
        return None
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise MissingDatasetError(
            f"data.path: no such file or directory {str(path)!r}. Fix: point data.path at your dataset, "
            f"or drop data.path to generate {cfg.name!r} locally (`jepa data make {cfg.name}`)")
    return path


HASH_FILES_UP_TO = 64 << 20  # bytes: smaller sources are hashed whole, larger ones by size and mtime


def source_stamp(cfg) -> list:
    """What the files at `data.path` are now: (name, size, mtime_ns) of each, and a content hash
    when they are small. Part of every derived cache's key, so a rewritten file is never stale."""
    path = user_path(cfg)
    if path is None:
        return []
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [(f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    stamp = [[str(f.relative_to(path)) if path.is_dir() else f.name, *st] for f, st in zip(files, stats)]
    if sum(size for size, _ in stats) <= HASH_FILES_UP_TO:
        digest = hashlib.blake2b(digest_size=16)
        for f in files:
            digest.update(f.read_bytes())
        stamp.append(digest.hexdigest())
    return stamp


def cache_key(data: OfflineRLData, data_cfg, *extra) -> str:
    """Key of a file derived from a dataset: its config, its source files' stamp and its rows' bytes."""
    plain = OmegaConf.to_container(data_cfg, resolve=True) if isinstance(data_cfg, DictConfig) else dict(data_cfg)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(json.dumps([plain, source_stamp(data_cfg), *extra], sort_keys=True, default=str).encode())
    for key in sorted(data.transitions):
        values = np.ascontiguousarray(data.transitions[key])
        digest.update(f"{key}:{values.dtype}:{values.shape}".encode())
        digest.update(values.view(np.uint8).reshape(-1))
    return digest.hexdigest()


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shape of every array in an .npz, from the headers alone (no array is read)."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    if version in readers:
                        shapes[member.removesuffix(".npy")] = tuple(readers[version](handle)[0])
                    else:  # a rare header version: read the array itself
                        with np.load(path, allow_pickle=False) as data:
                            shapes[member.removesuffix(".npy")] = data[member.removesuffix(".npy")].shape
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise DataError(f"data.path: {path} is not a readable .npz file ({err}). Fix: rewrite it with numpy.savez, "
                        "or point data.path at another file") from None
    return shapes


def _expect(where: Path, key: str, shape: tuple, rows: int, width: tuple, fix: str) -> None:
    """One array's shape: `rows` rows (None: any) of `width` each."""
    if shape[1:] != width or (rows is not None and shape[0] != rows):
        wanted = f"[{rows if rows is not None else 'N'}, {', '.join(map(str, width))}]"
        raise DataError(f"data.path: {where}: `{key}` has shape {list(shape)}, the environment needs {wanted}. {fix}")


PIXEL_OBSERVATION = (3 * STACK, PIXELS_SIZE, PIXELS_SIZE)  # data.pixels=true: uint8 stacks of 3 RGB frames


def rl_spec_from_env(env, pixels: bool = False) -> DataSpec:
    """Shapes from the evaluation env, so specs (and FLOP plans) need no data on disk; with `pixels`,
    observations are frame stacks (what pixel data serves, whatever the env's state vector)."""
    obs, act = tuple(env.observation_space.shape), tuple(env.action_space.shape)
    env.close()
    obs = PIXEL_OBSERVATION if pixels else obs
    inputs = {"observation": obs, "action": act, "next_observation": obs, "future_observation": obs}
    return DataSpec(kind="rl", inputs=inputs)


# ---------------------------------------------------------------------------- ExoRL / dm_control
def ray_task_map(fn: Callable, items: list) -> Iterator:
    """`map` as Ray tasks of one CPU each, results in order: the parallel map ExoRL's collector takes.

    Starts (or joins, given RAY_ADDRESS or `jepa data make --address`) Ray only when there is work.
    Every task is submitted at once; the results come back lazily, each as soon as it and the ones
    before it are done, so the caller's progress bar moves while the tasks run.
    """
    if not items:
        return iter(())
    import ray

    from orchestrator.ray_connect import start_ray

    start_ray()
    remote = ray.remote(num_cpus=1)(_call)
    refs = [remote.remote(fn, item) for item in items]
    return (ray.get(ref) for ref in refs)


def _call(fn: Callable, item):
    """What each task runs: Ray decorates plain functions, not the partials the collector maps."""
    return fn(item)


def _exploration(cfg) -> exorl.ExplorationConfig:
    return generator_config(exorl.ExplorationConfig, cfg)


def prepare_exorl(cfg) -> str:
    return str(user_path(cfg) or exorl.collect(_exploration(cfg), root_path(cfg), map_fn=ray_task_map))


def exorl_spec(cfg) -> DataSpec:
    return _dmc_spec(cfg.domain, bool(cfg.get("pixels", False)))


@cache  # sweeps ask once per trial; building a MuJoCo env each time adds up
def _dmc_spec(domain: str, pixels: bool = False) -> DataSpec:
    return rl_spec_from_env(DMCTaskEnv(domain, max_episode_steps=1), pixels)


EXORL_EPISODE_KEYS = ("observation", "action", "discount", "physics")  # what loading and relabelling read


def check_exorl(cfg) -> None:
    """Every episode of a user's ExoRL directory has the keys and sizes of `data.domain`."""
    path = user_path(cfg)
    if path is None:
        return
    buffer = exorl.buffer_dir(path)
    try:
        files = exorl.episode_files(buffer)
        exorl.check_complete(buffer, exorl.read_meta(buffer), files)
    except (FileNotFoundError, ValueError) as err:
        raise DataError(f"data.path: {err} Fix: point data.path at an ExoRL directory (holding buffer/ or "
                        f"episode_<idx>_<len>.npz files), or drop data.path to make {cfg.name!r} locally") from None
    spec = _dmc_spec(cfg.domain).inputs
    widths = {"observation": tuple(spec["observation"]), "action": tuple(spec["action"]),
              "discount": None, "physics": (_physics_size(cfg.domain),)}
    fix = (f"Fix: use episodes recorded in dm_control {cfg.domain} with ExoRL's keys {list(EXORL_EPISODE_KEYS)}, "
           "or pick the data=exorl_<domain>_<policy> they were recorded in")
    for file in files:
        shapes = npz_shapes(file)
        missing = [key for key in EXORL_EPISODE_KEYS + (("pixels",) if cfg.get("pixels") else ()) if key not in shapes]
        if missing:
            raise DataError(f"data.path: episode {file} lacks {missing} (has {sorted(shapes)}). {fix}")
        rows = shapes["observation"][0]
        for key, width in widths.items():
            if width is None:
                if shapes[key][0] != rows:
                    raise DataError(f"data.path: {file}: `{key}` has {shapes[key][0]} rows, `observation` {rows}. {fix}")
            else:
                _expect(file, key, shapes[key], rows, width, fix)
        if rows < 2:
            raise DataError(f"data.path: episode {file} holds {rows} row(s), too few for one transition. {fix}")


@cache
def _physics_size(domain: str) -> int:
    return int(dmc_tasks.load_environment(domain).physics.get_state().size)


def load_exorl(cfg, split: str) -> OfflineRLData:
    """Transitions (with future states for goal sampling) and per-task rewards from physics."""
    exploration = _exploration(cfg)
    path = user_path(cfg) or exorl.collect(exploration, root_path(cfg), map_fn=ray_task_map)
    flat = exorl.load_exorl(path, domain=cfg.domain)
    rewards = partial(_relabelled, cfg.domain, flat["next_physics"])
    if cfg.get("pixels", False):
        return _exorl_frames(cfg, path, flat, exploration.seed, rewards)
    transitions = with_future({k: flat[k] for k in ("observation", "action", "next_observation", "episode")},
                              FUTURE_DISCOUNT, exploration.seed)
    return OfflineRLData(
        transitions=transitions,
        tasks=tuple(dmc_tasks.TASKS[cfg.domain]),
        task_kind="reward",
        env_maker=DMCTaskEnv,
        env_kwargs={"domain": cfg.domain},
        rewards=rewards,
    )


def _exorl_frames(cfg, path, flat: dict, seed: int, rewards) -> FrameRLData:
    """The same transitions with frame indices for observations; each stored frame kept once."""
    frames, lengths = exorl.load_frames(path)
    index = frame_transitions(lengths)
    if len(index["observation"]) != len(flat["action"]):
        raise DataError(f"data.path: {path}: frames for {len(index['observation'])} transitions, "
                        f"{len(flat['action'])} stored. Fix: re-collect the episodes with data.pixels=true")
    transitions = with_future({"observation": index["observation"], "action": flat["action"],
                               "next_observation": index["next_observation"], "episode": flat["episode"]},
                              FUTURE_DISCOUNT, seed)
    return FrameRLData(transitions=transitions, tasks=tuple(dmc_tasks.TASKS[cfg.domain]), task_kind="reward",
                       env_maker=dmc_pixel_env, env_kwargs={"domain": cfg.domain}, rewards=rewards,
                       frames=FrameStore.from_episodes(frames, index["episode_start"]))


def _relabelled(domain: str, next_physics: np.ndarray, task: str, rows: np.ndarray) -> np.ndarray:
    """The task's reward on arriving in each row's next state, recomputed from physics."""
    return dmc_tasks.relabel({"physics": next_physics[rows]}, domain, task)[:, 0]


def exorl_entries() -> list[DatasetEntry]:
    entries = []
    for domain in dmc_tasks.DOMAINS:
        for policy in exorl.POLICIES:
            name = f"exorl_{domain}_{policy}"
            node = data_node(name, exorl.ExplorationConfig, domain=domain, policy=policy, num_episodes=20)
            entries.append(DatasetEntry(
                name, with_path(node),
                f"dm_control {domain}: reward-free {policy} exploration in ExoRL's layout; tasks {list(dmc_tasks.TASKS[domain])}",
                prepare_exorl, exorl_spec, load_exorl, check_exorl))
    return entries


def with_path(node: type) -> type:
    """Add `path: str | None = None` (a dataset the user already has) to a data node."""
    import dataclasses

    return dataclasses.make_dataclass(node.__name__, [("path", "str | None", dataclasses.field(default=None))], bases=(node,))


# ---------------------------------------------------------------------------- OGBench
def _ogbench(cfg) -> ogbench.OGBenchDataConfig:
    return generator_config(ogbench.OGBenchDataConfig, cfg)


def prepare_ogbench(cfg) -> str:
    return str(user_path(cfg) or ogbench.generate(_ogbench(cfg), root_path(cfg), map_fn=ray_task_map))


def ogbench_spec(cfg) -> DataSpec:
    return _ogbench_spec(cfg.env_name, bool(cfg.get("pixels", False)))


@cache
def _ogbench_spec(env_name: str, pixels: bool = False) -> DataSpec:
    with warnings.catch_warnings():  # OGBench's float64 action bounds: gymnasium warns on every make
        warnings.filterwarnings("ignore", message=".*precision lowered", category=UserWarning)
        return rl_spec_from_env(ogbench.make_env(env_name), pixels)


def check_ogbench(cfg) -> None:
    """A user's OGBench file has the keys and the sizes of the environment it is evaluated in.

    Otherwise a run trains its whole budget and only evaluation fails (networks sized by the
    data, the environment by its own observations).
    """
    path = user_path(cfg)
    if path is None:
        return
    path = ogbench.resolve_dataset(path)
    if not path.is_file():
        raise DataError(f"data.path: {path} is a directory without an OGBench dataset. Fix: point data.path at an "
                        f"OGBench .npz, or at a directory made by `jepa data make {cfg.name}`")
    shapes = npz_shapes(path)
    missing = [key for key in ogbench.REQUIRED_KEYS if key not in shapes]
    if missing:
        raise DataError(f"data.path: {path} is not an OGBench dataset: it lacks {missing} (has {sorted(shapes)}). "
                        f"Fix: use a file with {list(ogbench.REQUIRED_KEYS)} (OGBench's own, or one made by "
                        f"`jepa data make {cfg.name}`)")
    spec = dict(_ogbench_spec(cfg.env_name).inputs)
    if cfg.get("pixels", False):  # one 64 x 64 RGB frame per row
        spec["observation"] = (PIXELS_SIZE, PIXELS_SIZE, 3)
    rows = shapes["observations"][0]
    fix = (f"Fix: use a file recorded in {cfg.env_name} (`jepa data make {cfg.name}` makes one), or pick the "
           "data=ogbench_<env> the file was recorded in")
    for key, width in (("observations", spec["observation"]), ("next_observations", spec["observation"]),
                       ("actions", spec["action"]), ("terminals", ())):
        if key in shapes:
            _expect(path, key, shapes[key], rows, tuple(width) if key != "terminals" else (), fix)
    if rows < 2:
        raise DataError(f"data.path: {path} holds {rows} row(s), too few for one transition. Fix: use a larger file")


def load_ogbench(cfg, split: str) -> OfflineRLData:
    path = user_path(cfg) or ogbench.generate(_ogbench(cfg), root_path(cfg))
    if cfg.get("pixels", False):
        return _ogbench_frames(cfg, path)
    flat = ogbench.load_ogbench(path)
    transitions = with_future({k: flat[k] for k in ("observation", "action", "next_observation", "episode")},
                              FUTURE_DISCOUNT, int(cfg.seed))
    tasks = tuple(f"{ogbench.TASK_PREFIX}{i}" for i in range(1, ogbench.NUM_TASKS + 1))
    return OfflineRLData(transitions=transitions, tasks=tasks, task_kind="goal",
                         env_maker=ogbench.make_env, env_kwargs={"env_name": cfg.env_name})


def ogbench_entries() -> list[DatasetEntry]:
    entries = []
    for env_name in ogbench.SUPPORTED:
        name = "ogbench_" + env_name.replace("-", "_")
        node = with_path(data_node(name, ogbench.OGBenchDataConfig, env_name=env_name))
        entries.append(DatasetEntry(
            name, node, f"OGBench {env_name}: made locally with OGBench's scripted oracles; 5 goal tasks",
            prepare_ogbench, ogbench_spec, load_ogbench, check_ogbench))
    return entries


def _ogbench_frames(cfg, path) -> FrameRLData:
    """Pixel OGBench data: every row's frame once (OGBench's compact layout), frame indices per transition."""
    flat = ogbench.load_ogbench(path, compact=True)
    frames = flat["observation"]
    if frames.dtype != np.uint8 or frames.shape[1:] != (PIXELS_SIZE, PIXELS_SIZE, 3) or "valid" not in flat:
        raise DataError(f"data.path: {path} holds observations {frames.dtype} {list(frames.shape[1:])}, not 64 x 64 "
                        f"uint8 frames, one per row. Fix: make it with `jepa data make {cfg.name} pixels=true`, or drop "
                        "data.pixels for state observations")
    rows = np.flatnonzero(flat["valid"] > 0)
    episode = flat["episode"]
    start = np.r_[True, episode[1:] != episode[:-1]]
    transitions = with_future({"observation": rows, "action": flat["action"][rows], "next_observation": rows + 1,
                               "episode": episode[rows]}, FUTURE_DISCOUNT, int(cfg.seed))
    tasks = tuple(f"{ogbench.TASK_PREFIX}{i}" for i in range(1, ogbench.NUM_TASKS + 1))
    return FrameRLData(transitions=transitions, tasks=tasks, task_kind="goal", env_maker=ogbench.make_pixel_env,
                       env_kwargs={"env_name": cfg.env_name, "render": cfg.render}, frames=FrameStore.from_episodes(frames, start))
