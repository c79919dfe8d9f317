"""THE training loop, shared by every variant, stage and scale.

`train_loop(payload)` runs on each Ray Train worker (DDP over gloo on CPU, NCCL on GPU), or
inline in a Tune trial, or bare. It reads top to bottom: set up -> plan stages by FLOPs ->
restore -> for each stage: build, wrap, optimise until the stage's budget -> evaluate.
`launch(cfg, run_id)` starts it (TorchTrainer or inline) and records the run's status.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from orchestrator import registry
from orchestrator.budget import (
    measure_bf16_peak,
    plan_run,
    reuse_step_flops,
    selected_stages,
    traced_step_flops,
)
from orchestrator.config import from_plain, to_plain
from orchestrator.evaluate.feature_stats import collapse_warning
from orchestrator.evaluate.run import evaluation_data, run_evaluations
from orchestrator.metrics import DashboardGauges
from orchestrator.optim import make_optimizer, set_schedules
from orchestrator.results import ResultsStore
from orchestrator.runs import (
    check_finite,
    metric_rows,
    ray_storage_path,
    reached_final_step,
    short_error,
    stage_prefixed,
)
from orchestrator.session import checkpoint_dir, make_session
from orchestrator.train_state import (
    batches,
    batches_done,
    load_state,
    mask_seed,
    save_state,
)
from variants.base import Variant


# ---------------------------------------------------------------------------- pieces
def pick_device(cfg, session) -> torch.device:
    if cfg.train.use_gpu and torch.cuda.is_available():
        return torch.device("cuda", session.local_rank if session.kind != "train" else _ray_local_device_index())
    return torch.device("cpu")


def _ray_local_device_index() -> int:
    import ray.train.torch

    return ray.train.torch.get_device().index or 0


def autocast_dtype(cfg, device: torch.device) -> torch.dtype | None:
    precision = cfg.train.precision
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def wrap_for_training(modules: nn.ModuleDict, trainable: list[str], cfg, device: torch.device, distributed: bool) -> nn.ModuleDict:
    """DDP (and optionally torch.compile) around the trainable modules; frozen ones run as they are."""
    wrapped = nn.ModuleDict()
    for name, module in modules.items():
        if name in trainable and distributed:
            module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
        if name in trainable and cfg.train.compile:
            module = torch.compile(module)
        wrapped[name] = module
    return wrapped


def agreed(flag: bool, distributed: bool, device: torch.device) -> bool:
    """Rank 0's decision, shared: every worker must call report the same number of times."""
    if not distributed:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


ARTIFACTS_KEY = "artifacts"  # a step's (or evaluation's) tensors to keep, beside its scalars: {"W": tensor}


def mean_over_workers(scalars: dict[str, torch.Tensor], distributed: bool) -> dict[str, float]:
    """Logged scalars averaged over data-parallel workers (one all-reduce); `artifacts` is not a scalar."""
    names = [k for k in scalars if k != ARTIFACTS_KEY]
    values = torch.stack([scalars[k].detach().float() for k in names])
    if distributed:
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return dict(zip(names, values.tolist()))


# ---------------------------------------------------------------------------- the loop
def train_loop(payload: dict, variant: Variant | None = None) -> dict:
    """Run every stage of one run on this worker; returns the last reported metrics.

    `variant`: the run's instance when the caller built it in this process (inline runs); Ray Train
    workers build their own.
    """
    entered = time.perf_counter()
    cfg, run_id = from_plain(payload["config"]), payload["run_id"]
    reuse_step_flops(payload.get("step_flops", ()))  # traced by the driver when it validated the run
    session = make_session(payload.get("session", "local"))
    rank0 = session.world_rank == 0
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg, session)
    amp_dtype = autocast_dtype(cfg, device)
    distributed = session.world_size > 1 and dist.is_available() and dist.is_initialized()

    entry = registry.dataset(cfg.data.name)
    spec = entry.spec(cfg.data)
    variant_cls = registry.variant(cfg.variant.name)
    variant = variant if variant is not None else variant_cls(cfg, spec)
    variant.reseed(mask_seed(cfg, session.world_rank, 0))
    plans = plan_run(variant_cls, cfg, spec, variant)
    evaluation = evaluation_data(entry, cfg) if rank0 else None

    store = ResultsStore(cfg.storage) if rank0 else None
    gauges = DashboardGauges(cfg.sweep, session.trial_name, cfg.variant.name) if rank0 else None
    peak = measure_bf16_peak(device) if device.type == "cuda" and rank0 else None
    state = load_state(session)
    data = batches(entry.load(cfg.data, "train"), cfg, session, device, skip=batches_done(plans, state))
    flops_total, previous, last = 0.0, None, {}
    started = time.perf_counter()
    timing = {"setup_s": started - entered, "train_s": 0.0, "eval_s": 0.0}  # where a trial's time goes (bench/)
    last_report = started

    for stage_index, plan in enumerate(plans):
        stage, is_last_stage = plan.stage, stage_index == len(plans) - 1
        modules = variant.build(stage, previous).to(device)
        start_step = 0
        if state is not None and state["stage_index"] >= stage_index:
            if state["stage_index"] > stage_index:  # finished before the restart: skip ahead
                flops_total += plan.flops
                previous = modules
                continue
            modules.load_state_dict(state["modules"])
            variant.reseed(mask_seed(cfg, session.world_rank, state["step"]))  # as the checkpoint's run did
            start_step, flops_total = state["step"], state["flops"]
            started = time.perf_counter() - state["wall_s"]
        trainable = variant.trainable(modules, stage)
        runnable = wrap_for_training(modules, trainable, cfg, device, distributed)
        optimizer = make_optimizer(variant, modules, stage, cfg)
        if state is not None and state["stage_index"] == stage_index:
            optimizer.load_state_dict(state["optimizer"])
        params = [p for name in trainable for p in modules[name].parameters() if p.requires_grad]
        per_worker_flops = plan.flops_per_step / session.world_size
        window_start, window_steps, rows = time.perf_counter(), 0, []

        for step in range(start_step, plan.steps):
            batch = next(data)
            lr = set_schedules(optimizer, cfg, step, plan.steps)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = variant.step(runnable, batch, stage)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            optimizer.step()
            variant.after_step(modules, step + 1, plan.steps, stage)
            flops_total += plan.flops_per_step
            window_steps += 1
            done = step + 1 == plan.steps
            log_now = (step + 1) % cfg.train.log_every == 0 or done
            ckpt_now = (step + 1) % cfg.train.checkpoint_every == 0 or done
            eval_now = done or (is_last_stage and cfg.train.eval_every and (step + 1) % cfg.train.eval_every == 0)
            if not (log_now or ckpt_now or eval_now):
                continue

            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - window_start
            timing["train_s"] += elapsed
            metrics = {"stage": stage, "step": step + 1, "flops_total": flops_total, "lr": lr,
                       "wall_s": time.perf_counter() - started,
                       "samples_per_s": window_steps * cfg.train.batch_size * session.world_size / max(elapsed, 1e-9)}
            metrics.update(mean_over_workers(out, distributed))
            check_finite(metrics["loss"], cfg, stage, step + 1)
            metrics.update(variant.inherited)
            metrics.update(variant.diagnostics(modules, stage))  # before stage prefixing: a teacher's are teacher/...
            if peak:
                metrics["mfu"] = per_worker_flops * window_steps / max(elapsed, 1e-9) / peak
            kept = dict(out.get(ARTIFACTS_KEY) or {})
            if eval_now and rank0:
                eval_start = time.perf_counter()
                evaluated = run_evaluations(variant, modules, cfg, device, evaluation, stage, previous, amp=amp_dtype is not None)
                kept.update(evaluated.pop(ARTIFACTS_KEY, None) or {})
                metrics.update(evaluated)
                if (warning := collapse_warning(metrics, cfg, run_id, stage)) is not None:
                    print(warning, file=sys.stderr)
                timing["eval_s"] += time.perf_counter() - eval_start
            metrics.update(timing)
            if eval_now and distributed:
                dist.barrier()
            metrics["final"] = bool(done and is_last_stage)
            if rank0:
                gauges.publish(metrics)  # the live view follows whichever stage is training
            if not is_last_stage:  # earlier stages (a SALT teacher) log under their own names
                metrics = stage_prefixed(metrics, stage)
            if rank0:
                rows.extend(metric_rows(metrics))
                keep_artifacts(store, cfg, run_id, stage if not is_last_stage else None, step + 1, kept)
            # Ray's report waits for its controller, so it is rate-limited; the store gets every row.
            report_now = ckpt_now or eval_now or agreed(time.perf_counter() - last_report >= cfg.train.report_interval_s, distributed, device)
            if report_now:
                with contextlib.ExitStack() as stack:
                    ckpt_path = None
                    if ckpt_now and rank0:
                        ckpt_path = stack.enter_context(checkpoint_dir())
                        save_state(ckpt_path, modules, optimizer, stage_index, step + 1, flops_total, metrics["wall_s"])
                    if rank0:  # before reporting: Tune may stop the trial inside report
                        store.append_metrics(run_id, cfg.sweep, rows)
                        rows = []
                    session.report(metrics, ckpt_path)
                last_report = time.perf_counter()
            last = metrics
            window_start, window_steps = time.perf_counter(), 0
            if ckpt_now:  # the masks after a checkpoint depend on its step only (see mask_seed)
                variant.reseed(mask_seed(cfg, session.world_rank, step + 1))
        if rank0 and stage != variant.stages[-1] and start_step < plan.steps:  # a later run may reuse it (SALT teachers)
            export_stage(store, cfg, run_id, stage, modules, plan.flops, last)
        previous = modules
        state = None
    return last


def export_stage(store: ResultsStore, cfg, run_id: str, stage: str, modules: nn.ModuleDict, flops: float, metrics: dict) -> str:
    """Save a finished intermediate stage with what it cost and how good it was."""
    buffer = io.BytesIO()
    torch.save({"modules": {k: v.detach().cpu() for k, v in modules.state_dict().items()}, "config": to_plain(cfg),
                "stage": stage, "run_id": run_id, "flops": flops,
                "metrics": {k.removeprefix(f"{stage}/"): v for k, v in metrics.items() if isinstance(v, (int, float))}}, buffer)
    return store.save_stage_file(cfg.sweep, run_id, f"{stage}.pt", buffer.getvalue())


def keep_artifacts(store: ResultsStore, cfg, run_id: str, stage_prefix: str | None, step: int, tensors: dict) -> None:
    """Rank 0's copy of the tensors a step or an evaluation returned under `artifacts`, as numpy, into the
    results store. Earlier stages' names get their stage as prefix (`teacher/W`), as their metrics do.
    """
    arrays = {f"{stage_prefix}/{k}" if stage_prefix else k: _to_numpy(v) for k, v in tensors.items()}
    store.append_artifacts(run_id, cfg.sweep, step, arrays)


def _to_numpy(value):
    if not isinstance(value, torch.Tensor):
        return value
    value = value.detach().cpu()
    return (value.float() if value.dtype in (torch.bfloat16, torch.float16) else value).numpy()


# ---------------------------------------------------------------------------- launching
def use_inline(cfg, in_tune: bool) -> bool:
    """One worker needs no worker group: run the loop in the calling process (measured in bench/)."""
    if cfg.train.inline == "never" or cfg.train.num_workers != 1:
        return False
    return cfg.train.inline == "always" or in_tune


def make_trainer(cfg, run_id: str, in_tune: bool):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    callbacks = []
    if in_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    resources = {"CPU": cfg.train.cpus_per_worker}
    return TorchTrainer(
        train_loop,
        train_loop_config={"config": to_plain(cfg), "run_id": run_id, "session": "train", "step_flops": traced_step_flops()},
        scaling_config=ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=cfg.train.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=run_id,
            storage_path=ray_storage_path(cfg),
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
        ),
    )


def launch(cfg, run_id: str, in_tune: bool = False) -> dict:
    """Run one composed config to completion, recording running -> finished | failed in the results store.

    The variant is built here once and handed to the loop of its host (see `host_runner`).
    """
    store = ResultsStore(cfg.storage)
    plain = to_plain(cfg)
    entry = registry.dataset(cfg.data.name)
    variant = registry.variant(cfg.variant.name)(cfg, entry.spec(cfg.data))
    record = dict(sweep=cfg.sweep, variant=cfg.variant.name, stage="+".join(selected_stages(variant, cfg)), config=plain)
    started = time.time()
    store.record_run(run_id, status="running", started_at=started, **record)
    try:
        run = host_runner(type(variant))
        result = run(cfg, {"config": plain, "run_id": run_id, "session": "tune" if in_tune else "local"}, variant, in_tune)
    except Exception as err:
        store.record_run(run_id, status="failed", error=short_error(err), started_at=started, **record)
        raise
    except BaseException:  # a scheduler (ASHA) or the user stopped it: keep what it logged
        status = "finished" if reached_final_step(store, cfg.sweep, run_id) else "stopped"
        store.record_run(run_id, status=status, started_at=started, **record)
        raise
    store.record_run(run_id, status="finished", started_at=started, **record)
    return result


# ---------------------------------------------------------------------------- hosts
# A host runner: (composed cfg, the loop's payload, the run's variant, in_tune) -> last metrics.
HostRunner = Callable[..., dict]


def run_ssl(cfg, payload: dict, variant: Variant, in_tune: bool) -> dict:
    """The self-supervised loop: inline for one worker in a trial, else a Ray Train worker group."""
    if use_inline(cfg, in_tune):
        return train_loop(payload, variant)
    return make_trainer(cfg, payload["run_id"], in_tune).fit().metrics or {}


def run_rl_zero_shot(cfg, payload: dict, variant: Variant, in_tune: bool) -> dict:
    """RLlib's learners on offline data, zero-shot evaluation (orchestrator/rl/loop.py)."""
    from orchestrator.rl.loop import train_zero_shot  # RLlib is heavy: imported only where RL runs

    if not in_tune:
        registry.dataset(cfg.data.name).prepare(cfg.data)  # collect/generate on the driver, with Ray tasks
    return train_zero_shot(payload, variant)


def run_rllib_algorithm(cfg, payload: dict, variant: Variant, in_tune: bool) -> dict:
    """One of RLlib's own offline algorithms (orchestrator/rl/baselines.py)."""
    from orchestrator.rl.baselines import train_baseline

    if not in_tune:
        registry.dataset(cfg.data.name).prepare(cfg.data)
    return train_baseline(payload)


def run_imitation(cfg, payload: dict, variant: Variant, in_tune: bool) -> dict:
    """Supervised training on demo windows, then rollouts through RLlib env runners (orchestrator/imitation.py)."""
    from orchestrator.imitation import train_imitation  # RLlib (rollouts) is heavy: imported only where it runs

    if not in_tune:
        registry.dataset(cfg.data.name).prepare(cfg.data)  # generate demos on the driver, with Ray tasks
    return train_imitation(payload, variant)


HOST_RUNNERS: dict[str, HostRunner] = {"ssl": run_ssl, "rl_zero_shot": run_rl_zero_shot,
                                       "imitation": run_imitation, "rllib_algorithm": run_rllib_algorithm}


def host_runner(variant_cls: type[Variant]) -> HostRunner:
    """THE map from a variant's declared host to the loop that trains it."""
    return HOST_RUNNERS[variant_cls.host]


def describe_plan(cfg) -> str:
    entry = registry.dataset(cfg.data.name)
    plans = plan_run(registry.variant(cfg.variant.name), cfg, entry.spec(cfg.data))
    return json.dumps([{"stage": p.stage, "steps": p.steps, "flops_per_step": p.flops_per_step, "flops": p.flops} for p in plans])

