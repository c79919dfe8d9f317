"""Name -> Evaluation. Third parties add theirs through the entry-point group
`jepa_orchestrator.evaluations` (an Evaluation subclass), as variants do in `orchestrator/registry.py`."""
from __future__ import annotations

import functools
from importlib.metadata import entry_points

from orchestrator.entries import UnknownNameError
from orchestrator.evaluate.base import Evaluation
from orchestrator.evaluate.bev_detection import BEVDetection
from orchestrator.evaluate.class_probe import ClassProbe
from orchestrator.evaluate.dense_probe import DenseProbe
from orchestrator.evaluate.downstream_mlp import DownstreamMLP
from orchestrator.evaluate.feature_stats import FeatureStats
from orchestrator.evaluate.intent_decoding import IntentDecoding
from orchestrator.evaluate.mlp_regression import MLPRegression
from orchestrator.evaluate.regression_probe import RegressionProbe
from orchestrator.evaluate.rollout_success import RolloutSuccess
from orchestrator.evaluate.zero_shot_returns import ZeroShotReturns
from variants.base import DataSpec

BUILT_IN = (ClassProbe, RegressionProbe, DenseProbe, DownstreamMLP, ZeroShotReturns, RolloutSuccess, FeatureStats, BEVDetection, IntentDecoding, MLPRegression)
GROUP = "jepa_orchestrator.evaluations"


@functools.cache
def evaluations() -> dict[str, Evaluation]:
    found = {cls.name: cls() for cls in BUILT_IN}
    for ep in entry_points(group=GROUP):
        cls = ep.load()
        found[cls.name] = cls()
    return found


def evaluation(name: str) -> Evaluation:
    try:
        return evaluations()[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown evaluation {name!r}; known: {', '.join(sorted(evaluations()))}. Fix: `eval.kinds=[<some of them>]`"
        ) from None


def choose(spec: DataSpec, host: str = "ssl", kinds=()) -> list[str]:
    """`kinds` (the config's `eval.kinds`) if given, else every kind whose `chosen_for` accepts the data:
    classes -> class_probe, floats -> regression_probe, per-patch labels -> dense_probe, rl -> zero_shot_returns;
    self-supervised runs with classes or floats also get feature_stats (the collapse detector)."""
    if kinds:
        return [evaluation(name).name for name in kinds]
    return [name for name, e in evaluations().items() if e.chosen_for(spec, host)]
