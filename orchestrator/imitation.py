"""The imitation host (issue 19): supervised training on demo windows, then rollouts through RLlib.

Training is the self-supervised loop's recipe in one process: the variant's `step` gives the loss,
the configured optimiser and schedule (`make_optimizer`, `set_schedules`), gradient clipping,
`after_step` (EMA), FLOPs charged from the traced step (`plan_run`), rows into the results store
(`RunRecorder`), and its checkpoints (`train.save_state`, every `train.checkpoint_every` steps and at
the end; the resumable sampler and the CVAE stream reseeded per checkpoint, so a resumed run trains
exactly as an uninterrupted one): restored from Tune's (a retried trial, `jepa sweep --resume`), or
in a bare run from its own copy beside Ray's (`jepa run --run-id` again continues). The loop itself
is not reused: it hands no modules back and evaluates with the probe host's context. Evaluation, at the end:

* `eval/task<i>/success` (and `_se`) over `eval.episodes` episodes at each of OGBench's five
  evaluation goals, acted by `variant.act` on RLlib env runners (the `rollout_success` evaluation, once per goal),
  `eval/success_mean` over the goals, which is also the run's `score`;
* the world-model probe: ridge regression from the frozen context tokens (mean-pooled) to the cube's
  position and the gripper's opening `data.chunk` steps ahead, fitted on train windows and scored as R²
  on the val episodes (`probe/future_state_r2`), beside the same probe on the raw state ‖ goal
  (`/raw_input`) and on a randomly initialised copy of the networks (`/random_init`).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Subset

from orchestrator import registry
from orchestrator.budget import plan_run, reuse_step_flops
from orchestrator.config import from_plain
from orchestrator.optim import make_optimizer, set_schedules
from orchestrator.runs import RunRecorder, check_finite, local_checkpoint_dir
from orchestrator.session import make_session
from orchestrator.train_state import CHECKPOINT_FILE, batches, mask_seed, save_state
from variants.base import Variant
from variants.nn.probes import r2_score

NUM_TASKS = 5
PROBE_RIDGE = 1e-2  # ridge strength per sample, on standardised features


def check_batch(dataset, cfg) -> None:
    if len(dataset) < int(cfg.train.batch_size):
        raise ValueError(f"data {cfg.data.name!r}: {len(dataset)} windows cannot fill one batch of "
                         f"{cfg.train.batch_size}. Fix: lower train.batch_size or raise data.num_demos")


def window_roles(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the windows that teach actions and of those only the JEPA branch reads (`data.failed=jepa`)."""
    roles = np.asarray(dataset.arrays["labelled"]) if hasattr(dataset, "arrays") else np.ones(len(dataset))
    return np.flatnonzero(roles > 0), np.flatnonzero(roles == 0)


def rows_per_step(dataset, cfg) -> int:
    """`train.batch_size` demo windows, plus as many unlabelled ones when the data has them."""
    return int(cfg.train.batch_size) * (2 if len(window_roles(dataset)[1]) else 1)


def imitation_batches(dataset, cfg, session, device, skip: int = 0):
    """Batches of demo windows; with unlabelled windows each batch also carries `train.batch_size` of them from
    a stream of their own. Drawn uniformly instead, 300 failed episodes running to the step limit left 7 demo
    windows in a batch of 64 (docs/results/act_jepa.md): the action loss must see as many demos with them as without."""
    labelled, unlabelled = window_roles(dataset)
    if not len(unlabelled):
        return batches(dataset, cfg, session, device, skip=skip)
    for name, rows in (("demo", labelled), ("unlabelled", unlabelled)):
        if len(rows) < int(cfg.train.batch_size):
            raise ValueError(f"data {cfg.data.name!r}: {len(rows)} {name} windows cannot fill one batch of "
                             f"{cfg.train.batch_size}. Fix: lower train.batch_size, raise data.num_demos or "
                             "data.num_extra, or use data.failed=drop|actions")
    demos = batches(Subset(dataset, labelled.tolist()), cfg, session, device, skip=skip)
    extras = batches(Subset(dataset, unlabelled.tolist()), cfg, session, device, skip=skip)
    return ({key: torch.cat([a[key], b[key]]) for key in a} for a, b in zip(demos, extras, strict=True))


def restored_state(session, own: Path | None) -> dict | None:
    """The checkpoint to continue from: Tune's (a retried or resumed trial), else this run's own copy."""
    with session.restored_checkpoint() as path:
        path = path or (own if own is not None and (own / CHECKPOINT_FILE).is_file() else None)
        if path is None:
            return None
        return torch.load(Path(path) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)


def save_own_copy(own: Path, modules, optimizer, step: int, flops: float, wall_s: float) -> None:
    """A bare run's checkpoint, replaced atomically (an interrupted save leaves the previous one)."""
    partial = own.parent / (own.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    save_state(str(partial), modules, optimizer, 0, step, flops, wall_s)
    own.mkdir(parents=True, exist_ok=True)
    os.replace(partial / CHECKPOINT_FILE, own / CHECKPOINT_FILE)


def train_imitation(payload: dict, variant: Variant | None = None) -> dict:
    """Train one imitation run to its FLOP/step budget, then evaluate; returns the last metrics."""
    entered = time.perf_counter()
    cfg, run_id = from_plain(payload["config"]), payload["run_id"]
    reuse_step_flops(payload.get("step_flops", ()))
    session = make_session(payload.get("session", "local"))
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    torch.manual_seed(int(cfg.seed))
    device = torch.device("cuda" if cfg.train.use_gpu and torch.cuda.is_available() else "cpu")
    entry = registry.dataset(cfg.data.name)
    spec = entry.spec(cfg.data)
    variant_cls = registry.variant(cfg.variant.name)
    variant = variant if variant is not None else variant_cls(cfg, spec)
    train_set = entry.load(cfg.data, "train")
    check_batch(train_set, cfg)
    rows = rows_per_step(train_set, cfg)  # FLOPs are charged for every row a step reads
    (plan,) = plan_run(variant_cls, OmegaConf.merge(cfg, {"train": {"batch_size": rows}}), spec, variant)
    modules = variant.build("main").to(device)
    optimizer = make_optimizer(variant, modules, "main", cfg)
    own = local_checkpoint_dir(cfg, run_id) if session.kind == "local" else None
    state = restored_state(session, own)
    start_step = 0 if state is None else int(state["step"])
    if state is not None:
        modules.load_state_dict(state["modules"])
        optimizer.load_state_dict(state["optimizer"])
    variant.reseed(mask_seed(cfg, 0, start_step))  # the CVAE's noise after a checkpoint depends on its step only
    data = imitation_batches(train_set, cfg, session, device, skip=start_step)
    params = [p for name in variant.trainable(modules, "main") for p in modules[name].parameters() if p.requires_grad]
    recorder = RunRecorder(cfg, run_id, session)
    started = time.perf_counter() - (0.0 if state is None else float(state["wall_s"]))
    timing = {"setup_s": time.perf_counter() - entered, "train_s": 0.0, "eval_s": 0.0, "resumed_from_step": start_step}
    window_start, window_steps = time.perf_counter(), 0
    try:
        for step in range(start_step, plan.steps):
            batch = next(data)
            lr = set_schedules(optimizer, cfg, step, plan.steps)
            modules.train()
            out = variant.step(modules, batch, "main")
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            optimizer.step()
            variant.after_step(modules, step + 1, plan.steps, "main")
            window_steps += 1
            done = step + 1 == plan.steps
            ckpt_now = done or (step + 1) % cfg.train.checkpoint_every == 0
            if not (done or ckpt_now or (step + 1) % cfg.train.log_every == 0):
                continue
            elapsed = time.perf_counter() - window_start
            timing["train_s"] += elapsed
            metrics = {"stage": "main", "step": step + 1, "flops_total": plan.flops_per_step * (step + 1), "lr": lr,
                       "wall_s": time.perf_counter() - started,
                       "samples_per_s": window_steps * rows / max(elapsed, 1e-9),
                       **{k: float(v.detach()) for k, v in out.items()}}
            check_finite(metrics["loss"], cfg, "main", step + 1)
            metrics.update(variant.diagnostics(modules, "main"))
            if done:
                eval_start = time.perf_counter()
                modules.eval()
                metrics.update(evaluate(variant, modules, cfg, entry, train_set, device))
                timing["eval_s"] += time.perf_counter() - eval_start
            metrics.update(timing)
            metrics["final"] = bool(done)

            def save(directory: Path, done_steps: int = step + 1, wall_s: float = metrics["wall_s"]) -> None:
                flops = plan.flops_per_step * done_steps
                save_state(str(directory), modules, optimizer, 0, done_steps, flops, wall_s)
                if own is not None:
                    save_own_copy(own, modules, optimizer, done_steps, flops, wall_s)

            recorder.record(metrics, save if ckpt_now else None, force=done)
            window_start, window_steps = time.perf_counter(), 0
            if ckpt_now:
                variant.reseed(mask_seed(cfg, 0, step + 1))
    finally:
        recorder.close()
    return recorder.last


# ---------------------------------------------------------------------------- evaluation
def evaluate(variant, modules, cfg, entry, train_set, device) -> dict[str, float]:
    out = world_model_probe(variant, modules, cfg, entry, train_set, device)
    if int(cfg.eval.episodes) > 0 and not cfg.data.get("path"):
        out.update(goal_success(variant, modules, cfg))
    return out


def goal_success(variant, modules, cfg) -> dict[str, float]:
    """Success per evaluation goal and overall: the `rollout_success` evaluation run once per goal's env."""
    from envs.manipulation import make_goal_env
    from orchestrator.evaluate import registry as evaluations
    from orchestrator.evaluate.base import EvalContext

    rollout_success = evaluations.evaluation("rollout_success")
    out, successes = {}, []
    for task in range(1, NUM_TASKS + 1):
        env = {"maker": make_goal_env, "kwargs": {"env_name": str(cfg.data.env_name), "task_id": task}}
        result = rollout_success.run(EvalContext(variant, modules, cfg, env=env))
        out[f"eval/task{task}/success"] = result["rollout/success"]
        out[f"eval/task{task}/success_se"] = result["rollout/success_se"]
        successes.append(result["rollout/success"])
    out["eval/success_mean"] = out["score"] = float(np.mean(successes))
    # goals are equally weighted, episodes independent: s.e. of the mean of per-goal means
    out["eval/success_mean_se"] = float(math.sqrt(sum(out[f"eval/task{t}/success_se"] ** 2 for t in range(1, NUM_TASKS + 1))) / NUM_TASKS)
    return out


@torch.no_grad()
def _pooled(encode, dataset, device, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    feats, targets = [], []
    rows = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:limit].tolist()
    loader = DataLoader(torch.utils.data.Subset(dataset, rows), batch_size=512)
    for batch in loader:
        feats.append(encode({k: v.to(device) for k, v in batch.items()}).float().reshape(len(batch["labelled"]), -1).cpu())
        targets.append(batch["future_state"])
    return torch.cat(feats), torch.cat(targets)


def ridge_r2(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor]) -> float:
    """R² on `val` of a ridge regression fitted on `train` (features standardised on train)."""
    (x, y), (xv, yv) = train, val
    mean, std = x.mean(0), x.std(0)
    keep = std > 1e-4  # near-constant columns (a goal's fixed parts) only add noise once standardised
    x, xv = ((x - mean) / std.clamp_min(1e-4))[:, keep], ((xv - mean) / std.clamp_min(1e-4))[:, keep]
    x, xv = torch.cat([x, torch.ones(len(x), 1)], 1), torch.cat([xv, torch.ones(len(xv), 1)], 1)
    eye = torch.eye(x.shape[1]) * PROBE_RIDGE * len(x)
    w = torch.linalg.solve(x.T @ x + eye, x.T @ y)
    return r2_score(xv @ w, yv)


def world_model_probe(variant, modules, cfg, entry, train_set, device) -> dict[str, float]:
    """R² of the future cube position and gripper opening from the frozen context tokens (mean-pooled),
    from the raw state ‖ goal, and from a random-init copy of the networks."""
    if "future_state" not in train_set.arrays:
        return {}
    val_set = entry.load(cfg.data, "val")
    train_n, val_n = int(cfg.eval.train_clips) * 8, int(cfg.eval.val_clips) * 8
    torch.manual_seed(int(cfg.seed))
    fresh = variant.build("main").to(device).eval()
    encoders = {"": lambda b: variant.features(modules, b).mean(1),
                "/random_init": lambda b: variant.features(fresh, b).mean(1),
                "/raw_input": lambda b: b["observation"]}
    out = {}
    for suffix, encode in encoders.items():
        out[f"probe/future_state_r2{suffix}"] = ridge_r2(_pooled(encode, train_set, device, train_n),
                                                         _pooled(encode, val_set, device, val_n))
    return out
