"""MFU of V-JEPA pretraining: a bare bf16 loop vs the same model through Ray Train (1 GPU).

Default: ViT-L on 16x224x224 clips (tubelet 2, patch 16), bf16 autocast. MFU = traced
FLOPs per step / step time / the measured bf16 matmul peak of this GPU.
Goals: >= 50% MFU, and Ray Train <= 3% below the bare loop.
Usage: python -m bench.mfu [--model vit_large --frames 16 --size 224 --batch 8 --steps 30 --compile]
On a CPU it runs (use a small model) and prints achieved FLOP/s instead of MFU.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from bench.common import bare_seconds_per_step, machine, steady_state_seconds_per_step
from orchestrator import registry
from orchestrator.budget import measure_bf16_peak, measure_step_flops
from orchestrator.config import compose_run
from orchestrator.train import launch


def config(args, storage: str, extra: list[str] = ()):
    return compose_run([
        f"model={args.model}", "model.patch=16", "model.tubelet=2", f"data.frames={args.frames}", f"data.size={args.size}",
        f"data.num_train={max(4 * args.batch, 64)}", "data.num_val=32", f"train.batch_size={args.batch}",
        f"budget.steps={args.steps}", f"train.use_gpu={str(torch.cuda.is_available()).lower()}", "train.precision=auto",
        f"train.compile={str(args.compile).lower()}", "variant.pred_dim=384", "variant.pred_depth=12", "variant.pred_heads=12",
        f"train.log_every={args.log_every}", f"train.loader_workers={4 if torch.cuda.is_available() else 0}", "train.checkpoint_every=100000", "eval.epochs=1", "eval.train_clips=16",
        "eval.val_clips=16", f"storage={storage}", *extra])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="vit_large")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as storage:
        cfg = config(args, storage)
        spec = registry.dataset(cfg.data.name).spec(cfg.data)
        flops = measure_step_flops(registry.variant("vjepa"), cfg, spec, "main", args.batch)
        peak = measure_bf16_peak(device) if device.type == "cuda" else None
        bare = bare_seconds_per_step(cfg, device, warmup=args.log_every)
        ray_step = None
        if not args.skip_ray:
            import ray

            ray.init(include_dashboard=False, log_to_driver=False)
            t0 = time.perf_counter()
            launch(config(args, storage, ["train.inline=never", "sweep=mfu"]), "mfu")
            ray_total = time.perf_counter() - t0
            ray.shutdown()
            ray_step = steady_state_seconds_per_step(storage, "mfu", "mfu", args.batch)

    def rate(seconds: float) -> str:
        achieved = flops / seconds
        return f"{seconds * 1000:8.1f} ms/step  {achieved / 1e12:7.2f} TFLOP/s" + (f"  MFU {100 * achieved / peak:5.1f}%" if peak else "")

    print(f"machine: {machine()}  date: {time.strftime('%Y-%m-%d')}")
    print(f"V-JEPA {args.model}, {args.frames}x{args.size}x{args.size} clips, batch {args.batch}, "
          f"{'bf16 autocast' if device.type == 'cuda' else 'fp32 CPU'}, compile={args.compile}")
    print(f"traced FLOPs per step: {flops:.4g}" + (f"; measured bf16 matmul peak {peak / 1e12:.1f} TFLOP/s" if peak else ""))
    print(f"bare loop      : {rate(bare)}")
    if ray_step:
        print(f"Ray Train (1)  : {rate(ray_step)}  ratio ray/bare time {ray_step / bare:.3f} (goal <= 1.03); run incl. start-up {ray_total:.0f}s")


if __name__ == "__main__":
    main()
