"""The on-disk cache every generated dataset shares, so each is made once and read many times.

A dataset lives in ``<data_root()>/<kind>/<fingerprint>/``, where the fingerprint hashes its config
together with the version of the code that makes it: a changed config or generator gets a directory
of its own, never a stale one. Files are written through a temporary name and renamed, and
``meta.json`` is written last, so a directory counts as present only once it is complete; a file
lock makes concurrent callers (workers starting at once) generate it once.

Clip datasets are cut into shards of ``shard_size`` clips per split (``<split>-<k>.npz``); each clip
draws from its own random stream (``clip_rng``), so any chunking gives the same clips.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import platformdirs
from filelock import FileLock

SPLITS = ("train", "val")
META_FILE = "meta.json"

# Makes clips ``start .. start+count-1`` of a split, as named arrays of equal length.
ChunkGenerator = Callable[[str, int, int], dict[str, np.ndarray]]


def data_root() -> Path:
    """Where datasets are cached: ``$JEPA_DATA`` if set, else the user cache dir."""
    override = os.environ.get("JEPA_DATA")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("jepa-orchestrator"))


def config_fingerprint(cfg, generator_version: int, omit: tuple[str, ...] = ()) -> str:
    """Short hash of a dataset config (a dataclass) together with the version of the code making it.
    `omit` leaves keys out, so a key added later hashes old configs as before when at its default."""
    payload = {"generator_version": generator_version, **asdict(cfg)}
    for key in omit:
        del payload[key]
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Independent stream per clip, so any chunking of a split gives the same clips."""
    split_id = zlib.crc32(split.encode())
    return np.random.default_rng(np.random.SeedSequence([seed, split_id, index]))


def dataset_dir(kind: str, fingerprint: str, root: Path | None = None) -> Path:
    """``<root or data_root()>/<kind>/<fingerprint>``, whether or not it has been made."""
    base = Path(root) if root is not None else data_root()
    return base / kind / fingerprint


def is_complete(directory: Path, fingerprint: str) -> bool:
    """A dataset counts as present only once its meta.json, written last, exists."""
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return meta.get("fingerprint") == fingerprint


def replace_atomically(path: Path, write: Callable) -> None:
    """Write through a temporary file so readers never see a partial file."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        write(handle)
    os.replace(tmp, path)


def write_json(path: Path, content: Mapping) -> None:
    """``content`` as indented, sorted JSON, replaced atomically (meta.json files)."""
    text = json.dumps(content, indent=2, sort_keys=True).encode()
    replace_atomically(path, lambda handle: handle.write(text))


def ensure_dataset(directory: Path, fingerprint: str, write: Callable[[Path], None]) -> Path:
    """Run ``write(directory)`` unless a complete copy exists; return the directory.

    Concurrent callers (several workers starting at once) serialise on a file
    lock: one generates, the others wait and then reuse its output.
    """
    if is_complete(directory, fingerprint):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / ".lock")):
        if not is_complete(directory, fingerprint):
            write(directory)
    return directory


def _write_split(
    generate: ChunkGenerator, shard_size: int, directory: Path, split: str, total: int
) -> list[str]:
    names = []
    for k, start in enumerate(range(0, total, shard_size)):
        arrays = generate(split, start, min(shard_size, total - start))
        name = f"{split}-{k:05d}.npz"
        replace_atomically(directory / name, partial(np.savez, **arrays))
        names.append(name)
    return names


def write_dataset(cfg, directory: Path, generate: ChunkGenerator, extra_meta: Mapping) -> None:
    """Shards of every split, then meta.json last, so that it marks a complete dataset.

    ``cfg`` is a dataset config: a dataclass with ``num_train``, ``num_val``,
    ``shard_size`` and ``fingerprint()``.
    """
    counts = {"train": cfg.num_train, "val": cfg.num_val}
    shards = {
        split: _write_split(generate, cfg.shard_size, directory, split, counts[split])
        for split in SPLITS
    }
    meta = {
        "fingerprint": cfg.fingerprint(),
        "config": asdict(cfg),
        "counts": counts,
        "shards": shards,
        **extra_meta,
    }
    write_json(directory / META_FILE, meta)


def _read_meta(path: Path, kind: str, hint: str) -> dict:
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"No complete {kind} dataset at {path} ({META_FILE} is missing). "
            f"Generate it with `{hint}`."
        )
    return json.loads(meta_path.read_text())


def _empty_split(config: Mapping, arrays: Mapping[str, np.dtype]) -> dict[str, np.ndarray]:
    frames, size = config["frames"], config["size"]
    empty = {name: np.empty(0, dtype=dtype) for name, dtype in arrays.items()}
    return {"video": np.empty((0, frames, size, size, 3), dtype=np.uint8), **empty}


def load_split(
    path: Path, split: str, arrays: Mapping[str, np.dtype], kind: str, hint: str
) -> dict[str, np.ndarray]:
    """``video`` plus the per-clip ``arrays`` of one split, checked against meta.json.

    ``kind`` and ``hint`` (the command that makes the dataset) word the errors.
    """
    path = Path(path)
    meta = _read_meta(path, kind, hint)
    if split not in meta["shards"]:
        raise ValueError(f"Unknown split {split!r} in {path}; available: {sorted(meta['shards'])}")
    keys = ("video", *arrays)
    parts = []
    for name in meta["shards"][split]:
        with np.load(path / name, allow_pickle=False) as shard:
            parts.append({key: shard[key] for key in keys})
    if not parts:
        return _empty_split(meta["config"], arrays)
    loaded = {key: np.concatenate([part[key] for part in parts]) for key in keys}
    expected = meta["counts"][split]
    if len(loaded["video"]) != expected:
        raise ValueError(
            f"{path}: split {split!r} has {len(loaded['video'])} clips, meta.json says {expected}; "
            f"delete the directory and rerun `{hint}`."
        )
    return loaded


def load_npz_split(path: Path, split: str, kind: str, hint: str, count_key: str) -> dict[str, np.ndarray]:
    """One split written as a single ``<split>.npz``, its length (``count_key``'s) checked against meta.json;
    a missing or truncated copy names ``hint``, the command that makes it."""
    path = Path(path)
    count = _read_meta(path, kind, hint)["counts"][split]
    with np.load(path / f"{split}.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    if len(arrays[count_key]) != count:
        raise ValueError(f"{path}: split {split!r} has {len(arrays[count_key])} {kind} samples, meta.json says {count}; "
                         f"delete the directory and rerun `{hint}`.")
    return arrays


def steps_progress(total: int, desc: str):
    """A steps/s bar on stderr (shown on terminals only) for the simulators' generators."""
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", unit_scale=True, file=sys.stderr, disable=None)
