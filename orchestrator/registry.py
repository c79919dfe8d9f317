"""Name -> variant class / dataset entry. Third parties add theirs through entry points.

Entry-point groups: `jepa_orchestrator.variants` (a Variant subclass) and
`jepa_orchestrator.datasets` (a DatasetEntry, see `orchestrator/entries.py`).
"""
from __future__ import annotations

import functools
import json
from importlib.metadata import entry_points

from omegaconf import OmegaConf

from orchestrator.datasets import video_datasets
from orchestrator.entries import DatasetEntry, UnknownNameError
from orchestrator.image_data import image_entries
from orchestrator.imitation_data import manipulation_entries
from orchestrator.lidar_data import lidar_entries
from orchestrator.linear_data import linear_entries
from orchestrator.object_views_data import object_views_entries
from orchestrator.rl.baseline_variants import BASELINES  # RLlib-free: listing variants must not import RLlib
from orchestrator.rl.datasets import exorl_entries, ogbench_entries
from orchestrator.tabular_datasets import tabular_entries
from orchestrator.ui_data import ui_entries
from variants.act import ACT
from variants.act_jepa import ACTJEPA
from variants.ad_l_jepa import ADLJEPA
from variants.base import Variant, check_contract
from variants.dmt_jepa import DMTJEPA
from variants.fb import FB
from variants.ijepa import IJEPA
from variants.linear_jepa import LinearJEPA
from variants.occupancy_mae import OccupancyMAE
from variants.salt import SALT
from variants.seq_jepa import SEQ_JEPA_VARIANTS
from variants.t_jepa import TJEPA
from variants.td_jepa import TDJEPA
from variants.ui_jepa import UIJEPA
from variants.vjepa import VJEPA


@functools.cache
def variants() -> dict[str, type[Variant]]:
    found: dict[str, type[Variant]] = {cls.name: cls for cls in (VJEPA, UIJEPA, SALT, TDJEPA, FB, TJEPA, LinearJEPA, IJEPA, DMTJEPA, ADLJEPA, OccupancyMAE, *SEQ_JEPA_VARIANTS, ACT, ACTJEPA, *BASELINES)}
    for ep in entry_points(group="jepa_orchestrator.variants"):
        cls = ep.load()
        found[cls.name] = cls
    for cls in found.values():  # a declared host and every member it calls, before any run
        check_contract(cls)
    return found


@functools.cache
def datasets() -> dict[str, DatasetEntry]:
    found = {entry.name: entry for entry in video_datasets() + exorl_entries() + ogbench_entries() + tabular_entries() + linear_entries() + lidar_entries() + image_entries() + ui_entries() + object_views_entries() + manipulation_entries()}
    for ep in entry_points(group="jepa_orchestrator.datasets"):
        entry = ep.load()
        found[entry.name] = entry
    return found


def variant(name: str) -> type[Variant]:
    try:
        return variants()[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown variant {name!r}; known: {', '.join(sorted(variants()))}. Fix: `variant=<one of them>`"
        ) from None


def dataset(name: str) -> DatasetEntry:
    try:
        return datasets()[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(datasets()))}. Fix: `data=<one of them>`"
        ) from None


def check_data(data_cfg, seen: set[str] | None = None) -> None:
    """Run the dataset's own checks of the user's files (once per distinct data config in `seen`).

    Called on the driver before Ray starts, so bad files fail in seconds with `error: ... Fix:`.
    """
    key = json.dumps(OmegaConf.to_container(data_cfg, resolve=False), sort_keys=True, default=str)
    if seen is not None:
        if key in seen:
            return
        seen.add(key)
    entry = dataset(data_cfg.name)
    if entry.check is not None:
        entry.check(data_cfg)
