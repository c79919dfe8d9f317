"""What a dataset entry is, and the user errors that naming or describing one raises.

A leaf: the registry, the dataset modules and the config all build on it, and it imports none of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch.utils.data import Dataset

from variants.base import DataSpec


class ConfigError(ValueError):
    """A config problem the user can fix; the message names the key and the fix."""


class UnknownNameError(KeyError):
    """A variant or dataset name that nothing registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


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
