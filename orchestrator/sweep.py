"""Sweep files -> Ray Tune.

A sweep file names a base run, a search space over config paths, the search algorithm,
an optional scheduler (ASHA on FLOPs spent), per-trial resources and what to report.
Everything is validated before the first trial starts; every error names the file, the
key and the fix. Each trial composes its run config with the same Hydra path as `jepa run`.

`failures: {max_failures: N}` (default 1; `jepa sweep --max-failures N` overrides it, on `--resume` too) is how
often Tune restarts a trial that failed (a killed worker, a lost node) from its last checkpoint,
under the same run id. A trial that failed on its own config (NaN loss, config or budget error)
is not trained again: Tune retries every failure alike, so the retry stops at once instead.
The driver's git commit is shipped to trials, whose working directories may have no `.git`.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator import registry
from orchestrator.budget import (
    BudgetError,
    plan_run,
    reuse_step_flops,
    traced_step_flops,
)
from orchestrator.config import (
    GROUPS,
    PATH_KEYS,
    ConfigError,
    absolute_path,
    absolute_path_overrides,
    compose_run,
    format_override,
    to_plain,
)

TOP_KEYS = {"name", "description", "base", "per_variant", "space", "search", "scheduler", "resources", "report", "smoke",
            "failures"}
SAMPLERS = {"loguniform": 2, "uniform": 2, "randint": 2, "choice": None}
ARTIFACTS = "stages_of"  # {stages_of: [sweep, stage]}: a grid over the stage files another sweep saved
ALGORITHMS = {"grid", "random", "optuna"}
RESOURCE_KEYS = {"workers_per_trial", "cpus_per_worker", "gpus_per_worker", "max_concurrent_trials"}
SCHEDULER_KEYS = {"name", "time_attr", "metric", "mode", "max_t", "grace_period", "reduction_factor"}
DEFAULT_MAX_FAILURES = 1


class SweepError(ValueError):
    pass


class SweepInterrupted(Exception):
    """Tune was stopped (Ctrl-C / SIGINT) before every trial ended; the store is settled."""

    def __init__(self, grid):
        super().__init__("sweep interrupted")
        self.grid = grid


@dataclass
class Sweep:
    """A validated sweep file."""

    name: str
    source: str
    base: list[str]  # Hydra overrides
    space: dict[str, Any]  # config path -> list (grid) or {sampler: args}
    search: dict[str, Any]
    scheduler: dict[str, Any] | None
    resources: dict[str, Any]
    report: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    step_flops: list = field(repr=False, default_factory=list)  # traced while validating, reused by trials
    per_variant: dict[str, list[str]] = field(default_factory=dict)  # extra overrides when a trial uses that variant
    failures: dict[str, Any] = field(default_factory=lambda: {"max_failures": DEFAULT_MAX_FAILURES})
    git_sha: str = "unknown"  # the driver's commit, recorded by every trial
    launched_at: float = 0.0  # when this driver started Tune: failures before it are a previous attempt's

    @property
    def grid_size(self) -> int:
        n = 1
        for values in self.space.values():
            if isinstance(values, list):
                n *= len(values)
        return n * int(self.search["num_samples"])


def load_sweep(path: str | os.PathLike, overrides: list[str] = (), smoke: bool = False,
               max_failures: int | None = None) -> Sweep:
    """Read, merge the smoke section / command-line overrides, and validate in full."""
    source = str(path)
    raw = _read_yaml(Path(path))
    _check_keys(raw, TOP_KEYS, source, "top level")
    if smoke:
        if "smoke" not in raw:
            raise SweepError(f"{source}: --smoke given but the file has no `smoke:` section. Fix: add one or drop --smoke")
        _check_keys(raw["smoke"], {"base", "space", "search"}, source, "smoke")
        for part in ("base", "space", "search"):
            raw.setdefault(part, {})
            raw[part] = {**(raw[part] or {}), **(raw["smoke"].get(part) or {})}
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SweepError(f"{source}: `name` must be a word of letters, digits, _ . - (got {name!r}). Fix: name: my_sweep")
    base = absolute_path_overrides(_base_overrides(raw.get("base") or {}, source) + list(overrides))
    space = _expand_artifacts(_check_space(raw.get("space") or {}, source), _storage_of(base), source)
    search = _check_search(raw.get("search") or {}, space, source)
    resources = _check_resources(raw.get("resources") or {}, source)
    scheduler = _check_scheduler(raw.get("scheduler"), search, source)
    report = raw.get("report") or {}
    if not isinstance(report, dict):
        raise SweepError(f"{source}: `report` must be a mapping with x, y, group. Fix: report: {{x: flops_total, y: probe_acc}}")
    _check_panels(report, source)
    per_variant = _per_variant_overrides(raw.get("per_variant") or {}, source)
    failures = _check_failures(raw.get("failures") or {}, source, max_failures)
    from orchestrator.results import git_sha
    sweep = Sweep(name, source, base, space, search, scheduler, resources, report, raw=raw, per_variant=per_variant,
                  failures=failures, git_sha=git_sha())
    _check_resource_keys(sweep)
    _check_repeats(sweep)
    _check_trials(sweep)
    sweep.step_flops = traced_step_flops()
    return sweep


class _Loader(yaml.SafeLoader):
    """YAML 1.2 floats: `1e12` and `5.0e10` are numbers, not the strings YAML 1.1 makes of them."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$|^[-+]?(?:\d+\.\d*|\.\d+)$"),
    list("-+0123456789."),
)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file. Fix: check the path (sweeps/ holds the shipped ones)")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SweepError(f"{path}:{where}: not valid YAML ({getattr(err, 'problem', err)}). Fix: correct the YAML syntax") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: a sweep file must be a YAML mapping with name, base, space. Fix: see sweeps/quickstart.yaml")
    return data


def _check_keys(section: Any, allowed: set[str], source: str, where: str) -> None:
    if not isinstance(section, dict):
        raise SweepError(f"{source}: `{where}` must be a mapping. Fix: use `key: value` lines")
    unknown = set(section) - allowed
    if unknown:
        raise SweepError(f"{source}: unknown key(s) {sorted(unknown)} in {where}. Fix: use only {sorted(allowed)}")


def _flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in GROUPS:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _base_overrides(base: dict, source: str) -> list[str]:
    if not isinstance(base, dict):
        raise SweepError(f"{source}: `base` must be a mapping of config keys. Fix: base: {{variant: vjepa, model: vit_tiny}}")
    return [format_override(k, v) for k, v in _flatten(base).items()]


def _per_variant_overrides(section: dict, source: str) -> dict[str, list[str]]:
    """`per_variant: {salt: {variant.teacher_fraction: 0.1}}`: keys only one variant has."""
    if not isinstance(section, dict):
        raise SweepError(f"{source}: `per_variant` must map variant names to config keys. Fix: per_variant: {{salt: {{...}}}}")
    unknown = set(section) - set(registry.variants())
    if unknown:
        raise SweepError(f"{source}: `per_variant` names unknown variant(s) {sorted(unknown)}. Fix: use {sorted(registry.variants())}")
    return {name: absolute_path_overrides(_base_overrides(keys or {}, source)) for name, keys in section.items()}


def _trial_variant(base: list[str], params: dict[str, Any]) -> str:
    if "variant" in params:
        return str(params["variant"])
    chosen = [o.split("=", 1)[1] for o in base if o.startswith("variant=")]
    return chosen[-1] if chosen else "vjepa"


def _check_space(space: dict, source: str) -> dict[str, Any]:
    if not isinstance(space, dict):
        raise SweepError(f"{source}: `space` must map config keys to lists or samplers. Fix: space: {{optim.lr: [1e-3, 3e-4]}}")
    checked = {}
    for key, values in space.items():
        where = f"space.{key}"
        if isinstance(values, list):
            if not values:
                raise SweepError(f"{source}: `{where}` is an empty list. Fix: give at least one value")
        elif isinstance(values, dict) and len(values) == 1:
            (sampler, args), = values.items()
            if sampler == ARTIFACTS:
                if not (isinstance(args, list) and len(args) == 2 and all(isinstance(a, str) for a in args)):
                    raise SweepError(f"{source}: `{where}.{ARTIFACTS}` needs [sweep, stage]. Fix: {ARTIFACTS}: [salt_teachers, teacher]")
                checked[key] = values
                continue
            arity = SAMPLERS.get(sampler, -1)
            if arity == -1:
                raise SweepError(f"{source}: `{where}` uses unknown sampler {sampler!r}. Fix: use one of {sorted(SAMPLERS)}")
            if not isinstance(args, list) or (arity and len(args) != arity) or not args:
                raise SweepError(f"{source}: `{where}.{sampler}` needs a list of {arity or 'one or more'} values. Fix: {sampler}: [low, high]")
            if arity and not (isinstance(args[0], (int, float)) and isinstance(args[1], (int, float)) and args[0] < args[1]):
                raise SweepError(f"{source}: `{where}.{sampler}` bounds must be numbers with low < high (got {args}). Fix: [1.0e-4, 1.0e-3]")
            if sampler == "loguniform" and args[0] <= 0:
                raise SweepError(f"{source}: `{where}.loguniform` needs positive bounds (got {args}). Fix: [1.0e-4, 1.0e-3]")
        else:
            raise SweepError(f"{source}: `{where}` must be a list (grid) or one sampler such as {{loguniform: [a, b]}}")
        if key in PATH_KEYS and isinstance(values, list):  # trials run elsewhere: the driver's paths, absolute
            values = [absolute_path(v) for v in values]
        checked[key] = values
    return checked


def _storage_of(overrides: list[str]) -> str:
    from orchestrator.results import resolve_storage

    values = [o.split("=", 1)[1].strip("'\"") for o in overrides if o.startswith("storage=")]
    return resolve_storage(values[-1] if values else "runs")


def _expand_artifacts(space: dict[str, Any], storage: str, source: str) -> dict[str, Any]:
    """Turn {stages_of: [sweep, stage]} into a grid over that sweep's saved stage files."""
    from orchestrator.results import ResultsStore

    expanded = {}
    for key, values in space.items():
        if isinstance(values, dict) and ARTIFACTS in values:
            sweep, stage = values[ARTIFACTS]
            files = ResultsStore(storage).artifacts(sweep, f"{stage}.pt")
            if not files:
                raise SweepError(
                    f"{source}: `space.{key}` asks for the {stage!r} stages of sweep {sweep!r}, but {storage}/{sweep} "
                    f"has none. Fix: run that sweep first (`jepa sweep sweeps/{sweep}.yaml`) with the same --storage"
                )
            values = files
        expanded[key] = values
    return expanded


def _check_search(search: dict, space: dict, source: str) -> dict[str, Any]:
    _check_keys(search, {"algorithm", "num_samples", "metric", "mode", "max_concurrent"}, source, "search")
    out = {"algorithm": "grid", "num_samples": 1, "metric": "probe_acc", "mode": "max", "max_concurrent": None, **search}
    if out["algorithm"] not in ALGORITHMS:
        raise SweepError(f"{source}: `search.algorithm` is {out['algorithm']!r}. Fix: use one of {sorted(ALGORITHMS)}")
    if out["mode"] not in ("max", "min"):
        raise SweepError(f"{source}: `search.mode` is {out['mode']!r}. Fix: use max or min")
    if not isinstance(out["num_samples"], int) or out["num_samples"] < 1:
        raise SweepError(f"{source}: `search.num_samples` is {out['num_samples']!r}. Fix: use a positive integer")
    if out["algorithm"] == "optuna":
        grids = [k for k, v in space.items() if isinstance(v, list)]
        if grids:
            raise SweepError(f"{source}: optuna cannot search grid lists ({grids}). Fix: write them as {{choice: [...]}} or use algorithm: grid")
    return out


def _check_resources(resources: dict, source: str) -> dict[str, Any]:
    _check_keys(resources, RESOURCE_KEYS, source, "resources")
    out = {"workers_per_trial": 1, "cpus_per_worker": 1, "gpus_per_worker": 0, "max_concurrent_trials": None, **resources}
    for key in ("workers_per_trial", "cpus_per_worker"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise SweepError(f"{source}: `resources.{key}` is {out[key]!r}. Fix: use a positive integer")
    return out


def _check_scheduler(scheduler: Any, search: dict, source: str) -> dict[str, Any] | None:
    if scheduler is None:
        return None
    _check_keys(scheduler, SCHEDULER_KEYS, source, "scheduler")
    if scheduler.get("name", "asha") != "asha":
        raise SweepError(f"{source}: `scheduler.name` is {scheduler['name']!r}. Fix: use asha (or drop the scheduler)")
    out = {"name": "asha", "time_attr": "flops_total", "metric": search["metric"], "mode": search["mode"],
           "grace_period": 1, "reduction_factor": 3, **scheduler}
    if "max_t" not in out:
        raise SweepError(f"{source}: `scheduler.max_t` is missing. Fix: set it in units of time_attr ({out['time_attr']}), e.g. the largest budget")
    return out


def _check_panels(report: dict, source: str) -> None:
    """A misspelt panel or panel option fails now, not after the sweep has trained (when `jepa report` reads it)."""
    from orchestrator.report import ReportError
    from orchestrator.report.registry import panels, requested_panels

    try:
        requested_panels(report, panels(), strict=True)
    except ReportError as err:
        raise SweepError(f"{source}: {err}") from None


def _check_failures(failures: dict, source: str, override: int | None) -> dict[str, int]:
    _check_keys(failures, {"max_failures"}, source, "failures")
    out = {"max_failures": DEFAULT_MAX_FAILURES, **failures}
    value = out["max_failures"]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SweepError(f"{source}: `failures.max_failures` is {value!r}. Fix: use a whole number >= 0 "
                         "(how often a failed trial restarts from its last checkpoint)")
    if override is not None:
        if override < 0:
            raise SweepError(f"--max-failures is {override}. Fix: use a whole number >= 0")
        out["max_failures"] = int(override)
    return out


RESOURCE_OWNED = ("train.num_workers", "train.cpus_per_worker", "train.use_gpu", "sweep")


def trial_overrides(sweep: Sweep, params: dict[str, Any]) -> list[str]:
    """The trial's run config: base, per-variant keys, its point in the space, then what `resources:` owns."""
    resources = sweep.resources
    variant_keys = sweep.per_variant.get(_trial_variant(sweep.base, params), [])
    return sweep.base + variant_keys + [format_override(k, v) for k, v in params.items()] + [
        f"sweep={sweep.name}",
        f"train.num_workers={resources['workers_per_trial']}",
        f"train.cpus_per_worker={resources['cpus_per_worker']}",
        f"train.use_gpu={'true' if resources['gpus_per_worker'] else 'false'}",
    ]


def _check_resource_keys(sweep: Sweep) -> None:
    """Trial resources are sized from `resources:`; the same keys set elsewhere would disagree and hang."""
    keys = [o.split("=", 1)[0].lstrip("+~") for o in sweep.base] + list(sweep.space)
    keys += [o.split("=", 1)[0] for extra in sweep.per_variant.values() for o in extra]
    clash = sorted(set(keys) & set(RESOURCE_OWNED))
    if clash:
        raise SweepError(f"{sweep.source}: {clash} are set by the sweep itself. Fix: use `resources:` "
                         "(workers_per_trial, cpus_per_worker, gpus_per_worker) and the file's `name`")


def _corner_params(sweep: Sweep) -> list[dict[str, Any]]:
    """Every grid combination, with sampled keys at their bounds: what validation composes."""
    axes = []
    for key, values in sweep.space.items():
        if isinstance(values, list):
            axes.append([(key, v) for v in values])
        else:
            (sampler, args), = values.items()
            axes.append([(key, v) for v in (args if sampler == "choice" else args[:2])])
    return [dict(combo) for combo in itertools.product(*axes)]


def _check_repeats(sweep: Sweep) -> None:
    """Repeating a pure grid with one seed would run identical trials and fake a variance."""
    sampled = any(not isinstance(v, list) for v in sweep.space.values())
    if sweep.search["num_samples"] > 1 and not sampled and "seed" not in sweep.space:
        raise SweepError(f"{sweep.source}: `search.num_samples` > 1 repeats an all-grid space with the same seed. "
                         "Fix: add `seed: [0, 1, ...]` to `space` and keep num_samples: 1")


def _check_trials(sweep: Sweep) -> None:
    """Compose every corner of the space and plan its FLOP budget before anything runs."""
    seen, checked_data = set(), set()
    for params in _corner_params(sweep):
        overrides = trial_overrides(sweep, params)
        try:
            cfg = compose_run(overrides, source=sweep.source)
            registry.check_data(cfg.data, checked_data)  # the user's files, once per data config
            key = str(sorted(overrides))
            if key not in seen:
                seen.add(key)
                entry = registry.dataset(cfg.data.name)
                plan_run(registry.variant(cfg.variant.name), cfg, entry.spec(cfg.data))
        except BudgetError as err:
            raise SweepError(f"{sweep.source}: trial {params}: {err}") from None
        except ConfigError as err:
            raise SweepError(f"{err} (trial {params})") from None


# ---------------------------------------------------------------------------- running
def _tune_space(space: dict[str, Any]) -> dict[str, Any]:
    from ray import tune

    out = {}
    for key, values in space.items():
        if isinstance(values, list):
            out[key] = tune.grid_search(values)
        else:
            (sampler, args), = values.items()
            out[key] = getattr(tune, sampler)(*args) if sampler != "choice" else tune.choice(args)
    return out


def trial(params: dict[str, Any], sweep: Sweep) -> None:
    """One Tune trial: compose its run config, then train it (inline or via TorchTrainer).
    A retry keeps the run id and resumes from the trial's last checkpoint."""
    from ray import tune

    from orchestrator.train import launch

    if sweep.git_sha != "unknown":  # read by the results store; Ray Train workers inherit it
        os.environ["JEPA_GIT_SHA"] = sweep.git_sha
    reuse_step_flops(sweep.step_flops)
    cfg = compose_run(trial_overrides(sweep, params), source=sweep.source)
    run_id = f"{sweep.name}-{tune.get_context().get_trial_id()}"
    _refuse_pointless_retry(sweep, cfg.storage, run_id)
    launch(cfg, run_id, in_tune=True)


class UserErrorNotRetried(RuntimeError):
    pass


def _refuse_pointless_retry(sweep: Sweep, storage: str, run_id: str) -> None:
    """Tune's FailureConfig retries every failure alike; a run that failed on its own config in this
    sweep invocation would only fail again, so fail at once with its error (a `--resume` retries it)."""
    from orchestrator.results import ResultsStore
    from orchestrator.runs import is_user_error

    runs = ResultsStore(storage).runs(sweep.name).filter(run_id=run_id)
    if runs.height == 0:
        return
    last = runs.row(0, named=True)
    if last["status"] == "failed" and last["updated_at"] >= sweep.launched_at and is_user_error(last["error"] or ""):
        raise UserErrorNotRetried(f"not retried, it would fail again: {last['error']}")


def _search_alg(sweep: Sweep):
    if sweep.search["algorithm"] != "optuna":
        return None
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    alg = OptunaSearch(metric=sweep.search["metric"], mode=sweep.search["mode"], seed=0)
    return ConcurrencyLimiter(alg, max_concurrent=sweep.search["max_concurrent"] or 2)


def _scheduler(sweep: Sweep):
    if not sweep.scheduler:
        return None
    from ray.tune.schedulers import ASHAScheduler

    s = sweep.scheduler
    return ASHAScheduler(time_attr=s["time_attr"], metric=s["metric"], mode=s["mode"], max_t=s["max_t"],
                         grace_period=s["grace_period"], reduction_factor=s["reduction_factor"])


RL_DATA_CPUS = 1  # left free for ray.data (RLlib's offline input): its tasks never run inside a trial's placement group


def _trial_resources(sweep: Sweep, inline: bool, rl: bool = False):
    """What Tune reserves per trial. An RL trial with several learners gets a placement group
    for them (RLlib creates its learner actors inside the trial's group)."""
    r = sweep.resources
    if rl and r["workers_per_trial"] > 1:
        from ray import tune

        learner = {"CPU": r["cpus_per_worker"], "GPU": r["gpus_per_worker"]}
        return tune.PlacementGroupFactory([{"CPU": 1}] + [learner] * r["workers_per_trial"])
    if rl:
        return {"cpu": r["cpus_per_worker"], "gpu": r["gpus_per_worker"]}
    if inline:  # the trial process itself trains
        return {"cpu": r["cpus_per_worker"], "gpu": r["gpus_per_worker"]}
    return {"cpu": 0.01}  # a TorchTrainer's workers ask for their own; Tune needs a non-empty request


def _max_concurrent(sweep: Sweep, rl: bool = False) -> int:
    import ray

    r = sweep.resources
    if r["max_concurrent_trials"]:
        return int(r["max_concurrent_trials"])
    per_trial = r["workers_per_trial"] * r["cpus_per_worker"] + (rl and r["workers_per_trial"] > 1)
    free, cpus = (RL_DATA_CPUS if rl else 0), ray.cluster_resources().get("CPU", 1)
    if cpus - per_trial < free:
        raise SweepError(f"{sweep.source}: `resources` asks {per_trial} CPUs per RL trial on a cluster of {cpus:g}, leaving "
                         f"none of the {free} that ray.data (RLlib's offline input) needs outside trials. "
                         "Fix: lower resources.cpus_per_worker or add CPUs")
    return max(1, int((cpus - free) // per_trial))


def prepare_datasets(sweep: Sweep) -> None:
    """Make every dataset the trials need, once, on the driver (in parallel Ray tasks where the
    generator uses them) before any trial starts: trials then only read, and never race or wait."""
    import json

    seen = set()
    for params in _corner_params(sweep):
        cfg = compose_run(trial_overrides(sweep, params), source=sweep.source)
        key = json.dumps(to_plain(cfg.data), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            registry.dataset(cfg.data.name).prepare(cfg.data)


def run_sweep(sweep: Sweep, storage: str, resume: bool = False):
    """Run every trial; failed trials are recorded and do not stop the others. Returns the ResultGrid,
    or raises SweepInterrupted (statuses settled) when Ctrl-C stopped Tune first."""
    import time

    from ray import tune

    from orchestrator.results import ResultsStore
    from orchestrator.runs import ray_storage_path

    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # probes report only at eval steps
    probe_cfg = compose_run(trial_overrides(sweep, _corner_params(sweep)[0]), source=sweep.source)
    inline = probe_cfg.train.inline != "never" and sweep.resources["workers_per_trial"] == 1
    ResultsStore(storage).save_sweep_spec(sweep.name, {k: v for k, v in sweep.raw.items()})
    rl = registry.dataset(probe_cfg.data.name).spec(probe_cfg.data).kind == "rl"
    sweep.launched_at = time.time()
    trainable = tune.with_resources(tune.with_parameters(trial, sweep=sweep), _trial_resources(sweep, inline, rl))
    path = ray_storage_path(probe_cfg)
    experiment = f"{path.rstrip('/')}/tune"
    if resume and tune.Tuner.can_restore(experiment):
        tuner = tune.Tuner.restore(experiment, trainable, resume_errored=True)
        apply_failure_budget(tuner, sweep.failures["max_failures"])
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=_tune_space(sweep.space),
            tune_config=tune.TuneConfig(
                num_samples=sweep.search["num_samples"],
                search_alg=_search_alg(sweep),
                scheduler=_scheduler(sweep),
                max_concurrent_trials=_max_concurrent(sweep, rl),
                # inline trials keep their process for the next trial: a new one costs ~10 s of imports on a
                # busy 2-core machine (bench/RESULTS.md, idle cores between trials); each trial seeds itself
                reuse_actors=inline,
            ),
            run_config=tune.RunConfig(name="tune", storage_path=path, verbose=1,
                                      failure_config=tune.FailureConfig(max_failures=sweep.failures["max_failures"])),
        )
    prepare_datasets(sweep)
    with _watch_interrupt() as watch:
        grid = tuner.fit()
    settle_statuses(sweep, storage, grid)
    if watch["interrupted"]:
        raise SweepInterrupted(grid)
    return grid


def apply_failure_budget(tuner, max_failures: int) -> None:
    """`--resume` honours the budget given now (flag, else file): `Tuner.restore` takes no RunConfig and
    would keep the one pickled when the sweep started, so set it on the restored tuner's own config."""
    from ray import tune

    try:
        run_config = tuner._local_tuner.get_run_config()  # no public setter in Ray 2.60
    except AttributeError:
        print(f"warning: this Ray cannot change a restored sweep's failure budget; --resume keeps the one "
              f"it started with, not max_failures={max_failures}")
        return
    run_config.failure_config = tune.FailureConfig(max_failures=max_failures)


@contextlib.contextmanager
def _watch_interrupt():
    """Tune swaps in its own SIGINT handler for `fit()` and, on Ctrl-C, puts back the one it found,
    stops the trials and returns normally. Finding our marker handler back after `fit()` means that
    happened (a second Ctrl-C raises KeyboardInterrupt, as usual)."""
    import signal
    import threading

    def marker(signum, frame):
        raise KeyboardInterrupt

    watch = {"interrupted": False}
    if threading.current_thread() is not threading.main_thread():  # Tune installs no handler there either
        yield watch
        return
    previous = signal.signal(signal.SIGINT, marker)
    try:
        yield watch
    finally:
        tune_handles = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") == "0"
        watch["interrupted"] = tune_handles and signal.getsignal(signal.SIGINT) is marker
        signal.signal(signal.SIGINT, previous)


def _trial_id_from_path(path: str | None) -> str | None:
    """Tune names trial dirs `<trainable>_<experiment>_<index>_...`; the id is `<experiment>_<index>`."""
    parts = Path(path or "").name.split("_")
    return "_".join(parts[1:3]) if len(parts) >= 3 else None


def settle_statuses(sweep: Sweep, storage: str, grid) -> None:
    """Trials Tune ended from outside (ASHA stops, killed actors) never recorded their end: do it here."""
    import json

    from orchestrator.results import ResultsStore
    from orchestrator.runs import reached_final_step

    store = ResultsStore(storage)
    runs = store.runs(sweep.name)
    open_runs = {row["run_id"]: row for row in runs.filter(status="running").iter_rows(named=True)}
    for result in grid:
        row = open_runs.get(_run_id_of(sweep, result))
        if row is None:
            continue
        status = "failed" if result.error is not None else "finished" if reached_final_step(store, sweep.name, row["run_id"]) else "stopped"
        store.record_run(row["run_id"], sweep=row["sweep"], variant=row["variant"], stage=row["stage"],
                         config=json.loads(row["config"]), status=status,
                         error=str(result.error)[-2000:] if result.error is not None else None, started_at=row["started_at"])


def _run_id_of(sweep: Sweep, result) -> str:
    trial_id = (result.metrics or {}).get("trial_id") or _trial_id_from_path(result.path)
    return f"{sweep.name}-{trial_id}"


def trial_counts(sweep: Sweep, storage: str, grid=None) -> dict[str, int]:
    """This invocation's trials by their status in the results store (the truth after
    settle_statuses), plus those Tune never started."""
    from orchestrator.results import ResultsStore

    status = dict(ResultsStore(storage).runs(sweep.name).select("run_id", "status").iter_rows())
    counts = dict.fromkeys(("finished", "failed", "stopped", "running", "not started"), 0)
    # without a grid (Tune was killed by a second Ctrl-C) every run the store holds for this sweep counts
    seen = [status.get(_run_id_of(sweep, r), "not started") for r in grid] if grid is not None else list(status.values())
    for value in seen:
        counts[value] += 1
    counts["not started"] += max(0, sweep.grid_size - len(seen))  # trials Tune had not generated yet
    return counts
