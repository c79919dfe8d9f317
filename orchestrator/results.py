"""Results store: append-only Parquet event and metric files per sweep.

Every trial on every node writes its own small, uniquely named files, so no two
writers ever touch the same file and no locking is needed. Readers reconstruct
the current state (latest event per run) from all files of a sweep.

Layout under the root::

    <root>/<sweep>/sweep.yaml
    <root>/<sweep>/runs/<run_id>-<time_ns>-<uuid8>.parquet      run events
    <root>/<sweep>/metrics/<run_id>-<time_ns>-<uuid8>.parquet   metric rows
    <root>/<sweep>/artifacts/<run_id>-<time_ns>-<uuid8>.npz     logged arrays: one step's tensors each
    <root>/<sweep>/stages/<run_id>/<stage>.pt                    stage files (a SALT teacher) later runs reuse

A trial resumed or retried from its last checkpoint logs again the steps between
that checkpoint and the interruption, so readers keep one row per (run_id, step,
metric): the one from the newest file (and one array per (run_id, step, name)). A file that cannot be read (torn by a crash,
a full disk) is skipped with a DamagedFileWarning naming it; `check` lists them all.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import re
import subprocess
import threading
import time
import uuid
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

ADHOC_SWEEP = "adhoc"
RUN_STATUSES = ("running", "finished", "failed", "stopped")

RUN_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("sweep", pa.string()),
        ("variant", pa.string()),
        ("stage", pa.string()),
        ("config", pa.string()),
        ("git_sha", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("started_at", pa.float64()),
        ("updated_at", pa.float64()),
    ]
)

METRIC_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("flops", pa.float64()),
        ("wall_s", pa.float64()),
        ("metric", pa.string()),
        ("value", pa.float64()),
    ]
)

_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._=+-]")
_FILENAME_COLUMN = "__filename"
_WRITTEN_NS = re.compile(r"-(\d+)-[0-9a-f]{8}\.parquet$")
_ARRAY_WRITTEN_NS = re.compile(r"-(\d+)-[0-9a-f]{8}\.npz$")
# Reserved members of an artifact .npz: who logged it and at which step (array names never start with "__").
_STEP_KEY, _RUN_KEY = "__step__", "__run_id__"
ARTIFACT_INDEX_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("name", pa.string()),
        ("shape", pa.list_(pa.int64())),
        ("dtype", pa.string()),
        ("file", pa.string()),
    ]
)
_ARRAY_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)
METRIC_KEY = ("run_id", "step", "metric")
GIT_SHA_ENV = "JEPA_GIT_SHA"
GIT_SHA_FILE = "GIT_SHA"
_UNKNOWN_SHA = "unknown"
_READ_ERRORS = (pa.ArrowException, OSError)
_OPEN_PREFIX = re.compile(r"^Could not open Parquet input source '.*?': ")


class DamagedFileWarning(UserWarning):
    """A results file that cannot be read was skipped; every other row is still returned."""


_clock_lock = threading.Lock()
_last_event_time = 0.0


def resolve_storage(storage: str | os.PathLike) -> str:
    """A URI as given; a local path made absolute (trials run in other working directories)."""
    text = os.fspath(storage)
    return text if "://" in text else os.path.abspath(os.path.expanduser(text))


def _git_head(directory: str) -> str | None:
    """HEAD of the checkout holding `directory`, or None outside one (or without git)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and sha else None


def _sha_from_env() -> str | None:
    sha = os.environ.get(GIT_SHA_ENV, "").strip()
    return sha if sha and sha != _UNKNOWN_SHA else None


def _sha_from_file() -> str | None:
    try:
        with open(GIT_SHA_FILE, encoding="utf-8") as handle:
            sha = handle.readline().strip()
    except OSError:
        return None
    return sha if sha and sha != _UNKNOWN_SHA else None


def git_sha() -> str:
    """Commit of the code that runs, so every run is traceable to it.

    `ray job submit --working-dir` uploads no .git, so a trial first takes the commit its
    driver set in JEPA_GIT_SHA; then the checkout of the cwd, then that of the installed
    package, then a GIT_SHA file in the cwd (e.g. written into an image); else "unknown".
    """
    package_dir = os.path.dirname(os.path.abspath(__file__))
    sources = (_sha_from_env, lambda: _git_head(os.getcwd()), lambda: _git_head(package_dir), _sha_from_file)
    for source in sources:
        sha = source()
        if sha:
            return sha
    return _UNKNOWN_SHA


def _event_time() -> float:
    """Wall clock that never repeats in this process, so event order is total."""
    global _last_event_time
    with _clock_lock:
        now = max(time.time(), _last_event_time + 1e-6)
        _last_event_time = now
        return now


def _safe_filename_part(text: str) -> str:
    """Run ids become file names: keep them flat and never hidden."""
    safe = _UNSAFE_FILENAME_CHARS.sub("_", text) or "run"
    return "_" + safe[1:] if safe.startswith(".") else safe


def _unique_file_name(run_id: str, suffix: str = ".parquet") -> str:
    """Name that no other writer on any node can produce."""
    return f"{_safe_filename_part(run_id)}-{time.time_ns()}-{uuid.uuid4().hex[:8]}{suffix}"


def _artifact_arrays(arrays: dict) -> dict[str, np.ndarray]:
    """Names checked (not reserved, not empty), values made numpy arrays (no pickled objects)."""
    out = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or name.startswith("__"):
            raise ValueError(f"artifact name {name!r}: use a non-empty string not starting with '__'")
        array = np.asarray(value)
        if array.dtype == object:
            raise ValueError(f"artifact {name!r} is not a numeric array (dtype object)")
        out[name] = array
    return out


def _npz_bytes(run_id: str, step: int, arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{_STEP_KEY: np.int64(step), _RUN_KEY: np.str_(run_id)}, **arrays)
    return buffer.getvalue()


def _resolve_sweep(sweep: str | None) -> str:
    """Runs outside a sweep go to "adhoc"; names must be one visible path segment."""
    name = sweep or ADHOC_SWEEP
    if "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"invalid sweep name {name!r}: use one path segment not starting with '.'")
    return name


def _validate_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"invalid run status {status!r}; allowed: {', '.join(RUN_STATUSES)}")


def _metric_row(run_id: str, row: dict) -> dict:
    """Coerce one metric row (numpy scalars, ints) to the stored types."""
    missing = {"step", "flops", "wall_s", "metric", "value"} - row.keys()
    if missing:
        raise KeyError(f"metric row is missing {sorted(missing)}: {row!r}")
    value = row["value"]
    return {
        "run_id": run_id,
        "step": int(row["step"]),
        "flops": float(row["flops"]),
        "wall_s": float(row["wall_s"]),
        "metric": str(row["metric"]),
        "value": None if value is None else float(value),
    }


def _latest_events(events: pl.DataFrame) -> pl.DataFrame:
    """Latest event per run; started_at is the earliest one any event recorded."""
    first_start = events.group_by("run_id").agg(pl.col("started_at").min())
    latest = (
        events.sort(["updated_at", _FILENAME_COLUMN])
        .unique(subset="run_id", keep="last", maintain_order=True)
        .drop("started_at", _FILENAME_COLUMN)
        .join(first_start, on="run_id", how="left")
    )
    return latest.select(RUN_SCHEMA.names).sort(["started_at", "run_id"])


def _newest_metric_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per (run_id, step, metric), from the newest file.

    A resumed or retried trial re-logs the steps between its last checkpoint and the
    interruption; the rows written last are the ones the finished run carries on from.
    Files are named <run_id>-<time_ns>-<uuid8>.parquet, so time_ns orders them.
    """
    written = pl.col(_FILENAME_COLUMN).str.extract(_WRITTEN_NS.pattern, 1).cast(pl.Int64, strict=False)
    ordered = rows.with_columns(written.alias("_written_ns"), pl.int_range(pl.len()).alias("_row"))
    newest = ordered.sort(["_written_ns", _FILENAME_COLUMN, "_row"], nulls_last=False).unique(
        subset=list(METRIC_KEY), keep="last", maintain_order=True
    )
    return newest.drop("_written_ns", "_row", _FILENAME_COLUMN)


def _read_error_text(err: BaseException) -> str:
    """pyarrow's message without the path it repeats (the caller names the file)."""
    text = _OPEN_PREFIX.sub("", str(err)).strip()
    return f"{type(err).__name__}: {text}"


def _warn_damaged(path: str, error: str) -> None:
    warnings.warn(f"skipped unreadable results file {path}: {error}", DamagedFileWarning, stacklevel=2)


@contextlib.contextmanager
def reporting_damaged_files(show: Callable[[str], None]) -> Iterator[None]:
    """Hand each DamagedFileWarning raised inside to `show` once (e.g. a CLI's `warning:` line).

    Other warnings pass through to Python's usual display.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedFileWarning)
        try:
            yield
        finally:
            shown: set[str] = set()
            for record in caught:
                text = str(record.message)
                if not issubclass(record.category, DamagedFileWarning):
                    warnings.showwarning(record.message, record.category, record.filename, record.lineno)
                elif text not in shown:
                    shown.add(text)
                    show(text)


class ResultsStore:
    """Append-only run/metric store on a local path or any pyarrow filesystem URI."""

    def __init__(self, root: str | os.PathLike):
        root_text = os.fspath(root)
        if "://" in root_text:
            self.fs, base = pafs.FileSystem.from_uri(root_text)
            self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
            self._display_root = root_text.rstrip("/")
        else:
            self.fs = pafs.LocalFileSystem()
            base = os.path.abspath(os.path.expanduser(root_text))
            self.is_local = True
            self._display_root = base
        self.root = base.rstrip("/") or "/"
        self._git_sha: str | None = None
        self._started_at: dict[str, float] = {}

    # ---- paths -------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def sweep_dir(self, sweep: str) -> str:
        """Location of a sweep: a plain path for local roots, else a URI."""
        name = _resolve_sweep(sweep)
        if self.is_local:
            return self._path(name)
        return f"{self._display_root}/{name}"

    # ---- atomic writes -----------------------------------------------------

    def _write_atomically(self, directory: str, name: str, write) -> None:
        """Write under a hidden temp name, then rename: readers never see partial files."""
        self.fs.create_dir(directory, recursive=True)
        temp_path = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with self.fs.open_output_stream(temp_path) as stream:
                write(stream)
            self.fs.move(temp_path, f"{directory}/{name}")
        except BaseException:
            self._remove_quietly(temp_path)
            raise

    def _remove_quietly(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except (OSError, FileNotFoundError):
            pass

    def _write_table(self, directory: str, run_id: str, table: pa.Table) -> None:
        self._write_atomically(
            directory, _unique_file_name(run_id), lambda stream: pq.write_table(table, stream)
        )

    # ---- writes ------------------------------------------------------------

    def record_run(
        self,
        run_id: str,
        *,
        sweep: str,
        variant: str,
        stage: str,
        config: dict,
        status: str,
        error: str | None = None,
        started_at: float | None = None,
    ) -> None:
        """Append one status event for a run; the newest event is its current state."""
        _validate_status(status)
        sweep_name = _resolve_sweep(sweep)
        now = _event_time()
        if started_at is None:
            started_at = self._started_at.setdefault(run_id, now)
        else:
            self._started_at[run_id] = started_at
        if self._git_sha is None:
            self._git_sha = git_sha()
        event = {
            "run_id": run_id,
            "sweep": sweep_name,
            "variant": variant,
            "stage": stage,
            "config": json.dumps(config, sort_keys=True, default=str),
            "git_sha": self._git_sha,
            "status": status,
            "error": error,
            "started_at": float(started_at),
            "updated_at": now,
        }
        table = pa.Table.from_pylist([event], schema=RUN_SCHEMA)
        self._write_table(self._path(sweep_name, "runs"), run_id, table)

    def append_metrics(self, run_id: str, sweep: str, rows: list[dict]) -> None:
        """Append metric rows (step, flops, wall_s, metric, value) as one new file."""
        if not rows:
            return
        sweep_name = _resolve_sweep(sweep)
        table = pa.Table.from_pylist([_metric_row(run_id, row) for row in rows], schema=METRIC_SCHEMA)
        self._write_table(self._path(sweep_name, "metrics"), run_id, table)

    def save_sweep_spec(self, sweep: str, spec: dict) -> None:
        """Keep the sweep definition beside its results, so reports can reuse it."""
        sweep_name = _resolve_sweep(sweep)
        text = yaml.safe_dump(spec, sort_keys=False).encode()
        self._write_atomically(self._path(sweep_name), "sweep.yaml", lambda stream: stream.write(text))

    def append_artifacts(self, run_id: str, sweep: str, step: int, arrays: dict) -> str | None:
        """Keep one step's logged arrays (weight snapshots, per-feature curves) as one new .npz.

        `arrays` maps a name to anything `np.asarray` takes. Returns the file's path/URI (None if empty).
        """
        if not arrays:
            return None
        data = _npz_bytes(run_id, int(step), _artifact_arrays(arrays))
        directory = self._path(_resolve_sweep(sweep), "artifacts")
        name = _unique_file_name(run_id, ".npz")
        self._write_atomically(directory, name, lambda stream: stream.write(data))
        return self.artifact_location(f"{directory}/{name}")

    def save_stage_file(self, sweep: str, run_id: str, name: str, data: bytes) -> str:
        """Keep a stage file a later run can reuse (e.g. a trained SALT teacher); returns its path/URI."""
        directory = self._path(_resolve_sweep(sweep), "stages", _safe_filename_part(run_id))
        self._write_atomically(directory, name, lambda stream: stream.write(data))
        return self.artifact_location(f"{directory}/{name}")

    save_artifact = save_stage_file  # the older name of save_stage_file (stage files, not logged arrays)

    def artifact_location(self, path: str) -> str:
        return path if self.is_local else f"{self._display_root}/{path[len(self.root):].lstrip('/')}"

    def stage_files(self, sweep: str, name: str) -> list[str]:
        """Every run's stage file called `name` (e.g. "teacher.pt") in a sweep, oldest run first."""
        base = self._path(_resolve_sweep(sweep), "stages")
        selector = pafs.FileSelector(base, allow_not_found=True, recursive=True)
        found = [info for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File and info.base_name == name]
        return [self.artifact_location(info.path) for info in sorted(found, key=lambda i: (i.mtime_ns or 0, i.path))]

    artifacts = stage_files  # the older name of stage_files (stage files, not logged arrays)

    # ---- reads -------------------------------------------------------------

    def sweeps(self) -> list[str]:
        """Names of the sweeps present under the root."""
        selector = pafs.FileSelector(self.root, allow_not_found=True, recursive=False)
        infos = self.fs.get_file_info(selector)
        return sorted(
            info.base_name
            for info in infos
            if info.type == pafs.FileType.Directory and not info.base_name.startswith(".")
        )

    def load_sweep_spec(self, sweep: str, strict: bool = False) -> dict | None:
        """The spec saved by save_sweep_spec, or None if the sweep has none.

        A damaged spec is skipped with a DamagedFileWarning unless strict, so a report still shows the results.
        """
        path = self._path(_resolve_sweep(sweep), "sweep.yaml")
        if self.fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        try:
            with self.fs.open_input_stream(path) as stream:
                spec = yaml.safe_load(stream.read().decode())
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
            if strict:
                raise
            _warn_damaged(self.artifact_location(path), f"{type(err).__name__}: {err}")
            return None
        if spec is not None and not isinstance(spec, dict):
            if strict:
                raise yaml.YAMLError(f"expected a mapping, got {type(spec).__name__}")
            _warn_damaged(self.artifact_location(path), f"expected a mapping, got {type(spec).__name__}")
            return None
        return spec or {}

    def _data_files(self, kind: str, sweep: str | None, run_id: str | None = None, suffix: str = ".parquet") -> list[str]:
        """Visible data files of one kind; a run id narrows by file-name prefix."""
        sweep_names = [_resolve_sweep(sweep)] if sweep is not None else self.sweeps()
        prefix = f"{_safe_filename_part(run_id)}-" if run_id is not None else ""
        files: list[str] = []
        for name in sweep_names:
            selector = pafs.FileSelector(self._path(name, kind), allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                base = info.base_name
                if (
                    info.type == pafs.FileType.File
                    and base.endswith(suffix)
                    and not base.startswith((".", "_"))
                    and base.startswith(prefix)
                ):
                    files.append(info.path)
        return sorted(files)

    def _scan(
        self, files: list[str], schema: pa.Schema, row_filter: pc.Expression | None, columns: list[str]
    ) -> pa.Table:
        dataset = ds.dataset(files, schema=schema, format="parquet", filesystem=self.fs)
        return dataset.to_table(columns=columns, filter=row_filter)

    def _read(
        self, files: list[str], schema: pa.Schema, row_filter: pc.Expression | None, with_filename: bool
    ) -> pa.Table:
        """Read many small files in parallel with one dataset scan; on failure, skip the unreadable ones."""
        columns = schema.names + ([_FILENAME_COLUMN] if with_filename else [])
        empty = schema.empty_table()
        if with_filename:
            empty = empty.append_column(_FILENAME_COLUMN, pa.array([], pa.string()))
        if not files:
            return empty
        try:
            return self._scan(files, schema, row_filter, columns)
        except _READ_ERRORS:
            pass  # some file is damaged: find it by reading each one
        tables = []
        for path, table, error in self._read_each(files, schema, row_filter, columns):
            if error is None:
                tables.append(table)
            else:
                _warn_damaged(self.artifact_location(path), error)
        return pa.concat_tables(tables) if tables else empty

    def _read_each(self, files, schema, row_filter, columns) -> list[tuple[str, pa.Table | None, str | None]]:
        """(path, table, None) for each readable file, (path, None, error) for each other one."""

        def read_one(path: str):
            try:
                return path, self._scan([path], schema, row_filter, columns), None
            except _READ_ERRORS as err:
                return path, None, _read_error_text(err)

        with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
            return list(pool.map(read_one, files))

    def check(self, sweep: str) -> list[tuple[str, str]]:
        """(path, error) of every results file of a sweep that cannot be read; empty when all are sound."""
        damaged = []
        for kind, schema in (("runs", RUN_SCHEMA), ("metrics", METRIC_SCHEMA)):
            files = self._data_files(kind, sweep)
            if files:
                results = self._read_each(files, schema, None, schema.names)
                damaged += [(self.artifact_location(p), e) for p, _, e in results if e is not None]
        for path in self._data_files("artifacts", sweep, suffix=".npz"):
            _, error = self._read_npz(path)
            if error is not None:
                damaged.append((self.artifact_location(path), error))
        spec_error = self._sweep_spec_error(sweep)
        if spec_error is not None:
            damaged.append(spec_error)
        return damaged

    def _sweep_spec_error(self, sweep: str) -> tuple[str, str] | None:
        path = self._path(_resolve_sweep(sweep), "sweep.yaml")
        try:
            self.load_sweep_spec(sweep, strict=True)
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
            return self.artifact_location(path), f"{type(err).__name__}: {err}"
        return None

    def runs(self, sweep: str | None = None) -> pl.DataFrame:
        """Latest event per run_id (all sweeps when sweep is None)."""
        table = self._read(self._data_files("runs", sweep), RUN_SCHEMA, None, with_filename=True)
        events = pl.from_arrow(table)
        if events.height == 0:
            return pl.from_arrow(RUN_SCHEMA.empty_table())
        return _latest_events(events)

    def metrics(self, sweep: str | None = None, run_id: str | None = None) -> pl.DataFrame:
        """Metric rows in long format, one per (run_id, step, metric); optionally one run; ordered by run, step."""
        row_filter = pc.field("run_id") == run_id if run_id is not None else None
        files = self._data_files("metrics", sweep, run_id)
        rows = pl.from_arrow(self._read(files, METRIC_SCHEMA, row_filter, with_filename=True))
        return _newest_metric_rows(rows).sort(["run_id", "step"], maintain_order=True)

    # ---- logged arrays -----------------------------------------------------

    def _read_npz(self, path: str) -> tuple[dict[str, np.ndarray] | None, str | None]:
        """(arrays, None) for a sound artifact file, (None, error) for a torn or foreign one."""
        try:
            with self.fs.open_input_stream(path) as stream:
                data = stream.read()
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            int(arrays[_STEP_KEY]), str(arrays[_RUN_KEY])
        except _ARRAY_READ_ERRORS as err:
            return None, f"{type(err).__name__}: {err}"
        return arrays, None

    def _artifact_files(self, sweep: str, run_id: str | None) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        """(path, arrays) of each readable artifact file, oldest written first; damaged ones warned about."""
        files = self._data_files("artifacts", sweep, run_id, suffix=".npz")

        def written(path: str) -> tuple[int, str]:
            found = _ARRAY_WRITTEN_NS.search(path)
            return (int(found.group(1)) if found else -1, path)

        for path in sorted(files, key=written):
            arrays, error = self._read_npz(path)
            if error is not None:
                _warn_damaged(self.artifact_location(path), error)
            elif run_id is None or str(arrays[_RUN_KEY]) == run_id:
                yield path, arrays

    def artifact_index(self, sweep: str, run_id: str | None = None) -> pl.DataFrame:
        """One row per logged array (run_id, step, name, shape, dtype, file), every file's, oldest first."""
        rows = []
        for path, arrays in self._artifact_files(sweep, run_id):
            run, step = str(arrays.pop(_RUN_KEY)), int(arrays.pop(_STEP_KEY))
            for name, array in arrays.items():
                rows.append({"run_id": run, "step": step, "name": name, "shape": list(array.shape),
                             "dtype": str(array.dtype), "file": self.artifact_location(path)})
        return pl.from_arrow(pa.Table.from_pylist(rows, schema=ARTIFACT_INDEX_SCHEMA))

    def artifact_arrays(self, sweep: str, run_id: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, arrays stacked on a new first axis) of one run's logged array `name`, in step order.

        A step logged again (a resumed or retried trial) keeps the array from the newest file, as metrics() does.
        Empty arrays when the run logged none.
        """
        by_step: dict[int, np.ndarray] = {}
        for _, arrays in self._artifact_files(sweep, run_id):
            if name in arrays:
                by_step[int(arrays[_STEP_KEY])] = arrays[name]  # files come oldest first: newest wins
        steps = sorted(by_step)
        if not steps:
            return np.empty(0, dtype=np.int64), np.empty((0,))
        shapes = {by_step[s].shape for s in steps}
        if len(shapes) > 1:
            raise ValueError(f"artifact {name!r} of run {run_id!r} changes shape across steps ({sorted(shapes)}); "
                             "read each step from artifact_index() instead")
        return np.asarray(steps, dtype=np.int64), np.stack([by_step[s] for s in steps])
