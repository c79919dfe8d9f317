"""Tables for T-JEPA: scikit-learn's bundled ones, generated ones, and a user's own CSV (read with polars).

Every table comes out in one shape (`Table`): one float column per feature, categorical columns as integer
codes, missing cells as NaN, and a class label or a float target. `split_table` cuts it into fixed
train/val/test rows per seed and standardises numeric columns with the train rows' statistics only, so
nothing about the held-out rows leaks into the inputs. Constant columns carry nothing and are dropped with a
warning (digits has all-zero pixel columns). Problems with a user's file raise `TableError`, whose message
names the column or line and ends with the fix.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

BUNDLED = ("breast_cancer", "wine", "digits", "diabetes")  # shipped inside scikit-learn: nothing is downloaded
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})  # cells read as missing (any case)
NUMERIC_SHARE = 0.95  # a column whose present cells parse as numbers at least this often is numeric
MAX_AUTO_CLASSES = 20  # an integer-valued target with at most this many values is read as class labels
TASKS = ("auto", "classification", "regression")


class TableError(ValueError):
    """A table that cannot be used as given; the message names the column or line and the fix."""


@dataclass
class Table:
    """Features [N, F] (numeric values, categorical codes as floats, NaN = missing) and the target."""

    columns: list[str]
    categories: list[int]  # per column: its number of categories, 0 = numeric
    x: np.ndarray  # float64 [N, F]
    y: np.ndarray  # int64 class labels, or float64 targets
    num_classes: int  # 0 = regression
    notes: list[str] = field(default_factory=list)  # what was inferred, for the user
    warnings: list[str] = field(default_factory=list)  # what was changed (dropped columns, rows)


# ---------------------------------------------------------------------------- sources
def bundled(name: str) -> Table:
    """One of scikit-learn's bundled tables (all numeric); diabetes is a regression, the others classify."""
    from sklearn import datasets

    if name not in BUNDLED:
        raise TableError(f"no bundled table {name!r}. Fix: use one of {', '.join(BUNDLED)}")
    bunch = getattr(datasets, f"load_{name}")()
    classes = 0 if name == "diabetes" else int(bunch.target.max()) + 1
    y = bunch.target.astype(np.int64 if classes else np.float64)
    return Table([str(c) for c in bunch.feature_names], [0] * bunch.data.shape[1], bunch.data.astype(np.float64), y, classes)


def generated(task: str, n_samples: int = 2000, n_informative: int = 8, n_redundant: int = 8, n_noise: int = 8,
              n_categorical: int = 4, n_classes: int = 3, levels: int = 5, seed: int = 0) -> Table:
    """A make_classification / make_regression table whose columns are informative, redundant (linear
    mixtures of the informative ones plus noise), pure noise, and `n_categorical` informative columns cut
    into `levels` quantile bins (categorical codes). The table is fixed by `seed`; the splits follow the run's."""
    from sklearn.datasets import make_classification, make_regression

    rng = np.random.default_rng(seed)
    if task == "classification":
        informative, y = make_classification(n_samples, n_informative, n_informative=n_informative, n_redundant=0,
                                             n_classes=n_classes, n_clusters_per_class=2, flip_y=0.02, random_state=seed)
        y, classes = y.astype(np.int64), n_classes
    elif task == "regression":
        informative, y = make_regression(n_samples, n_informative, n_informative=n_informative, noise=10.0, random_state=seed)
        y, classes = y.astype(np.float64), 0
    else:
        raise TableError(f"generated task {task!r}. Fix: use classification or regression")
    redundant = informative @ rng.normal(size=(n_informative, n_redundant)) / math.sqrt(n_informative)
    redundant += 0.1 * rng.normal(size=redundant.shape)
    noise = rng.normal(size=(n_samples, n_noise))
    n_categorical = min(n_categorical, n_informative)
    binned = [np.searchsorted(np.quantile(col, np.linspace(0, 1, levels + 1)[1:-1]), col) for col in informative[:, :n_categorical].T]
    x = np.column_stack([*binned, informative[:, n_categorical:], redundant, noise]).astype(np.float64)
    columns = ([f"cat_{i}" for i in range(n_categorical)] + [f"informative_{i}" for i in range(n_categorical, n_informative)]
               + [f"redundant_{i}" for i in range(n_redundant)] + [f"noise_{i}" for i in range(n_noise)])
    categories = [levels] * n_categorical + [0] * (x.shape[1] - n_categorical)
    return Table(columns, categories, x, y, classes)


# ---------------------------------------------------------------------------- a user's CSV
def check_structure(path: Path) -> list[str]:
    """The header, after checking that every line has as many fields as it (polars would pad short rows
    silently and reject long ones without naming the line). Blank lines are skipped."""
    fix_rows = "Fix: give every line one value per header column (leave a cell empty for a missing value)"
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next((row for row in reader if row), None)
        if header is None:
            raise TableError(f"{path} is empty. Fix: point data.path at a CSV with a header line and one line per row")
        rows = 0
        for row in reader:
            if not row:
                continue
            rows += 1
            if len(row) != len(header):
                raise TableError(f"{path}, line {reader.line_num}: {len(row)} fields, but the header has {len(header)} "
                                 f"({', '.join(header)}). {fix_rows}")
    if rows == 0:
        raise TableError(f"{path} has a header but no rows. Fix: add one line per row below the header")
    blank = [i + 1 for i, name in enumerate(header) if not name.strip()]
    if blank:
        raise TableError(f"{path}: header field(s) {blank} have no name. Fix: name every column in the header line")
    return header


def _is_missing(cell: str | None) -> bool:
    return cell is None or cell.strip().lower() in MISSING_TOKENS


def _as_number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _column_values(name: str, cells: list[str | None], forced_categorical: bool) -> tuple[np.ndarray, int, str]:
    """(values with NaN for missing, categories or 0, how it was read) for one column.

    A column whose present cells are at least NUMERIC_SHARE numbers but not all is a typo, not a category:
    an error naming the first bad row (row 1 = the line after the header)."""
    present = [(i, c.strip()) for i, c in enumerate(cells) if not _is_missing(c)]
    numbers = {i: _as_number(c) for i, c in present}
    bad = [(i, c) for i, c in present if numbers[i] is None]
    if not forced_categorical and present and not bad:
        values = np.full(len(cells), np.nan)
        for i, v in numbers.items():
            values[i] = v
        return values, 0, "numeric"
    if not forced_categorical and present and (len(present) - len(bad)) / len(present) >= NUMERIC_SHARE:
        row, cell = bad[0]
        raise TableError(f"column {name!r} is numeric in {len(present) - len(bad)} of {len(present)} cells but row {row + 1} "
                         f"(file line {row + 2}) holds {cell!r}{f', and {len(bad) - 1} more cell(s)' if len(bad) > 1 else ''}. "
                         f"Fix: correct that cell, leave it empty if it is missing, or list the column in data.categorical")
    levels = sorted({c for _, c in present})
    code = {level: k for k, level in enumerate(levels)}
    values = np.full(len(cells), np.nan)
    for i, c in present:
        values[i] = code[c]
    return values, max(1, len(levels)), "categorical (named in data.categorical)" if forced_categorical else "categorical"


def _target(name: str, cells: list[str | None], task: str, forced_categorical: bool) -> tuple[np.ndarray, int, str]:
    """The target column as labels (classification) or floats (regression), NaN where missing."""
    present = [c.strip() for c in cells if not _is_missing(c)]
    numeric = bool(present) and all(_as_number(c) is not None for c in present)
    if task == "regression" and not numeric:
        first = next(c for c in present if _as_number(c) is None)
        raise TableError(f"target column {name!r} holds {first!r}, not a number, but data.task is regression. "
                         f"Fix: correct the column, or set data.task=classification")
    if task == "auto":
        distinct = {_as_number(c) for c in present} if numeric else set()
        small_ints = numeric and len(distinct) <= MAX_AUTO_CLASSES and all(float(v).is_integer() for v in distinct)
        task = "classification" if forced_categorical or not numeric or small_ints else "regression"
    if task == "regression":
        values = np.array([np.nan if _is_missing(c) else float(c) for c in cells])
        return values, 0, "regression (numbers)"
    values, classes, _ = _column_values(name, cells, forced_categorical=True)
    return values, classes, f"classification ({classes} classes)"


def read_csv(path: str | Path, target: str, categorical: list[str] | tuple[str, ...] = (), task: str = "auto") -> Table:
    """A user's CSV as a Table: every column's type inferred (and noted), rows without a target dropped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TableError(f"data.path: no such file {str(path)!r}. Fix: point data.path at your CSV file")
    if task not in TASKS:
        raise TableError(f"data.task is {task!r}. Fix: use one of {', '.join(TASKS)}")
    header = check_structure(path)
    frame = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")  # every cell as text: we infer the types
    names = frame.columns
    if target not in names:
        raise TableError(f"data.target: no column {target!r} in {path} (columns: {', '.join(names)}). "
                         f"Fix: set data.target to one of them")
    unknown = [c for c in categorical if c not in names]
    if unknown:
        raise TableError(f"data.categorical names {unknown}, not columns of {path} (columns: {', '.join(names)}). "
                         f"Fix: list only column names from the header")
    if len(set(header)) != len(header):
        raise TableError(f"{path}: the header repeats column name(s) {sorted({h for h in header if header.count(h) > 1})}. "
                         f"Fix: give every column its own name")
    y, classes, how = _target(target, frame.get_column(target).to_list(), task, target in categorical)
    notes, columns, kinds, values = [f"target {target!r}: {how}"], [], [], []
    for name in names:
        if name == target:
            continue
        col, cats, read_as = _column_values(name, frame.get_column(name).to_list(), name in categorical)
        columns.append(name)
        kinds.append(cats)
        values.append(col)
        missing = int(np.isnan(col).sum())
        notes.append(f"column {name!r}: {read_as}{f', {cats} categories' if cats else ''}"
                     f"{f', {missing} missing cell(s)' if missing else ''}")
    keep = ~np.isnan(y)
    warnings = [] if keep.all() else [f"dropped {int((~keep).sum())} row(s) whose target {target!r} is missing"]
    x = np.column_stack(values) if values else np.zeros((len(y), 0))
    y = y[keep].astype(np.int64) if classes else y[keep]
    return Table(columns, kinds, x[keep], y, classes, notes, warnings)


# ---------------------------------------------------------------------------- shared clean-up
def drop_constant(table: Table) -> Table:
    """Without the columns that hold one value (or none) in every row: they carry nothing to learn from."""
    keep, dropped = [], []
    for j, name in enumerate(table.columns):
        present = table.x[:, j][~np.isnan(table.x[:, j])]
        (keep if present.size and np.ptp(present) > 0 else dropped).append(j)
    if not dropped:
        return table
    shown = ", ".join(repr(table.columns[j]) for j in dropped[:8]) + (f" and {len(dropped) - 8} more" if len(dropped) > 8 else "")
    warning = f"dropped {len(dropped)} constant column(s): {shown} (one value in every row: nothing to learn from)"
    if not keep:
        raise TableError(f"every feature column is constant ({shown}). Fix: use a table whose columns vary")
    return replace(table, columns=[table.columns[j] for j in keep], categories=[table.categories[j] for j in keep],
                   x=table.x[:, keep], warnings=[*table.warnings, warning])


def with_missing(table: Table, share: float, seed: int) -> Table:
    """A copy with `share` of the feature cells set missing at random (to exercise the missing-value token)."""
    if share <= 0:
        return table
    x = table.x.copy()
    x[np.random.default_rng(seed).random(x.shape) < share] = np.nan
    return replace(table, x=x)


# ---------------------------------------------------------------------------- splits
SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split: the model's input (numeric columns standardised, codes, NaN), the raw-feature baseline's
    input (standardised numerics with missing cells at the train mean, categoricals one-hot) and the target."""

    x: np.ndarray  # float32 [n, F]
    raw: np.ndarray  # float32 [n, R]
    y: np.ndarray


def split_rows(n: int, seed: int, val_frac: float, test_frac: float) -> dict[str, np.ndarray]:
    """Row indices of each split, fixed by `seed` (a permutation cut into train | val | test)."""
    order = np.random.default_rng(np.random.SeedSequence([seed, 7919])).permutation(n)
    n_val, n_test = round(n * val_frac), round(n * test_frac)
    if min(n_val, n_test, n - n_val - n_test) < 1:
        raise TableError(f"{n} rows cannot make train, val and test splits with data.val_frac={val_frac} and "
                         f"data.test_frac={test_frac}. Fix: use a larger table or other fractions")
    return {"train": order[n_val + n_test:], "val": order[:n_val], "test": order[n_val:n_val + n_test]}


def split_table(table: Table, seed: int, val_frac: float = 0.15, test_frac: float = 0.15) -> dict[str, Split]:
    """Fixed splits per seed; numeric columns standardised with the train rows' mean and std only."""
    rows = split_rows(len(table.y), seed, val_frac, test_frac)
    numeric = np.array([c == 0 for c in table.categories], dtype=bool)
    train = table.x[rows["train"]][:, numeric]
    with np.errstate(all="ignore"):
        mean = np.nan_to_num(np.nanmean(train, axis=0)) if train.size else np.zeros(0)
        std = np.nan_to_num(np.nanstd(train, axis=0)) if train.size else np.zeros(0)
    std[std == 0] = 1.0
    out = {}
    for name, idx in rows.items():
        x = table.x[idx].copy()
        x[:, numeric] = (x[:, numeric] - mean) / std
        out[name] = Split(x.astype(np.float32), raw_features(x, table.categories).astype(np.float32), table.y[idx])
    return out


def raw_features(x: np.ndarray, categories: list[int]) -> np.ndarray:
    """What an MLP on raw features sees: standardised numerics (missing = 0, the train mean), one-hot categoricals."""
    parts = []
    for j, cats in enumerate(categories):
        col = x[:, j]
        if cats:
            codes = np.nan_to_num(col, nan=-1).astype(np.int64)
            parts.append((codes[:, None] == np.arange(cats)[None, :]).astype(np.float64))
        else:
            parts.append(np.nan_to_num(col, nan=0.0)[:, None])
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(x), 0))
