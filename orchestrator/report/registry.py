"""Name -> report panel. A sweep's `report:` section asks for panels by these names.

Built-in panels register themselves when `orchestrator.report.panels` is imported
(document.py does); third parties add theirs in-process with `register_panel` or
through the entry-point group `jepa_orchestrator.panels`, whose objects are a
`Panel` (registered under its own name) or a render function (under the entry
point's name), so a new figure needs no edit to the report's code.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

import polars as pl

from orchestrator.report.markdown import names
from orchestrator.report.settings import AXIS_KEYS, ReportError
from orchestrator.results import ResultsStore

ENTRY_POINT_GROUP = "jepa_orchestrator.panels"


@dataclass(frozen=True)
class PanelContext:
    """What a panel gets: where images go, the finished runs, the report's axes and its `report:` section."""

    directory: str
    sweep: str
    finished: pl.DataFrame
    x: str
    y: str
    group: str | None
    section: dict
    store: ResultsStore


Render = Callable[[PanelContext, dict], list[str]]
Prepare = Callable[[pl.DataFrame, dict], tuple[pl.DataFrame, list[str]]]


@dataclass(frozen=True)
class Panel:
    """One report panel.

    `render(ctx, options)` returns Markdown lines appended after the generic sections.
    `prepare(table, options)` may add columns to the per-run table before anything else
    reads it; its lines follow the runs table, and `columns` names the added columns the
    runs table shows after x. `options` lists the option keys the panel reads (None: any),
    so a typo in one is reported instead of silently ignored.
    """

    name: str
    render: Render | None = None
    options: tuple[str, ...] | None = None
    prepare: Prepare | None = None
    columns: tuple[str, ...] = ()


_REGISTERED: dict[str, Panel] = {}


def add_panel(panel: Panel) -> Panel:
    """Register a panel under its name (a later one with the same name replaces it)."""
    _REGISTERED[panel.name] = panel
    return panel


def register_panel(name: str, *, options: tuple[str, ...] | None = None) -> Callable[[Render], Panel]:
    """Decorator: register `render(ctx, options) -> lines` as the panel `name`."""

    def decorate(render: Render) -> Panel:
        return add_panel(Panel(name, render=render, options=options))

    return decorate


def panels() -> dict[str, Panel]:
    """Every panel by name: registered ones, then entry points (which win on a clash), in that order."""
    found = dict(_REGISTERED)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        loaded = ep.load()
        panel = loaded if isinstance(loaded, Panel) else Panel(ep.name, render=loaded)
        found[panel.name] = panel
    return found


def _unknown_panel_error(name: str, known: list[str]) -> ReportError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {names(close)}?)" if close else ""
    return ReportError(
        f"report.{name} in sweep.yaml: no such panel{hint}. "
        f"Fix: name one of the known panels {', '.join(sorted(known))} (or the axes {', '.join(AXIS_KEYS)})"
    )


def _options(panel: Panel, value, strict: bool = False) -> tuple[dict, list[str]]:
    """A panel's options and notes on those it cannot use (a ReportError instead when `strict`).

    `key:` alone or `key: true` asks for the panel with its defaults.
    """
    key = panel.name
    if value is None or value is True:
        return {}, []
    if not isinstance(value, dict):
        if strict:
            raise ReportError(f"report.{key} in sweep.yaml is {value!r}. Fix: give a mapping of its options, "
                              f"`true` for its defaults or `false` to turn it off")
        return {}, [f"`report.{key}` should be a mapping of options, got {value!r}: used the defaults.", ""]
    unknown = [] if panel.options is None else sorted(set(value) - set(panel.options))
    if not unknown:
        return value, []
    known = names(list(panel.options))
    if strict:
        close = [m for u in unknown for m in difflib.get_close_matches(u, panel.options, n=1)]
        hint = f" (did you mean {names(close)}?)" if close else ""
        raise ReportError(f"report.{key} in sweep.yaml: unknown option(s) {names(unknown)}{hint}. "
                          f"Fix: use the panel's options {known or '(it has none)'}")
    return value, [f"Ignored unknown option(s) {names(unknown)} in `report.{key}` (known: {known}).", ""]


def requested_panels(section: dict, known: dict[str, Panel], strict: bool = False) -> list[tuple[Panel, dict, list[str]]]:
    """(panel, options, notes) of each panel the `report:` section asks for, in registration order.

    `key: false` turns a panel off; a key that is neither an axis nor a panel is a ReportError. Misused
    options are notes in a report (a stored sweep still renders) and, with `strict`, errors (a sweep loading).
    """
    for key in section:
        if key not in AXIS_KEYS and key not in known:
            raise _unknown_panel_error(str(key), list(known))
    return [
        (panel, *_options(panel, section[name], strict))
        for name, panel in known.items()
        if name in section and section[name] is not False
    ]

