"""Bad input fails fast and plainly: data files checked on the driver before Ray starts
(`error: ... Fix:`, rc 2, no traceback), every config value a trial needs validated, derived
caches keyed by the data's content, and plugin variants that leave out `name`."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from envs import exorl
from envs.moving_shapes import MovingShapesConfig, generate_moving_shapes
from envs.mp4 import write_mp4
from orchestrator import registry
from orchestrator.config import ConfigError, compose_run

ROOT = Path(__file__).resolve().parents[1]
CUBE_OBS, CUBE_ACT = 28, 5  # OGBench cube-single
WALKER_OBS, WALKER_ACT, WALKER_PHYSICS = 24, 6, 18
LENGTH = 10  # transitions per ExoRL episode
OGBENCH = ["variant=td_jepa", "data=ogbench_cube_single_play", "budget.steps=1"]
EXORL = ["variant=td_jepa", "data=exorl_walker_random", "budget.steps=1"]


# ---------------------------------------------------------------------------- writing data
def write_ogbench(path: Path, episodes: int, length: int = 20, obs: int = CUBE_OBS, seed: int = 0, **drop) -> Path:
    """An OGBench-style npz: `episodes` episodes of `length` + 1 rows; `drop` names keys to leave out."""
    rows = episodes * (length + 1)
    rng = np.random.default_rng(seed)
    terminals = np.zeros(rows, bool)
    terminals[length::length + 1] = True
    arrays = {"observations": rng.normal(size=(rows, obs)).astype(np.float32),
              "actions": rng.uniform(-1, 1, (rows, CUBE_ACT)).astype(np.float32), "terminals": terminals}
    np.savez(path, **{k: v for k, v in arrays.items() if k not in drop})
    return path


def write_exorl_episode(buffer: Path, index: int, obs: int = WALKER_OBS, seed: int = 0, **drop) -> Path:
    """One ExoRL episode file (dummy first row, as ExoRL stores them)."""
    rng = np.random.default_rng(seed + index)
    rows = LENGTH + 1
    arrays = {"observation": rng.normal(size=(rows, obs)).astype(np.float32),
              "action": rng.uniform(-1, 1, (rows, WALKER_ACT)).astype(np.float32),
              "reward": np.zeros((rows, 1), np.float32), "discount": np.ones((rows, 1), np.float32),
              "physics": rng.normal(size=(rows, WALKER_PHYSICS))}
    buffer.mkdir(parents=True, exist_ok=True)
    path = buffer / exorl.episode_name(index, LENGTH)
    np.savez(path, **{k: v for k, v in arrays.items() if k not in drop})
    return path


def write_exorl(directory: Path, episodes: int, **kwargs) -> Path:
    for index in range(episodes):
        write_exorl_episode(directory / "buffer", index, **kwargs)
    return directory


def write_videos(directory: Path, count: int = 2) -> list[Path]:
    clips = generate_moving_shapes(MovingShapesConfig(frames=8, size=32), "val", 0, count)
    paths = []
    for index, frames in enumerate(clips["video"]):
        paths.append(directory / f"clip{index}.mp4")
        write_mp4(paths[-1], frames)
    return paths


def video_csv(directory: Path, name: str, lines: list[str]) -> str:
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# ---------------------------------------------------------------------------- bad data, before Ray
@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory) -> dict[str, tuple[list[str], str]]:
    """name -> (jepa run arguments, text the error must contain)."""
    d = tmp_path_factory.mktemp("bad")
    videos = write_videos(d)
    good_csv = video_csv(d, "good.csv", [f"{videos[0].name} 0", f"{videos[1].name} 1"])
    truncated = d / "truncated.mp4"
    truncated.write_bytes(videos[0].read_bytes()[: videos[0].stat().st_size // 2])
    csv = ["variant=vjepa", "data=video_csv", "budget.steps=1", f"data.val_csv={good_csv}"]
    return {
        "ogbench_wrong_size": ([*OGBENCH, f"data.path={write_ogbench(d / 'small.npz', 2, obs=20)}"], "[42, 20]"),
        "ogbench_no_terminals": ([*OGBENCH, f"data.path={write_ogbench(d / 'noterm.npz', 2, terminals=1)}"], "terminals"),
        "ogbench_not_npz": ([*OGBENCH, f"data.path={video_csv(d, 'junk.npz', ['junk'])}"], "junk.npz"),
        "exorl_no_physics": ([*EXORL, f"data.path={write_exorl(d / 'nophysics', 2, physics=1)}"], "physics"),
        "exorl_wrong_size": ([*EXORL, f"data.path={write_exorl(d / 'wide', 2, obs=30)}"], "[11, 30]"),
        "csv_unset": (["variant=vjepa", "data=video_csv", "budget.steps=1"], "data.train_csv"),
        "csv_missing_mp4": ([*csv, f"data.train_csv={video_csv(d, 'ghost.csv', ['clip0.mp4 0', 'ghost.mp4 1'])}"],
                            "ghost.csv, line 2"),
        "csv_truncated_mp4": ([*csv, f"data.train_csv={video_csv(d, 'trunc.csv', ['truncated.mp4 0'])}"],
                              "truncated.mp4"),
        "csv_label_too_big": ([*csv, f"data.train_csv={video_csv(d, 'labels.csv', ['clip0.mp4 0', 'clip1.mp4 7'])}"],
                              "data.num_classes=8"),
        "lr_nan": (["optim.lr=nan", "budget.steps=1"], "optim.lr"),
        "eval_lr_negative": (["eval.lr=-0.1", "budget.steps=1"], "eval.lr"),
    }


CHILD = textwrap.dedent("""
    import contextlib, io, json, sys
    import ray
    from orchestrator.cli import main
    results = {}
    for name, argv in json.loads(sys.argv[1]).items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                rc = main(["run", *argv])
            except BaseException as exc:  # a traceback: the test reports it
                rc, err = -1, io.StringIO(f"Traceback: {exc!r}")
        results[name] = {"rc": rc, "out": err.getvalue(), "ray": ray.is_initialized()}
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def bad_results(bad_runs, tmp_path_factory) -> dict[str, dict]:
    """Every bad run through `jepa run`'s main() in one fresh process (so Ray cannot have started before)."""
    env = dict(os.environ, JEPA_DATA=str(tmp_path_factory.mktemp("cache")), COLUMNS="200")
    argv = {name: args for name, (args, _) in bad_runs.items()}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["ogbench_wrong_size", "ogbench_no_terminals", "ogbench_not_npz", "exorl_no_physics",
                                  "exorl_wrong_size", "csv_unset", "csv_missing_mp4", "csv_truncated_mp4",
                                  "csv_label_too_big", "lr_nan", "eval_lr_negative"])
def test_bad_input_fails_before_ray_with_a_fix(name, bad_runs, bad_results):
    result, expected = bad_results[name], bad_runs[name][1]
    out = " ".join(result["out"].split())  # rich wraps long lines
    assert result["rc"] == 2, out
    assert result["ray"] is False
    assert out.startswith("error:") and "Fix:" in out and expected in out, out
    assert "Traceback" not in out


def test_cli_prints_one_error_and_exits_2_in_seconds(tmp_path):
    """The installed `jepa` entry point, end to end: no traceback, long before any training could run."""
    path = write_ogbench(tmp_path / "small.npz", 2, obs=20)
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "jepa"), "run", *OGBENCH, f"data.path={path}"],
                          cwd=ROOT, env=dict(os.environ, JEPA_DATA=str(tmp_path)), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error:" in done.stderr and "Fix:" in done.stderr and "Traceback" not in done.stderr
    assert "mat1 and mat2" not in done.stderr
    assert time.perf_counter() - start < 120  # imports only (about 5 s alone); a trial would take minutes


def test_sweep_validation_checks_every_data_file(tmp_path):
    from orchestrator.sweep import SweepError, load_sweep

    bad = write_ogbench(tmp_path / "small.npz", 2, obs=20)
    sweep = tmp_path / "bad.yaml"
    sweep.write_text("name: bad\nbase: {variant: td_jepa, data: ogbench_cube_single_play, budget.steps: 1}\n"
                     f"space:\n  data.path: [{write_ogbench(tmp_path / 'good.npz', 2)}, {bad}]\n")
    with pytest.raises(SweepError, match="small.npz.*Fix:"):
        load_sweep(str(sweep), [])


def test_good_files_pass_the_checks(tmp_path):
    from orchestrator.registry import check_data

    from envs import ogbench

    made = ogbench.generate(ogbench.OGBenchDataConfig(num_episodes=1, episode_length=10), tmp_path / "og")
    collected = exorl.collect(exorl.ExplorationConfig("walker", "random", num_episodes=1, episode_length=10),
                              tmp_path / "ex")
    for overrides in ([*OGBENCH, f"data.path={write_ogbench(tmp_path / 'ok.npz', 2)}"], [*OGBENCH, f"data.path={made}"],
                      [*OGBENCH, f"data.path={made.parent}"], [*EXORL, f"data.path={write_exorl(tmp_path / 'exorl', 2)}"],
                      [*EXORL, f"data.path={collected}"]):
        check_data(compose_run(overrides).data)
    videos = write_videos(tmp_path)
    listed = video_csv(tmp_path, "ok.csv", [f"{p} {i}" for i, p in enumerate(videos)])
    check_data(compose_run(["data=video_csv", f"data.train_csv={listed}", f"data.val_csv={listed}",
                            "budget.steps=1"]).data)


# ---------------------------------------------------------------------------- stale caches
def _offline_rows(overrides: list[str]) -> tuple[str, int]:
    from orchestrator.rl.data import load_rl_data, offline_input

    cfg = compose_run(overrides)
    data = load_rl_data(cfg)
    path = offline_input(data, cfg.data)
    return path, pq.read_metadata(path).num_rows


def test_rewritten_ogbench_file_gets_new_training_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JEPA_DATA", str(tmp_path / "cache"))
    file = tmp_path / "data.npz"
    overrides = [*OGBENCH, f"data.path={file}"]
    write_ogbench(file, 4)
    first, rows = _offline_rows(overrides)
    assert rows == 4 * 20
    assert _offline_rows(overrides) == (first, rows)
    assert f"reusing {first}" in capsys.readouterr().err  # said once, when reused
    write_ogbench(file, 1)  # fewer transitions
    second, rows = _offline_rows(overrides)
    assert second != first and rows == 20
    write_ogbench(file, 1, seed=1)  # same size (and maybe the same mtime): the content differs
    third, rows = _offline_rows(overrides)
    assert third not in (first, second) and rows == 20


def test_exorl_directory_that_gains_an_episode_gets_new_training_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("JEPA_DATA", str(tmp_path / "cache"))
    directory = write_exorl(tmp_path / "walker", 2)
    overrides = [*EXORL, f"data.path={directory}"]
    first, rows = _offline_rows(overrides)
    assert rows == 2 * LENGTH
    write_exorl_episode(directory / "buffer", 2)
    second, rows = _offline_rows(overrides)
    assert second != first and rows == 3 * LENGTH


def test_source_stamp_follows_every_file_of_a_directory(tmp_path):
    from orchestrator.rl.datasets import source_stamp

    directory = write_exorl(tmp_path / "walker", 2)
    cfg = compose_run([*EXORL, f"data.path={directory}"]).data
    before = source_stamp(cfg)
    assert source_stamp(cfg) == before
    write_exorl_episode(directory / "buffer", 1, seed=5)  # same name and size, new rows
    assert source_stamp(cfg) != before


# ---------------------------------------------------------------------------- config values
@pytest.mark.parametrize("override, key", [
    ("optim.lr=nan", "optim.lr"), ("optim.lr=0", "optim.lr"), ("optim.weight_decay=inf", "optim.weight_decay"),
    ("optim.warmup_frac=1.5", "optim.warmup_frac"), ("optim.betas=[0.9,1.0]", "optim.betas[1]"),
    ("eval.lr=nan", "eval.lr"), ("eval.train_clips=0", "eval.train_clips"), ("eval.episodes=0", "eval.episodes"),
    ("train.report_interval_s=-1", "train.report_interval_s"), ("variant.ema_start=nan", "variant.ema_start"),
])
def test_values_a_trial_needs_are_checked_when_composing(override, key):
    with pytest.raises(ConfigError, match=f"`{key.replace('[', '.').replace(']', '.')}`.*Fix:"):
        compose_run([override, "budget.steps=1"])


def test_misspelt_key_suggests_the_existing_one():
    with pytest.raises(ConfigError) as err:
        compose_run(["optim.lrr=0.1", "budget.steps=1"])
    assert "did you mean optim.lr?" in str(err.value) and "+" not in str(err.value)
    with pytest.raises(ConfigError, match="did you mean variant.tau"):
        compose_run(["variant=td_jepa", "data=exorl_walker_rnd", "variant.taau=0.1", "budget.steps=1"])


def test_appended_key_that_nothing_reads_is_refused():
    """`+optim.lrr=...` used to pass and train with the default lr."""
    with pytest.raises(ConfigError, match="optim.lrr.*did you mean optim.lr"):
        compose_run(["+optim.lrr=0.1", "budget.steps=1"])


def test_missing_file_error_names_the_file_and_a_fix(tmp_path, capsys):
    from orchestrator.cli import _explain, main

    missing = tmp_path / "nowhere.csv"
    text = _explain(FileNotFoundError(2, "No such file or directory", str(missing)))
    assert str(missing) in text and "Fix:" in text
    assert "Fix:" in _explain(FileNotFoundError("no file here"))
    assert main(["data", "make", "video_csv", f"train_csv={missing}", f"val_csv={missing}"]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert "nowhere.csv" in out and "Fix:" in out


# ---------------------------------------------------------------------------- plugin variants
def test_plugin_variant_config_needs_no_name(monkeypatch):
    """README's "Adding a variant": the registry adds `name` when the plugin's Config has none."""
    from orchestrator.budget import plan_run
    from variants.vjepa import VJEPA

    fields = [(f.name, f.type, f) for f in dataclasses.fields(VJEPA.Config) if f.name != "name"]
    config = dataclasses.make_dataclass("PluginConfig", fields)
    plugin = type("PluginJEPA", (VJEPA,), {"name": "plugin_jepa", "Config": config})
    monkeypatch.setitem(registry.variants(), "plugin_jepa", plugin)
    cfg = compose_run(["variant=plugin_jepa", "budget.steps=2", "model.depth=2"])
    assert cfg.variant.name == "plugin_jepa" and cfg.variant.pred_depth == VJEPA.Config().pred_depth
    (plan,) = plan_run(registry.variant(cfg.variant.name), cfg, registry.dataset(cfg.data.name).spec(cfg.data))
    assert plan.flops_per_step > 0
