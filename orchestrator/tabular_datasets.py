"""Tabular dataset entries (T-JEPA): scikit-learn's bundled tables, generated ones, and `data=csv`.

Tables are small, so nothing is cached on disk: a table is read (or made) once per process and config and
split in memory. The split follows `data.seed`, which defaults to the run's `seed`, so each seed of a sweep
gets its own fixed train/val/test rows. Evaluations fit on train and score on val; test is held out.
A user's CSV is checked on the driver before Ray starts: what was inferred is printed, bad cells, a missing
target column, an empty file or a line whose fields disagree with the header fail with the fix.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from envs import tabular
from orchestrator.datasets import DataError
from orchestrator.entries import DatasetEntry
from variants.base import DataSpec


@dataclass
class TabularData:
    """What every table node has: the split (seeded by the run's seed unless set) and injected missing cells."""

    name: str = "tabular"
    seed: Any = "${seed}"  # the run's seed: each seed of a sweep has its own fixed split
    val_frac: float = 0.15
    test_frac: float = 0.15
    missing_frac: float = 0.0  # share of feature cells blanked at random (exercises the missing-value token)


@dataclass
class GeneratedTableData(TabularData):
    """make_classification / make_regression with redundant, noise and categorical columns (envs/tabular.py)."""

    n_samples: int = 2000
    n_informative: int = 8
    n_redundant: int = 8
    n_noise: int = 8
    n_categorical: int = 4
    n_classes: int = 3  # classification only
    table_seed: int = 0  # the table itself; the split follows `seed`


@dataclass
class CsvData(TabularData):
    """A user's CSV: `data=csv data.path=FILE data.target=COL [data.categorical=[a,b]] [data.task=regression]`."""

    name: str = "csv"
    path: str = "???"
    target: str = "???"
    categorical: list[str] = field(default_factory=list)  # columns to read as categories even if numeric
    task: str = "auto"  # auto | classification | regression (auto: text or <= 20 integer values -> classes)


def _plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)


def _user_error(err: tabular.TableError, cfg: dict) -> DataError:
    where = f"data={cfg['name']}" + (f" ({cfg['path']})" if cfg.get("path") else "")
    return DataError(f"{where}: {err}")


@functools.lru_cache(maxsize=32)
def _table(key: str) -> tabular.Table:
    """The table a data config names, constant columns dropped, missing cells injected if asked."""
    cfg = json.loads(key)
    name = cfg["name"]
    try:
        if name == "csv":
            table = tabular.read_csv(cfg["path"], cfg["target"], tuple(cfg["categorical"]), cfg["task"])
        elif name in tabular.BUNDLED:
            table = tabular.bundled(name)
        else:
            table = tabular.generated(name.removeprefix("synthetic_"), int(cfg["n_samples"]), int(cfg["n_informative"]),
                                      int(cfg["n_redundant"]), int(cfg["n_noise"]), int(cfg["n_categorical"]),
                                      int(cfg["n_classes"]), seed=int(cfg["table_seed"]))
        table = tabular.drop_constant(table)
    except tabular.TableError as err:
        raise _user_error(err, cfg) from None
    return tabular.with_missing(table, float(cfg["missing_frac"]), int(cfg["seed"]))


def _table_key(cfg) -> str:
    """The config fields that decide the table (not the split)."""
    plain = _plain(cfg)
    return json.dumps({k: v for k, v in plain.items() if k not in ("val_frac", "test_frac", "root")}, sort_keys=True)


@functools.lru_cache(maxsize=32)
def _splits(key: str, seed: int, val_frac: float, test_frac: float) -> dict[str, tabular.Split]:
    try:
        return tabular.split_table(_table(key), seed, val_frac, test_frac)
    except tabular.TableError as err:
        raise _user_error(err, json.loads(key)) from None


def table_of(cfg) -> tabular.Table:
    """The (cleaned) table of a data config."""
    return _table(_table_key(cfg))


def splits_of(cfg) -> dict[str, tabular.Split]:
    plain = _plain(cfg)
    return _splits(_table_key(cfg), int(plain["seed"]), float(plain["val_frac"]), float(plain["test_frac"]))


class TableRows(Dataset):
    """One split's rows: `x` (the model's input), `raw` (the raw-feature baseline's) and `label` or `target`."""

    def __init__(self, split: tabular.Split, classification: bool):
        self.x, self.raw = torch.from_numpy(split.x), torch.from_numpy(split.raw)
        self.key = "label" if classification else "target"
        self.y = torch.from_numpy(split.y).long() if classification else torch.from_numpy(split.y).float().unsqueeze(1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "raw": self.raw[i], self.key: self.y[i]}


def load_table(cfg, split: str) -> TableRows:
    if split not in tabular.SPLITS:
        raise DataError(f"data={cfg.name}: no split {split!r}. Fix: use one of {', '.join(tabular.SPLITS)}")
    return TableRows(splits_of(cfg)[split], bool(table_of(cfg).num_classes))


def table_spec(cfg) -> DataSpec:
    table = table_of(cfg)
    targets = {"num_classes": {"label": table.num_classes}} if table.num_classes else {"float_targets": {"target": 1}}
    return DataSpec(kind="tabular", input_key="x", inputs={"x": (len(table.columns),)},
                    categories=tuple(table.categories), raw_key="raw", **targets)


def prepare_table(cfg) -> str:
    table = table_of(cfg)
    kinds = sum(1 for c in table.categories if c)
    return (f"{cfg.get('path') or cfg.name}: {len(table.y)} rows, {len(table.columns)} feature columns "
            f"({kinds} categorical), {f'{table.num_classes} classes' if table.num_classes else 'regression'}")


def check_table(cfg) -> None:
    """On the driver, before Ray starts: fractions that leave every split rows, the table readable; a CSV's
    inferred types and any dropped columns or rows are printed."""
    for key in ("val_frac", "test_frac"):
        if not 0.0 < cfg[key] < 1.0:
            raise DataError(f"data.{key} is {cfg[key]}. Fix: use a share of the rows strictly between 0 and 1, e.g. 0.15")
    if cfg.val_frac + cfg.test_frac >= 1.0:
        raise DataError(f"data.val_frac + data.test_frac is {cfg.val_frac + cfg.test_frac}, leaving no training rows. "
                        "Fix: make them sum to less than 1 (e.g. 0.15 each)")
    if not 0.0 <= cfg.missing_frac < 1.0:
        raise DataError(f"data.missing_frac is {cfg.missing_frac}. Fix: use a share of the cells in [0, 1)")
    if cfg.name == "csv" and OmegaConf.is_missing(cfg, "path"):
        raise DataError("data.path is not set. Fix: data=csv data.path=FILE data.target=COLUMN")
    if cfg.name == "csv" and OmegaConf.is_missing(cfg, "target"):
        raise DataError("data.target is not set. Fix: name the column to predict, e.g. data.target=price")
    table = table_of(cfg)
    splits_of(cfg)
    if cfg.name == "csv":
        print(f"data.path {cfg.path}: {prepare_table(cfg).split(': ', 1)[1]}", file=sys.stderr)
        for note in table.notes:
            print(f"  {note}", file=sys.stderr)
    for warning in table.warnings:
        print(f"warning: data={cfg.name}: {warning}", file=sys.stderr)


def _node(name: str, base: type, **defaults) -> type:
    """A table's Hydra node: `base` with its own name (and other defaults)."""
    fields = [("name", str, dataclasses.field(default=name))]
    fields += [(k, type(v), dataclasses.field(default=v)) for k, v in defaults.items()]
    return dataclasses.make_dataclass(f"{name.title().replace('_', '')}Data", fields, bases=(base,))


def tabular_entries() -> list[DatasetEntry]:
    """breast_cancer, wine, digits, diabetes (scikit-learn's), synthetic_classification, synthetic_regression, csv."""
    described = {"breast_cancer": "569 rows, 30 numeric columns, 2 classes", "wine": "178 rows, 13 numeric columns, 3 classes",
                 "digits": "1797 8x8 images as 64 pixel columns (3 constant, dropped), 10 classes",
                 "diabetes": "442 rows, 10 numeric columns, a float target"}
    entries = [DatasetEntry(name, _node(name, TabularData), f"table (scikit-learn, bundled): {what}",
                            prepare_table, table_spec, load_table, check_table) for name, what in described.items()]
    for task in ("classification", "regression"):
        name = f"synthetic_{task}"
        entries.append(DatasetEntry(name, _node(name, GeneratedTableData),
                                    f"table (make_{task}): informative, redundant, noise and categorical columns",
                                    prepare_table, table_spec, load_table, check_table))
    entries.append(DatasetEntry("csv", CsvData, "your own table: data.path=FILE.csv data.target=COLUMN (read with polars)",
                                prepare_table, table_spec, load_table, check_table))
    return entries
