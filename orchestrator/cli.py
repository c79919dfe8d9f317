"""`jepa`: run, sweep, report, data, variants. Thin: parses arguments and delegates."""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

from rich.console import Console
from rich.table import Table

from orchestrator.results import resolve_storage

console = Console(stderr=True)



def _user_errors() -> tuple[type[Exception], ...]:
    from envs import RenderingUnavailable
    from orchestrator.budget import BudgetError
    from orchestrator.config import ConfigError
    from orchestrator.ray_connect import RayAddressError
    from orchestrator.entries import UnknownNameError
    from orchestrator.report import ReportError
    from orchestrator.sweep import SweepError
    from variants.base import ContractError

    return (ConfigError, SweepError, BudgetError, UnknownNameError, FileNotFoundError, RayAddressError, RenderingUnavailable,
            ReportError, ContractError)


def _init_ray(address: str | None, storage: str) -> None:
    """Our own local Ray unless --address or RAY_ADDRESS names one (see orchestrator/ray_connect.py)."""
    import ray

    from orchestrator.ray_connect import start_ray

    start_ray(address, log_to_driver=True)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and "://" not in storage:
        console.print(f"[yellow]warning:[/] {len(nodes)} nodes share storage {storage!r}, a local path: results and "
                      "checkpoints land on whichever node writes them unless it is a shared filesystem. "
                      "Use --storage on shared disk or a URI such as s3://bucket/runs")


def cmd_variants(args) -> int:
    from orchestrator import registry

    table = Table("variant", "stages", "hyper-parameters (variant.*)")
    for name, cls in sorted(registry.variants().items()):
        fields = ", ".join(f for f in cls.Config.__dataclass_fields__ if f != "name")
        table.add_row(name, ", ".join(cls.stages), fields)
    Console().print(table)
    return 0


def cmd_run(args) -> int:
    from omegaconf import OmegaConf

    from orchestrator.config import compose_run
    from orchestrator.registry import check_data
    from orchestrator.train import describe_plan, launch

    overrides = list(args.overrides)
    if not any(o.startswith("storage=") for o in overrides):
        overrides.append(f"storage={resolve_storage('runs')}")
    cfg = compose_run(overrides)
    if args.cfg:
        print(OmegaConf.to_yaml(cfg))
        return 0
    check_data(cfg.data)  # the user's files, before Ray starts
    console.print(f"[bold]plan[/]: {describe_plan(cfg)}")
    run_id = args.run_id or f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    _init_ray(args.address, cfg.storage)
    metrics = launch(cfg, run_id)
    shown = ("step", "flops_total", "loss", "probe_acc", "probe_acc_shape", "probe_acc_motion", "score", "feature_rank")
    keys = [k for k in metrics if k.split("/")[0] in shown and isinstance(metrics[k], (int, float))]  # with baselines
    console.print(f"[green]run {run_id} finished[/]: " + ", ".join(f"{k}={metrics[k]:.4g}" for k in keys))
    console.print(f"results: {cfg.storage}/{cfg.sweep}")
    return 0


def cmd_sweep(args) -> int:
    """Exit 0 when every trial ended as Tune meant it to, 1 if any failed, 130 when interrupted
    (the counts then come from the results store, with the command that resumes the sweep)."""
    from orchestrator.sweep import SweepInterrupted, load_sweep, run_sweep, trial_counts

    storage = resolve_storage(args.storage)
    overrides = list(args.overrides) + [f"storage={storage}"]
    sweep = load_sweep(args.file, overrides, smoke=args.smoke, max_failures=args.max_failures)
    console.print(f"[bold]sweep {sweep.name}[/]: {sweep.grid_size} trial(s) validated from {sweep.source}")
    _init_ray(args.address, storage)
    start = time.perf_counter()
    try:
        grid, interrupted = run_sweep(sweep, storage, resume=args.resume), False
    except SweepInterrupted as stop:
        grid, interrupted = stop.grid, True
    except KeyboardInterrupt:  # a second Ctrl-C: Tune did not get to settle its trials
        grid, interrupted = None, True
    counts = trial_counts(sweep, storage, grid)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n or status in ("finished", "failed"))
    console.print(f"sweep {sweep.name}: {summary} in {time.perf_counter() - start:.0f}s", markup=False, highlight=False)
    for result in [r for r in grid or [] if r.error is not None]:
        console.print(f"[red]failed[/] {result.path}: {str(result.error).strip().splitlines()[-1][:300]}")
    if interrupted:
        console.print("interrupted; to finish the remaining trials from their checkpoints, run:", markup=False)
        console.print(f"  {_resume_command(args)}", markup=False, highlight=False, soft_wrap=True)
        return 130
    report = write_report_naming_damage(storage, sweep.name)
    console.print(f"report: {report}")
    return 1 if counts["failed"] else 0


def _resume_command(args) -> str:
    """The user's own `jepa sweep` call (file, overrides, flags as given) plus --resume."""
    import shlex

    parts = ["jepa", "sweep", args.file, *args.overrides]
    parts += ["--smoke"] * args.smoke + (["--storage", args.storage] if args.storage != "runs" else [])
    parts += ["--address", args.address] if args.address else []
    return shlex.join(parts + ["--resume"])


def write_report_naming_damage(storage: str, sweep: str, **axes) -> str:
    """The report, with one `warning:` line per damaged results file it had to skip."""
    from rich.markup import escape

    from orchestrator.report import write_report
    from orchestrator.results import reporting_damaged_files

    with reporting_damaged_files(lambda text: console.print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)):
        return write_report(storage, sweep, **axes)


def cmd_report(args) -> int:
    """Write the report, naming each damaged results file it skipped; --check only lists those files."""
    from rich.markup import escape

    from orchestrator.report import check_results

    storage = resolve_storage(args.storage)
    if args.check:
        damaged = check_results(storage, args.sweep)
        for path, error in damaged:
            console.print(f"[red]damaged:[/] {escape(path)}: {escape(error)}")
        console.print(f"{args.sweep}: {len(damaged)} damaged file(s)" if damaged else f"{args.sweep}: no damaged files")
        return 1 if damaged else 0
    path = write_report_naming_damage(storage, args.sweep, x=args.x, y=args.y, group=args.group)
    console.print(f"report: {path}")
    return 0


def cmd_data(args) -> int:
    from orchestrator import registry
    from orchestrator.config import compose_run

    if args.action == "list":
        table = Table("dataset", "what it is")
        for name, entry in sorted(registry.datasets().items()):
            table.add_row(name, entry.describe)
        Console().print(table)
        return 0
    if not args.name:
        raise SystemExit("jepa data make NAME [key=value ...]: name a dataset (see `jepa data list`)")
    registry.dataset(args.name)
    cfg = compose_run([f"data={args.name}", "budget.steps=1", *[f"data.{o}" for o in args.overrides]])
    _data_ray_address(args.address)
    start = time.perf_counter()
    path = registry.dataset(args.name).prepare(cfg.data)
    console.print(f"{args.name}: {path} ({time.perf_counter() - start:.1f}s)")
    return 0


def _data_ray_address(address: str | None) -> None:
    """Datasets start Ray only if they need it (ExoRL's collector): check a given address now, and hand it on."""
    from orchestrator.ray_connect import check_reachable, quiet_token_notice, resolve_address

    target, source = resolve_address(address)
    check_reachable(target, source)
    if target != "local":
        os.environ["RAY_ADDRESS"] = target  # the collector joins it; without one it starts its own local Ray
    quiet_token_notice()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jepa", description="Pretrain and compare JEPA variants on Ray, charged in FLOPs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("variants", help="list registered variants")
    p.set_defaults(func=cmd_variants)

    p = sub.add_parser("run", help="train one config (Hydra overrides, e.g. variant=vjepa budget.flops=2e12)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    p.add_argument("--run-id", default=None, help="name of the run (same name resumes from its last checkpoint)")
    p.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS or a new local Ray)")
    p.add_argument("--cfg", action="store_true", help="print the composed config and exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="run a sweep file through Ray Tune, then write its report")
    p.add_argument("file")
    p.add_argument("overrides", nargs="*", help="Hydra overrides applied to every trial's base config")
    p.add_argument("--smoke", action="store_true", help="apply the file's smoke: section (a minutes-long version)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same name")
    p.add_argument("--max-failures", type=int, default=None, metavar="N",
                   help="restarts of a failed trial from its last checkpoint (default: the file's failures.max_failures, else 1)")
    p.add_argument("--storage", default="runs", help="results root (path or pyarrow URI), default ./runs")
    p.add_argument("--address", default=None)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="write runs/<sweep>/report.md and plots (no Ray needed)")
    p.add_argument("sweep")
    p.add_argument("--storage", default="runs")
    p.add_argument("--x", default=None)
    p.add_argument("--y", default=None)
    p.add_argument("--group", default=None)
    p.add_argument("--check", action="store_true",
                   help="list damaged (unreadable) results files and exit 1 if any; writes no report")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("data", help="make or list datasets (all generated locally)")
    p.add_argument("action", choices=["make", "list"])
    p.add_argument("name", nargs="?")
    p.add_argument("overrides", nargs="*", help="dataset keys, e.g. num_train=4096 size=64")
    p.add_argument("--address", default=None,
                   help="Ray cluster for datasets collected with Ray tasks (default: $RAY_ADDRESS or a new local Ray)")
    p.set_defaults(func=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and (not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    try:
        return args.func(args)
    except _user_errors() as err:
        from rich.markup import escape

        console.print(f"[red]error:[/] {escape(_explain(err))}", soft_wrap=True)  # one line, whatever the width
        return 2


def _explain(err: Exception) -> str:
    """A user error as one message; an OS 'no such file' names the file and how to fix it."""
    text = str(err)
    if isinstance(err, FileNotFoundError) and err.filename is not None:
        text = f"{err.strerror or 'no such file or directory'}: {err.filename}"
    if isinstance(err, FileNotFoundError) and "Fix:" not in text:
        name = f" {err.filename}" if err.filename is not None else ""
        text = f"{text.rstrip('. ')}. Fix: check the path{name} (relative paths start at {os.getcwd()})"
    return text


if __name__ == "__main__":
    sys.exit(main())
