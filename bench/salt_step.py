"""One SALT student step vs one V-JEPA step: same student, same masks, FLOPs and wall time.

SALT's claim (arXiv 2509.24317) is that a frozen small teacher makes each student step
cheaper than V-JEPA's, which runs an EMA copy of the (large) student as its target.
Both steps are built through the variants, with the same student weights and the same
mask stream, and timed as the trainer runs them: forward, backward, AdamW, after_step.

    python -m bench.salt_step                       # CPU: 4-block vit_tiny student, 8×32×32 clips
    python -m bench.salt_step --model vit_base --frames 16 --size 224 --device cuda
"""
from __future__ import annotations

import argparse
import contextlib

import torch

from bench.common import StepTimer
from orchestrator.budget import measure_step_flops
from orchestrator.config import compose_run
from variants.base import DataSpec
from variants.salt import SALT
from variants.vjepa import VJEPA

TIME_RATIO_GOAL = 0.75  # the target for SALT/V-JEPA step time


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vit_tiny", help="student size, shared by both methods")
    p.add_argument("--depth", type=int, default=None, help="student depth (default: 4 on CPU, the preset's on CUDA)")
    p.add_argument("--patch", type=int, default=None, help="default: 16 (V-JEPA) from 128 px up, else 8")
    p.add_argument("--tubelet", type=int, default=2)
    p.add_argument("--teacher-model", default="vit_tiny")
    p.add_argument("--teacher-depth", type=int, default=0, help="0 = the preset's")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def run_config(args, variant: str, depth: int | None, patch: int):
    """A validated run config; the student keys are the same for both variants."""
    overrides = [f"variant={variant}", f"model={args.model}", f"model.patch={patch}", f"model.tubelet={args.tubelet}",
                 f"data.frames={args.frames}", f"data.size={args.size}", f"train.batch_size={args.batch}",
                 f"seed={args.seed}", "budget.steps=1"]
    if depth is not None:
        overrides.append(f"model.depth={depth}")
    if variant == "salt":
        overrides += [f"variant.teacher_model={args.teacher_model}", f"variant.teacher_depth={args.teacher_depth}"]
    return compose_run(overrides, source="bench/salt_step.py")


def build_vjepa(cfg, spec, device):
    variant = VJEPA(cfg, spec)
    return variant, variant.build("main").to(device), "main", None


def build_salt(cfg, spec, device, student_weights: dict):
    """Student stage on top of a freshly built teacher, starting from V-JEPA's student weights."""
    variant = SALT(cfg, spec)
    teacher_stage = variant.build("teacher")
    modules = variant.build("student", teacher_stage).to(device)
    modules["student"].load_state_dict(student_weights)
    return variant, modules, "student", teacher_stage


def time_steps(variant, modules, stage: str, video: torch.Tensor, args) -> float:
    """Mean seconds per optimizer step after warm-up; the mask stream restarts at the same seed."""
    variant.reseed(args.seed)
    optimizer = torch.optim.AdamW(variant.param_groups(modules, stage), lr=1e-4)
    cuda = video.device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    def one_step(step: int) -> None:
        with autocast:
            loss = variant.step(modules, {"video": video}, stage)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        variant.after_step(modules, step + 1, args.warmup + args.iters, stage)

    timer = StepTimer(args.warmup, torch.cuda.synchronize if cuda else None)
    for step in range(args.warmup + args.iters):
        one_step(step)
        timer.tick()
    return timer.seconds_per_step()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    depth = args.depth or (4 if device.type == "cpu" else None)
    patch = args.patch or (16 if args.size >= 128 else 8)
    torch.manual_seed(args.seed)
    spec = DataSpec(kind="video", frames=args.frames, size=args.size)
    vjepa_cfg = run_config(args, "vjepa", depth, patch)
    salt_cfg = run_config(args, "salt", depth, patch)

    vjepa, vjepa_modules, vjepa_stage, _ = build_vjepa(vjepa_cfg, spec, device)
    salt, salt_modules, salt_stage, teacher_stage = build_salt(salt_cfg, spec, device, vjepa_modules["encoder"].state_dict())
    video = torch.randn(args.batch, spec.channels, args.frames, args.size, args.size,
                        generator=torch.Generator().manual_seed(args.seed)).to(device)

    vjepa_flops = measure_step_flops(VJEPA, vjepa_cfg, spec, vjepa_stage, args.batch)
    salt_flops = measure_step_flops(SALT, salt_cfg, spec, salt_stage, args.batch, teacher_stage)
    vjepa_s = time_steps(vjepa, vjepa_modules, vjepa_stage, video, args)
    salt_s = time_steps(salt, salt_modules, salt_stage, video, args)

    m, t = salt_cfg.model, salt_modules["teacher"]
    print(f"device {device}  clips {args.batch}×{args.frames}×{args.size}²  patch {patch} tubelet {args.tubelet}"
          f"  bf16 {'on' if device.type == 'cuda' else 'off'}  {args.iters} iters after {args.warmup} warm-up")
    print(f"student {args.model} dim {m.dim} depth {m.depth}   SALT teacher dim {t.dim} depth {len(t.blocks)} (frozen)")
    print(f"V-JEPA step: {vjepa_flops / 1e9:10.2f} GFLOPs  {vjepa_s * 1e3:9.2f} ms")
    print(f"SALT   step: {salt_flops / 1e9:10.2f} GFLOPs  {salt_s * 1e3:9.2f} ms")
    print(f"SALT/V-JEPA: FLOPs {salt_flops / vjepa_flops:.3f}   time {salt_s / vjepa_s:.3f}   (goal: time <= {TIME_RATIO_GOAL})")


if __name__ == "__main__":
    main()
