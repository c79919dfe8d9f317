"""A third-party package adds a variant, a dataset and an evaluation through entry points alone.

tests/plugin_example is built and installed into a temporary directory (no network, no change to this
venv or to the project's files); `jepa run` and a two-trial sweep then train its variant on its data and
score it with its evaluation, beside the random-init and raw-input baselines every probe gets.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from orchestrator.results import ResultsStore

REPO = Path(__file__).resolve().parents[1]
CLI = "import sys; from orchestrator.cli import main; sys.exit(main(sys.argv[1:]))"
TINY = ["model=mlp", "model.hidden_dim=64", "budget.steps=30", "train.batch_size=32", "train.log_every=10", "train.checkpoint_every=30",
        "eval.train_clips=256", "eval.val_clips=128", "eval.epochs=2"]


def project_files() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    target, source = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("src") / "plugin_example"
    shutil.copytree(REPO / "tests" / "plugin_example", source)  # setuptools builds in the source tree: not ours
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300, cwd=source.parent)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env.update(PYTHONPATH=f"{target}{os.pathsep}{REPO}", JEPA_DATA=str(tmp_path_factory.mktemp("data")), COLUMNS="1000")
    return env


def jepa(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    return done


@pytest.mark.slow
def test_plugin_variant_dataset_and_evaluation_run_and_sweep(plugin_env, tmp_path):
    before = project_files()
    listed = jepa(["variants"], plugin_env, tmp_path).stdout
    assert "toy_jepa" in listed

    wrong = subprocess.run([sys.executable, "-c", CLI, "run", "variant=toy_jepa", "data=toy_vectors", "budget.steps=1"],
                           env=plugin_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "model=" in wrong.stderr and "mlp" in wrong.stderr, wrong.stderr[-2000:]
    # One sweep (a Ray session of its own) covers what `jepa run` would: the same trial code trains each run.
    sweep = tmp_path / "toy.yaml"
    sweep.write_text("name: toy\nbase: {variant: toy_jepa, data: toy_vectors}\nspace: {seed: [0, 1]}\n"
                     "report: {x: flops_total, y: centroid_acc_label}\n")
    done = jepa(["sweep", str(sweep), "--storage", str(tmp_path / "runs"), *TINY], plugin_env, tmp_path)
    assert "2 finished, 0 failed" in done.stderr, done.stderr[-3000:]
    runs = ResultsStore(tmp_path / "runs").runs("toy")
    assert runs["status"].to_list() == ["finished", "finished"] and set(runs["variant"]) == {"toy_jepa"}
    rows = ResultsStore(tmp_path / "runs").metrics("toy", runs["run_id"][0])
    final = dict(rows.filter(pl.col("step") == rows["step"].max()).select("metric", "value").iter_rows())
    for name in ("centroid_acc_label", "centroid_acc_label/random_init", "centroid_acc_label/raw_input", "probe_acc"):
        assert name in final, sorted(final)
    assert 0.0 <= final["centroid_acc_label"] <= 1.0
    assert project_files() == before, "the plug-in changed the project's files"
