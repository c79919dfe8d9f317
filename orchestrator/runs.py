"""Run bookkeeping every loop shares (the Ray Train loop, the zero-shot and reference RLlib loops, sweeps).

What a logged step becomes (long-format rows, stage-prefixed names, a recorder that stores and reports
them), the NaN check, where a run's Ray checkpoints live, and how a stored error is classified.
No loop imports another for these.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

from orchestrator.metrics import DashboardGauges
from orchestrator.results import ResultsStore, resolve_storage
from orchestrator.session import checkpoint_dir


class NonFiniteLossError(FloatingPointError):
    pass


def check_finite(loss: float, cfg, stage: str, step: int) -> None:
    """Run on the all-reduced loss, so every rank raises together (no rank left waiting in DDP)."""
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"variant {cfg.variant.name!r} stage {stage!r}: loss became {loss} by step {step}. "
            f"Fix: lower optim.lr (now {cfg.optim.lr}), set optim.grad_clip, or use train.precision=fp32"
        )


# ---------------------------------------------------------------------------- metrics
UNPREFIXED = ("stage", "step", "flops_total", "wall_s", "final", "setup_s", "train_s", "eval_s")


def stage_prefixed(metrics: dict, stage: str) -> dict:
    """"loss" -> "teacher/loss", so a stage's numbers never mix with the final model's."""
    return {(k if k in UNPREFIXED else f"{stage}/{k}"): v for k, v in metrics.items()}


def metric_rows(metrics: dict) -> list[dict]:
    """Long-format rows for the results store."""
    base = {"step": int(metrics["step"]), "flops": float(metrics["flops_total"]), "wall_s": float(metrics["wall_s"])}
    return [dict(base, metric=k, value=float(v)) for k, v in metrics.items()
            if isinstance(v, (int, float)) and k not in ("step", "flops_total", "wall_s") and (k != "final" or v)]


class RunRecorder:
    """What an RLlib-hosted run does with each logged step: dashboard gauges, long-format rows in
    the results store, and rate-limited reports to Ray (with a checkpoint when `save` is given).

    Rows are stored before the checkpoint and the report: Tune may stop the trial inside `report`, and a
    kill after a checkpoint must not leave that checkpoint's steps without their rows.
    """

    def __init__(self, cfg, run_id: str, session):
        self.cfg, self.run_id, self.session = cfg, run_id, session
        self.store = ResultsStore(cfg.storage)
        self.gauges = DashboardGauges(cfg.sweep, session.trial_name, cfg.variant.name)
        self.rows: list[dict] = []
        self.last: dict = {}
        self.last_report = time.perf_counter()

    def record(self, metrics: dict, save=None, force: bool = False) -> None:
        self.gauges.publish(metrics)
        self.rows.extend(metric_rows(metrics))
        self.last = metrics
        if save is None and not force and time.perf_counter() - self.last_report < self.cfg.train.report_interval_s:
            return
        # rows first: a run killed after its checkpoint but before its rows would resume past steps
        # whose metrics were never stored (rows stored twice are harmless: readers keep one per step)
        self.store.append_metrics(self.run_id, self.cfg.sweep, self.rows)
        self.rows = []
        with contextlib.ExitStack() as stack:
            ckpt_path = None
            if save is not None:
                ckpt_path = stack.enter_context(checkpoint_dir())
                save(Path(ckpt_path))
            self.session.report(metrics, ckpt_path)
        self.last_report = time.perf_counter()

    def close(self) -> None:
        """Store rows not yet reported (a failing run keeps everything it logged)."""
        if self.rows:
            self.store.append_metrics(self.run_id, self.cfg.sweep, self.rows)
            self.rows = []


# ---------------------------------------------------------------------------- storage
def ray_storage_path(cfg) -> str:
    """Ray's checkpoints live beside the results store, under <storage>/<sweep>/ray."""
    return f"{resolve_storage(cfg.storage).rstrip('/')}/{cfg.sweep}/ray"


def local_checkpoint_dir(cfg, run_id: str) -> Path | None:
    """Where `jepa run --run-id` keeps an RL run's latest checkpoint (no Tune or Train to do it):
    beside Ray's other checkpoints, on local storage only."""
    root = ray_storage_path(cfg)
    return None if "://" in root else Path(root) / run_id / "rl_checkpoint"


def reached_final_step(store: ResultsStore, sweep: str, run_id: str) -> bool:
    """The loop logs `final` with its last step; a stop that lands after it is not a cut-short run."""
    rows = store.metrics(sweep, run_id)
    finals = rows.filter(metric="final")
    return finals.height > 0 and finals["step"].max() >= rows["step"].max()


# ---------------------------------------------------------------------------- errors
USER_ERRORS = ("NonFiniteLossError:", "BudgetError:", "ConfigError:", "MissingDatasetError:")  # the run's own fault


def is_user_error(error: str) -> bool:
    """A stored error (see short_error) that retrying the same config would only repeat."""
    return error.startswith(USER_ERRORS)


def short_error(err: BaseException) -> str:
    """What the results store keeps of a failure: the user error's own message if it is one."""
    text = f"{type(err).__name__}: {err}"
    for marker in USER_ERRORS:
        if marker in text:
            text = text[text.rindex(marker):]
            break
    return text.strip()[:2000]
