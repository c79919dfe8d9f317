"""The `## Collapse warnings` section: runs whose frozen eval features collapsed.

The collapse detector logs `feature_collapsed` (1.0 when the features' effective rank fell below
its threshold) beside `feature_rank`; earlier stages of multi-stage runs log them prefixed
(`teacher/feature_collapsed`). A collapsed encoder's probe numbers measure a near-constant
function, so the report names those runs instead of letting their points pass as data.
"""

from __future__ import annotations

import polars as pl

from orchestrator.report.markdown import format_value

COLLAPSED = "feature_collapsed"
RANK = "feature_rank"
MARK = "⚠ collapsed"


def collapse_columns(columns) -> dict[str | None, str]:
    """{stage prefix (None: the run's own stage): column} of every collapse flag the table has."""
    found: dict[str | None, str] = {}
    for column in columns:
        if column == COLLAPSED:
            found[None] = column
        elif column.endswith(f"/{COLLAPSED}"):
            found[column[: -len(COLLAPSED) - 1]] = column
    return found


def collapsed_runs(table: pl.DataFrame) -> pl.DataFrame:
    """(run_id, stage, feature_rank) of each run and stage whose last collapse flag is 1."""
    rows = []
    for prefix, column in collapse_columns(table.columns).items():
        rank = RANK if prefix is None else f"{prefix}/{RANK}"
        flagged = table.filter(pl.col(column).cast(pl.Float64) >= 0.5)
        stages = flagged.get_column("stage").to_list() if prefix is None else [prefix] * flagged.height
        ranks = flagged.get_column(rank).to_list() if rank in flagged.columns else [None] * flagged.height
        rows += [{"run_id": r, "stage": s, RANK: k} for r, s, k in zip(flagged.get_column("run_id").to_list(),
                                                                        stages, ranks)]
    schema = {"run_id": pl.String, "stage": pl.String, RANK: pl.Float64}
    return pl.DataFrame(rows, schema=schema).sort(["run_id", "stage"])


def collapsed_count(table: pl.DataFrame) -> int:
    """How many runs collapsed in at least one stage."""
    return collapsed_runs(table).get_column("run_id").n_unique()


def collapse_section(table: pl.DataFrame) -> list[str]:
    """One bullet per collapsed run and stage; nothing when no run collapsed or no flag was logged."""
    runs = collapsed_runs(table)
    if runs.height == 0:
        return []
    lines = ["## Collapse warnings", "",
             (f"The frozen features of these runs collapsed (`{COLLAPSED}` = 1 at their last evaluation: "
             "effective rank below the detector's threshold); their probe scores measure a near-constant encoder."), ""]
    for run_id, stage, rank in runs.iter_rows():
        rank_text = "not logged" if rank is None else format_value(rank)
        lines.append(f"- `{run_id}` (stage `{stage}`): `{RANK}` {rank_text}")
    return [*lines, ""]
