"""Which way a metric improves, guessed from its name: frontiers, fits and winners depend on it."""

from __future__ import annotations

import math
from collections.abc import Iterable

_LOWER_IS_BETTER_HINTS = ("loss", "err", "mse", "mae", "nll", "ppl", "perplex", "time", "wall")


def higher_is_better(metric: str) -> bool:
    """Guess the direction of a metric from its name (losses and errors go down)."""
    name = metric.lower()
    return not any(hint in name for hint in _LOWER_IS_BETTER_HINTS)


def is_accuracy_like(metric: str, values: Iterable[float]) -> bool:
    """An increasing metric bounded in [0, 1]: its error is 1 - value."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return higher_is_better(metric) and bool(finite) and all(0.0 <= v <= 1.0 for v in finite)
