"""Evaluations as plug-ins: name -> `Evaluation`, chosen from the data's `DataSpec` (or `eval.kinds`).

* `base`: the `Evaluation` contract, `Features` (frozen tokens and targets of one split), `EvalContext`.
* `registry`: the built-in kinds plus entry points (group `jepa_orchestrator.evaluations`); `choose`.
* `features`: tokens from the trained encoder, a fresh (random-init) copy, or the raw inputs.
* `baselines`: `<metric>/random_init` and `<metric>/raw_input`, cached on disk once per config.
* `run`: `evaluation_data` and `run_evaluations`, the one call the self-supervised host makes.
* one file per kind: class_probe, regression_probe, dense_probe, downstream_mlp, zero_shot_returns,
  rollout_success, feature_stats (effective rank and variance of the features: the collapse detector).

This `__init__` imports nothing, so `orchestrator.config` can read the registry without a circle.
"""
