"""Figures on an explicit Agg canvas (no pyplot state).

That works on headless nodes and never changes the backend of an interactive caller.
"""

from __future__ import annotations

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def blank_figure(size: tuple[float, float]) -> Figure:
    """A figure with its own Agg canvas."""
    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure


def new_axes(figure: Figure, rows: int = 1, columns: int = 1, index: int = 1):
    """One gridded subplot."""
    axes = figure.add_subplot(rows, columns, index)
    axes.grid(True, which="both", alpha=0.3)
    return axes


def save_figure(figure: Figure, path) -> None:
    """Lay out and write a PNG, creating its folder."""
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
