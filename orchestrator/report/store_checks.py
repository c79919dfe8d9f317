"""Refuse early when a sweep has nothing to report, and list damaged results files for `--check`."""

from __future__ import annotations

from orchestrator.results import ResultsStore


def require_results(store: ResultsStore, root, sweep: str) -> None:
    """A sweep without runs is a user error naming the fix, not an empty report."""
    if store.runs(sweep).height == 0:
        raise FileNotFoundError(
            f"no results for sweep {sweep} under {root}. Fix: run `jepa sweep FILE` first, or pass --storage ROOT"
        )


def require_local(store: ResultsStore, root) -> None:
    """Reports and PNGs are written next to the results, so the root must be a local path."""
    if not store.is_local:
        raise ValueError(f"reports are written next to the results; {root} is not a local root")


def check_results(root, sweep: str) -> list[tuple[str, str]]:
    """(path, error) of each damaged results file of a sweep; the sweep must exist."""
    store = ResultsStore(root)
    if sweep not in store.sweeps():
        raise FileNotFoundError(f"no sweep {sweep} under {root}. Fix: pass --storage ROOT (sweeps there: "
                                f"{', '.join(store.sweeps()) or 'none'})")
    return store.check(sweep)
