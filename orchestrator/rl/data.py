"""Offline input for RLlib-hosted runs: transitions as one Parquet file, read through RLlib's
`OfflineData` in this process, shuffled per epoch from the run's seed. Pixel data (`FrameRLData`)
puts frame indices in the file and its frames, once, in a `FrameStore` beside it (`frames_input`)."""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import ray
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.offline.offline_data import OfflineData
from ray.rllib.offline.offline_prelearner import OfflinePreLearner

from envs.cache import data_root
from envs.offline import TRANSITION_KEYS, OfflineRLData
from orchestrator import registry
from orchestrator.rl.datasets import cache_key
from orchestrator.rl.frames import FrameRLData
from variants.base import DataSpec

# Variant batch key -> column of the offline Parquet file (RLlib's names where it has one).
COLUMNS = {"observation": Columns.OBS, "action": Columns.ACTIONS, "next_observation": Columns.NEXT_OBS,
           "future_observation": "future_obs"}
SHUFFLE_BUFFER = 100_000  # rows mixed before batching: offline RL wants i.i.d. transitions


def rl_spec(data: OfflineRLData) -> DataSpec:
    """The shapes a variant sizes its networks from, and the FLOP tracer's shape-only batch."""
    inputs = {key: tuple(data.transitions[key].shape[1:]) for key in TRANSITION_KEYS}
    if isinstance(data, FrameRLData):  # observation columns hold frame indices: the networks see stacks
        inputs.update({key: data.observation_shape for key in OBSERVATION_KEYS})
    return DataSpec(kind="rl", inputs=inputs)


OBSERVATION_KEYS = ("observation", "next_observation", "future_observation")


def frames_input(data: OfflineRLData, data_cfg) -> str | None:
    """Where pixel data's frames are saved once (beside its Parquet input), for learners and env runners."""
    if not isinstance(data, FrameRLData):
        return None
    digest = hashlib.blake2b(memoryview(np.ascontiguousarray(data.frames.frames)).cast("B"), digest_size=8).hexdigest()
    path = data_root() / "offline_input" / f"{data_cfg.name}-{cache_key(data, data_cfg, digest)}.frames"
    data.frames.save(path)
    return str(path)


def offline_input(data: OfflineRLData, data_cfg) -> str:
    """The dataset's transitions as one Parquet file (ray.data tensor columns), written once.

    Keyed by the data config, the source files' stamp and the rows themselves, so every run and
    trial on the same data reads the same file, and a rewritten `data.path` gets a new one.
    """
    path = data_root() / "offline_input" / f"{data_cfg.name}-{cache_key(data, data_cfg)}.parquet"
    if path.is_file():
        print(f"offline input: reusing {path} (same data config, files and rows)", file=sys.stderr)
    else:
        write_parquet({COLUMNS[k]: data.transitions[k] for k in TRANSITION_KEYS}, path)
    return str(path)


def write_parquet(columns: dict[str, np.ndarray], path: Path) -> None:
    """Arrays as Parquet columns (ray.data's tensor type for 2-D ones), atomically: concurrent
    trials may both write the same file, and readers never see half of one."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.data.extensions import ArrowTensorArray

    def column(values: np.ndarray):
        values = np.ascontiguousarray(values)
        return ArrowTensorArray.from_numpy(values.astype(np.float32)) if values.ndim > 1 else pa.array(values)

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{time.monotonic_ns()}.tmp")
    pq.write_table(pa.table({name: column(values) for name, values in columns.items()}), partial)
    partial.replace(path)


class InProcessOfflineData(OfflineData):
    """RLlib's OfflineData over the Parquet file read in this process (`ray.data.from_arrow`).

    `read_parquet` lists files in a ray.data task that needs a whole CPU, and a Tune trial
    already holds its CPUs: with every CPU in trials, that task would wait for ever.
    """

    def __init__(self, config):
        super().__init__(config)  # its read_parquet plan is lazy and never runs
        import pyarrow.parquet as pq

        ray.data.DataContext.get_current().enable_progress_bars = False  # one bar per epoch floods trial logs
        self.data = ray.data.from_arrow(pq.read_table(self.path[0]))
        # blocks in file order, not in the order workers finish them: a fixed seed, the same batches
        self.data.context.execution_options.preserve_order = True

    def sample(self, num_samples: int, return_iterator: bool = False, num_shards: int = 1, module_state=None):
        """RLlib's `sample`, with each learner's iterator reshuffled per epoch from the seed."""
        out = super().sample(num_samples, return_iterator=return_iterator, num_shards=num_shards,
                             module_state=module_state)
        if not return_iterator:
            return out
        return [EpochSeededIterator(it, shard, self.iter_batches_kwargs) for shard, it in enumerate(out)]


class EpochSeededIterator:
    """One learner's ray.data iterator whose every pass (epoch) is locally shuffled with a seed
    drawn from (`local_shuffle_seed`, shard, epoch).

    RLlib's learners call `iter_torch_batches` once and iterate the result once per epoch, so
    ray.data's own `local_shuffle_seed` would repeat the same batches every epoch, and without
    one the shuffle comes from OS entropy (no two runs alike). `defaults` are the run's
    `iter_batches_kwargs`: CQL's `training_step` passes none, and would not shuffle at all.
    """

    def __init__(self, iterator, shard: int, defaults: dict | None = None):
        self.iterator, self.shard, self.epoch = iterator, shard, 0
        self.kwargs = self.defaults = dict(defaults or {})

    def iter_torch_batches(self, **kwargs):
        self.kwargs = {**self.defaults, **kwargs}
        return self

    def __iter__(self):
        seed = self.kwargs.get("local_shuffle_seed")
        if seed is not None:
            seed = int(np.random.SeedSequence([int(seed), self.shard, self.epoch]).generate_state(1)[0])
        self.epoch += 1
        return iter(self.iterator.iter_torch_batches(**{**self.kwargs, "local_shuffle_seed": seed}))


class TransitionPreLearner(OfflinePreLearner):
    """Rows are already transitions: pass them to the learner as they are.

    RLlib's default pre-learner rebuilds episodes and runs connectors; zero-shot agents
    need none of that (no rewards, no returns), only the four columns.
    """

    def __init__(self, *, config, spaces=None, module_state=None, **kwargs):  # no module: nothing to run
        self.config = config

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {f"{DEFAULT_MODULE_ID}/{column}": batch_column(values) for column, values in batch.items()}


def batch_column(values) -> np.ndarray:
    """Floats as float32; integers (frame indices of pixel data) stay integers."""
    values = np.asarray(values)
    return values if np.issubdtype(values.dtype, np.integer) else values.astype(np.float32)



def load_rl_data(cfg) -> OfflineRLData:
    data = registry.dataset(cfg.data.name).load(cfg.data, "train")
    if not isinstance(data, OfflineRLData):
        raise TypeError(f"data {cfg.data.name!r} is not an offline RL dataset; variant {cfg.variant.name!r} needs one")
    return data


def offline_data_options(path: str, rows: int, updates: int = 1, seed: int | None = None) -> dict:
    """`AlgorithmConfig.offline_data` settings every RLlib-hosted run shares (ours and RLlib's own).

    `seed` fixes the local shuffle (None: OS entropy), so a run's batches follow from its seed.
    """
    return {
        "input_": [path],
        "offline_data_class": InProcessOfflineData,
        "dataset_num_iters_per_learner": updates,
        # one pre-learner actor, no CPU reserved: a Tune trial holds its CPUs already
        "map_batches_kwargs": {"concurrency": 1, "num_cpus": 0},
        # mapped once, then every epoch is a shuffled pass over object-store blocks
        "materialize_mapped_data": True,
        "iter_batches_kwargs": {"prefetch_batches": 2, "drop_last": True,
                                "local_shuffle_buffer_size": min(rows, SHUFFLE_BUFFER), "local_shuffle_seed": seed},
    }
