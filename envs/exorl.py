"""Reward-free offline RL data in ExoRL's layout, for zero-shot RL (TD-JEPA): collection and loading.

ExoRL collects exploratory episodes without a task, stores the MuJoCo state of
every step, and recomputes rewards for any task afterwards. This module does the
same for the TD-JEPA domains of ``envs.dmc_tasks``:

* ``collect`` runs an exploration policy (``envs.exploration``: "random", or "rnd")
  in a dm_control domain, in shares of episodes handed to a parallel map (the
  caller's: Ray tasks on a cluster, the builtin ``map`` in this process), and
  writes one compressed npz per episode under
  ``<root>/exorl/<domain>/<policy>/<fingerprint>/buffer/`` (meta.json last).
* ``load_exorl`` flattens episodes (ours, or ExoRL's own) into transitions,
  relabelling a task's rewards from the stored physics states (``dmc_tasks.relabel``).

Episode files (``episode_{idx:06d}_{len}.npz``, ``len`` = transitions, rows =
``len + 1``) hold ``observation`` float32 [len+1, obs_dim] (``flatten_observation``),
``action`` float32 [len+1, act_dim] in [-1, 1] (mapped linearly onto the
domain's bounds when stepping, as ExoRL's action-scaling wrapper does),
``reward`` (the base task's) and ``discount`` float32 [len+1, 1] and ``physics``
float64 [len+1, state_dim] (``physics.get_state()``: qpos, qvel, act). Row 0 is
ExoRL's dummy first step: the reset observation and state with a zero action,
reward 0 and discount 1. Row i > 0 is the result of taking ``action[i]`` in row
i-1. With ``pixels`` there is also ``pixels`` uint8 [len+1, 64, 64, 3].
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from envs import require_rendering
from envs.cache import (
    META_FILE,
    config_fingerprint,
    data_root,
    ensure_dataset,
    is_complete,
    replace_atomically,
    steps_progress,
    write_json,
)
from envs.dmc_tasks import (
    DOMAINS,
    check_domain,
    flatten_observation,
    load_environment,
    relabel,
    render_pixels,
    scale_to_spec,
    task_reward,
)
from envs.exploration import RandomExplorer, RndExplorer, RndSettings

# Bump when simulation, policies or file contents change so cached datasets are regenerated.
GENERATOR_VERSION = 1
POLICIES = ("random", "rnd")
BUFFER_DIR = "buffer"
EPISODE_PATTERN = re.compile(r"episode_(\d+)_(\d+)\.npz")
MAKE_HINT = "jepa data make exorl_{domain}_{policy}"

PIXELS_RENDERING = "rendering ExoRL pixels (data.pixels=true)"

# A parallel map: calls a function on each item of a list, results in order (the builtin map,
# or Ray tasks that the orchestrator supplies).
MapFn = Callable[[Callable, list], Iterable]

_EPISODE_DTYPES = {
    "observation": np.float32,
    "action": np.float32,
    "reward": np.float32,
    "discount": np.float32,
    "physics": np.float64,
    "pixels": np.uint8,
}


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@dataclass
class ExplorationConfig:
    """Everything that determines a collected dataset, bit for bit (per GL backend for pixels).

    ``episodes_per_task`` episodes run in sequence in one share, one call of the
    parallel map (and, for "rnd", one agent learns across them); fixing it here
    rather than deriving it from the worker count keeps the data independent of
    how the shares are run.
    ``pixels`` also stores 64x64 frames of camera 0 (12 KiB a step before
    compression). Software rendering (OSMesa) dominates then: on a busy 2-core
    CPU a worker did walker 980 steps/s without pixels and 100 with, quadruped
    1500 and 50; EGL on a GPU is far cheaper. The "rnd" explorer's updates cost
    more still (~35 steps/s a worker at the default sizes).
    ``rnd_hidden`` and ``rnd_lr`` apply to the RND networks and the actor-critic alike.
    """

    domain: str
    policy: str
    num_episodes: int = 8
    episode_length: int = 1000
    seed: int = 0
    pixels: bool = False
    rnd_hidden: int = 256
    rnd_lr: float = 1e-4
    rnd_updates_per_step: int = 1
    rnd_warmup_steps: int = 1000  # uniform random actions before the agent starts learning
    episodes_per_task: int = 4

    def __post_init__(self) -> None:
        check_domain(self.domain)
        _require(self.policy in POLICIES, f"policy must be one of {POLICIES}, got {self.policy!r}")
        _require(self.num_episodes >= 1, "num_episodes must be >= 1")
        _require(self.episode_length >= 1, "episode_length must be >= 1")
        _require(self.seed >= 0, "seed must be >= 0")
        _require(self.rnd_hidden >= 1, "rnd_hidden must be >= 1")
        _require(self.rnd_lr > 0, "rnd_lr must be > 0")
        _require(self.rnd_updates_per_step >= 0, "rnd_updates_per_step must be >= 0")
        _require(self.rnd_warmup_steps >= 0, "rnd_warmup_steps must be >= 0")
        _require(self.episodes_per_task >= 1, "episodes_per_task must be >= 1")

    def fingerprint(self) -> str:
        """Short hash of the config; a new value means the dataset must be collected again."""
        return config_fingerprint(self, GENERATOR_VERSION)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"ExplorationConfig: {message}")


# --------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------


def _episode_seed(cfg: ExplorationConfig, index: int) -> np.random.SeedSequence:
    """Per-episode stream (start state, actions, noise): the same whoever collects the episode."""
    return np.random.SeedSequence(cfg.seed, spawn_key=(0, index))


def _explorer_seed(cfg: ExplorationConfig, first_episode: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(cfg.seed, spawn_key=(1, first_episode))


def _make_explorer(cfg: ExplorationConfig, env, episodes: range):
    action_dim = env.action_spec().shape[0]
    if cfg.policy == "random":
        return RandomExplorer(action_dim)
    obs_dim = sum(_observation_sizes(env).values())
    capacity = min(len(episodes) * cfg.episode_length, 1_000_000)
    settings = RndSettings(cfg.rnd_hidden, cfg.rnd_lr, cfg.rnd_updates_per_step, cfg.rnd_warmup_steps)
    return RndExplorer(obs_dim, action_dim, settings, _explorer_seed(cfg, episodes.start), capacity)


def _run_episode(
    env, explorer, cfg: ExplorationConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One episode in ExoRL's layout, row 0 being the dummy reset step."""
    env.task.random.seed(int(rng.integers(2**31)))  # the task draws the start state from it
    timestep = env.reset()
    rows = {key: [] for key in _EPISODE_DTYPES if key != "pixels" or cfg.pixels}

    def record(observation, action, reward, discount) -> None:
        rows["observation"].append(observation)
        rows["action"].append(action)
        rows["reward"].append([reward])
        rows["discount"].append([discount])
        rows["physics"].append(env.physics.get_state())
        if cfg.pixels:
            rows["pixels"].append(render_pixels(env.physics))

    observation = flatten_observation(timestep.observation)
    action_spec = env.action_spec()  # built anew on every call: 20 % of a random-policy step when asked per step
    record(observation, np.zeros(action_spec.shape, np.float32), 0.0, 1.0)
    for _ in range(cfg.episode_length):
        action = explorer.act(observation, rng)
        timestep = env.step(scale_to_spec(action, action_spec))
        next_observation = flatten_observation(timestep.observation)
        explorer.observe(observation, action, next_observation, timestep.discount)
        record(next_observation, action, timestep.reward, timestep.discount)
        observation = next_observation
    return {key: np.asarray(values, dtype=_EPISODE_DTYPES[key]) for key, values in rows.items()}


def episode_name(index: int, length: int) -> str:
    return f"episode_{index:06d}_{length}.npz"


@contextmanager
def _single_threaded_torch():
    """Small networks run fastest on one thread, and results then do not depend on core counts."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


_STATE_ENVS: dict[str, object] = {}


def _state_environment(domain: str):
    """One env per domain and process for state-only collection: a Ray worker runs share after share,
    and building the env (~0.5-1.5 s) would otherwise be paid per share of a few seconds. Every episode
    reseeds the task and resets the physics, so no episode depends on the ones before it."""
    if domain not in _STATE_ENVS:
        _STATE_ENVS[domain] = load_environment(domain)
    return _STATE_ENVS[domain]


def collect_episodes(cfg: ExplorationConfig, episodes: range, buffer: str | Path) -> list[str]:
    """Collect ``episodes`` in sequence (one explorer learning across them) into ``buffer``."""
    if cfg.pixels:
        require_rendering(PIXELS_RENDERING)
    env = load_environment(cfg.domain) if cfg.pixels else _state_environment(cfg.domain)
    names = []
    try:
        with _single_threaded_torch():
            explorer = _make_explorer(cfg, env, episodes)
            for index in episodes:
                rng = np.random.default_rng(_episode_seed(cfg, index))
                episode = _run_episode(env, explorer, cfg, rng)
                names.append(episode_name(index, cfg.episode_length))
                replace_atomically(
                    Path(buffer) / names[-1], partial(np.savez_compressed, **episode)
                )
    finally:
        if cfg.pixels:
            env.physics.free()  # frees the GL context now rather than noisily at exit
    return names


def _task_shares(cfg: ExplorationConfig) -> list[range]:
    """Episode ranges, one per call of the parallel map, fixed by the config alone."""
    step = cfg.episodes_per_task
    return [
        range(start, min(start + step, cfg.num_episodes))
        for start in range(0, cfg.num_episodes, step)
    ]


def _share_done(cfg: ExplorationConfig, buffer: Path, episodes: range) -> bool:
    return all((buffer / episode_name(index, cfg.episode_length)).is_file() for index in episodes)


def _observation_sizes(env) -> dict[str, int]:
    return {key: int(np.prod(spec.shape)) for key, spec in env.observation_spec().items()}


def _write_meta(cfg: ExplorationConfig, directory: Path) -> None:
    env = _state_environment(cfg.domain)  # nothing rendered: the state env serves pixel configs too
    spec = DOMAINS[cfg.domain]
    meta = {
        "fingerprint": cfg.fingerprint(),
        "config": asdict(cfg),
        "generator_version": GENERATOR_VERSION,
        "domain": cfg.domain,
        "suite_domain": spec.suite_domain,
        "base_task": spec.base_task,
        "tasks": list(spec.tasks),
        "observation_keys": _observation_sizes(env),  # in flattening order
        "action_dim": int(env.action_spec().shape[0]),
        "physics_dim": int(env.physics.get_state().size),
        "episodes": [episode_name(index, cfg.episode_length) for index in range(cfg.num_episodes)],
        "num_transitions": cfg.num_episodes * cfg.episode_length,
        "mujoco_gl": os.environ.get("MUJOCO_GL") if cfg.pixels else None,
    }
    write_json(directory / META_FILE, meta)


def _write_exorl(cfg: ExplorationConfig, map_fn: MapFn, directory: Path) -> None:
    buffer = directory / BUFFER_DIR
    buffer.mkdir(parents=True, exist_ok=True)
    # Shares left complete by an interrupted run are kept: each is deterministic on its own.
    shares = [share for share in _task_shares(cfg) if not _share_done(cfg, buffer, share)]
    done = map_fn(partial(collect_episodes, cfg, buffer=str(buffer)), shares)
    with steps_progress(sum(len(share) for share in shares) * cfg.episode_length, f"exorl {cfg.domain} {cfg.policy}") as bar:
        for names in done:  # in order, as a lazy map (builtin `map`, the orchestrator's Ray map) yields them
            bar.update(len(names) * cfg.episode_length)
    _write_meta(cfg, directory)



def exorl_dir(cfg: ExplorationConfig, root: Path | None = None) -> Path:
    """Where the dataset for ``cfg`` lives (whether or not it has been collected)."""
    base = Path(root) if root is not None else data_root()
    return base / "exorl" / cfg.domain / cfg.policy / cfg.fingerprint()


def collect(cfg: ExplorationConfig, root: Path | None = None, map_fn: MapFn = map) -> Path:
    """Collect the dataset for ``cfg`` unless a complete copy exists; return its directory.

    Episodes are split into shares of ``cfg.episodes_per_task``, and
    ``map_fn(collect_share, shares)`` runs them: the builtin ``map`` (the default)
    in this process, or the caller's parallel map (Ray tasks, say; this module
    knows nothing of Ray). A share's episodes run in sequence (for "rnd", with one
    agent learning over that share only) and each episode has its own seed, so the
    files do not depend on the map. Shares write straight into the buffer, which
    must then be on a filesystem every worker sees, as for ``data_root()``.
    meta.json is written last, under a file lock, so concurrent callers collect once.
    """
    directory = exorl_dir(cfg, root)
    if cfg.pixels and not is_complete(directory, cfg.fingerprint()):
        require_rendering(PIXELS_RENDERING)  # here, in one line, rather than in every worker
    return ensure_dataset(directory, cfg.fingerprint(), partial(_write_exorl, cfg, map_fn))


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def buffer_dir(path: Path) -> Path:
    """Accept the dataset directory (holding ``buffer/``) or the buffer itself."""
    return path / BUFFER_DIR if (path / BUFFER_DIR).is_dir() else path


def _make_hint(buffer: Path) -> str:
    """The CLI command that makes this dataset, with domain and policy read from our layout if possible."""
    parts = buffer.parts
    if "exorl" in parts[:-1]:
        at = len(parts) - 1 - parts[::-1].index("exorl")
        if len(parts) > at + 2:
            return MAKE_HINT.format(domain=parts[at + 1], policy=parts[at + 2])
    return MAKE_HINT.format(domain="<domain>", policy="<policy>")


def episode_files(buffer: Path) -> list[Path]:
    """Episode files sorted by their index."""
    matches = (
        [(EPISODE_PATTERN.fullmatch(p.name), p) for p in buffer.glob("episode_*.npz")]
        if buffer.is_dir()
        else []
    )
    files = sorted((int(match.group(1)), path) for match, path in matches if match)
    if not files:
        raise FileNotFoundError(
            f"No ExoRL episodes (episode_<idx>_<len>.npz) in {buffer}. "
            f"Collect them with `{_make_hint(buffer)}` (or envs.exorl.collect)."
        )
    return [path for _, path in files]


def read_meta(buffer: Path) -> dict | None:
    """Our meta.json beside the buffer, or None for ExoRL's own layout (which has none)."""
    meta_path = buffer.parent / META_FILE
    return json.loads(meta_path.read_text()) if meta_path.is_file() else None


def check_complete(buffer: Path, meta: dict | None, files: list[Path]) -> None:
    """Fail, naming the fix, when fewer episodes are on disk than meta.json lists."""
    if meta is not None and len(files) != len(meta["episodes"]):
        raise ValueError(
            f"{buffer} has {len(files)} episodes, {META_FILE} lists {len(meta['episodes'])}; "
            f"delete {buffer.parent} and rerun `{_make_hint(buffer)}`."
        )


def _infer_domain(buffer: Path, meta: dict | None) -> str:
    """Our meta.json names the domain; ExoRL's own layout is ``<domain>/<algorithm>/buffer``."""
    domain = meta["domain"] if meta is not None else buffer.parent.parent.name
    if domain not in DOMAINS:
        raise ValueError(
            f"Cannot relabel {buffer}: domain {domain!r} (from the path) is not one of "
            f"{sorted(DOMAINS)}; pass domain= explicitly."
        )
    return domain


def _read_episode(path: Path, with_pixels: bool) -> dict[str, np.ndarray]:
    keys = ["observation", "action", "discount", "physics"] + (["pixels"] if with_pixels else [])
    with np.load(path, allow_pickle=False) as data:
        missing = sorted(set(keys) - set(data.files))
        if missing:
            raise KeyError(f"{path} lacks {missing}")
        return {key: data[key] for key in keys}


def _transitions(
    episode: Mapping[str, np.ndarray], domain: str | None, task: str | None
) -> dict[str, np.ndarray]:
    """Row i-1 -> row i for i >= 1; the dummy row 0 only serves as the first observation."""
    flat = {
        "observation": episode["observation"][:-1],
        "action": episode["action"][1:],
        "next_observation": episode["observation"][1:],
        "discount": episode["discount"][1:].reshape(-1),
        "physics": episode["physics"][:-1],
        "next_physics": episode["physics"][1:],
    }
    if "pixels" in episode:
        flat["pixels"], flat["next_pixels"] = episode["pixels"][:-1], episode["pixels"][1:]
    if task is not None:
        flat["reward"] = relabel(episode, domain, task)[1:, 0]
    return flat


def load_exorl(
    path_or_dir: str | Path,
    task: str | None = None,
    domain: str | None = None,
    max_episodes: int | None = None,
    pixels: bool = False,
) -> dict[str, np.ndarray]:
    """Episodes of an ExoRL-layout directory (ours or ExoRL's) flattened into transitions.

    Returns ``observation``, ``action``, ``next_observation``, ``discount`` [N],
    ``episode`` [N] (index of the episode in file order),
    ``physics`` and ``next_physics`` (states of the two observations) and, with
    ``task``, its ``reward`` [N] at the next state, relabelled from physics.
    ``pixels`` adds ``pixels``/``next_pixels`` (these are large). ``domain`` is
    read from meta.json or the path unless given. ``max_episodes`` takes the
    first episodes by index (TD-JEPA uses the first 5000).
    """
    buffer = buffer_dir(Path(path_or_dir))
    files = episode_files(buffer)
    meta = read_meta(buffer)
    check_complete(buffer, meta, files)
    if task is not None:
        domain = domain or _infer_domain(buffer, meta)
        task_reward(domain, task)  # fail on an unknown task before reading anything
    parts = [
        _transitions(_read_episode(path, pixels), domain, task) for path in files[:max_episodes]
    ]
    for index, part in enumerate(parts):
        part["episode"] = np.full(len(part["action"]), index, np.int64)
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def load_frames(path_or_dir: str | Path, max_episodes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every stored frame once, in file order: (uint8 [F, 64, 64, 3], lengths [episodes] in transitions).

    Episode e's frames are rows 0..len of its file (row 0 the reset frame), so transition t of
    ``load_exorl``'s flat order sees frame ``offset_e + t`` and arrives in ``offset_e + t + 1``, with
    ``offset_e = sum(len + 1)`` over earlier episodes. Read without the other keys: no frame is copied twice.
    """
    buffer = buffer_dir(Path(path_or_dir))
    files = episode_files(buffer)[:max_episodes]
    frames, lengths = [], []
    for path in files:
        with np.load(path, allow_pickle=False) as data:
            if "pixels" not in data.files:
                raise KeyError(f"{path} has no frames (`pixels`): collect with data.pixels=true")
            frames.append(data["pixels"])
        lengths.append(len(frames[-1]) - 1)
    return np.concatenate(frames), np.asarray(lengths, np.int64)
