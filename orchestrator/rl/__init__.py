"""RLlib bridge: zero-shot agents (TD-JEPA, FB) and RLlib's own references, trained and evaluated on
RLlib's new API stack. This package's `__init__` imports nothing, so importing `orchestrator.rl.datasets`
or `orchestrator.rl.baseline_variants` (RLlib-free; the registry lists them) never loads RLlib.

The networks and losses stay plain torch in `variants/`; these modules only host them:

* `data`: the offline input (a Parquet file written once per dataset) read through RLlib's
  `OfflineData` (a ray.data pipeline), in this process, with a per-epoch seeded shuffle.
* `module`: `ZeroShotRLModule` (TorchRLModule) owns a variant's `build("main")` networks and the
  task vector z (a buffer, so it travels with weights to env runners and checkpoints).
  The loss is computed in `_forward_train`: under several learners RLlib wraps the module
  in DDP, and only a forward through that wrapper synchronises gradients.
* `learner`: `ZeroShotLearner` (TorchLearner) returns that loss, logs the variant's other scalars, and
  moves the EMA targets after each update.
* `evaluate`: zero-shot evaluation as RLlib's `custom_evaluation_function`: on each evaluation env
  runner, per task, z is inferred (reward-labelled samples, or the goal the env reports),
  set on the runner's module, and episodes are sampled without exploration noise.
* `loop`: `ZeroShotAlgorithm` and `train_zero_shot(payload)`, the RL counterpart of `train.train_loop`:
  same FLOP budget, results store, reports and NaN checks (`orchestrator/runs.py`), RLlib doing the updates.
* `baselines`: RLlib's BC, MARWIL, CQL and IQL trained per task as references; `baseline_variants`
  registers them as variants without importing RLlib. `datasets`: the ExoRL and OGBench entries.

A run is a function of `cfg.seed` on CPU, bit for bit: initial weights (`ZeroShotRLModule.setup`),
batches (ray.data blocks in file order, a local shuffle reseeded per epoch by `EpochSeededIterator`),
the variant's noise (its own generator) and evaluation (RLlib reseeds the env runners on every
`sample(num_episodes=)`). What is left is float arithmetic: a different thread count
(`train.cpus_per_worker`) or CPU sums in another order, which moved a loss by ~3e-7 after 30 updates
and grows from there; GPU kernels are not made deterministic.
"""
