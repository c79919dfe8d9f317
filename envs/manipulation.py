"""Goal-directed manipulation demonstrations, made offline with OGBench's oracles (ACT-JEPA, issue 19).

OGBench's play data chases random targets; a policy scored on OGBench's five evaluation goals
learns from demonstrations *of those goals*. So each episode resets the evaluation env with one
evaluation ``task_id`` (episode i: task ``i % 5 + 1``) and drives OGBench's closed-loop Markov
oracles (``ogbench.manipspace.oracles.markov``) to that task's goal: on cube-single the cube oracle
(the goal is one placement), on puzzle-3x3 the button oracle, pressing one button at a time of the
fewest presses that turn the current lights into the goal's (Lights Out over GF(2), re-solved after
every press, so a stray press is repaired), with controllable action noise: a per-episode level drawn from ``[0, noise]``, scaled per action as OGBench's noisy data
does, and a ``p_random`` chance of a uniform random action. An episode ends at the goal (success)
or at ``max_steps`` (failure); ``success`` is recorded per episode, so a dataset mixes both.
Episodes are made in tasks of ``EPISODES_PER_TASK`` through a caller's ``map_fn`` (the orchestrator's
is Ray tasks with a progress bar), each from its own seed. With ``pixels`` each step also keeps a 64×64
render from OGBench's pixel camera (its visual datasets' look: purple gripper, see-through arm), made
headless at ``render`` quality next to the state, which stays exactly what a state-only dataset holds
(the env is OGBench's pixel env made to observe its state; frames are drawn by ``render()``).

File layout (``demos.hdf5``, one per split, h5py):

* root attrs: ``format = "jepa-manipulation-demos"``, ``env_name``, ``config`` (JSON);
* one group ``episode_<i:05d>`` per episode, with datasets ``observations`` float32 [T, D] (the
  state each action was taken in), ``actions`` float32 [T, 5], ``goal`` float32 [D] (the goal
  observation), ``object_state`` float32 [T, S] (the world-model probe's targets: cube xyz and
  gripper opening on cube-single, S = 4; the 9 button states and gripper opening on puzzle-3x3, S = 10), ``final_observation`` float32 [D], and attrs ``task_id`` (1..5) and ``success``;
  with ``pixels``, also ``images`` uint8 [T, 64, 64, 3] (the frame each action was taken in) and
  ``goal_image`` uint8 [64, 64, 3] (the goal's frame).

``load_episodes`` reads these files and ACT/ALOHA-style ones (``episode_<i>.hdf5`` files with
``/action`` [T, A] and ``/observations/qpos`` [T, D]; ALOHA's scripted demos succeed, so
``success`` is True unless the file says otherwise, and the goal is the last observation). Their frames,
``/observations/images/<camera>`` uint8 [T, H, W, 3], fill ``images`` from the first camera by name (``top``
in ACT's simulated tasks, ``cam_high`` on the real ALOHA), the last frame being ``goal_image``.
``make_goal_env`` is the evaluation env: OGBench's task env whose observation is the state, the
goal and the step index (so a policy with temporal ensembling knows when an episode restarts).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import gymnasium
import numpy as np

from envs.cache import (
    config_fingerprint,
    dataset_dir,
    ensure_dataset,
    replace_atomically,
    write_json,
)
from envs.ogbench import (
    MARKOV_NOISE_SCALE,
    MIN_NORM,
    NUM_TASKS,
    PIXELS_RENDERING,
    RENDER_QUALITY,
    make_env,
    pixel_kwargs,
    seed_action_space,
    set_render_quality,
)

GENERATOR_VERSION = 2  # 2: goal observations seeded (OGBench's action-space draws at reset)
FORMAT = "jepa-manipulation-demos"
SUPPORTED = ("cube-single", "puzzle-3x3")  # envs whose evaluation goals one oracle kind reaches
HORIZON = {"cube-single": 200, "puzzle-3x3": 500}  # OGBench's evaluation time limits
SPLITS = ("train", "val")
FILE = "demos.hdf5"
EPISODES_PER_TASK = 10  # Ray task granularity: ~0.1 s per episode, so tasks of this many episodes
OBJECT_STATE_DIM = {"cube-single": 4, "puzzle-3x3": 10}  # cube xyz | 9 button states, + gripper opening


class DemoError(ValueError):
    """A demo file or request that cannot be used; the message ends with `Fix: ...`."""


@dataclass(frozen=True)
class DemoConfig:
    """Everything that makes a demo dataset, bit for bit (for one OGBench version)."""

    env_name: str = "cube-single"
    num_demos: int = 25  # training episodes (task i % 5 + 1), successes and failures both kept
    noise: float = 0.1  # per-episode Gaussian action noise level, drawn in [0, noise]
    p_random: float = 0.05  # chance of a uniform random action
    max_steps: int = 0  # 0: OGBench's horizon for the env (HORIZON: 200 cube-single, 500 puzzle-3x3)
    num_extra: int = 0  # extra episodes at `extra_noise` (unlabelled/failed data for the JEPA branch)
    extra_noise: float = 1.0
    num_val: int = 10
    seed: int = 0
    pixels: bool = False  # also store 64×64 frames of OGBench's pixel camera (images, goal_image); states as ever
    render: str = "light"  # pixels only: envs.ogbench.RENDER_QUALITY ("light": ~3x faster on CPU, or "full")

    def __post_init__(self):
        if self.env_name not in SUPPORTED:
            raise DemoError(f"unknown manipulation env {self.env_name!r}. Fix: use one of {list(SUPPORTED)}")
        if int(self.max_steps) == 0:
            object.__setattr__(self, "max_steps", HORIZON[self.env_name])
        for key in ("num_demos", "max_steps", "num_val"):
            if int(getattr(self, key)) < 1:
                raise DemoError(f"{key} is {getattr(self, key)}. Fix: use at least 1")
        if self.noise < 0 or self.extra_noise < 0 or not 0 <= self.p_random <= 1 or self.num_extra < 0:
            raise DemoError("noise, extra_noise and num_extra must be >= 0 and p_random in [0, 1]. Fix: correct them")
        if self.render not in RENDER_QUALITY:
            raise DemoError(f"render is {self.render!r}. Fix: use one of {list(RENDER_QUALITY)}")

    def fingerprint(self) -> str:
        """`pixels=False` hashes as before the pixel keys existed, so state datasets already made stay valid."""
        return config_fingerprint(self, GENERATOR_VERSION, omit=() if self.pixels else ("pixels", "render"))


@dataclass
class Episode:
    """One demonstration: `observations[t]` is the state `actions[t]` was taken in."""

    observations: np.ndarray
    actions: np.ndarray
    goal: np.ndarray
    success: bool = True
    task_id: int = 0  # 0: unknown (files from elsewhere)
    object_state: np.ndarray | None = None
    final_observation: np.ndarray | None = None
    labelled: bool = True  # False: extra data, never an action target
    meta: dict = field(default_factory=dict)
    images: np.ndarray | None = None  # uint8 [T, H, W, 3]: the frame each action was taken in (pixel datasets)
    goal_image: np.ndarray | None = None  # uint8 [H, W, 3]

    def __len__(self) -> int:
        return len(self.actions)


# ---------------------------------------------------------------------------- collection
class CubeDriver:
    """OGBench's Markov cube oracle towards the task's goal placement."""

    def __init__(self, env):
        from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle

        self.env, self.oracle = env, CubeMarkovOracle(env=env, min_norm=MIN_NORM)

    def info(self, info: dict) -> dict:
        """Evaluation envs hide the target from `info`; the oracle reads it there (privileged, as in OGBench)."""
        from ogbench.manipspace import lie

        u = self.env.unwrapped
        mocap = u._cube_target_mocap_ids[0]
        return {**info, "privileged/target_task": "cube", "privileged/target_block": 0,
                "privileged/target_block_pos": u._data.mocap_pos[mocap].copy(),
                "privileged/target_block_yaw": np.array([lie.SO3(wxyz=u._data.mocap_quat[mocap]).compute_yaw_radians()])}

    def reset(self, ob, info: dict) -> None:
        self.oracle.reset(ob, self.info(info))

    def action(self, ob, info: dict) -> np.ndarray:
        return np.asarray(self.oracle.select_action(ob, self.info(info)), np.float64)

    @staticmethod
    def object_state(info: dict) -> np.ndarray:
        return np.concatenate([info["privileged/block_0_pos"], info["proprio/gripper_opening"]]).astype(np.float32)


def lights_out_presses(states: np.ndarray, goal: np.ndarray, rows: int = 3, cols: int = 3) -> list[int]:
    """The fewest buttons whose presses (each flips itself and its 4 neighbours) turn `states` into `goal`."""
    n = rows * cols
    flips = np.zeros((n, n), np.int64)
    for i in range(n):
        r, c = divmod(i, cols)
        for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            if 0 <= r + dr < rows and 0 <= c + dc < cols:
                flips[i, (r + dr) * cols + c + dc] = 1
    need = (np.asarray(states) != np.asarray(goal)).astype(np.int64)
    subsets = ((np.arange(2 ** n)[:, None] >> np.arange(n)[None]) & 1)  # every press set, as 0/1 rows
    solves = np.flatnonzero(((subsets @ flips) % 2 == need).all(1))
    best = solves[np.argmin(subsets[solves].sum(1))]  # 3x3: the flip matrix is invertible, one solution
    return np.flatnonzero(subsets[best]).tolist()


class PuzzleDriver:
    """OGBench's Markov button oracle (a closed hand, as OGBench's puzzle data), one press at a time:
    the next button is the first of the fewest presses from the current lights to the goal, chosen
    again once the last press registered and the hand is back above the buttons."""

    ABOVE = 0.16  # the button oracle's "above" height: its press is over

    def __init__(self, env):
        from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle

        self.env = env
        self.oracle = ButtonMarkovOracle(env=env, min_norm=MIN_NORM, gripper_always_closed=True)
        self.button, self.target = None, None

    def info(self, info: dict) -> dict:
        u = self.env.unwrapped
        return {**info, "privileged/target_task": "button", "privileged/target_button": self.button,
                "privileged/target_button_state": self.target,
                "privileged/target_button_top_pos": u._data.site_xpos[u._button_site_ids[self.button]].copy()}

    def _next(self, ob, info: dict) -> None:
        u = self.env.unwrapped
        states = np.asarray(info["button_states"])
        presses = lights_out_presses(states, u._target_button_states, u._num_rows, u._num_cols)
        if presses:
            self.button = presses[0]
            self.target = (int(states[self.button]) + 1) % 2
            self.oracle.reset(ob, self.info(info))

    def reset(self, ob, info: dict) -> None:
        self.button = None
        self._next(ob, info)

    def action(self, ob, info: dict) -> np.ndarray:
        pressed = self.button is not None and int(info["button_states"][self.button]) == self.target
        if self.button is None or (pressed and info["proprio/effector_pos"][2] > self.ABOVE):
            self._next(ob, info)
        if self.button is None:  # at the goal already (the env ends the episode there)
            return np.zeros(self.env.action_space.shape)
        return np.asarray(self.oracle.select_action(ob, self.info(info)), np.float64)

    @staticmethod
    def object_state(info: dict) -> np.ndarray:
        return np.concatenate([info["button_states"], info["proprio/gripper_opening"]]).astype(np.float32)


DRIVERS = {"cube-single": CubeDriver, "puzzle-3x3": PuzzleDriver}


def run_episode(env, task_id: int, noise: float, p_random: float, seed: np.random.SeedSequence,
                env_name: str = "cube-single", pixels: bool = False) -> Episode:
    """Reset at evaluation task `task_id` and drive the env's oracle (`DRIVERS`) to its goal; with `pixels`
    (an env from `make_collection_env(..., pixels=True)`) also keep each step's frame and the goal's."""
    env_seed, global_seed, own_seed = seed.spawn(3)
    rng = np.random.default_rng(own_seed)
    level = rng.uniform(0.0, noise)
    saved = np.random.get_state()  # the oracle draws from numpy's global generator
    np.random.seed(global_seed.generate_state(4))
    try:
        driver = DRIVERS[env_name](env)
        seed_action_space(env, int(env_seed.generate_state(1)[0]))
        options = {"task_id": task_id, **({"render_goal": True} if pixels else {})}  # the goal's frame too
        ob, info = env.reset(seed=int(env_seed.generate_state(1)[0]), options=options)
        goal, goal_frame = np.asarray(info["goal"], np.float32), info.get("goal_rendered")
        driver.reset(ob, info)
        obs, actions, states, frames, success, done = [], [], [], [], False, False
        while not done:
            if pixels:
                frames.append(env.unwrapped.render())
            if rng.random() < p_random:
                action = rng.uniform(-1.0, 1.0, size=env.action_space.shape)
            else:
                action = driver.action(ob, info)
                action = action + rng.normal(0.0, level * MARKOV_NOISE_SCALE)
            action = np.clip(action, -1.0, 1.0)
            obs.append(ob)
            actions.append(action)
            states.append(driver.object_state(info))
            ob, _, terminated, truncated, info = env.step(action)
            success = success or bool(info["success"])
            done = terminated or truncated
    finally:
        np.random.set_state(saved)
    episode = Episode(np.asarray(obs, np.float32), np.asarray(actions, np.float32), goal, success, task_id,
                      np.asarray(states, np.float32), np.asarray(ob, np.float32))
    if pixels:
        episode.images, episode.goal_image = np.asarray(frames, np.uint8), np.asarray(goal_frame, np.uint8)
    return episode


def _observe_states(env):
    """OGBench's pixel env (its pixel camera and colours) observing its state instead of frames: the state
    is OGBench's own `compute_observation`, so it equals a state env's bit for bit (physics ignores colours)."""
    u = env.unwrapped

    def state_observation():
        kind, u._ob_type = u._ob_type, "states"
        try:
            return type(u).compute_observation(u)
        finally:
            u._ob_type = kind

    u.compute_observation = state_observation
    env.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, state_observation().shape, np.float32)
    return env


def make_collection_env(env_name: str, max_steps: int, pixels: bool = False, render: str = "light"):
    """The env demos are collected in: OGBench's task env, observing states; with `pixels` it also renders
    64×64 frames with OGBench's pixel camera at `render` quality."""
    import warnings

    if pixels:
        from envs import require_rendering

        require_rendering(PIXELS_RENDERING)
    kwargs = {**pixel_kwargs(True), "disable_env_checker": True} if pixels else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precision lowered", category=UserWarning)
        env = make_env(f"{env_name}-play", max_episode_steps=max_steps, **kwargs)
        return _observe_states(set_render_quality(env, render)) if pixels else env


def _split_plan(cfg: DemoConfig, split: str) -> list[tuple[int, float, bool]]:
    """(episode index, noise level, labelled) for every episode of a split."""
    if split == "val":
        return [(i, cfg.noise, True) for i in range(cfg.num_val)]
    plan = [(i, cfg.noise, True) for i in range(cfg.num_demos)]
    return plan + [(cfg.num_demos + j, cfg.extra_noise, False) for j in range(cfg.num_extra)]


def collect(cfg: DemoConfig, split: str, items: list[tuple[int, float, bool]]) -> list[Episode]:
    """The episodes `items` of a split (one task's share): each its own seed, so any split of work agrees."""
    env = make_collection_env(cfg.env_name, cfg.max_steps, cfg.pixels, cfg.render)
    try:
        out = []
        for index, noise, labelled in items:
            seed = np.random.SeedSequence(cfg.seed, spawn_key=(SPLITS.index(split), index))
            episode = run_episode(env, index % NUM_TASKS + 1, noise, cfg.p_random, seed, cfg.env_name, cfg.pixels)
            episode.labelled = labelled
            out.append(episode)
        return out
    finally:
        env.close()


def collect_split(cfg: DemoConfig, split: str, map_fn=map) -> list[Episode]:
    """Every episode of a split, in tasks of `EPISODES_PER_TASK` mapped with `map_fn(fn, items)` (the
    orchestrator passes a Ray map with a progress bar); episodes come back in order."""
    plan = _split_plan(cfg, split)
    chunks = [plan[i:i + EPISODES_PER_TASK] for i in range(0, len(plan), EPISODES_PER_TASK)]
    return [ep for part in map_fn(partial(collect, cfg, split), chunks) for ep in part]


# ---------------------------------------------------------------------------- files
def write_episodes(path: Path, episodes: list[Episode], env_name: str, config: dict) -> None:
    """Our layout (module docstring), atomically."""
    import h5py

    def write(handle):
        with h5py.File(handle, "w") as f:
            f.attrs.update({"format": FORMAT, "env_name": env_name, "config": json.dumps(config)})
            for i, ep in enumerate(episodes):
                g = f.create_group(f"episode_{i:05d}")
                for key in ("observations", "actions", "goal", "object_state", "final_observation", "images", "goal_image"):
                    if getattr(ep, key) is not None:
                        g.create_dataset(key, data=getattr(ep, key), compression="gzip")
                g.attrs.update({"task_id": int(ep.task_id), "success": bool(ep.success), "labelled": bool(ep.labelled)})

    replace_atomically(Path(path), write)


def _write_dataset(cfg: DemoConfig, map_fn, directory: Path) -> None:
    counts = {}
    for split in SPLITS:
        episodes = list(collect_split(cfg, split, map_fn))
        (directory / split).mkdir(parents=True, exist_ok=True)
        write_episodes(directory / split / FILE, episodes, cfg.env_name, asdict(cfg))
        counts[split] = {"episodes": len(episodes), "successes": int(sum(e.success for e in episodes))}
    write_json(directory / "meta.json", {"fingerprint": cfg.fingerprint(), "config": asdict(cfg), "counts": counts})


def generate(cfg: DemoConfig, root: Path | None = None, map_fn=map) -> Path:
    """The dataset directory for `cfg` (`<split>/demos.hdf5`) unless cached; episodes made by `map_fn`."""
    if cfg.pixels:  # here, in one line naming the fix, not later inside every Ray task
        from envs import require_rendering

        require_rendering(PIXELS_RENDERING)
    directory = dataset_dir("manipulation_demos", cfg.fingerprint(), root)
    ensure_dataset(directory, cfg.fingerprint(), partial(_write_dataset, cfg, map_fn))
    return directory


def _fail(path: Path, problem: str, fix: str):
    raise DemoError(f"{path}: {problem}. Fix: {fix}")


def _frames(data, where: str, path: Path, length: int, fix: str) -> np.ndarray:
    """`data` as frames uint8 [length, H, W, 3]; a DemoError naming `where` otherwise."""
    if data.dtype != np.uint8 or data.ndim != 4 or data.shape[-1] != 3:
        _fail(path, f"{where} is {data.dtype} {list(data.shape)}, not uint8 frames [T, H, W, 3]", fix)
    if len(data) != length:
        _fail(path, f"{where} has {len(data)} frames for {length} actions",
              "store one frame per action (the frame it was taken in), or drop the frames")
    return np.asarray(data)


def _read_images(g, name: str, path: Path, length: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """An episode group's `images` and `goal_image` (both or neither), checked against its actions."""
    if "images" not in g and "goal_image" not in g:
        return None, None
    fix = "regenerate it (`jepa data make manip_cube_single pixels=true`)"
    if "images" not in g or "goal_image" not in g:
        _fail(path, f"episode {name} has only one of images and goal_image", fix)
    images = _frames(g["images"], f"episode {name} images", path, length, fix)
    goal_image = np.asarray(g["goal_image"])
    if goal_image.dtype != np.uint8 or goal_image.shape != images.shape[1:]:
        _fail(path, f"episode {name} goal_image is {goal_image.dtype} {list(goal_image.shape)}, not uint8 "
              f"{list(images.shape[1:])} like its images", fix)
    return images, goal_image


def _read_ours(f, path: Path) -> list[Episode]:
    episodes = []
    for name in sorted(k for k in f if k.startswith("episode_")):
        g = f[name]
        missing = [k for k in ("observations", "actions", "goal") if k not in g]
        if missing:
            _fail(path, f"episode {name} lacks {missing}", "regenerate it (`jepa data make manip_cube_single`)")
        get = lambda key, g=g: np.asarray(g[key], np.float32) if key in g else None
        actions = get("actions")
        images, goal_image = _read_images(g, name, path, len(actions))
        episodes.append(Episode(get("observations"), actions, get("goal"), bool(g.attrs.get("success", True)),
                                int(g.attrs.get("task_id", 0)), get("object_state"), get("final_observation"),
                                bool(g.attrs.get("labelled", True)), images=images, goal_image=goal_image))
    return episodes


def _read_aloha(f, path: Path) -> Episode:
    """One ACT/ALOHA episode: `/action` [T, A], `/observations/qpos` [T, D], and the frames of the first
    camera by name in `/observations/images/<camera>` (uint8 [T, H, W, 3]) when it has any."""
    if "action" not in f or "observations" not in f or "qpos" not in f["observations"]:
        _fail(path, f"neither our demo layout (attr format={FORMAT!r}) nor an ACT/ALOHA episode "
              f"(/action and /observations/qpos); it has {sorted(f)}", "point data.path at demos.hdf5 files made here "
              "or at ALOHA episode_<i>.hdf5 files")
    obs, actions = np.asarray(f["observations/qpos"], np.float32), np.asarray(f["action"], np.float32)
    if len(obs) != len(actions) or len(obs) < 1:
        _fail(path, f"/observations/qpos has {len(obs)} rows, /action {len(actions)}", "write one action per observation")
    episode = Episode(obs, actions, obs[-1].copy(), bool(f.attrs.get("success", True)), 0, None, obs[-1].copy())
    found = f["observations"].get("images")
    if found is not None and not hasattr(found, "keys"):
        _fail(path, "/observations/images is a dataset, not a group of cameras",
              "store frames as /observations/images/<camera> uint8 [T, H, W, 3]")
    cameras = sorted(found) if found is not None else []
    if cameras:
        episode.images = _frames(f[f"observations/images/{cameras[0]}"], f"/observations/images/{cameras[0]}", path,
                                 len(actions), "store raw uint8 frames [T, H, W, 3] (decode JPEG-compressed ALOHA "
                                 "episodes, attr compress=True, first)")
        episode.goal_image, episode.meta["camera"] = episode.images[-1].copy(), cameras[0]
    return episode


def read_file(path: Path) -> list[Episode]:
    """Episodes of one HDF5 file, ours or ACT/ALOHA's; a missing or corrupt file is a DemoError."""
    import h5py

    path = Path(path)
    if not path.is_file():
        _fail(path, "no such file", "generate the demos (`jepa data make manip_cube_single`) or fix data.path")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") == FORMAT:
                return _read_ours(f, path)
            return [_read_aloha(f, path)]
    except OSError as err:
        _fail(path, f"is not a readable HDF5 file ({err})", "regenerate or re-copy it; it may be truncated")


def load_episodes(path: str | Path) -> list[Episode]:
    """All episodes under `path`: one HDF5 file, or a directory of them (`*.hdf5`, `*.h5`, sorted)."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted([*path.glob("*.hdf5"), *path.glob("*.h5")])
        if not files:
            _fail(path, "holds no .hdf5 files", "point data.path at a demos.hdf5 or a folder of ALOHA episode_<i>.hdf5 files")
        episodes = [ep for file in files for ep in read_file(file)]
    else:
        episodes = read_file(path)
    if not episodes:
        _fail(path, "holds no episodes", "regenerate it")
    dims = {(ep.observations.shape[1:], ep.actions.shape[1:], None if ep.images is None else ep.images.shape[1:])
            for ep in episodes}
    if len(dims) != 1:
        _fail(path, f"episodes differ in observation/action/frame shapes {sorted(dims, key=str)}",
              "keep one robot (and one camera size, frames in all episodes or none) per dataset")
    return episodes


# ---------------------------------------------------------------------------- evaluation env
class GoalObservation(gymnasium.Wrapper):
    """OGBench's task env at one evaluation task, observing [state, goal, step index].

    The step index lets a policy that keeps state across steps (temporal ensembling) see resets;
    policies strip it (`split_observation`)."""

    def __init__(self, env, task_id: int):
        super().__init__(env)
        self.task_id = task_id
        self.t = 0
        self.goal = None
        dim = env.observation_space.shape[0]
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2 * dim + 1,), np.float32)

    def _obs(self, ob):
        return np.concatenate([ob, self.goal, [self.t]]).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        # GoalTaskEnv seeds OGBench's action space from a seeded reset: later, unseeded resets continue
        # both generators deterministically
        ob, info = self.env.reset(seed=seed, options={"task_id": self.task_id, **(options or {})})
        self.goal, self.t = np.asarray(info["goal"], np.float32), 0
        return self._obs(ob), info

    def step(self, action):
        ob, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        return self._obs(ob), reward, terminated, truncated, info


def check_task(env_name: str, task_id: int) -> int:
    if env_name not in SUPPORTED:
        raise DemoError(f"unknown manipulation env {env_name!r}. Fix: use one of {list(SUPPORTED)}")
    if not 1 <= int(task_id) <= NUM_TASKS:
        raise DemoError(f"task_id {task_id} is not one of OGBench's evaluation tasks. Fix: use 1..{NUM_TASKS}")
    return int(task_id)


def make_goal_env(env_name: str = "cube-single", task_id: int = 1, max_episode_steps: int | None = None) -> GoalObservation:
    """The evaluation env of `env_name` at evaluation task `task_id` (1..5)."""
    import warnings

    task_id = check_task(env_name, task_id)
    kwargs = {"max_episode_steps": int(max_episode_steps)} if max_episode_steps else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precision lowered", category=UserWarning)
        return GoalObservation(make_env(f"{env_name}-play", **kwargs), task_id)


def split_observation(x, obs_dim: int):
    """[state, goal, t] -> (state ‖ goal, t)."""
    return x[..., : 2 * obs_dim], x[..., 2 * obs_dim]


# ---------------------------------------------------------------------------- training windows
FAILED_CHOICES = ("drop", "jepa", "actions")  # what failed and extra episodes do in training


def _role(ep: Episode, failed: str) -> float | None:
    """1: teaches actions; 0: only the JEPA branch (failed/unlabelled with failed=jepa); None: dropped."""
    if ep.success and ep.labelled:
        return 1.0
    return {"drop": None, "jepa": 0.0, "actions": 1.0}[failed]


class DemoWindows:
    """Every step t of the kept episodes as one training window (a torch map-style dataset):

    observation [2D] = state_t ‖ goal; actions [k, A] = a_t .. a_{t+k-1} and action_mask [k] (0 past
    the episode's end, ACT's padding); next_observations [k, D] = o_{t+1} .. o_{t+k} and next_mask [k];
    labelled [] (see `_role`); future_state [4] = cube xyz and gripper opening at t + k (clipped to the
    episode's last step) when the episodes record it (the world-model probe's target).
    """

    def __init__(self, episodes: list[Episode], chunk: int, failed: str = "drop"):
        if failed not in FAILED_CHOICES:
            raise DemoError(f"data.failed is {failed!r}. Fix: use one of {list(FAILED_CHOICES)}")
        longest = max(len(ep) for ep in episodes)
        if not 1 <= chunk <= longest:
            raise DemoError(f"data.chunk={chunk} is longer than every episode (the longest has {longest} steps), so "
                            f"every target would be padding. Fix: use data.chunk between 1 and {longest}")
        kept = [(ep, role) for ep in episodes if (role := _role(ep, failed)) is not None]
        if not kept:
            raise DemoError("no episode is left to train on (all failed and data.failed=drop). "
                            "Fix: lower data.noise, or set data.failed=jepa to use them in the JEPA branch")
        self.chunk, self.episodes = chunk, [ep for ep, _ in kept]
        parts = [self._windows(ep, role, chunk) for ep, role in kept]
        self.arrays = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    @staticmethod
    def _windows(ep: Episode, role: float, k: int) -> dict[str, np.ndarray]:
        T = len(ep)
        t = np.arange(T)[:, None]
        steps = t + np.arange(k)[None]  # [T, k]
        last = ep.final_observation if ep.final_observation is not None else ep.observations[-1]
        observed = np.concatenate([ep.observations, last[None]])  # T + 1 rows: o_0 .. o_T
        nxt = steps + 1
        out = {
            "observation": np.concatenate([ep.observations, np.broadcast_to(ep.goal, ep.observations.shape)], 1),
            "actions": np.where((steps < T)[..., None], ep.actions[np.minimum(steps, T - 1)], 0.0),
            "action_mask": (steps < T).astype(np.float32),
            "next_observations": observed[np.minimum(nxt, T)],
            "next_mask": (nxt <= T).astype(np.float32),
            "labelled": np.full(T, role, np.float32),
        }
        if ep.object_state is not None:
            out["future_state"] = ep.object_state[np.minimum(t[:, 0] + k, T - 1)]
        return {key: np.asarray(v, np.float32) for key, v in out.items()}

    def __len__(self) -> int:
        return len(self.arrays["labelled"])

    def __getitem__(self, i):
        import torch

        return {key: torch.from_numpy(np.asarray(v[i])) for key, v in self.arrays.items()}
