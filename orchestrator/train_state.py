"""What a resumable run keeps and where its data stands: the checkpoint file, the shuffled batch stream
that can start part-way into an epoch, the per-rank mask seed. Shared by the self-supervised loop
(orchestrator/train.py) and the imitation host (orchestrator/imitation.py), which train.py launches."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

CHECKPOINT_FILE = "state.pt"


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start `skip` indices into its first epoch, so a resumed run draws
    the batches an uninterrupted one would have."""

    skip = 0

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return super().__len__() - self.skip


def batches(dataset, cfg, session, device: torch.device, skip: int = 0):
    """Endless shuffled batches of this rank's shard (DistributedSampler semantics), from the
    `skip`-th batch on (a resumed run continues where its checkpoint left the data)."""
    sampler = ResumableSampler(dataset, session.world_size, session.world_rank, shuffle=True, seed=cfg.seed, drop_last=True)
    workers = int(cfg.train.loader_workers)
    loader = DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    if len(loader) == 0:
        raise ValueError(
            f"data {cfg.data.name!r}: {len(dataset)} clips cannot fill one batch of {cfg.train.batch_size} per worker "
            f"over {session.world_size} workers. Fix: lower train.batch_size or generate more data"
        )
    epoch, sampler.skip = divmod(skip, len(loader))
    sampler.skip *= cfg.train.batch_size
    while True:
        sampler.set_epoch(epoch)
        for batch in loader:
            yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        epoch, sampler.skip = epoch + 1, 0


def mask_seed(cfg, rank: int, step: int) -> int:
    """Each rank its own mask stream, reseeded at every checkpoint: a resumed run draws the masks
    an uninterrupted one would have."""
    return int(cfg.seed) * 1_000_003 + rank * 10_007 + step


def save_state(path: str, modules: nn.ModuleDict, optimizer, stage_index: int, step: int, flops: float, wall_s: float) -> None:
    torch.save({"modules": modules.state_dict(), "optimizer": optimizer.state_dict(), "stage_index": stage_index,
                "step": step, "flops": flops, "wall_s": wall_s}, Path(path) / CHECKPOINT_FILE)


def batches_done(plans, state: dict | None) -> int:
    """Batches the checkpointed run had drawn: every step of earlier stages, then its own."""
    if state is None:
        return 0
    return sum(plan.steps for plan in plans[: state["stage_index"]]) + state["step"]


def load_state(session) -> dict | None:
    with session.restored_checkpoint() as path:
        if path is None:
            return None
        return torch.load(Path(path) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
