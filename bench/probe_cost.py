"""The quickstart's end-of-run attentive probe: torch's MultiheadAttention vs the factored pooler.

Encodes the quickstart's evaluation clips once (ViT-tiny width, 6 blocks, patch 4, a random-init
encoder: the probe's cost does not depend on training), then fits the class probe on the same tokens
with each pooler, seed by seed, side by side: seconds per fit and validation accuracy per label.
The factored pooler folds W_k into the query and applies W_v after pooling (variants/nn/probes.py),
so the two must agree within the probe's standard error (±sqrt(p(1-p)/val clips)).

    python -m bench.probe_cost [--seeds 2] [--train-clips 512 --val-clips 256]
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch

from bench.common import machine
from orchestrator import registry
from orchestrator.config import compose_run
from orchestrator.evaluate.features import eval_mode, extract
from orchestrator.evaluate.run import evaluation_data
from variants.nn import probes


def stock_forward(self, tokens):
    """The pooler before issue 23: nn.MultiheadAttention projecting every token."""
    tokens = self.norm(tokens)
    pooled, _ = self.attn(self.query.expand(tokens.size(0), -1, -1), tokens, tokens)
    return pooled[:, 0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--train-clips", type=int, default=512)
    p.add_argument("--val-clips", type=int, default=256)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--threads", type=int, default=1, help="a trial runs with 1")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as root:
        cfg = compose_run(["variant=vjepa", "data=moving_shapes", "model=vit_tiny", "model.depth=6", "model.patch=4",
                           "train.batch_size=16", "budget.steps=1", f"eval.train_clips={args.train_clips}",
                           f"eval.val_clips={args.val_clips}", f"eval.epochs={args.epochs}", f"storage={root}"])
        entry = registry.dataset(cfg.data.name)
        spec = entry.spec(cfg.data)
        variant = registry.variant(cfg.variant.name)(cfg, spec)
        modules = variant.build("main")
        keys = sorted(spec.num_classes)
        start = time.perf_counter()
        with eval_mode(modules):
            feats = extract(lambda b: variant.features(modules, b), evaluation_data(entry, cfg), keys, torch.device("cpu"), False)
        encode_s = time.perf_counter() - start
    train, val = feats["train"], feats["val"]
    print(f"machine: {machine()}")
    print(f"tokens {tuple(train.tokens.shape)} train, {tuple(val.tokens.shape)} val; encoding both once: {encode_s:.1f}s; "
          f"{args.epochs} probe epochs, {torch.get_num_threads()} thread(s)")
    factored = probes.AttentivePooler.forward
    totals = {"stock": 0.0, "factored": 0.0}
    for seed in range(args.seeds):
        for name, forward in (("stock", stock_forward), ("factored", factored)):  # interleaved: load hits both
            probes.AttentivePooler.forward = forward
            t0 = time.perf_counter()
            acc = probes.fit_probe(train.tokens, train.targets, val.tokens, val.targets, spec.num_classes,
                                   epochs=args.epochs, seed=seed)
            seconds = time.perf_counter() - t0
            totals[name] += seconds
            se = {k: math.sqrt(v * (1 - v) / len(val.tokens)) for k, v in acc.items()}
            print(f"  seed {seed} {name:<9} {seconds:7.1f}s  " + "  ".join(f"{k} {v:.3f}±{se[k]:.3f}" for k, v in acc.items()))
    probes.AttentivePooler.forward = factored
    print(f"probe fit time factored/stock: {totals['factored'] / totals['stock']:.3f}; one evaluation "
          f"(encode + fit) {encode_s + totals['stock'] / args.seeds:.1f}s -> {encode_s + totals['factored'] / args.seeds:.1f}s")


if __name__ == "__main__":
    main()
