"""OGBench manipulation environments and offline datasets, made on this machine.

OGBench ships its datasets as downloads and our jobs run without network, so
``generate`` makes them here, in OGBench's npz layout, with OGBench's own
scripted oracles driven as its ``data_gen_scripts/generate_manipspace.py``
drives them: the env in ``mode="data_collection"`` with
``terminate_at_goal=False`` scatters objects and arm and picks a subtask, the
oracle for it acts until done, then the env picks the next subtask. "plan"
oracles (with smoothed plan noise) make OGBench's *play* data, the default;
"markov" oracles (closed loop, Gaussian action noise, some random actions)
its *noisy* data. Scene episodes whose cube leaves the camera's view are redone.
``load_ogbench`` reads these files and real OGBench files alike; ``make_env``
gives the evaluation env with OGBench's five goal-conditioned tasks.

Files ``<env_name>-v0.npz`` and ``<env_name>-v0-val.npz`` hold one row per step,
``episode_length + 1`` rows per episode (OGBench: 1001 rows, 1000 transitions):
``observations`` and ``actions`` float32, ``terminals`` bool (True on each
episode's last row, whose action has no stored outcome), ``qpos``/``qvel``
float32 (state of the observation) and, for scene and puzzle, ``button_states``
int64. Episode i of a split draws everything from
``SeedSequence(seed, spawn_key=(split, i, attempt))``; the oracles use numpy's
global generator, seeded per episode and restored after. Same config, same arrays.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NamedTuple

import gymnasium
import numpy as np

from envs.cache import (
    META_FILE,
    config_fingerprint,
    data_root,
    ensure_dataset,
    replace_atomically,
    steps_progress,
    write_json,
)

# Datasets made with OGBench's scripted oracles, named as OGBench names them (without "-v0").
SUPPORTED = ("cube-single-play", "scene-play", "puzzle-3x3-play")
ORACLES = ("plan", "markov")  # OGBench's "play" and "noisy" dataset types

# Bump when the collection code or file contents change so cached datasets are regenerated.
GENERATOR_VERSION = 1
VERSION_SUFFIX = "-v0"
MAKE_HINT = "jepa data make ogbench_{env}"
NUM_TASKS = 5  # OGBench's evaluation goals per environment
TASK_PREFIX = "task"
SPLITS = ("train", "val")

# generate_manipspace.py's defaults.
NOISE_SMOOTHING = 0.5  # plan oracles: std (in steps) of the Gaussian filter on the plan noise
MIN_NORM = 0.4  # markov oracles: smallest norm of a position correction
# Markov action noise relative to the episode's level, per action (x, y, z, yaw, gripper).
MARKOV_NOISE_SCALE = np.array([1.0, 1.0, 1.0, 3.0, 10.0])
SCENE_CUBE_MAX_STEP = 100  # markov cube oracle's step budget in the scene
# Scene health check on the cube's qpos (x, y, z): beyond these it may hide from the camera.
SCENE_CUBE_QPOS = slice(14, 17)
SCENE_MAX_Y = 0.29
SCENE_MIN_Y = -0.3
SCENE_DRAWER_Z = (0.06, 0.08)  # far left is fine only inside the drawer
MAX_ATTEMPTS = 100

REQUIRED_KEYS = ("observations", "actions", "terminals")
INFO_KEYS = ("qpos", "qvel", "button_states")
_FILE_DTYPES = {
    "observations": np.float32,
    "actions": np.float32,
    "terminals": bool,
    "qpos": np.float32,
    "qvel": np.float32,
    "button_states": np.int64,
}


class _EnvSpec(NamedTuple):
    """How OGBench collects one dataset."""

    subtasks: tuple[str, ...]  # values of info["privileged/target_task"], one oracle each
    p_stack: float  # chance that a new cube target is on top of another cube
    p_random_markov: float  # chance of a uniform random action with markov oracles


_SPECS = {
    "cube-single-play": _EnvSpec(("cube",), 0.0, 0.1),
    "scene-play": _EnvSpec(("cube", "button", "drawer", "window"), 0.5, 0.1),
    "puzzle-3x3-play": _EnvSpec(("button",), 0.5, 0.2),
}
assert set(_SPECS) == set(SUPPORTED)


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------


def _check_env_name(env_name: str) -> str:
    """The dataset name without its version suffix; ValueError if not supported."""
    name = env_name.removesuffix(VERSION_SUFFIX)
    if name not in SUPPORTED:
        raise ValueError(f"Unknown OGBench env {env_name!r}; supported: {list(SUPPORTED)}")
    return name


def env_id(env_name: str) -> str:
    """The gymnasium id of a dataset's environment: the dataset type dropped, as OGBench does.

    "cube-single-play" -> "cube-single-v0", "scene-play" -> "scene-v0".
    """
    name = _check_env_name(env_name)
    return name.rsplit("-", 1)[0] + VERSION_SUFFIX


def _ogbench_version() -> str | None:
    try:
        return version("ogbench")
    except PackageNotFoundError:
        return None


def register_envs() -> None:
    """Importing OGBench's manipspace package registers its gymnasium ids."""
    import ogbench.manipspace  # noqa: F401


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class OGBenchDataConfig:
    """Everything that determines a generated dataset, bit for bit (for one OGBench version).

    ``episode_length`` counts transitions, so episodes have ``episode_length + 1``
    rows; OGBench's play data uses 1000. ``oracle`` "plan" makes OGBench's play
    data; "markov" makes its noisy data (with its random-action rate: 0.1 for
    cube and scene, 0.2 for puzzle) under the same file names.
    """

    env_name: str = "cube-single-play"
    num_episodes: int = 20
    episode_length: int = 200
    noise: float = 0.1
    seed: int = 0
    oracle: str = "plan"
    pixels: bool = False  # observations = 64 × 64 renders of OGBench's pixel camera (uint8), as its visual datasets
    render: str = "light"  # pixels only: "light" (no multisampling, small shadow maps: ~3x faster on CPU) or "full"

    def __post_init__(self) -> None:
        _require(self.env_name in SUPPORTED, f"env_name must be one of {list(SUPPORTED)}")
        _require(self.num_episodes >= 1, "num_episodes must be >= 1")
        _require(self.episode_length >= 1, "episode_length must be >= 1")
        _require(self.noise >= 0, "noise must be >= 0")
        _require(self.seed >= 0, "seed must be >= 0")
        _require(self.oracle in ORACLES, f"oracle must be one of {list(ORACLES)}")
        _require(self.render in RENDER_QUALITY, f"render must be one of {list(RENDER_QUALITY)}")

    @property
    def num_val_episodes(self) -> int:
        return max(1, self.num_episodes // 10)

    def fingerprint(self) -> str:
        """Short hash of the config; a new value means the dataset must be generated again.
        `pixels=False` hashes as before the pixel keys existed, so state datasets already made stay valid."""
        return config_fingerprint(self, GENERATOR_VERSION, omit=() if self.pixels else ("pixels", "render"))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"OGBenchDataConfig: {message}")


# --------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------


def _make_oracles(env, cfg: OGBenchDataConfig) -> dict[str, object]:
    """One OGBench oracle per subtask of the environment, configured as its generator does."""
    from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
    from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    classes = {
        "markov": {
            "cube": CubeMarkovOracle,
            "button": ButtonMarkovOracle,
            "drawer": DrawerMarkovOracle,
            "window": WindowMarkovOracle,
        },
        "plan": {
            "cube": CubePlanOracle,
            "button": ButtonPlanOracle,
            "drawer": DrawerPlanOracle,
            "window": WindowPlanOracle,
        },
    }[cfg.oracle]
    if cfg.oracle == "markov":
        common = {"min_norm": MIN_NORM}
    else:
        common = {"noise": cfg.noise, "noise_smoothing": NOISE_SMOOTHING}
    oracles = {}
    for subtask in _SPECS[cfg.env_name].subtasks:
        extra = {}
        if subtask == "button" and cfg.env_name.startswith("puzzle"):
            extra["gripper_always_closed"] = True  # puzzle buttons are pressed with a closed hand
        if cfg.oracle == "markov" and subtask == "cube" and cfg.env_name.startswith("scene"):
            extra["max_step"] = SCENE_CUBE_MAX_STEP
        oracles[subtask] = classes[subtask](env=env, **common, **extra)
    return oracles


@contextmanager
def _global_numpy_seed(seed: np.random.SeedSequence) -> Iterator[None]:
    """Seed numpy's global generator (which OGBench's oracles use), restoring it afterwards."""
    saved = np.random.get_state()
    np.random.seed(seed.generate_state(4))
    try:
        yield
    finally:
        np.random.set_state(saved)


def _episode_seed(cfg: OGBenchDataConfig, split: str, index: int, attempt: int):
    return np.random.SeedSequence(cfg.seed, spawn_key=(SPLITS.index(split), index, attempt))


def _scene_episode_ok(qpos: np.ndarray) -> bool:
    """OGBench's check: the cube never goes far right, nor far left unless in the drawer."""
    cube = qpos[:, SCENE_CUBE_QPOS]
    y, z = cube[:, 1], cube[:, 2]
    too_right = y >= SCENE_MAX_Y
    lost_left = (y <= SCENE_MIN_Y) & ((z < SCENE_DRAWER_Z[0]) | (z > SCENE_DRAWER_Z[1]))
    return not (too_right.any() or lost_left.any())


def _run_episode(
    env, oracles: Mapping[str, object], cfg: OGBenchDataConfig, seed: np.random.SeedSequence
) -> dict[str, np.ndarray]:
    """One episode of ``cfg.episode_length + 1`` rows; the env truncates after that many steps."""
    spec = _SPECS[cfg.env_name]
    env_seed, global_seed, own_seed = seed.spawn(3)
    rng = np.random.default_rng(own_seed)
    markov = cfg.oracle == "markov"
    p_random = spec.p_random_markov if markov else 0.0
    noise_level = rng.uniform(0.0, cfg.noise) if markov else 0.0
    rows = {key: [] for key in _FILE_DTYPES}
    with _global_numpy_seed(global_seed):
        ob, info = env.reset(seed=int(env_seed.generate_state(1)[0]))
        oracle = oracles[info["privileged/target_task"]]
        oracle.reset(ob, info)
        done = False
        while not done:
            if rng.random() < p_random:
                action = rng.uniform(-1.0, 1.0, size=env.action_space.shape)
            else:
                action = np.asarray(oracle.select_action(ob, info), dtype=np.float64)
                if markov:
                    action = action + rng.normal(0.0, noise_level * MARKOV_NOISE_SCALE)
            action = np.clip(action, -1.0, 1.0)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if oracle.done:  # the subtask is over: the env picks the next one
                oracle_ob, oracle_info = env.unwrapped.set_new_target(p_stack=spec.p_stack)
                oracle = oracles[oracle_info["privileged/target_task"]]
                oracle.reset(oracle_ob, oracle_info)
            rows["observations"].append(ob)
            rows["actions"].append(action)
            rows["terminals"].append(done)
            rows["qpos"].append(info["prev_qpos"])  # the state ``ob`` was observed in
            rows["qvel"].append(info["prev_qvel"])
            if "prev_button_states" in info:
                rows["button_states"].append(info["prev_button_states"])
            ob = next_ob
    if len(rows["terminals"]) != cfg.episode_length + 1:
        raise RuntimeError(
            f"{cfg.env_name}: episode ended after {len(rows['terminals'])} steps, "
            f"expected {cfg.episode_length + 1} (did the env terminate at a goal?)"
        )
    dtypes = {**_FILE_DTYPES, "observations": np.uint8} if cfg.pixels else _FILE_DTYPES
    return {key: np.asarray(v, dtype=dtypes[key]) for key, v in rows.items() if v}


def _collect_episode(env, oracles, cfg: OGBenchDataConfig, split: str, index: int):
    for attempt in range(MAX_ATTEMPTS):
        episode = _run_episode(env, oracles, cfg, _episode_seed(cfg, split, index, attempt))
        if not cfg.env_name.startswith("scene") or _scene_episode_ok(episode["qpos"]):
            return episode
    raise RuntimeError(f"{cfg.env_name}: no healthy episode {index} in {MAX_ATTEMPTS} attempts")


PIXELS_SIZE = 64  # OGBench's visual datasets: 64 × 64 frames
PIXELS_RENDERING = "rendering OGBench pixel data (data.pixels=true)"


# OGBench's scenes ask for 4x multisampled frames and 4096² shadow maps: on a software renderer
# (llvmpipe behind EGL, or OSMesa) a 64 × 64 frame of cube-single then costs ~0.2 s. Without
# multisampling and with 64² shadow maps frames differ by ~2/255 per pixel on average and render ~3x
# faster (tests/test_ogbench.py). "full" keeps OGBench's settings, e.g. on a GPU to match its datasets.
RENDER_QUALITY = {"light": {"offsamples": 0, "shadowsize": 64}, "full": {}}


def pixel_kwargs(pixels: bool) -> dict:
    """gymnasium.make keywords of OGBench's pixel observations (its visual-* environments)."""
    return {"ob_type": "pixels", "width": PIXELS_SIZE, "height": PIXELS_SIZE} if pixels else {}


def set_render_quality(env: gymnasium.Env, render: str) -> gymnasium.Env:
    """Apply RENDER_QUALITY[render] whenever OGBench (re)builds its renderer: it recompiles the model
    on resets that change the scene, and the offscreen buffers are sized when the renderer is made."""
    if render not in RENDER_QUALITY:
        raise ValueError(f"render must be one of {list(RENDER_QUALITY)}, got {render!r}")
    base, quality = env.unwrapped, RENDER_QUALITY[render]
    build = base._initialize_renderer

    def build_with_quality():
        for key, value in quality.items():
            setattr(base._model.vis.quality, key, value)
        build()

    base._initialize_renderer = build_with_quality
    if base._renderer is not None:  # already built (made at construction when observations are pixels)
        base._renderer.close()
        build_with_quality()
    return env


def _make_collection_env(cfg: OGBenchDataConfig):
    register_envs()
    if cfg.pixels:
        from envs import require_rendering

        require_rendering(PIXELS_RENDERING)
    env = gymnasium.make(
        env_id(cfg.env_name),
        terminate_at_goal=False,
        mode="data_collection",
        max_episode_steps=cfg.episode_length + 1,
        **pixel_kwargs(cfg.pixels),
    )
    return set_render_quality(env, cfg.render) if cfg.pixels else env


def collect_split(cfg: OGBenchDataConfig, split: str, env=None) -> dict[str, np.ndarray]:
    """All episodes of ``split`` in memory (``num_episodes`` or ``num_val_episodes``)."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; known: {list(SPLITS)}")
    own_env = env is None
    env = _make_collection_env(cfg) if own_env else env
    try:
        return _collect_episodes(env, cfg, split, range(_split_size(cfg, split)))
    finally:
        if own_env:
            env.close()


def _split_size(cfg: OGBenchDataConfig, split: str) -> int:
    return cfg.num_episodes if split == "train" else cfg.num_val_episodes


def _collect_episodes(env, cfg: OGBenchDataConfig, split: str, episodes: range) -> dict[str, np.ndarray]:
    """``episodes`` of ``split`` in sequence, their rows concatenated."""
    oracles = _make_oracles(env, cfg)
    collected = [_collect_episode(env, oracles, cfg, split, i) for i in episodes]
    return {key: np.concatenate([ep[key] for ep in collected]) for key in collected[0]}


# Episodes per call of the parallel map. Each episode draws everything from its own seed and does not
# depend on what the env simulated before (tests/test_ogbench.py), so the files do not depend on it.
EPISODES_PER_TASK = 4
_STATE_ENVS: dict[tuple[str, int], gymnasium.Env] = {}  # one collection env per process and kind, kept across shares


def _task_shares(cfg: OGBenchDataConfig) -> list[tuple[str, range]]:
    """(split, episode range) per call of the parallel map, in file order."""
    return [(split, range(start, min(start + EPISODES_PER_TASK, _split_size(cfg, split))))
            for split in SPLITS for start in range(0, _split_size(cfg, split), EPISODES_PER_TASK)]


def collect_share(cfg: OGBenchDataConfig, share: tuple[str, range]) -> dict[str, np.ndarray]:
    """One share's episodes, the rows of each concatenated: what each task of the parallel map runs.

    State envs are built once per process (MuJoCo compiles the scene: ~2 s) and kept for later shares;
    pixel envs hold a GL context and are closed after their share."""
    split, episodes = share
    if cfg.pixels:
        env = _make_collection_env(cfg)
        try:
            return _collect_episodes(env, cfg, split, episodes)
        finally:
            env.close()
    key = (cfg.env_name, cfg.episode_length)
    if key not in _STATE_ENVS:
        _STATE_ENVS[key] = _make_collection_env(cfg)
    return _collect_episodes(_STATE_ENVS[key], cfg, split, episodes)


def file_names(env_name: str) -> dict[str, str]:
    """OGBench's file names for a dataset: ``<name>-v0.npz`` and ``<name>-v0-val.npz``."""
    name = _check_env_name(env_name) + VERSION_SUFFIX
    return {"train": f"{name}.npz", "val": f"{name}-val.npz"}


def _write_ogbench(cfg: OGBenchDataConfig, map_fn, directory: Path) -> None:
    names = file_names(cfg.env_name)
    shares = _task_shares(cfg)
    parts = {split: [] for split in SPLITS}
    with steps_progress(sum(len(episodes) for _, episodes in shares) * cfg.episode_length, f"ogbench {cfg.env_name}") as bar:
        for (split, episodes), arrays in zip(shares, map_fn(partial(collect_share, cfg), shares), strict=True):
            parts[split].append(arrays)  # in order, as a lazy map (builtin `map`, the orchestrator's Ray map) yields them
            bar.update(len(episodes) * cfg.episode_length)
    shapes = {}
    for split in SPLITS:
        arrays = {key: np.concatenate([part[key] for part in parts[split]]) for key in parts[split][0]}
        shapes[split] = {key: list(value.shape) for key, value in arrays.items()}
        replace_atomically(directory / names[split], partial(np.savez_compressed, **arrays))
    meta = {
        "fingerprint": cfg.fingerprint(),
        "config": asdict(cfg),
        "generator_version": GENERATOR_VERSION,
        "ogbench_version": _ogbench_version(),
        "env_id": env_id(cfg.env_name),
        "files": names,
        "episodes": {"train": cfg.num_episodes, "val": cfg.num_val_episodes},
        "rows_per_episode": cfg.episode_length + 1,
        "shapes": shapes,
    }
    write_json(directory / META_FILE, meta)



def dataset_dir(cfg: OGBenchDataConfig, root: Path | None = None) -> Path:
    """Where the dataset for ``cfg`` lives (whether or not it has been generated)."""
    base = Path(root) if root is not None else data_root()
    return base / "ogbench" / cfg.env_name / cfg.fingerprint()


def generate(cfg: OGBenchDataConfig, root: Path | None = None, map_fn=map) -> Path:
    """Generate the dataset for ``cfg`` unless a complete copy exists; return the train file.

    The validation file (``num_val_episodes`` episodes from their own seeds) lies
    next to it with OGBench's ``-val`` suffix. meta.json is written last, under
    a file lock, so concurrent callers generate once. Episodes are collected in
    shares of ``EPISODES_PER_TASK`` by ``map_fn(collect_share, shares)``: the
    builtin ``map`` (the default) in this process, or the caller's parallel map
    (Ray tasks, say; results in order); the files do not depend on which.
    """
    directory = dataset_dir(cfg, root)
    ensure_dataset(directory, cfg.fingerprint(), partial(_write_ogbench, cfg, map_fn))
    return directory / file_names(cfg.env_name)["train"]


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def _make_hint(path: Path) -> str:
    """The CLI command that makes the dataset a file name points at, when the name says which."""
    match = re.fullmatch(r"(.+?)-v\d+(-val)?\.npz", path.name)
    env = match.group(1) if match and match.group(1) in SUPPORTED else "<env>"
    return MAKE_HINT.format(env=env.replace("-", "_"))


def resolve_dataset(path: Path) -> Path:
    """Accept a dataset directory made by ``generate`` for its train file."""
    if path.is_dir() and (path / META_FILE).is_file():
        return path / json.loads((path / META_FILE).read_text())["files"]["train"]
    return path


def _episode_ids(ends: np.ndarray) -> np.ndarray:
    """Episode index of every row, given the rows that end an episode."""
    return (np.cumsum(ends) - ends).astype(np.int64)


def load_ogbench(path: str | Path, compact: bool = False) -> dict[str, np.ndarray]:
    """Transitions of an OGBench npz (ours or OGBench's own), cut at episode ends as OGBench does.

    Returns ``observation``, ``action``, ``next_observation`` (float32),
    ``terminal`` (float32 [N], 1 at the last transition of each episode),
    ``episode`` (int64 [N]) and, when the file has them, ``qpos``, ``qvel`` and
    ``button_states`` of the observation. The last row of an episode has no
    outcome and yields no transition, so no transition crosses an episode end.

    ``compact`` keeps every row instead, as OGBench's ``compact_dataset`` does:
    no ``next_observation`` (row i + 1 is the outcome of row i where
    ``valid[i]`` is 1), ``valid`` float32 (0 on each episode's last row) and
    ``terminal`` 1 on each episode's last two rows.

    A file that already stores ``next_observations`` holds one transition per
    row; all rows are then valid.
    """
    path = resolve_dataset(Path(path))
    if not path.is_file():
        raise FileNotFoundError(
            f"No OGBench dataset at {path}. Make it with `{_make_hint(path)}` "
            f"(or envs.ogbench.generate), or pass the path of a downloaded OGBench npz."
        )
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in REQUIRED_KEYS if key not in data.files]
        if missing:
            raise ValueError(
                f"{path} is not an OGBench dataset: missing keys {missing} "
                f"(has {sorted(data.files)}); it needs {list(REQUIRED_KEYS)}."
            )
        wanted = (*REQUIRED_KEYS, "next_observations", *INFO_KEYS)
        stored = {key: data[key] for key in wanted if key in data.files}
    lengths = {key: len(value) for key, value in stored.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{path}: arrays differ in length: {lengths}")
    ends = stored["terminals"].astype(bool).reshape(-1)
    if len(ends):
        ends[-1] = True  # a file cut mid-episode still ends there
    info = {key: stored[key] for key in INFO_KEYS if key in stored}
    observations = stored["observations"]  # frames (uint8) stay uint8: 4x smaller, and what the encoder reads
    observations = observations if observations.dtype == np.uint8 else observations.astype(np.float32, copy=False)
    actions = stored["actions"].astype(np.float32, copy=False)
    episode = _episode_ids(ends)

    if "next_observations" in stored:  # one full transition per row
        out = {
            "observation": observations,
            "action": actions,
            "terminal": ends.astype(np.float32),
            "episode": episode,
        }
        if compact:
            out["valid"] = np.ones(len(ends), np.float32)
        else:
            out["next_observation"] = stored["next_observations"].astype(np.float32, copy=False)
        return {**out, **info}

    if compact:
        last_valid = np.append(ends[1:], True)
        return {
            "observation": observations,
            "action": actions,
            "terminal": (ends | last_valid).astype(np.float32),
            "valid": (~ends).astype(np.float32),
            "episode": episode,
            **info,
        }
    keep = ~ends
    last_transition = np.append(ends[1:], True)
    return {
        "observation": observations[keep],
        "action": actions[keep],
        "next_observation": observations[np.flatnonzero(keep) + 1],
        "terminal": last_transition[keep].astype(np.float32),
        "episode": episode[keep],
        **{key: value[keep] for key, value in info.items()},
    }


# --------------------------------------------------------------------------
# Evaluation environments
# --------------------------------------------------------------------------


class GoalTaskEnv(gymnasium.Wrapper):
    """OGBench's goal-conditioned evaluation protocol on one of its environments.

    Each environment has ``num_tasks`` (5) fixed evaluation tasks, each a start
    and a goal configuration. ``reset(options={"task_id": i})`` starts task i
    and puts its goal observation in ``info["goal"]``; ``set_task(i)`` also
    remembers i for later resets without options (as an RLlib env runner does).
    With no task given or remembered, OGBench picks one at random.

    The reward is 1.0 on a step that reaches the goal and 0.0 otherwise; the
    episode terminates there (OGBench's ``terminate_at_goal``), and
    ``info["success"]`` is kept. Observations and goals are float32.
    """

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        self.num_tasks = int(env.unwrapped.num_tasks)
        self._task_id: int | None = None
        self.goal: np.ndarray | None = None
        shape = env.observation_space.shape
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, shape, np.float32)

    @property
    def task_id(self) -> int | None:
        """The remembered task, or None."""
        return self._task_id

    def _check_task(self, task_id: int) -> int:
        if isinstance(task_id, str):  # task names as datasets list them: "task1" .. "task5"
            task_id = int(task_id.removeprefix(TASK_PREFIX)) if task_id.removeprefix(TASK_PREFIX).isdigit() else 0
        if not 1 <= int(task_id) <= self.num_tasks:
            raise ValueError(f"task_id must be in 1..{self.num_tasks}, got {task_id}")
        return int(task_id)

    def set_task(self, task_id: int) -> np.ndarray:
        """Use task ``task_id`` (1-based) from now on; reset once and return its goal."""
        self._task_id = self._check_task(task_id)
        _, info = self.reset()
        return info["goal"]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        if "task_id" in options:
            options["task_id"] = self._check_task(options["task_id"])
        elif "task_info" not in options and self._task_id is not None:
            options["task_id"] = self._task_id
        if seed is not None:
            seed_action_space(self.env, seed)
        ob, info = self.env.reset(seed=seed, options=options)
        self.goal = np.asarray(info["goal"], dtype=np.float32)
        info["goal"] = self.goal
        return np.asarray(ob, dtype=np.float32), info

    def step(self, action):
        ob, _, terminated, truncated, info = self.env.step(action)
        success = bool(info["success"])
        info["success"] = success
        return np.asarray(ob, dtype=np.float32), float(success), terminated, truncated, info


_FIXED_SPACE_CLASSES: dict[type, type] = {}


def _fixed_action_space(env):
    """The unwrapped OGBench env, made to keep one action space: its `action_space` is a property that
    builds a new, OS-entropy-seeded Box on every read, so no seed could reach the Box it samples."""
    u = env.unwrapped
    cls = type(u)
    if cls not in _FIXED_SPACE_CLASSES.values():
        if cls not in _FIXED_SPACE_CLASSES:
            _FIXED_SPACE_CLASSES[cls] = type(cls.__name__, (cls,), {"action_space": property(lambda self: self._fixed_space)})
        u._fixed_space = u.action_space  # one Box, kept
        u.__class__ = _FIXED_SPACE_CLASSES[cls]
    return u


def seed_action_space(env, seed: int) -> None:
    """Seed the action space OGBench's task reset samples from, from the reset's seed.

    To make a goal observation OGBench steps its scene with `action_space.sample()` (2 steps on
    cube-single, 5 on puzzle), from OS entropy unless told otherwise, so without this the goal (the
    arm's pose in it) and every rollout that reads it differ from process to process under one seed."""
    _fixed_action_space(env).action_space.seed(int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0]))


def make_env(env_name: str, **kwargs) -> GoalTaskEnv:
    """OGBench's evaluation environment for a dataset name, e.g. "cube-single-play".

    ``kwargs`` go to ``gymnasium.make``; ``max_episode_steps`` overrides the
    environment's own time limit (200 for cube-single, 750 scene, 500 puzzle-3x3).
    """
    gym_id = env_id(env_name)
    register_envs()
    return GoalTaskEnv(gymnasium.make(gym_id, **kwargs))


def make_pixel_env(env_name: str, render: str = "light", **kwargs):
    """OGBench's evaluation env with pixel observations, 3 frames stacked (uint8 [9, 64, 64]), rendered
    at the dataset's `render` quality; `set_task` returns the goal's render as a still stack."""
    from envs.dmc_gym import FrameStackEnv

    return FrameStackEnv(set_render_quality(make_env(env_name, **pixel_kwargs(True), **kwargs), render))
