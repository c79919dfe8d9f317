"""Sweep files: validation errors name file, key and fix; a 4-trial sweep runs through Tune."""
import textwrap
from pathlib import Path

import pytest

from orchestrator.config import ConfigError, compose_run
from orchestrator.report import write_report
from orchestrator.results import ResultsStore
from orchestrator.sweep import SweepError, load_sweep, run_sweep
from tests.conftest import tiny_overrides


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
name: tiny
base: {variant: vjepa, data: moving_shapes, model: vit_tiny}
space:
  budget.steps: [2, 4]
  optim.lr: [1.0e-3, 1.0e12]
search: {algorithm: grid, metric: probe_acc, mode: max}
resources: {workers_per_trial: 1, cpus_per_worker: 1}
report: {x: flops_total, y: probe_acc, group: optim.lr}
"""


@pytest.mark.parametrize(
    "text, match",
    [
        ("name: x\nbase: [1, 2\n", r"s.yaml: line \d+"),
        ("name: x\nspace: {optim.lr: {lognormal: [1, 2]}}\n", "unknown sampler 'lognormal'"),
        ("name: x\nspace: {optim.lr: {loguniform: [1.0e-3, 1.0e-4]}}\n", "low < high"),
        ("name: x\nspace: {optim.lr: []}\n", "space.optim.lr` is an empty list"),
        ("name: x\nspce: {}\n", r"unknown key\(s\) \['spce'\]"),
        ("name: x\nbase: {variant: nope}\nspace: {budget.steps: [1]}\n", "Could not find 'variant/nope'"),
        ("name: x\nspace: {budget.stepz: [1]}\n", "budget.stepz"),
        ("name: x\nspace: {budget.flops: [1.0]}\n", "budget.flops=1 gives stage 'main'"),
        ("name: x\nbase: {budget.steps: 1}\nsearch: {algorithm: hyperopt}\n", "search.algorithm"),
        ("name: x\nbase: {budget.steps: 1}\nsearch: {algorithm: optuna}\nspace: {optim.lr: [1, 2]}\n", "optuna cannot search grid lists"),
        ("name: x\nbase: {budget.steps: 1}\nscheduler: {name: asha}\n", "scheduler.max_t"),
        ("name: 'a b'\n", "`name` must be a word"),
        ("name: x\nbase: {budget.steps: 1, train.num_workers: 2}\n", r"set by the sweep itself.*resources"),
        ("name: x\nbase: {budget.steps: 1}\nspace: {optim.lr: [1, 2]}\nsearch: {num_samples: 3}\n", "same seed"),
        ("name: x\nbase: {budget.steps: 1}\nfailures: {max_failures: -1}\n", r"failures.max_failures` is -1"),
        ("name: x\nbase: {budget.steps: 1}\nfailures: {retries: 2}\n", r"unknown key\(s\) \['retries'\] in failures"),
    ],
)
def test_malformed_sweep_files_name_file_key_and_fix(tmp_path, text, match):
    with pytest.raises(SweepError, match=match) as info:
        load_sweep(write(tmp_path, text))
    assert "s.yaml" in str(info.value) and "Fix" in str(info.value)


def test_missing_sweep_file_and_missing_smoke_section(tmp_path):
    with pytest.raises(SweepError, match="no such sweep file"):
        load_sweep(tmp_path / "absent.yaml")
    with pytest.raises(SweepError, match="no `smoke:` section"):
        load_sweep(write(tmp_path, GOOD), smoke=True)


def test_failure_limit_provenance_and_per_variant_keys_reach_the_sweep(tmp_path, monkeypatch):
    """Retries default to one, the file's limit and `--max-failures` override it; the driver's commit
    travels with the sweep; `per_variant` keys reach the trials that use that variant."""
    from orchestrator.sweep import trial_overrides

    monkeypatch.setenv("JEPA_GIT_SHA", "feedc0de")
    text = "name: x\nbase: {budget.steps: 10}\nspace: {variant: [vjepa, salt]}\nper_variant: {salt: {variant.teacher_fraction: 0.3}}\n"
    sweep = load_sweep(write(tmp_path, text))
    assert sweep.failures == {"max_failures": 1} and sweep.git_sha == "feedc0de"
    assert "variant.teacher_fraction=0.3" in trial_overrides(sweep, {"variant": "salt"})
    assert "variant.teacher_fraction=0.3" not in trial_overrides(sweep, {"variant": "vjepa"})
    limited = write(tmp_path, text + "failures: {max_failures: 3}\n", "limited.yaml")
    assert load_sweep(limited).failures["max_failures"] == 3
    assert load_sweep(limited, max_failures=0).failures["max_failures"] == 0
    with pytest.raises(SweepError, match="--max-failures is -2. Fix"):
        load_sweep(limited, max_failures=-2)


def test_run_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="budget"):
        compose_run([])
    with pytest.raises(ConfigError, match="model.heads"):
        compose_run(["budget.steps=1", "model.heads=5"])
    with pytest.raises(ConfigError, match="train.precision"):
        compose_run(["budget.steps=1", "train.precision=fp8"])
    with pytest.raises(ConfigError, match="train.checkpoint_every"):
        compose_run(["budget.steps=1", "train.checkpoint_every=0"])
    with pytest.raises(ConfigError, match="variant.pred_heads"):
        compose_run(["budget.steps=1", "variant.pred_heads=5"])


def test_missing_dataset_is_explained(tmp_path):
    from orchestrator import registry

    cfg = compose_run(["data=video_csv", f"data.train_csv={tmp_path}/nope.csv", f"data.val_csv={tmp_path}/nope.csv", "budget.steps=1"])
    with pytest.raises(FileNotFoundError, match="data.train_csv"):
        registry.dataset("video_csv").prepare(cfg.data)


def test_four_trial_sweep_keeps_finished_results_when_one_trial_fails(ray_session, tmp_path, data_root):
    sweep = load_sweep(write(tmp_path, GOOD), overrides=tiny_overrides(tmp_path, data_root) + ["optim.warmup_frac=0"])
    assert sweep.grid_size == 4
    grid = run_sweep(sweep, str(tmp_path))
    assert len(grid) == 4
    errors = [r.error for r in grid if r.error is not None]
    assert len(errors) == 2  # lr=1e12 diverges at both budgets
    assert all("not retried, it would fail again: NonFiniteLossError" in str(e) for e in errors)  # failures: 1 by default
    runs = ResultsStore(tmp_path).runs("tiny")
    assert sorted(runs["status"].to_list()) == ["failed", "failed", "finished", "finished"]
    failed = runs.filter(status="failed")
    assert all("optim.lr" in e for e in failed["error"].to_list())
    report = write_report(str(tmp_path), "tiny")
    text = report.read_text()
    assert "NonFiniteLossError" in text and (report.parent / "probe_acc_vs_flops_total.png").exists()


ASHA = """
name: asha
base: {{variant: vjepa, budget.steps: 12, train.report_interval_s: 0}}
space:
  optim.lr: [3.0e-3, 1.0e-3, 1.0e-4, 3.0e-5]   # strong trials first set the bar for the weak ones
search: {{algorithm: grid, metric: loss, mode: min}}
scheduler: {{name: asha, time_attr: flops_total, max_t: {max_t}, grace_period: {grace}, reduction_factor: 2}}
resources: {{workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 2}}
"""


def test_asha_stops_trials_by_flops_spent_and_records_them(ray_session, tmp_path, data_root):
    import json

    from orchestrator.train import describe_plan

    overrides = tiny_overrides(tmp_path, data_root) + ["train.log_every=1"]
    per_step = json.loads(describe_plan(compose_run(overrides + ["budget.steps=12"])))[0]["flops_per_step"]
    text = ASHA.format(max_t=12 * per_step, grace=3 * per_step)
    sweep = load_sweep(write(tmp_path, text, "asha.yaml"), overrides=overrides)
    grid = run_sweep(sweep, str(tmp_path))
    assert len(grid) == 4 and all(r.error is None for r in grid)
    steps = [r.metrics["step"] for r in grid]
    assert min(steps) < 12 and max(steps) == 12  # the rung at 3 steps' FLOPs cut a weak trial short
    statuses = ResultsStore(tmp_path).runs("asha")["status"].to_list()
    assert "stopped" in statuses and "finished" in statuses and "running" not in statuses


OPTUNA = """
name: optuna
base: {variant: vjepa, budget.steps: 2}
space:
  optim.lr: {loguniform: [1.0e-4, 1.0e-2]}
  variant.pred_depth: {choice: [1, 2]}
search: {algorithm: optuna, num_samples: 3, metric: loss, mode: min, max_concurrent: 2}
resources: {workers_per_trial: 1, cpus_per_worker: 1}
"""


def test_optuna_samples_the_space(ray_session, tmp_path, data_root):
    sweep = load_sweep(write(tmp_path, OPTUNA, "optuna.yaml"), overrides=tiny_overrides(tmp_path, data_root))
    grid = run_sweep(sweep, str(tmp_path))
    assert len(grid) == 3 and all(r.error is None for r in grid)
    lrs = [r.config["optim.lr"] for r in grid]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs) and len(set(lrs)) == 3
    assert {r.config["variant.pred_depth"] for r in grid} <= {1, 2}
    assert ResultsStore(tmp_path).runs("optuna").height == 3


SHIPPED_SWEEPS = sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_SWEEPS, ids=lambda p: Path(p).stem)
def test_shipped_sweep_files_validate(path, tmp_path):
    """Every sweep file in sweeps/ composes and budgets all its trials (the teacher-reuse one needs its teachers first)."""
    if path.endswith("salt_teacher_quality.yaml"):
        with pytest.raises(SweepError, match="run that sweep first"):
            load_sweep(path, [f"storage={tmp_path}"])
        return
    sweep = load_sweep(path, [f"storage={tmp_path}"])
    assert sweep.grid_size >= 2 and sweep.report  # a sweep, not a single run
    if "\nsmoke:" in Path(path).read_text():  # its `--smoke` miniature budgets every trial too
        assert load_sweep(path, [f"storage={tmp_path}"], smoke=True).grid_size >= 1


def test_relative_file_keys_are_the_drivers_paths_in_every_trial(tmp_path, monkeypatch):
    """Tune trials and Train workers run in directories of their own: relative names resolve on the driver."""
    from orchestrator.sweep import _corner_params, trial_overrides

    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "name: rel\nbase: {data: moving_shapes, data.root: my_data, budget.steps: 1}\n"
                           "space: {data.root: [my_data, /abs/data]}\n")
    sweep = load_sweep(path, [f"storage={tmp_path / 'runs'}"])
    assert f"data.root={tmp_path / 'my_data'}" in sweep.base
    assert sweep.space["data.root"] == [str(tmp_path / "my_data"), "/abs/data"]
    monkeypatch.chdir("/")  # where a trial might run
    cfg = compose_run(trial_overrides(sweep, _corner_params(sweep)[0]))
    assert cfg.data.root == str(tmp_path / "my_data")
    monkeypatch.chdir(tmp_path)
    assert compose_run(["data=video_csv", "data.train_csv=a.csv", "data.val_csv=/b.csv", "budget.steps=1"]).data.train_csv \
        == str(tmp_path / "a.csv")


def test_misspelt_report_panel_fails_when_the_sweep_loads(tmp_path):
    path = write(tmp_path, "name: x\nbase: {budget.steps: 1}\nreport: {isoflops: {}}\n")
    with pytest.raises(SweepError, match=r"s.yaml: .*isoflops.*did you mean `isoflop`"):
        load_sweep(path, [f"storage={tmp_path}"])


def test_resume_applies_the_failure_budget_given_now(ray_session, tmp_path):
    """`Tuner.restore` keeps the pickled RunConfig; `--max-failures` on `--resume` must still reach Tune."""
    from ray import tune

    from orchestrator.sweep import apply_failure_budget

    def noop(config):
        tune.report({"x": 1.0})

    tune.Tuner(noop, run_config=tune.RunConfig(name="tune", storage_path=str(tmp_path), verbose=0,
                                               failure_config=tune.FailureConfig(max_failures=1))).fit()
    restored = tune.Tuner.restore(str(tmp_path / "tune"), noop, resume_errored=True)
    assert restored._local_tuner.get_run_config().failure_config.max_failures == 1
    apply_failure_budget(restored, 4)
    assert restored._local_tuner.get_run_config().failure_config.max_failures == 4


def test_misspelt_panel_option_fails_when_the_sweep_loads_and_is_a_note_in_a_report(tmp_path):
    from orchestrator.report.registry import panels, requested_panels

    path = write(tmp_path, "name: x\nbase: {budget.steps: 1}\nreport: {isoflop: {fractoin: 0.5}}\n")
    with pytest.raises(SweepError, match=r"s.yaml: .*isoflop.*fractoin.*did you mean `fraction`"):
        load_sweep(path, [f"storage={tmp_path}"])
    (_, options, notes), = requested_panels({"isoflop": {"fractoin": 0.5}}, panels())
    assert "Ignored unknown option(s) `fractoin`" in notes[0]
