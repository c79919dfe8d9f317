"""Name -> variant class / dataset entry. Third parties add theirs through entry points.

Entry-point groups: `jepa_orchestrator.variants` (a Variant subclass) and
`jepa_orchestrator.datasets` (a DatasetEntry).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from torch.utils.data import Dataset

from variants.base import DataSpec, Variant


@dataclass(frozen=True)
class DatasetEntry:
    """How the orchestrator makes, describes and loads one dataset, given its config node."""

    name: str
    config_class: type
    describe: str
    prepare: Callable[[Any], str]  # generate if missing; return the dataset directory
    spec: Callable[[Any], DataSpec]
    load: Callable[[Any, str], Dataset]  # (data cfg, split) -> torch Dataset of dict samples
    # Cheap checks of the user's files on the driver, before Ray starts; raises a user error.
    check: Callable[[Any], None] | None = None


class UnknownNameError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


@functools.cache
def variants() -> dict[str, type[Variant]]:
    from variants.fb import FB
    from variants.salt import SALT
    from variants.td_jepa import TDJEPA
    from variants.vjepa import VJEPA

    from orchestrator.baselines import BASELINES  # not rl_baselines: listing variants must not import RLlib

    found: dict[str, type[Variant]] = {cls.name: cls for cls in (VJEPA, SALT, TDJEPA, FB, *BASELINES)}
    for ep in entry_points(group="jepa_orchestrator.variants"):
        cls = ep.load()
        found[cls.name] = cls
    return found


@functools.cache
def datasets() -> dict[str, DatasetEntry]:
    from orchestrator.datasets import builtin_datasets

    found = {entry.name: entry for entry in builtin_datasets()}
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
