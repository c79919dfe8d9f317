"""What training has to beat: the same probes on a randomly initialised copy of the encoder
(`<metric>/random_init`) and on the raw inputs (`<metric>/raw_input`).

Neither depends on training, so both are computed once per (model, variant, data, eval, seed, stage)
and kept under the data cache (`envs.cache.data_root()/eval_baselines/<hash>.json`): a sweep pays once.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from filelock import FileLock
from omegaconf import OmegaConf

from envs.cache import data_root

KEYED_BY = ("model", "variant", "data", "eval", "seed")


def cache_path(cfg, stage: str) -> Path:
    """The cache file of this architecture + data + evaluation config."""
    plain = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in KEYED_BY}
    plain["stage"] = stage
    digest = hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return data_root() / "eval_baselines" / f"{digest}.json"


def cached(cfg, stage: str, compute) -> dict[str, float]:
    """The cached baselines, or `compute()` written atomically. Concurrent first trials of a sweep take
    turns on a file lock, so the ones that wait read the first one's result instead of computing it again."""
    path = cache_path(cfg, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_suffix(".lock")):  # released by the OS if its holder dies
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                pass  # damaged: compute again
        metrics = compute()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(metrics, sort_keys=True))
        os.replace(tmp, path)
    return metrics


def suffixed(metrics: dict[str, float], baseline: str) -> dict[str, float]:
    return {f"{k}/{baseline}": v for k, v in metrics.items()}
