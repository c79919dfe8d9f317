"""Every GPU figure of issue 23 in one run, plain torch + the variant code (no Ray, Hydra, OmegaConf).

  1. bf16 matmul peak (8192² matmuls), then V-JEPA ViT-L on 16×224² clips in a bare loop: MFU (goal ≥ 50 %)
  2. one SALT student step (ViT-B/16 × 224² student, frozen ViT-S teacher) vs one V-JEPA ViT-B step, bf16
     (goal: SALT ≤ 0.75 × V-JEPA's time)
  3. TD-JEPA updates/s at hidden 1024, batch 1024: eager vs torch.compile vs CUDA graphs
     (`mode="reduce-overhead"`, capturable Adam), goal ≥ 5 × eager

The GPU machine has torch but not this project's other dependencies, so the run configs (as
`compose_run` makes them) and each step's traced FLOPs come from `bench/gpu_configs.json`, written here
with the full environment: `python -m bench.gpu_all --write-configs`. The variants import nothing
but torch (checked by `--check-imports`), and read their config by attribute, which `Config` gives.

    bash bench/gpu_all.sh                  # on the GPU machine: writes $OUT/gpu_results.json (+ .txt)
    python -m bench.gpu_all --cpu-smoke    # tiny sizes on the CPU: proves the script runs
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

CONFIGS = Path(__file__).with_name("gpu_configs.json")
FORBIDDEN = ("omegaconf", "ray", "hydra", "polars", "orchestrator")
TDJEPA_OBS, TDJEPA_ACT = 24, 6  # walker sizes


class Config(dict):
    """A run config read by attribute (`cfg.variant.hidden`), as the variants read OmegaConf's."""

    def __getattr__(self, key):
        try:
            value = self[key]
        except KeyError:
            raise AttributeError(key) from None
        return Config(value) if isinstance(value, dict) and not isinstance(value, Config) else value


# ---------------------------------------------------------------------------------------------- configs


def _sizes(smoke: bool) -> dict:
    if smoke:
        return {"mfu": {"model": "vit_tiny", "frames": 4, "size": 32, "patch": 8, "batch": 2, "pred": (96, 2, 3)},
                "salt": {"model": "vit_tiny", "teacher": "vit_tiny", "teacher_depth": 2, "frames": 4, "size": 32,
                         "patch": 8, "batch": 2}}
    return {"mfu": {"model": "vit_large", "frames": 16, "size": 224, "patch": 16, "batch": 8, "pred": (384, 12, 12)},
            "salt": {"model": "vit_base", "teacher": "vit_small", "teacher_depth": 0, "frames": 16, "size": 224,
                     "patch": 16, "batch": 8}}


def write_configs() -> None:
    """Compose the run configs and trace their step FLOPs (needs the full environment, no GPU)."""
    from orchestrator.budget import measure_step_flops
    from orchestrator.config import compose_run, to_plain
    from variants.base import DataSpec
    from variants.salt import SALT
    from variants.vjepa import VJEPA

    out = {}
    for name, smoke in (("full", False), ("smoke", True)):
        s = _sizes(smoke)
        m, t = s["mfu"], s["salt"]
        video = lambda d: [f"data.frames={d['frames']}", f"data.size={d['size']}", f"model.patch={d['patch']}",
                           "model.tubelet=2", f"train.batch_size={d['batch']}", "budget.steps=1"]
        mfu = compose_run(["variant=vjepa", f"model={m['model']}", *video(m), f"variant.pred_dim={m['pred'][0]}",
                           f"variant.pred_depth={m['pred'][1]}", f"variant.pred_heads={m['pred'][2]}"])
        vjepa_b = compose_run(["variant=vjepa", f"model={t['model']}", *video(t)])
        salt = compose_run(["variant=salt", f"model={t['model']}", *video(t), f"variant.teacher_model={t['teacher']}",
                            f"variant.teacher_depth={t['teacher_depth']}"])
        spec_m = DataSpec(kind="video", frames=m["frames"], size=m["size"])
        spec_t = DataSpec(kind="video", frames=t["frames"], size=t["size"])
        teacher = SALT(salt, spec_t).build("teacher")
        out[name] = {
            "mfu": {"cfg": to_plain(mfu), "frames": m["frames"], "size": m["size"], "batch": m["batch"],
                    "flops": measure_step_flops(VJEPA, mfu, spec_m, "main", m["batch"])},
            "vjepa_b": {"cfg": to_plain(vjepa_b), "frames": t["frames"], "size": t["size"], "batch": t["batch"],
                        "flops": measure_step_flops(VJEPA, vjepa_b, spec_t, "main", t["batch"])},
            "salt": {"cfg": to_plain(salt), "frames": t["frames"], "size": t["size"], "batch": t["batch"],
                     "flops": measure_step_flops(SALT, salt, spec_t, "student", t["batch"], teacher)},
        }
    for name, steps in (("full", FULL_STEPS[0] + FULL_STEPS[1]), ("smoke", SMOKE_STEPS[0] + SMOKE_STEPS[1])):
        for entry in out[name].values():
            fix_ema_start(entry["cfg"], steps)
    CONFIGS.write_text(json.dumps(out, indent=1, sort_keys=True))
    print(f"wrote {CONFIGS}")


def fix_ema_start(cfg: dict, total_steps: int) -> None:
    """An EMA start derived from `ema_half_life` is solved with scipy (brentq), which the GPU machine
    lacks: solve it here for the timed run's length and store it, the same momentum ramp."""
    from variants.nn.ema import ema_start_for_half_life

    v = cfg["variant"]
    if "ema_start" in v and float(v["ema_start"]) == 0.0:
        v["ema_start"] = ema_start_for_half_life(total_steps, float(v["ema_half_life"]), float(v["ema_end"]))


FULL_STEPS, SMOKE_STEPS = (5, 20), (1, 2)  # (warm-up, timed) steps of the video figures


# ---------------------------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(step, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return (time.perf_counter() - start) / iters


def bf16_peak(device: torch.device, n: int = 8192, iters: int = 20) -> float:
    """Achieved bf16 matmul FLOP/s: the MFU denominator (as orchestrator.budget.measure_bf16_peak)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    return 2 * n**3 / seconds_per_step(lambda: a @ b, device, 3, iters)


def video_step(variant, modules, stage: str, video: torch.Tensor, steps_total: int):
    """One trainer step: bf16 autocast (on CUDA) forward, backward, fused AdamW, after_step."""
    device = video.device
    optimizer = torch.optim.AdamW(variant.param_groups(modules, stage), lr=1e-4, fused=device.type == "cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    count = [0]

    def step() -> None:
        with autocast:
            loss = variant.step(modules, {"video": video}, stage)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count[0] += 1
        variant.after_step(modules, count[0], steps_total, stage)

    return step


def random_video(entry: dict, device: torch.device, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(entry["batch"], channels, entry["frames"], entry["size"], entry["size"], generator=g).to(device)


def mfu_figure(entry: dict, device: torch.device, peak: float | None, warmup: int, iters: int) -> dict:
    from variants.base import DataSpec
    from variants.vjepa import VJEPA

    cfg = Config(entry["cfg"])
    variant = VJEPA(cfg, DataSpec(kind="video", frames=entry["frames"], size=entry["size"]))
    variant.reseed(0)
    modules = variant.build("main").to(device)
    s = seconds_per_step(video_step(variant, modules, "main", random_video(entry, device), warmup + iters), device, warmup, iters)
    achieved = entry["flops"] / s
    return {"model": cfg.model.get("name", "vit_large"), "ms_per_step": 1e3 * s, "tflops": achieved / 1e12,
            "mfu": achieved / peak if peak else None, "goal": ">= 0.50"}


def salt_figure(vjepa_entry: dict, salt_entry: dict, device: torch.device, warmup: int, iters: int) -> dict:
    """Same student weights, same mask stream (reseeded), as bench/salt_step.py."""
    from variants.base import DataSpec
    from variants.salt import SALT
    from variants.vjepa import VJEPA

    spec = DataSpec(kind="video", frames=vjepa_entry["frames"], size=vjepa_entry["size"])
    video = random_video(vjepa_entry, device)
    torch.manual_seed(0)
    vjepa = VJEPA(Config(vjepa_entry["cfg"]), spec)
    vjepa_modules = vjepa.build("main").to(device)
    salt = SALT(Config(salt_entry["cfg"]), spec)
    salt_modules = salt.build("student", salt.build("teacher")).to(device)
    salt_modules["student"].load_state_dict(vjepa_modules["encoder"].state_dict())
    times = {}
    for name, variant, modules, stage in (("vjepa", vjepa, vjepa_modules, "main"), ("salt", salt, salt_modules, "student")):
        variant.reseed(0)
        times[name] = seconds_per_step(video_step(variant, modules, stage, video, warmup + iters), device, warmup, iters)
    return {"vjepa_ms": 1e3 * times["vjepa"], "salt_ms": 1e3 * times["salt"], "time_ratio": times["salt"] / times["vjepa"],
            "flops_ratio": salt_entry["flops"] / vjepa_entry["flops"], "goal": "time_ratio <= 0.75"}


def tdjepa_update_fn(hidden: int, device: torch.device, mode: str):
    """`update(batch) -> loss`: one TD-JEPA update (loss, backward, Adam, EMA targets) at walker sizes;
    `mode` (eager | compile | cudagraphs) picks how loss+backward is compiled. Plain torch: bench/rl_update.py
    uses it too."""
    from variants.base import DataSpec
    from variants.td_jepa import TDJEPA, TDJEPAConfig

    cfg = Config({"seed": 0, "variant": {**asdict(TDJEPAConfig()), "hidden": hidden}})
    spec = DataSpec(kind="rl", inputs={"observation": (TDJEPA_OBS,), "action": (TDJEPA_ACT,),
                                       "next_observation": (TDJEPA_OBS,), "future_observation": (TDJEPA_OBS,)})
    variant = TDJEPA(cfg, spec)
    modules = variant.build("main").to(device)
    params = [p for p in modules.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4, capturable=mode == "cudagraphs", fused=device.type == "cuda")

    def loss_and_grads(batch_):
        loss = variant.step(modules, batch_, "main")["loss"]
        loss.backward()
        return loss.detach()

    if mode == "compile":
        loss_and_grads = torch.compile(loss_and_grads)
    elif mode == "cudagraphs":
        loss_and_grads = torch.compile(loss_and_grads, mode="reduce-overhead")

    def update(batch_):
        optimizer.zero_grad(set_to_none=False)
        loss = loss_and_grads(batch_)
        optimizer.step()
        variant.after_step(modules, 0, 0, "main")
        return loss

    return update


def tdjepa_batch(batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A fixed random batch at walker sizes (observations normal, actions uniform in [-1, 1])."""
    g = torch.Generator().manual_seed(0)
    data = {k: torch.randn(batch, TDJEPA_OBS, generator=g) for k in ("observation", "next_observation", "future_observation")}
    data["action"] = torch.rand(batch, TDJEPA_ACT, generator=g) * 2 - 1
    return {k: v.to(device) for k, v in data.items()}


def tdjepa_update(hidden: int, batch: int, device: torch.device, mode: str):
    """A no-argument update on a fixed batch, for `seconds_per_step`."""
    update, data = tdjepa_update_fn(hidden, device, mode), tdjepa_batch(batch, device)
    return lambda: update(data)


def tdjepa_figure(hidden: int, batch: int, device: torch.device, modes: list[str], warmup: int, iters: int) -> dict:
    rates = {}
    for mode in modes:
        try:
            rates[mode] = 1.0 / seconds_per_step(tdjepa_update(hidden, batch, device, mode), device, warmup, iters)
        except Exception as err:  # noqa: BLE001 (a mode that cannot compile here is reported, not fatal)
            rates[mode] = f"failed: {type(err).__name__}: {str(err)[:200]}"
    eager = rates.get("eager")
    ratios = {m: r / eager for m, r in rates.items() if isinstance(r, float) and isinstance(eager, float)}
    return {"hidden": hidden, "batch": batch, "updates_per_s": rates, "x_eager": ratios, "goal": "best >= 5x eager"}


# ---------------------------------------------------------------------------------------------- main


def check_imports() -> list[str]:
    """Modules of the project's other dependencies that the variants pulled in (should be none)."""
    import importlib

    for name in ("vjepa", "salt", "td_jepa"):
        importlib.import_module(f"variants.{name}")

    return sorted({m.split(".")[0] for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] in FORBIDDEN})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu_results.json", help="results file (JSON; a .txt summary beside it)")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU, eager only: proves the script runs")
    p.add_argument("--write-configs", action="store_true", help="compose configs + trace FLOPs into bench/gpu_configs.json")
    p.add_argument("--check-imports", action="store_true")
    p.add_argument("--only", default="mfu,salt,tdjepa", help="comma list of figures to run")
    args = p.parse_args()
    if args.write_configs:
        write_configs()
        return
    leaked = check_imports()
    if args.check_imports or leaked:
        print(f"variants import {leaked or 'none'} of {', '.join(FORBIDDEN)}")
        if leaked:
            sys.exit(1)
        return
    smoke = args.cpu_smoke
    device = torch.device("cpu" if smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device. Fix: run on the GPU machine, or pass --cpu-smoke", file=sys.stderr)
        sys.exit(2)
    entries = json.loads(CONFIGS.read_text())["smoke" if smoke else "full"]
    warmup, iters = SMOKE_STEPS if smoke else FULL_STEPS
    torch.backends.cuda.matmul.allow_tf32 = True
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "smoke": smoke, "variants_imported": leaked}
    out, started = Path(args.out), time.perf_counter()
    only = args.only.split(",")

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        results["seconds"] = time.perf_counter() - started
        out.write_text(json.dumps(results, indent=1))

    if "mfu" in only:
        peak = bf16_peak(device) if device.type == "cuda" else None
        results["bf16_peak_tflops"] = peak / 1e12 if peak else None
        results["mfu"] = mfu_figure(entries["mfu"], device, peak, warmup, iters)
        print("mfu", results["mfu"], flush=True)
        save()
    if "salt" in only:
        results["salt_vs_vjepa"] = salt_figure(entries["vjepa_b"], entries["salt"], device, warmup, iters)
        print("salt", results["salt_vs_vjepa"], flush=True)
        save()
    if "tdjepa" in only:
        hidden, batch = (64, 32) if smoke else (1024, 1024)
        modes = ["eager"] if smoke else ["eager", "compile", "cudagraphs"]
        results["tdjepa"] = tdjepa_figure(hidden, batch, device, modes, 3 if smoke else 10, 5 if smoke else 100)
        print("tdjepa", results["tdjepa"], flush=True)
        save()
    save()
    out.with_suffix(".txt").write_text("\n".join(f"{k}: {v}" for k, v in results.items()) + "\n")
    print(f"wrote {out} in {results['seconds']:.0f}s")


if __name__ == "__main__":
    main()
