"""Frozen tokens for evaluations: from the run's encoder, a fresh copy of it, or the raw inputs."""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from orchestrator.evaluate.base import Features
from variants.salt import patchify


@torch.no_grad()
def extract(encode, datasets: dict, keys: list[str], device: torch.device, amp: bool) -> dict[str, Features]:
    """`encode(batch) -> [B, L, D]` over each split, with the batch's `keys` as targets."""
    out = {}
    for split, dataset in datasets.items():
        chunks, ys = [], {k: [] for k in keys}
        for batch in DataLoader(dataset, batch_size=64, shuffle=False):
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                chunks.append(encode(batch).float())
            for k in ys:
                ys[k].append(batch[k])
        out[split] = Features(torch.cat(chunks), {k: torch.cat(v) for k, v in ys.items()})
    return out


@contextlib.contextmanager
def eval_mode(modules: nn.ModuleDict):
    """Modules in eval mode for extraction, back in train mode after (as the host trains them)."""
    for m in modules.values():
        m.eval()
    try:
        yield modules
    finally:
        for m in modules.values():
            m.train()


def fresh_modules(variant, stage: str, previous, seed: int, device: torch.device) -> nn.ModuleDict:
    """The variant's modules for `stage` built anew from `seed`, without moving the run's random stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return variant.build(stage, previous).to(device)


def raw_tokens(batch: dict[str, Tensor], spec, model_cfg) -> Tensor:
    """The inputs as the encoder sees them before embedding: a clip cut into tubelet×patch×patch tokens;
    other inputs (`spec.raw_key` if set: a table's one-hot form) flattened to one token (or kept, if already [B, L, D])."""
    x = batch[spec.raw_key or spec.input_key].float()
    if spec.kind == "video" and x.ndim == 5:
        return patchify(x, int(model_cfg.tubelet), int(model_cfg.patch))
    if spec.kind == "image" and x.ndim == 4:  # [B, C, H, W] -> patch×patch tokens, the 2-D ViT's raster
        return patchify(x.unsqueeze(2), 1, int(model_cfg.patch))
    if x.ndim == 3:
        return x
    return x.reshape(len(x), 1, -1)
